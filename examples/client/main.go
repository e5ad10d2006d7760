// Command client chats in a udpchat group until the end of its input or Ctrl-C.
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

	"github.com/udpchat/udpchat"
)

func main() {
	addr, name := flag.String("addr", udpchat.DefaultAddr, "the relay's address"), flag.String("name", "", "your name")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
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
	for msg, err := m.Receive(ctx); ctx.Err() == nil; msg, err = m.Receive(ctx) {
		if err != nil {
			fmt.Println("*", err) // messages lost for good (ErrGap)
		} else if msg.Kind == udpchat.KindChat {
			fmt.Printf("%s: %q\n", msg.From, msg.Text) // quoted: a peer's escapes are shown, never obeyed
		} else { // join, leave, and news of the link to the relay
			fmt.Printf("* %v %s%s\n", msg.Kind, msg.From, msg.Text) // "* join bob", "* lost the relay went silent"
		}
	}
}
