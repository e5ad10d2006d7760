//go:build !linux

package udpchat

import (
	"net"
	"syscall"

	"golang.org/x/net/ipv4"
)

// The relay sends through its own socket: only Linux needs a fan-out twin
// (see fanout_linux.go).

func fanoutControl(cfg *config) func(network, address string, c syscall.RawConn) error {
	return nil
}

func openFanout(c *net.UDPConn, cfg *config) (*ipv4.PacketConn, error) { return nil, nil }
