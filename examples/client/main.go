// Command client joins a udpchat group, sends each non-empty line of
// standard input and prints what the group says. At the end of its input,
// or on Ctrl-C, it leaves.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/udpchat/udpchat"
)

func main() {
	addr := flag.String("addr", udpchat.DefaultAddr, "the relay's address")
	name := flag.String("name", "", "your name in the group")
	plain := flag.Bool("plain", false, "speak plain-text \"name: text\" datagrams, as nc -u does")
	bcast := flag.String("broadcast", "", "with -plain: also listen for the relay's broadcasts to this `address`")
	flag.Parse()
	opts := []udpchat.Option{udpchat.WithAddr(*addr)}
	if *plain {
		opts = append(opts, udpchat.WithPlainText())
	}
	if *bcast != "" {
		opts = append(opts, udpchat.WithBroadcast(*bcast))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	m, err := udpchat.Join(jctx, *name, opts...)
	cancel()
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	go func() { // print what the group says
		for {
			msg, err := m.Receive(ctx)
			switch {
			case errors.Is(err, udpchat.ErrGap):
				fmt.Println("*", err)
			case err != nil:
				return
			case msg.Kind == udpchat.KindJoin:
				fmt.Printf("* %s joined\n", show(msg.From))
			case msg.Kind == udpchat.KindLeave:
				fmt.Printf("* %s left\n", show(msg.From))
			default:
				fmt.Printf("%s: %s\n", show(msg.From), show(msg.Text))
			}
		}
	}()

	go func() { // send each non-empty line; at the end of the input, leave
		for in := bufio.NewScanner(os.Stdin); in.Scan(); {
			if strings.TrimSpace(in.Text()) == "" {
				continue // blank lines are not sent
			}
			if err := m.Send(ctx, in.Text()); err != nil && ctx.Err() == nil {
				log.Print(err)
			}
		}
		stop()
	}()
	<-ctx.Done() // the end of the input, Ctrl-C or SIGTERM: leave at once
}

// show returns s unchanged, or quoted as a Go string when it holds anything
// a terminal would interpret: control characters (ESC among them), C1
// controls, bidi overrides. Never print a peer's bytes raw.
func show(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) }) >= 0 {
		return strconv.QuoteToGraphic(s)
	}
	return s
}
