package udpchat

// The member's read loops: its unicast socket, connected to the relay, and
// the listener for the relay's broadcast or multicast fan-out.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// A memberSocket is one of the member's sockets with what reading it
// takes: the unicast one, connected to the relay, or the listener for
// the relay's broadcast or multicast fan-out (group). Whoever reads it
// owns it: the group's read loop, or whoever holds the unicast socket's
// read role (see readRole).
type memberSocket struct {
	bc    *batchConn
	in    []inMsg
	group bool
	drops uint64 // the socket's share of stats.DroppedKernel
}

func newMemberSocket(bc *batchConn, group bool) *memberSocket {
	return &memberSocket{bc: bc, in: make([]inMsg, memberReadBatch), group: group}
}

// readLoop reads s until it is closed, the unicast socket only while it
// holds the read role. It reads one datagram at a time into the largest
// buffer until it knows how large a datagram can be (the relay's WELCOME
// says; in plain text, the buffer size), then memberReadBatch at a time
// into buffers of that size.
func (m *Member) readLoop(s *memberSocket) {
	defer m.wg.Done()
	for {
		if !s.group && !m.awaitRole() {
			return
		}
		n, err := s.bc.read(s.in)
		m.mu.Lock()
		err = m.took(s, n, err)
		if errors.Is(err, syscall.EAGAIN) {
			// Drained, and a Receive asked for the role (mayWait): it is
			// handed over only now that the read has returned.
			m.rd.yield(m.loopNeeded())
		}
		m.mu.Unlock()
		switch {
		case err == nil, errors.Is(err, syscall.EAGAIN), isTimeout(err):
			// Taken; or the role may have gone to a Receive (awaitRole
			// waits for it back); or a read deadline ended a read, and is
			// cleared.
		case errors.Is(err, net.ErrClosed):
			return
		case isTransient(err):
			// ICMP errors (the relay's port is closed: it is restarting)
			// and the like concern one datagram, not the socket.
		default:
			m.cfg.logger.Warn("udpchat member read", "err", err)
			select {
			case <-m.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// awaitRole waits until the read loop holds the unicast socket's read
// role, and reports false if the member closes first.
func (m *Member) awaitRole() bool {
	for {
		m.mu.Lock()
		mine := m.rd.owner == ownerLoop
		m.mu.Unlock()
		if mine {
			return true
		}
		select {
		case <-m.rd.loopWake:
		case <-m.done:
			return false
		}
	}
}

// took takes what a read of s returned, with m.mu held, and returns the
// read's error for the reader to act on.
func (m *Member) took(s *memberSocket, n int, err error) error {
	if d := s.bc.drops(); d != s.drops {
		m.stats.DroppedKernel += d - s.drops
		s.drops = d
	}
	if err != nil {
		switch {
		case errors.Is(err, net.ErrClosed), errors.Is(err, syscall.EAGAIN):
		case isTimeout(err):
			if m.rd.cleared() {
				m.conn.SetReadDeadline(time.Time{})
			}
		default:
			m.lastErr = err
			if isRefused(err) {
				// Nothing listens at the relay's address: a first join
				// gives up after a few of these (see tick).
				m.refusals++
				signal(m.kick)
			}
		}
		return err
	}
	bufs := s.bc.bufs
	now := time.Now()
	for i := range n {
		if s.in[i].n == len(bufs[i]) && len(bufs[i]) <= max(m.cfg.bufferSize, m.maxDatagram) {
			// Cut short by a buffer of the size before a WELCOME in
			// this batch announced larger datagrams.
			m.stats.Dropped++
			continue
		}
		m.handleLocked(bufs[i][:s.in[i].n], s.in[i].from.remote, s.group, now)
	}
	if m.maxDatagram != 0 {
		// One byte more than the largest datagram taken tells an
		// oversized one from one that fits.
		if size := max(m.cfg.bufferSize, m.maxDatagram) + 1; len(bufs) != memberReadBatch || len(bufs[0]) != size {
			s.bc.setBufs(readBufs(memberReadBatch, size))
		}
	}
	if s.group {
		m.wakeReceive()
	}
	return nil
}

// mayWait is asked by the unicast socket's read each time it would wait
// for a datagram: the loop stops to hand the read role to a Receive that
// asked for it (readLoop does, after the read); a Receive reads on only
// while it has nothing to return.
func (m *Member) mayWait() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.rd.owner {
	case ownerLoop:
		return !m.rd.want || m.loopNeeded()
	case ownerReceive:
		m.rd.blocked = true
		return m.state == stateJoined && m.in.queue.n == 0 && m.readCtx.Err() == nil
	}
	return true
}

// direct reports whether a Receive may read the unicast socket itself:
// the member is in the group, and its messages come on that socket.
func (m *Member) direct() bool {
	return directReads && m.state == stateJoined && m.gpc == nil
}

// loopNeeded reports whether the read loop is to read the unicast socket
// whether Receive is called or not: while joining or closing, in
// broadcast mode, and while Sends wait for their answers.
func (m *Member) loopNeeded() bool {
	return !m.direct() || len(m.out.window) > 0
}

// wakeReceive ends the read of a Receive that holds the read role and
// waits, if it has something else to do: another goroutine queued a
// message, the member failed or is rejoining, the group moved to
// broadcast.
func (m *Member) wakeReceive() {
	if m.in.queue.n > 0 || !m.direct() {
		m.endRead()
	}
}

// endRead ends the read of the Receive that holds the read role, if it
// waits: a read deadline in the past wakes it.
func (m *Member) endRead() {
	if m.rd.mustEnd() {
		m.rd.interrupt()
		m.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// watch has ctx's end wake a Receive that reads with it. A Receive loop
// usually passes one ctx each time: it is watched once.
func (m *Member) watch(ctx context.Context) {
	m.readCtx = ctx
	if done := ctx.Done(); done != m.watched {
		if m.unwatch != nil {
			m.unwatch()
		}
		m.watched, m.unwatch = done, nil
		if done != nil {
			m.unwatch = context.AfterFunc(ctx, func() {
				m.mu.Lock()
				m.endRead()
				m.mu.Unlock()
			})
		}
	}
}

// readDirect is a Receive's read of the unicast socket, holding the read
// role. It reports false when the role is to go back to the loop: the
// socket failed in a way the loop waits out.
func (m *Member) readDirect(ctx context.Context) bool {
	m.watch(ctx)
	m.mu.Unlock()
	n, err := m.sock.bc.read(m.sock.in)
	m.mu.Lock()
	m.rd.blocked = false
	err = m.took(m.sock, n, err)
	return err == nil || errors.Is(err, syscall.EAGAIN) || isTimeout(err) ||
		errors.Is(err, net.ErrClosed) || isTransient(err)
}

// memberReadBatch is how many datagrams a member's socket reads at once.
const memberReadBatch = 16

// readBufs returns n buffers of size bytes, side by side in one array.
func readBufs(n, size int) [][]byte {
	all := make([]byte, n*size)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = all[i*size : (i+1)*size : (i+1)*size]
	}
	return bufs
}

// handle takes one datagram from the relay, under m.mu, and hands it to the
// mode unless it is longer than any the relay sends. A datagram of the
// group's listener (group) must come from the relay or from the source
// of its group copies, which a rejoin may change (the unicast socket is
// connected: the kernel checks its source).
func (m *Member) handle(b []byte, from netip.AddrPort, group bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handleLocked(b, from, group, time.Now())
}

// handleLocked is handle with m.mu held.
func (m *Member) handleLocked(b []byte, from netip.AddrPort, group bool, now time.Time) {
	if len(b) > max(m.cfg.bufferSize, m.maxDatagram) {
		m.stats.Dropped++
		return
	}
	if from = unzoned(from); group && from != unzoned(m.relay) && from != m.groupSrc {
		m.stats.Dropped++
		return
	}
	m.mode.handle(b, now)
}

// listenGroup opens the listener for the relay's broadcast or multicast
// fan-out, on the group's port shared with other members of this host.
func (m *Member) listenGroup(group netip.AddrPort) error {
	if m.gpc != nil {
		m.gpc.Close()
		m.gpc = nil
	}
	m.group = group
	if !group.IsValid() {
		return nil
	}
	lc := net.ListenConfig{Control: controlShared}
	network, any := "udp4", "0.0.0.0"
	if group.Addr().Is6() {
		network, any = "udp6", "::"
	}
	c, err := lc.ListenPacket(context.Background(), network, net.JoinHostPort(any, strconv.Itoa(int(group.Port()))))
	if err != nil {
		return err
	}
	bc, err := newBatchConn(c, readBufs(1, readBufSize), batchOverflow)
	if err == nil {
		err = setBuffers(c, m.cfg)
	}
	if err != nil {
		c.Close()
		return err
	}
	if group.Addr().IsMulticast() {
		local := m.conn.LocalAddr().(*net.UDPAddr)
		ifi, err := groupInterface(m.cfg.ifname, local.IP)
		if err == nil {
			ga := &net.UDPAddr{IP: group.Addr().AsSlice()}
			if group.Addr().Is4() {
				err = ipv4.NewPacketConn(c).JoinGroup(ifi, ga)
			} else {
				err = ipv6.NewPacketConn(c).JoinGroup(ifi, ga)
			}
		}
		if err != nil {
			c.Close()
			return fmt.Errorf("joining multicast group: %w", err)
		}
	}
	m.gpc = c
	m.wg.Add(1)
	go m.readLoop(newMemberSocket(bc, true))
	return nil
}
