// Command client joins a udpchat group, sends each line you type and prints
// what the group says. At the end of its input, or on Ctrl-C, it leaves.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"unicode"

	"github.com/udpchat/udpchat"
)

func main() {
	addr := flag.String("addr", udpchat.DefaultAddr, "the relay's address")
	name := flag.String("name", "", "your name in the group")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	m, err := udpchat.Join(ctx, *name, udpchat.WithAddr(*addr))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close() // leaves the group
	go func() {
		for in := bufio.NewScanner(os.Stdin); in.Scan(); {
			if strings.TrimSpace(in.Text()) != "" { // blank lines are not sent
				m.Send(ctx, in.Text())
			}
		}
		stop() // the end of the input
	}()
	for {
		msg, err := m.Receive(ctx)
		switch {
		case err != nil:
			fmt.Println("*", err) // lost messages (ErrGap), or the end
			if ctx.Err() != nil {
				return
			}
		case msg.Kind == udpchat.KindChat:
			fmt.Printf("%s: %s\n", safe(msg.From), safe(msg.Text))
		case msg.Kind == udpchat.KindJoin, msg.Kind == udpchat.KindLeave:
			fmt.Printf("* %s %s\n", safe(msg.From), map[udpchat.Kind]string{udpchat.KindJoin: "joined", udpchat.KindLeave: "left"}[msg.Kind])
		default: // news of the link to the relay: lost, rejoined
			fmt.Printf("* %s: %s\n", msg.Kind, msg.Text)
		}
	}
}

// safe replaces what a terminal would interpret (ESC and the other
// controls, bidi overrides): a peer's bytes are never printed raw.
func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsGraphic(r) {
			return r
		}
		return unicode.ReplacementChar
	}, s)
}
