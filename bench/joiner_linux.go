//go:build linux

package main

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The udpchat wire protocol, version 2, as doc.go and wire.go give it. The
// package's codec is unexported, so the benchmark speaks the few datagrams
// it needs itself: header "UC" | version | type | id u64, big-endian.
const (
	wireVersion   = 2
	tJoin         = 1
	tWelcome      = 2
	tChat         = 3
	tDeliver      = 4
	tError        = 11
	tCookie       = 14
	headerLen     = 12
	welcomeLen    = headerLen + 8 + 8 + 8 + 4 + 4 + 4 + 2 + 16 + 2 + 16 // nonce, session, seq, heartbeat, expiry, history, buffer, group, group source
	cookieMsgLen  = headerLen + 8 + 16                                  // nonce, cookie
	errorLen      = headerLen + 1 + 8                                   // code, ref
	deliverHdrLen = headerLen + 8 + 8 + 8 + 8 + 1 + 1                   // seq, time, epoch, member seq, kind, name length
)

func appendHeader(b []byte, typ byte, id uint64) []byte {
	b = append(b, 'U', 'C', wireVersion, typ)
	return binary.BigEndian.AppendUint64(b, id)
}

// appendJoin appends a first JOIN (cookie nil) or one that echoes the
// relay's cookie. A new member has no previous incarnation (so no place in
// one) and starts its member seqs at 1.
func appendJoin(b []byte, nonce, epoch uint64, cookie []byte, name, room string) []byte {
	b = appendHeader(b, tJoin, 0)
	b = binary.BigEndian.AppendUint64(b, nonce)
	b = binary.BigEndian.AppendUint64(b, 0) // previous incarnation
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint64(b, 1) // first member seq
	b = binary.BigEndian.AppendUint64(b, 0) // next seq lacked from the previous incarnation
	var zero [16]byte
	if cookie == nil {
		cookie = zero[:]
	}
	b = append(b, cookie...)
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = append(b, byte(len(room)))
	return append(b, room...)
}

// appendChat appends a CHAT whose text fills the rest of a payloadSize
// DELIVER from a member called name; seq and the send time are set per
// message with setChat.
func appendChat(b []byte, session uint64, name string) []byte {
	b = appendHeader(b, tChat, session)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = binary.BigEndian.AppendUint64(b, 0) // sequenced before: at no incarnation,
	b = binary.BigEndian.AppendUint64(b, 0) // at no seq
	b = append(b, 0)                        // no recipient: to the room
	for range payloadSize - deliverHdrLen - len(name) {
		b = append(b, 'x')
	}
	return b
}

func setChat(b []byte, mseq uint64) {
	binary.BigEndian.PutUint64(b[headerLen:], mseq)
	stamp(b, nowNS())
}

// Join states.
const (
	joinIdle uint32 = iota
	joinPending
	joinDone
	joinFailed
)

// A joinReq is one member's join. fd, name, nonce and epoch are set before
// state becomes pending; the drain writes session, group and code before
// it moves state on.
type joinReq struct {
	state   atomic.Uint32
	fd      int
	name    string
	room    string
	nonce   uint64
	epoch   uint64
	session uint64
	group   netip.AddrPort // from the WELCOME: where broadcast delivers go
	code    byte           // from an ERROR
}

// A joiner joins members to a relay with the full handshake, many at once.
// Its state is allocated up front, so that the relay's heap can be measured
// while it joins.
type joiner struct {
	relay   unix.RawSockaddrInet4
	salt    uint64 // high half of every nonce; the low half indexes reqs
	reqs    []joinReq
	done    chan int // indices of joins that completed or failed
	scratch []byte   // the drain thread's JOIN buffer
	errs    atomic.Uint64
}

func newJoiner(relay netip.AddrPort, names []string, window int) *joiner {
	var s [4]byte
	rand.Read(s[:])
	j := &joiner{
		relay:   sockaddr(relay),
		salt:    uint64(binary.BigEndian.Uint32(s[:])|1) << 32,
		reqs:    make([]joinReq, len(names)),
		done:    make(chan int, window),
		scratch: make([]byte, 0, 128),
	}
	for i, n := range names {
		j.reqs[i].name = n
		j.reqs[i].nonce = j.salt | uint64(i)
		j.reqs[i].epoch = j.salt | uint64(i) + 1
	}
	return j
}

// handle is the drain's control hook: it answers a COOKIE with the second
// JOIN and completes a join on WELCOME or ERROR. It runs on the drain's
// thread and never blocks: at most window joins are pending, and each
// completes once.
func (j *joiner) handle(fd int, b []byte) {
	var nonceAt, size int
	switch b[3] {
	case tCookie:
		nonceAt, size = headerLen, cookieMsgLen
	case tWelcome:
		nonceAt, size = headerLen, welcomeLen
	case tError:
		nonceAt, size = headerLen+1, errorLen
	default:
		return // STATUS, BYE, ...: nothing the benchmark needs
	}
	if len(b) != size || b[2] != wireVersion {
		return
	}
	nonce := binary.BigEndian.Uint64(b[nonceAt:])
	i := int(uint32(nonce))
	if nonce&^0xffffffff != j.salt || i >= len(j.reqs) {
		return
	}
	r := &j.reqs[i]
	if r.state.Load() != joinPending || r.fd != fd {
		return
	}
	switch b[3] {
	case tCookie:
		j.scratch = appendJoin(j.scratch[:0], r.nonce, r.epoch, b[headerLen+8:], r.name, r.room)
		if sendTo(fd, j.scratch, &j.relay) != nil {
			j.errs.Add(1) // the retry resends
		}
		return
	case tWelcome:
		r.session = binary.BigEndian.Uint64(b[headerLen+8:])
		ip := netip.AddrFrom16([16]byte(b[welcomeLen-34:])).Unmap()
		if port := binary.BigEndian.Uint16(b[welcomeLen-18:]); port != 0 {
			r.group = netip.AddrPortFrom(ip, port)
		}
		if r.state.CompareAndSwap(joinPending, joinDone) {
			j.done <- i
		}
	case tError:
		r.code = b[headerLen]
		if r.state.CompareAndSwap(joinPending, joinFailed) {
			j.done <- i
		}
	}
}

// join joins members [from, to) with at most window of them in flight; a
// member's fd must be set. A join that goes unanswered for a while is
// sent again from the start.
func (j *joiner) join(from, to, window int, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	buf := make([]byte, 0, 128)
	send := func(r *joinReq) error {
		buf = appendJoin(buf[:0], r.nonce, r.epoch, nil, r.name, r.room)
		return sendTo(r.fd, buf, &j.relay)
	}
	next, done, inflight, progress := from, 0, 0, false
	for done < to-from {
		for ; inflight < window && next < to; next++ {
			r := &j.reqs[next]
			r.state.Store(joinPending)
			if send(r) != nil {
				j.errs.Add(1) // the retry resends
			}
			inflight++
		}
		select {
		case i := <-j.done:
			inflight--
			done++
			progress = true
			if r := &j.reqs[i]; r.state.Load() == joinFailed {
				return fmt.Errorf("relay refused the join of %q with error code %d", r.name, r.code)
			}
		case <-retry.C:
			if !progress {
				for i := from; i < next; i++ {
					if r := &j.reqs[i]; r.state.Load() == joinPending && send(r) != nil {
						j.errs.Add(1)
					}
				}
			}
			progress = false
		case <-deadline.C:
			return fmt.Errorf("joined %d of %d members in %v (%d send errors)", done, to-from, timeout, j.errs.Load())
		}
	}
	return nil
}
