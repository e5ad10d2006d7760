// Command server runs a udpchat relay until Ctrl-C or SIGTERM, then tells
// the members it is going away.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/udpchat/udpchat"
)

func main() {
	addr := flag.String("addr", udpchat.DefaultAddr, "address to listen on")
	flag.Parse()
	r, err := udpchat.NewRelay(udpchat.WithAddr(*addr))
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	fmt.Println("udpchat relay listening on", r.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := r.Serve(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
