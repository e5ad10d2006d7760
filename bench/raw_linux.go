//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// payloadSize is the size of every delivered datagram in every case.
const payloadSize = 100

// A blaster sends one payload with sendmmsg from a socket the Go runtime
// never polls. That is the limit to compare the relay with: a socket in Go's
// netpoller is woken each time a sent loopback datagram frees send-buffer
// space, which costs a relay built on net.UDPConn 30-40%.
type blaster struct {
	fd   int
	dsts []unix.RawSockaddrInet4
	buf  []byte
	iov  unix.Iovec
	msgs []unix.Mmsghdr
	next int    // the destination of the next datagram
	sent uint64 // datagrams sent
}

// newBlaster prepares batches of batch datagrams to dsts in turn;
// broadcast sets SO_BROADCAST.
func newBlaster(dsts []netip.AddrPort, broadcast bool, batch int) (*blaster, error) {
	fd, _, err := openUDP(loopback, 0, false, false, 0)
	if err != nil {
		return nil, err
	}
	if broadcast {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("setsockopt SO_BROADCAST: %w", err)
		}
	}
	b := &blaster{fd: fd, buf: payload(payloadSize), msgs: make([]unix.Mmsghdr, batch)}
	for _, d := range dsts {
		b.dsts = append(b.dsts, sockaddr(d))
	}
	b.iov.Base = &b.buf[0]
	b.iov.SetLen(len(b.buf))
	for i := range b.msgs {
		b.msgs[i].Hdr.Iov = &b.iov // one payload for the whole batch
		b.msgs[i].Hdr.SetIovlen(1)
		b.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
	}
	return b, nil
}

func (b *blaster) close() { unix.Close(b.fd) }

// sendBatch stamps the payload and sends at most limit datagrams, going
// to the destinations in turn; it returns how many went.
func (b *blaster) sendBatch(limit int) (int, error) {
	stamp(b.buf, nowNS())
	msgs := b.msgs[:min(limit, len(b.msgs))]
	k := b.next
	for i := range msgs {
		msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.dsts[k]))
		if k++; k == len(b.dsts) {
			k = 0
		}
	}
	r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(b.fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), 0, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("sendmmsg: %w", e)
	}
	n := int(r)
	b.next = (b.next + n) % len(b.dsts)
	b.sent += uint64(n)
	return n, nil
}

// sendRounds sends one batch that starts at most rounds new rounds (a
// round: one datagram to each destination, the first starting it) and
// returns how many it started.
func (b *blaster) sendRounds(rounds int) (int, error) {
	nd := len(b.dsts)
	limit := rounds * nd // from the start of a round
	if b.next != 0 {
		limit += nd - b.next // the rest of the round under way
	}
	at := b.next
	n, err := b.sendBatch(limit)
	if at != 0 {
		n -= min(n, nd-at)
	}
	return (n + nd - 1) / nd, err
}

// blast sends as fast as it can until stop is closed, the deadline passes
// or max datagrams went, and returns how many went.
func (b *blaster) blast(stop <-chan struct{}, deadline time.Time, max uint64) (uint64, error) {
	for b.sent < max && !stopped(stop) && time.Now().Before(deadline) {
		if _, err := b.sendBatch(len(b.msgs)); err != nil && !transient(err) {
			return b.sent, err
		}
	}
	return b.sent, nil
}

// transient reports a send error that passes: a full socket, a signal.
func transient(err error) bool {
	return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EINTR)
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// payload returns a datagram of n bytes that ends in room for a stamp and
// does not look like udpchat's.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'x'
	}
	stamp(b, 0)
	return b
}

// pace calls send(1), send(2), ... once per interval until stop is closed,
// the deadline passes or count were sent; a late tick sends at once. It
// returns how many were sent.
func pace(stop <-chan struct{}, deadline time.Time, count uint64, interval time.Duration, send func(seq uint64) error) (uint64, error) {
	next := time.Now()
	var sent uint64
	for sent < count && !stopped(stop) {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		if time.Now().After(deadline) {
			break
		}
		err := send(sent + 1)
		next = next.Add(interval)
		switch {
		case err == nil:
			sent++
		case transient(err): // the socket is full: again at the next tick
		default:
			return sent, err
		}
	}
	return sent, nil
}
