//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: the udpchat benchmark needs Linux (epoll, recvmmsg, sendmmsg)")
	os.Exit(1)
}
