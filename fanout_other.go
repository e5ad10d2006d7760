//go:build !linux

package udpchat

import "net"

// The relay sends through its own socket: only Linux needs a fan-out twin
// (see fanout_linux.go).

func openFanout(c *net.UDPConn, cfg *config) (net.PacketConn, []inDatagram, error) {
	return nil, nil, nil
}
