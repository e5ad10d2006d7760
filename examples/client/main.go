// Command client joins a udpchat group, sends each line of standard input
// and prints what the group says. At the end of its input it leaves.
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
	"time"

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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	m, err := udpchat.Join(jctx, *name, opts...)
	cancel()
	if err != nil {
		log.Fatal(err)
	}
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for {
			msg, err := m.Receive(ctx)
			switch {
			case errors.Is(err, udpchat.ErrGap):
				fmt.Println("*", err)
			case err != nil:
				return
			case msg.Kind == udpchat.KindJoin:
				fmt.Printf("* %s joined\n", msg.From)
			case msg.Kind == udpchat.KindLeave:
				fmt.Printf("* %s left\n", msg.From)
			default:
				fmt.Printf("%s: %s\n", msg.From, msg.Text)
			}
		}
	}()
	for in := bufio.NewScanner(os.Stdin); in.Scan() && ctx.Err() == nil; {
		if err := m.Send(ctx, in.Text()); err != nil {
			log.Print(err)
		}
	}
	m.Close()
	<-printed
}
