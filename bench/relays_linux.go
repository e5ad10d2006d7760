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
	addr    netip.AddrPort
	members []*net.UDPAddr
	errs    uint64 // failed reads and writes, and the first error:
	first   error  // the serving goroutine's until done is closed
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
	r := &naiveRelay{conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), done: make(chan struct{})}
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
			r.fail(err)
			continue
		}
		for _, m := range r.members {
			if _, err := r.conn.WriteToUDP(buf[:n], m); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				r.fail(err)
			}
		}
	}
}

func (r *naiveRelay) fail(err error) {
	if r.errs++; r.first == nil {
		r.first = err
	}
}

// stop closes the relay and returns how many reads and writes failed, and
// the first error.
func (r *naiveRelay) stop() (uint64, error) {
	r.conn.Close()
	<-r.done
	return r.errs, r.first
}

// relayRun is a udpchat relay serving on a goroutine of its own.
type relayRun struct {
	*udpchat.Relay
	addr   netip.AddrPort
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
	rr := &relayRun{Relay: r, addr: a.AddrPort(), served: make(chan error, 1)}
	go func() { rr.served <- r.Serve(context.Background()) }()
	return rr, nil
}

// stop closes the relay and waits for Serve, which must return nil.
func (r *relayRun) stop() error {
	err := r.Close()
	if serr := <-r.served; serr != nil && err == nil {
		err = fmt.Errorf("relay Serve returned %w after Close", serr)
	}
	return err
}

// A group is a udpchat relay with n members joined through the handshake.
// Receivers [first, first+n) count their delivers; member 0 is the speaker.
type group struct {
	relay   *relayRun
	d       *drain
	first   int
	speaker *joinReq
}

// newGroup starts a relay and joins n members. In unicast mode each
// member joins from its receiver; in broadcast mode from a unicast socket
// of its own, its receiver being bound, after the joins, to the group port
// its WELCOME gave. The join events are drained before it returns.
func newGroup(cfg *config, n int, broadcast bool, samples int, r *result) (_ *group, err error) {
	var extra []udpchat.Option
	port := 0
	if broadcast {
		// Held until the receivers bind it, after the joins: n joiners'
		// sockets are opened meanwhile.
		var release func()
		if port, release, err = reservePort(); err != nil {
			return nil, err
		}
		defer release()
		extra = append(extra, udpchat.WithBroadcast(netip.AddrPortFrom(bcastIP, uint16(port)).String()))
	}
	relay, err := startRelay(n, extra...)
	if err != nil {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("m%d", i)
	}
	j := newJoiner(relay.addr, names, joinWindow)
	watch := 0
	if broadcast {
		watch = n // the joiners' sockets come first
	}
	d, err := newDrain(n+watch, watch, samples, j.handle)
	if err != nil {
		relay.stop()
		return nil, err
	}
	g := &group{relay: relay, d: d, speaker: &j.reqs[0]}
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
	to := sockaddr(g.relay.addr)
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
	s := g.relay.Stats()
	for ; s.Sequenced < want && time.Now().Before(deadline); s = g.relay.Stats() {
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
	err := g.relay.stop() // first: its goodbyes go to open sockets
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
