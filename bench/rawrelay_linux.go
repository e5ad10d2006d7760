//go:build linux

package main

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	rawRelayOut  = 256                   // datagrams per sendmmsg of the raw relay
	rawRelayPoll = 20 * time.Millisecond // SO_RCVTIMEO of its socket: how soon it sees stop
)

// A rawRelay is the limit for a relay: no protocol, and a socket the Go
// runtime never polls. One goroutine locked to its thread reads the
// speaker's datagrams in batches with recvmmsg and writes each, with
// sendmmsg, to every destination in turn: the N receivers (unicast), or
// 127.255.255.255 once (broadcast).
type rawRelay struct {
	fd    int
	ap    netip.AddrPort
	dsts  []unix.RawSockaddrInet4
	quit  atomic.Bool
	fails failures // failed sends
	done  chan struct{}
}

func startRawRelay(dsts []netip.AddrPort, broadcast bool) (*rawRelay, error) {
	fd, addr, err := openUDP(loopback, 0, false, false, rcvBufMax) // blocking: recvmmsg waits
	if err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval(int64(rawRelayPoll))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setsockopt SO_RCVTIMEO: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, rcvBufMax)
	if broadcast {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("setsockopt SO_BROADCAST: %w", err)
		}
	}
	r := &rawRelay{fd: fd, ap: addr, done: make(chan struct{})}
	for _, d := range dsts {
		r.dsts = append(r.dsts, sockaddr(d))
	}
	go r.serve()
	return r, nil
}

func (r *rawRelay) serve() {
	defer close(r.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	bufs := make([][]byte, recvBatch)
	in := make([]unix.Mmsghdr, recvBatch)
	iovs := make([]unix.Iovec, recvBatch)  // for recvmmsg: whole buffers
	oiovs := make([]unix.Iovec, recvBatch) // for sendmmsg: what arrived
	for i := range in {
		bufs[i] = make([]byte, recvBufLen)
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(recvBufLen)
		in[i].Hdr.Iov = &iovs[i]
		in[i].Hdr.SetIovlen(1)
		oiovs[i].Base = &bufs[i][0]
	}
	out := make([]unix.Mmsghdr, 0, rawRelayOut)
	for !r.quit.Load() {
		got, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&in[0])),
			uintptr(len(in)), unix.MSG_WAITFORONE, 0, 0)
		if e != 0 {
			continue // EAGAIN: the poll timeout; EINTR
		}
		for i := range int(got) {
			oiovs[i].SetLen(int(in[i].Len))
			for k := range r.dsts {
				var m unix.Mmsghdr
				m.Hdr.Name = (*byte)(unsafe.Pointer(&r.dsts[k]))
				m.Hdr.Namelen = unix.SizeofSockaddrInet4
				m.Hdr.Iov = &oiovs[i]
				m.Hdr.SetIovlen(1)
				if out = append(out, m); len(out) == cap(out) {
					out = r.flush(out)
				}
			}
		}
		out = r.flush(out)
	}
}

// flush sends out with sendmmsg, all of it unless the kernel refuses, and
// returns it emptied.
func (r *rawRelay) flush(out []unix.Mmsghdr) []unix.Mmsghdr {
	for sent := 0; sent < len(out); {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&out[sent])),
			uintptr(len(out)-sent), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			r.fails.add(e)
			sent++ // skip the one refused
			continue
		}
		sent += int(n)
	}
	return out[:0]
}

func (r *rawRelay) addr() string { return r.ap.String() }

func (r *rawRelay) report(bool) (relayReport, error) {
	rep := relayReport{Addr: r.addr()}
	r.fails.put(&rep)
	return rep, nil
}

// close ends the relay, within its poll timeout.
func (r *rawRelay) close() error {
	r.quit.Store(true)
	<-r.done
	return unix.Close(r.fd)
}
