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
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// readLoop reads datagrams from the relay until the socket is closed, and
// hands each batch to the mode under one hold of m.mu. group is true for
// the broadcast/multicast listener, whose datagrams handle checks the
// source of. It reads one datagram at a time into the largest buffer
// until it knows how large a datagram can be (the relay's WELCOME says;
// in plain text, the buffer size), then memberReadBatch at a time into
// buffers of that size.
func (m *Member) readLoop(bc *batchConn, group bool) {
	defer m.wg.Done()
	in := make([]inMsg, memberReadBatch)
	var drops uint64 // this socket's share of stats.DroppedKernel
	for {
		n, err := bc.read(in)
		if d := bc.drops(); d != drops {
			m.mu.Lock()
			m.stats.DroppedKernel += d - drops
			m.mu.Unlock()
			drops = d
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP errors (the relay's port is closed: it is restarting)
			// and the like concern one datagram, not the socket.
			m.mu.Lock()
			m.lastErr = err
			if isRefused(err) {
				// Nothing listens at the relay's address: a first join
				// gives up after a few of these (see tick).
				m.refusals++
				signal(m.kick)
			}
			m.mu.Unlock()
			if isTransient(err) {
				continue
			}
			m.cfg.logger.Warn("udpchat member read", "err", err)
			select {
			case <-m.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		m.mu.Lock()
		now := time.Now()
		for i := range n {
			if in[i].n == len(bc.bufs[i]) && len(bc.bufs[i]) <= max(m.cfg.bufferSize, m.maxDatagram) {
				// Cut short by a buffer of the size before a WELCOME in
				// this batch announced larger datagrams.
				m.stats.Dropped++
				continue
			}
			m.handleLocked(bc.bufs[i][:in[i].n], in[i].from.remote, group, now)
		}
		size := 0
		if m.maxDatagram != 0 {
			// One byte more than the largest datagram taken tells an
			// oversized one from one that fits.
			size = max(m.cfg.bufferSize, m.maxDatagram) + 1
		}
		m.mu.Unlock()
		if size != 0 && (len(bc.bufs) != memberReadBatch || len(bc.bufs[0]) != size) {
			bc.setBufs(readBufs(memberReadBatch, size))
		}
	}
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
	go m.readLoop(bc, true)
	return nil
}
