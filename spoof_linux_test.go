//go:build linux

package udpchat

import (
	"encoding/binary"
	"net"
	"syscall"
	"testing"
)

// sendSpoofed sends payload to the loopback address dst from 127.0.0.1 with
// a forged UDP source port. It skips the test where raw sockets are not
// allowed.
func sendSpoofed(t testing.TB, srcPort int, dst *net.UDPAddr, payload []byte) {
	t.Helper()
	newSpoofer(t).send(srcPort, dst, payload)
}

// spoofer keeps one raw socket open, to send many datagrams with forged
// source ports to loopback addresses.
type spoofer struct {
	t  testing.TB
	fd int
}

func newSpoofer(t testing.TB) *spoofer {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_UDP)
	if err != nil {
		lanSkip(t, "raw socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return &spoofer{t, fd}
}

func (s *spoofer) send(srcPort int, dst *net.UDPAddr, payload []byte) {
	s.t.Helper()
	if !dst.IP.IsLoopback() {
		s.t.Fatal("spoofed datagrams go to loopback only")
	}
	pkt := make([]byte, 8+len(payload)) // UDP header; checksum 0 means none
	binary.BigEndian.PutUint16(pkt[0:], uint16(srcPort))
	binary.BigEndian.PutUint16(pkt[2:], uint16(dst.Port))
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)))
	copy(pkt[8:], payload)
	sa := &syscall.SockaddrInet4{}
	copy(sa.Addr[:], dst.IP.To4())
	if err := syscall.Sendto(s.fd, pkt, 0, sa); err != nil {
		s.t.Fatalf("raw sendto: %v", err)
	}
}
