package udpchat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
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
	if w, ok := r.q.w.(*batchConn); !ok || !w.wcall.nowait {
		t.Error("the relay's fan-out writes are not made without waiting first")
	}
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

// The fan-out socket's write is made without the runtime's system-call
// bookkeeping only while it cannot sleep: with the peer's buffer full it
// blocks in the kernel, as a blocking socket's write does, rather than
// report EAGAIN, and sends the whole batch in order once there is room.
// (A datagram socket pair stands in for the twin: loopback UDP frees a
// send buffer at once and never fills it.)
func TestFanoutWriteBlocksWhenFull(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	filled := 0
	for ; ; filled++ {
		if err := unix.Sendmsg(fds[0], []byte{0xff}, nil, nil, unix.MSG_DONTWAIT); errors.Is(err, unix.EAGAIN) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// Room for filled datagrams comes back as they are read: the batch is
	// no larger, so that the call, once woken, sends it all.
	k := min(8, filled)
	if k == 0 {
		t.Fatal("the socket pair took no datagram")
	}
	bufs := make([][]byte, k)
	hs := make([]unix.Mmsghdr, k)
	iovs := make([]unix.Iovec, k)
	for i := range k {
		bufs[i] = []byte{byte(i)}
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(1)
		hs[i].Hdr.Iov, hs[i].Hdr.Iovlen = &iovs[i], 1
	}
	call := mmsgCall{trap: unix.SYS_SENDMMSG, nowait: true}
	call.fn = call.do
	type result struct {
		n   int
		err error
	}
	tid, done := make(chan int, 1), make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		n, err := call.run(fanoutRaw(fds[0]).Write, hs)
		done <- result{n, err}
	}()
	returned := false
	defer func() {
		// A skip or a failure may leave the writer waiting: room for it
		// lets it return, so that no goroutine outlives the test.
		buf := make([]byte, 8)
		for deadline := time.Now().Add(10 * time.Second); !returned && time.Now().Before(deadline); {
			select {
			case <-done:
				returned = true
			case <-time.After(time.Millisecond):
				unix.Recvfrom(fds[1], buf, unix.MSG_DONTWAIT)
			}
		}
	}()
	// Wait for the writer's thread to sleep in sendmmsg: the kernel names
	// the call a thread is blocked in.
	syscallFile := fmt.Sprintf("/proc/self/task/%d/syscall", <-tid)
	want := fmt.Sprint(unix.SYS_SENDMMSG) + " "
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case r := <-done:
			returned = true
			t.Fatalf("the write returned (%d, %v) with the buffer full instead of waiting", r.n, r.err)
		default:
		}
		b, err := os.ReadFile(syscallFile)
		if err != nil {
			t.Skipf("cannot tell where the writer waits: %v", err)
		}
		if strings.HasPrefix(string(b), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer did not block in sendmmsg: %s is %q", syscallFile, b)
		}
		time.Sleep(time.Millisecond)
	}
	if err := unix.SetsockoptTimeval(fds[1], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10}); err != nil {
		t.Fatal(err)
	}
	read := func() byte {
		t.Helper()
		buf := make([]byte, 8)
		n, err := unix.Read(fds[1], buf)
		if err != nil || n != 1 {
			t.Fatalf("read %d, %v", n, err)
		}
		return buf[0]
	}
	for range filled {
		if b := read(); b != 0xff {
			t.Fatalf("the batch's datagram %d came before the ones queued ahead of it", b)
		}
	}
	select {
	case r := <-done:
		returned = true
		if r.err != nil || r.n != k {
			t.Fatalf("write: %d, %v; want %d sent", r.n, r.err, k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write did not return once the buffer had room")
	}
	for i := range k {
		if b := read(); b != byte(i) {
			t.Fatalf("datagram %d of the batch is %d", i, b)
		}
	}
}
