//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/udpchat/udpchat"
	"golang.org/x/sys/unix"
)

// naiveRelay is what a relay looks like without batching: it reads one
// datagram and writes it to every member with one WriteToUDP each.
type naiveRelay struct {
	conn    *net.UDPConn
	ap      netip.AddrPort
	members []*net.UDPAddr
	fails   failures // failed reads and writes
	done    chan struct{}
}

// startNaive starts a naive relay writing to members; broadcast sets
// SO_BROADCAST, for a member list of one broadcast address.
func startNaive(members []netip.AddrPort, broadcast bool) (*naiveRelay, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	if broadcast {
		if err := setBroadcast(c); err != nil {
			c.Close()
			return nil, err
		}
	}
	r := &naiveRelay{conn: c, ap: c.LocalAddr().(*net.UDPAddr).AddrPort(), done: make(chan struct{})}
	for _, m := range members {
		r.members = append(r.members, net.UDPAddrFromAddrPort(m))
	}
	go r.serve()
	return r, nil
}

func (r *naiveRelay) serve() {
	defer close(r.done)
	buf := make([]byte, recvBufLen)
	for {
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.fails.add(err)
			continue
		}
		for _, m := range r.members {
			if _, err := r.conn.WriteToUDP(buf[:n], m); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				r.fails.add(err)
			}
		}
	}
}

func (r *naiveRelay) addr() string { return r.ap.String() }

func (r *naiveRelay) report(bool) (relayReport, error) {
	rep := relayReport{Addr: r.addr()}
	r.fails.put(&rep)
	return rep, nil
}

func (r *naiveRelay) close() error {
	r.conn.Close()
	<-r.done
	return nil
}

// relayRun is a udpchat relay serving on a goroutine of its own.
type relayRun struct {
	*udpchat.Relay
	ap     netip.AddrPort
	served chan error
}

// startRelay starts a relay on a free loopback port for members members,
// with no rate limits (the speaker is closed-loop; limits would measure
// themselves), and heartbeat and expiry so long that members, who send
// no heartbeats, never expire and the sweep never runs in a window.
func startRelay(members int, extra ...udpchat.Option) (*relayRun, error) {
	opts := append([]udpchat.Option{
		udpchat.WithAddr("127.0.0.1:0"),
		udpchat.WithRateLimit(0, 0),
		udpchat.WithMaxMembers(members),
		udpchat.WithHeartbeat(time.Hour),
		udpchat.WithExpiry(24 * time.Hour),
	}, extra...)
	r, err := udpchat.NewRelay(opts...)
	if err != nil {
		return nil, err
	}
	a, ok := r.Addr().(*net.UDPAddr)
	if !ok {
		r.Close()
		return nil, fmt.Errorf("relay address %v is not UDP", r.Addr())
	}
	rr := &relayRun{Relay: r, ap: a.AddrPort(), served: make(chan error, 1)}
	go func() { rr.served <- r.Serve(context.Background()) }()
	return rr, nil
}

func (r *relayRun) addr() string { return r.ap.String() }

func (r *relayRun) report(bool) (relayReport, error) {
	return relayReport{Addr: r.addr(), Stats: r.Stats()}, nil
}

// close closes the relay and waits for Serve, which must return nil.
func (r *relayRun) close() error {
	err := r.Close()
	if serr := <-r.served; serr != nil && err == nil {
		err = fmt.Errorf("relay Serve returned %w after Close", serr)
	}
	return err
}

// A group is a udpchat relay with n members joined through the handshake.
// Receivers [first, first+n) count their delivers; member 0 is the speaker.
type group struct {
	relay   benchRelay
	addr    netip.AddrPort // the relay's
	d       *drain
	first   int
	speaker *joinReq
}

