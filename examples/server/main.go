// Command server runs a udpchat relay until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/udpchat/udpchat"
)

func main() {
	addr := flag.String("addr", udpchat.DefaultAddr, "address to listen on")
	bcast := flag.String("broadcast", "", "send each message once to this broadcast `address` or multicast group")
	plain := flag.Bool("plain", false, "forward plain-text \"name: text\" datagrams, as nc -u sends them")
	flag.Parse()
	opts := []udpchat.Option{udpchat.WithAddr(*addr), udpchat.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil)))}
	if *bcast != "" {
		opts = append(opts, udpchat.WithBroadcast(*bcast))
	}
	if *plain {
		opts = append(opts, udpchat.WithPlainText())
	}
	r, err := udpchat.NewRelay(opts...)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("udpchat relay listening on", r.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := r.Serve(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
	if err := r.Close(); err != nil {
		log.Fatal(err)
	}
}
