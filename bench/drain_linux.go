//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	recvBatch  = 64   // datagrams per recvmmsg
	recvBufLen = 2048 // larger than any datagram of the benchmark
	// A receiver's SO_RCVBUF (which the kernel doubles): big, but all of a
	// run's receivers together hold no more than rcvBufTotal, for an
	// open-loop sender fills them up.
	rcvBufMax, rcvBufMin, rcvBufTotal = 4 << 20, 256 << 10, 256 << 20
)

var loopback = [4]byte{127, 0, 0, 1}

// A drain reads the sockets of one run, all of them, on one goroutine locked
// to its OS thread: epoll_wait, then one recvmmsg per ready socket. Every
// case receives this way, so the receiving cost is the same in the
// baselines and in udpchat's runs. It owns the sockets added to it.
type drain struct {
	epfd, wake int // wake is an eventfd: a write stops the drain
	// ctrl gets udpchat datagrams other than DELIVER (COOKIE, WELCOME,
	// STATUS, ...): they are the joiner's business and are not counted.
	ctrl    func(fd int, b []byte)
	counts  []atomic.Uint64 // datagrams counted per socket index
	watch   int             // the index whose arrivals signal notify (the speaker's)
	watched []atomic.Bool   // more indices that signal notify (the rooms' speakers)
	notify  chan struct{}
	tid     atomic.Int32 // the drain's OS thread, for its CPU time
	record  atomic.Bool
	samples []int64 // latency samples (ns); the drain's own until done is closed
	done    chan struct{}
	err     error // why the drain stopped early; read after done

	mu      sync.Mutex
	fds     []int
	stopped bool
}

// newDrain starts a drain for at most max sockets. Arrivals at index watch
// signal notify; samples is how many latency samples it may keep.
func newDrain(max, watch, samples int, ctrl func(fd int, b []byte)) (*drain, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake), Pad: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	d := &drain{
		epfd: epfd, wake: wake, ctrl: ctrl,
		counts:  make([]atomic.Uint64, max),
		watch:   watch,
		watched: make([]atomic.Bool, max),
		notify:  make(chan struct{}, 1),
		samples: make([]int64, 0, samples),
		done:    make(chan struct{}),
	}
	go d.run()
	return d, nil
}

// add hands fd to the drain and returns its index.
func (d *drain) add(fd int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := len(d.fds)
	if d.stopped || i == len(d.counts) {
		unix.Close(fd)
		return 0, errors.New("drain: stopped or full")
	}
	// Level-triggered: a socket left with datagrams after one recvmmsg is
	// reported again, after the other ready ones.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd), Pad: int32(i)}
	if err := unix.EpollCtl(d.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("epoll_ctl: %w", err)
	}
	d.fds = append(d.fds, fd)
	return i, nil
}

// receivers opens n sockets on 127.0.0.1, or on 0.0.0.0:port sharing the
// port when port is not 0, adds them, and returns their first index, the
// sockets and their addresses.
func (d *drain) receivers(n, port int) (first int, fds []int, addrs []netip.AddrPort, err error) {
	ip, shared := loopback, port != 0
	if shared {
		ip = [4]byte{}
	}
	rcvbuf := min(rcvBufMax, max(rcvBufMin, rcvBufTotal/n))
	for i := range n {
		fd, local, err := openUDP(ip, port, shared, true, rcvbuf)
		if err != nil {
			return 0, nil, nil, err
		}
		idx, err := d.add(fd)
		if err != nil {
			return 0, nil, nil, err
		}
		if i == 0 {
			first = idx
		}
		fds, addrs = append(fds, fd), append(addrs, local)
	}
	return first, fds, addrs, nil
}

func (d *drain) run() {
	defer close(d.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d.tid.Store(int32(unix.Gettid()))
	events := make([]unix.EpollEvent, 256)
	bufs := make([][]byte, recvBatch)
	iovs := make([]unix.Iovec, recvBatch)
	msgs := make([]unix.Mmsghdr, recvBatch)
	for i := range msgs {
		bufs[i] = make([]byte, recvBufLen)
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(recvBufLen)
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	for {
		n, err := unix.EpollWait(d.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			d.err = fmt.Errorf("epoll_wait: %w", err)
			return
		}
		for _, ev := range events[:n] {
			if ev.Pad < 0 {
				return // stop
			}
			d.read(int(ev.Fd), int(ev.Pad), msgs, bufs)
		}
	}
}

// read takes one batch from a ready socket and counts it.
func (d *drain) read(fd, idx int, msgs []unix.Mmsghdr, bufs [][]byte) {
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return // EAGAIN; a real error shows as missing datagrams
	}
	rec := d.record.Load()
	var now int64
	if rec {
		now = nowNS() // one clock read per batch: the batch arrived together
	}
	var got uint64
	for i := range int(r) {
		b := bufs[i][:msgs[i].Len]
		if isControl(b) {
			if d.ctrl != nil {
				d.ctrl(fd, b)
			}
			continue
		}
		got++
		if rec && len(d.samples) < cap(d.samples) {
			if ts, ok := parseStamp(b); ok {
				d.samples = append(d.samples, now-ts)
			}
		}
	}
	if got > 0 {
		d.counts[idx].Add(got)
		if idx == d.watch || d.watched[idx].Load() {
			select {
			case d.notify <- struct{}{}:
			default:
			}
		}
	}
}

// isControl reports a udpchat datagram that is not a DELIVER.
func isControl(b []byte) bool {
	return len(b) >= headerLen && b[0] == 'U' && b[1] == 'C' && b[3] != tDeliver
}

func (d *drain) count(i int) uint64 { return d.counts[i].Load() }

// sum adds the counts of indices [from, to).
func (d *drain) sum(from, to int) uint64 {
	var s uint64
	for i := from; i < to; i++ {
		s += d.counts[i].Load()
	}
	return s
}

// drops adds the datagrams the kernel dropped at sockets [from, to) for
// want of buffer space (SO_MEMINFO).
func (d *drain) drops(from, to int) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var s uint64
	for _, fd := range d.fds[from:min(to, len(d.fds))] {
		var mi [unix.SK_MEMINFO_VARS]uint32
		l := uint32(unsafe.Sizeof(mi))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mi)), uintptr(unsafe.Pointer(&l)), 0)
		if e == 0 {
			s += uint64(mi[unix.SK_MEMINFO_DROPS])
		}
	}
	return s
}

