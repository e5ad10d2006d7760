//go:build !linux

package udpchat

import (
	"net"
	"testing"
)

// The tests that forge source addresses need Linux raw sockets.

func sendSpoofed(t testing.TB, srcPort int, dst *net.UDPAddr, payload []byte) {
	t.Helper()
	newSpoofer(t)
}

type spoofer struct{}

func newSpoofer(t testing.TB) *spoofer {
	t.Helper()
	t.Skip("forging source addresses needs a Linux raw socket")
	return nil
}

func (s *spoofer) send(srcPort int, dst *net.UDPAddr, payload []byte) {}