// newGroup starts a relay and joins n members. In unicast mode each
// member joins from its receiver; in broadcast mode from a unicast socket
// of its own, its receiver being bound, after the joins, to the group port
// its WELCOME gave. The join events are drained before it returns.
func newGroup(cfg *config, n int, broadcast bool, samples int, r *result) (_ *group, err error) {
	spec := relaySpec{Kind: "fed udpchat", Members: n}
	port := 0
	if broadcast {
		// Held until the receivers bind it, after the joins: n joiners'
		// sockets are opened meanwhile.
		var release func()
		if port, release, err = reservePort(); err != nil {
			return nil, err
		}
		defer release()
		spec.Group = netip.AddrPortFrom(bcastIP, uint16(port))
	}
	relay, addr, err := startRelayAt(cfg, spec)
	if err != nil {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("m%d", i)
	}
	j := newJoiner(addr, names, joinWindow)
	watch := 0
	if broadcast {
		watch = n // the joiners' sockets come first
	}
	d, err := newDrain(n+watch, watch, samples, j.handle)
	if err != nil {
		relay.close()
		return nil, err
	}
	g := &group{relay: relay, addr: addr, d: d, speaker: &j.reqs[0]}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	var fds []int
	if broadcast {
		for range n {
			fd, _, err := openUDP(loopback, 0, false, true, 0)
			if err != nil {
				return nil, err
			}
			if _, err := d.add(fd); err != nil {
				return nil, err
			}
			fds = append(fds, fd)
		}
	} else if _, fds, _, err = d.receivers(n, 0); err != nil {
		return nil, err
	}
	for i, fd := range fds {
		j.reqs[i].fd = fd
	}
	// The speaker first, so that it comes first in the relay's fan-out.
	if err := j.join(0, 1, 1, cfg.Timeout); err != nil {
		return nil, err
	}
	if err := j.join(1, n, joinWindow, cfg.Timeout); err != nil {
		return nil, err
	}
	if !broadcast {
		// Member i gets the join events of members i to n-1.
		if want := uint64(n) * uint64(n+1) / 2; !d.waitSum(0, n, want, cfg.Timeout) {
			r.notef("only %d of %d join events arrived", d.sum(0, n), want)
		}
		return g, nil
	}
	if want := netip.AddrPortFrom(bcastIP, uint16(port)); g.speaker.group != want {
		return nil, fmt.Errorf("WELCOME announced group %v, want %v", g.speaker.group, want)
	}
	g.first, _, _, err = d.receivers(n, int(g.speaker.group.Port()))
	return g, err
}

// chats returns a send function for the speaker's chats, with the send
// time at the end of the text.
func (g *group) chats() func(seq uint64) error {
	msg := appendChat(nil, g.speaker.session, g.speaker.name)
	to := sockaddr(g.addr)
	return func(seq uint64) error {
		setChat(msg, seq)
		return sendTo(g.speaker.fd, msg, &to)
	}
}

// settle waits until the relay has sequenced the join events and sent
// chats, and records its stats.
func (g *group) settle(n int, sent uint64, r *result) {
	want := uint64(n) + sent
	deadline := time.Now().Add(slack)
	var s udpchat.RelayStats
	for {
		rep, err := g.relay.report(false)
		if err != nil {
			r.notef("relay stats: %v", err)
			return
		}
		if s = rep.Stats; s.Sequenced >= want || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	r.Relay = &s
	if s.Sequenced != want {
		r.notef("relay sequenced %d messages, want %d joins + %d chats", s.Sequenced, n, sent)
	}
	if s.Members != n {
		r.notef("relay has %d members, want %d", s.Members, n)
	}
	for name, v := range counters(&s) {
		if v > 0 && (strings.HasPrefix(name, "Dropped") || name == "Reordered" || name == "Expired") {
			r.notef("relay counted %s=%d", name, v)
		}
	}
}

func (g *group) close() error {
	err := g.relay.close() // first: its goodbyes go to open sockets
	if derr := g.d.stop(); err == nil {
		err = derr
	}
	return err
}

// setBroadcast sets SO_BROADCAST on c.
func setBroadcast(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt SO_BROADCAST: %w", serr)
	}
	return nil
}
