package udpchat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A unicast relay fans out through its twin socket; the twin takes none of
// the members' datagrams, and the pair leaves the address as unshareable
// as one plain socket would.
func TestFanoutTwin(t *testing.T) {
	r := startRelay(t)
	if r.fan == nil {
		t.Fatal("a unicast relay on 127.0.0.1 has no fan-out socket")
	}
	alice, bob := join(t, r, "alice"), join(t, r, "bob")
	if err := alice.Send(ctxT(t), "hi"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindJoin, "bob", "")
	expect(t, bob, KindChat, "alice", "hi")
	twin := r.fan.(*fanoutConn)
	if _, _, err := unix.Recvfrom(twin.fd, make([]byte, 64), unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("the fan-out socket had a datagram to read (%v)", err)
	}
	a := r.Addr().(*net.UDPAddr)
	for _, reuse := range []int{0, 1} {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, reuse)
		err = unix.Bind(fd, &unix.SockaddrInet4{Port: a.Port, Addr: [4]byte(a.IP.To4())})
		unix.Close(fd)
		if !errors.Is(err, unix.EADDRINUSE) {
			t.Errorf("binding the relay's address with SO_REUSEPORT=%d: %v, want EADDRINUSE", reuse, err)
		}
	}
	s := r.Stats()
	if s.Delivered == 0 || s.DroppedSendErrors != 0 {
		t.Errorf("stats %+v", s)
	}
}

// A relay bound to 0.0.0.0 sends through its one socket: a connected
// twin would pin the source address of everything it sends. In broadcast
// mode the twin broadcasts.
func TestFanoutTwinNeedsAnAddress(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "127.255.255.255:0"} {
		r, err := NewRelay(WithAddr(addr))
		if err != nil {
			t.Fatal(err)
		}
		if r.fan != nil {
			t.Errorf("relay at %s has a fan-out socket", r.Addr())
		}
		r.Close()
	}
	// The sink shares the port with the member's listener.
	lc := net.ListenConfig{Control: controlShared}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	sink := pc.(*net.UDPConn)
	defer sink.Close()
	r := startRelay(t, WithBroadcast(fmt.Sprintf("127.255.255.255:%d", sink.LocalAddr().(*net.UDPAddr).Port)))
	if r.fan == nil {
		t.Fatal("a broadcast relay on 127.0.0.1 has no fan-out socket")
	}
	join(t, r, "alice") // its join event is broadcast
	sink.SetReadDeadline(time.Now().Add(testTimeout))
	b := make([]byte, 2048)
	n, from, err := sink.ReadFromUDPAddrPort(b)
	if err != nil {
		t.Fatal(err)
	}
	var p packet
	if err := decode(b[:n], &p); err != nil || p.typ != tDeliver || from != addrPortOf(r.Addr()) {
		t.Errorf("broadcast from %v: type %d (%v), want a deliver from %v", from, p.typ, err, r.Addr())
	}
}

// A relay that fails to start closes every socket it opened, its fan-out
// socket included.
func TestFanoutClosedOnFailure(t *testing.T) {
	fds := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip(err)
		}
		return len(es)
	}
	before := fds()
	for range 10 {
		// No interface holds 127.0.0.2, so multicast setup fails after the
		// sockets are open.
		if r, err := NewRelay(WithAddr("127.0.0.2:0"), WithBroadcast("239.255.77.77:24999")); err == nil {
			r.Close()
			t.Fatal("multicast from 127.0.0.2 set up")
		}
	}
	if after := fds(); after > before {
		t.Errorf("%d file descriptors open after 10 failed NewRelay calls, %d before", after, before)
	}
}