// waitSum waits until sockets [from, to) have counted, or dropped, want
// datagrams; false after timeout.
func (d *drain) waitSum(from, to int, want uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		got := d.sum(from, to)
		if got >= want || i%32 == 31 && got+d.drops(from, to) >= want {
			return true // drops cost a syscall per socket: seldom
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// stop ends the drain and closes its sockets. It is idempotent. The
// samples are the caller's afterwards.
func (d *drain) stop() error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return d.err
	}
	d.stopped = true
	d.mu.Unlock()
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(d.wake, one[:]); err != nil {
		return fmt.Errorf("drain: wake: %w", err) // cannot happen with a fresh eventfd
	}
	<-d.done
	for _, fd := range d.fds {
		unix.Close(fd)
	}
	unix.Close(d.epfd)
	unix.Close(d.wake)
	return d.err
}

// openUDP opens a UDP socket the Go runtime never sees, bound to ip:port,
// and returns it with its local address.
func openUDP(ip [4]byte, port int, shared, nonblock bool, rcvbuf int) (int, netip.AddrPort, error) {
	typ := unix.SOCK_DGRAM | unix.SOCK_CLOEXEC
	if nonblock {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(unix.AF_INET, typ, 0)
	if err != nil {
		return -1, netip.AddrPort{}, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("%s: %w", what, err)
	}
	if shared {
		for _, o := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o, 1); err != nil {
				return fail("setsockopt reuse", err)
			}
		}
	}
	if rcvbuf > 0 {
		// As root SO_RCVBUFFORCE goes past net.core.rmem_max.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
				return fail("setsockopt SO_RCVBUF", err)
			}
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: ip}); err != nil {
		return fail(fmt.Sprintf("bind %v:%d", netip.AddrFrom4(ip), port), err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return fail("getsockname", errors.New("not IPv4"))
	}
	return fd, netip.AddrPortFrom(netip.AddrFrom4(ip), uint16(in4.Port)), nil
}

// reservePort holds a UDP port on every address for a broadcast group of
// the benchmark's own, bound with the options its receivers bind with, so
// that no socket opened meanwhile (a joiner's, on an ephemeral port) takes
// it. release lets it go once the receivers hold the port.
func reservePort() (port int, release func(), err error) {
	fd, local, err := openUDP([4]byte{}, 0, true, true, 0)
	if err != nil {
		return 0, nil, err
	}
	return int(local.Port()), func() { unix.Close(fd) }, nil
}

// freePort finds a UDP port that no socket holds on any address, for a
// broadcast no one is to receive.
func freePort() (int, error) {
	fd, local, err := openUDP([4]byte{}, 0, false, false, 0)
	if err != nil {
		return 0, err
	}
	unix.Close(fd)
	return int(local.Port()), nil
}

// sockaddr is the kernel's form of an IPv4 address, for sendto and
// sendmmsg without allocating.
func sockaddr(ap netip.AddrPort) unix.RawSockaddrInet4 {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().As4()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	return sa
}

// sendTo sends b from fd to to. The kernel only reads to, so goroutines may
// share it.
func sendTo(fd int, b []byte, to *unix.RawSockaddrInet4) error {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		0, uintptr(unsafe.Pointer(to)), unix.SizeofSockaddrInet4)
	if e != 0 {
		return e
	}
	return nil
}

// base is the origin of the send times stamped into payloads.
var base = time.Now()

func nowNS() int64 { return int64(time.Since(base)) }

const hexDigits = "0123456789abcdef"

// stamp writes ts as 16 hex digits into the last 16 bytes of b.
func stamp(b []byte, ts int64) {
	t := b[len(b)-16:]
	for i := 15; i >= 0; i-- {
		t[i] = hexDigits[ts&0xf]
		ts >>= 4
	}
}

// parseStamp reads the send time from the last 16 bytes of b.
func parseStamp(b []byte) (int64, bool) {
	if len(b) < 16 {
		return 0, false
	}
	var v int64
	for _, c := range b[len(b)-16:] {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | int64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}
