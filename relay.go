package udpchat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

const (
	maxRepairPerNak = 128 // deliver datagrams resent for one NACK; the member asks again for more
)

// A Relay sequences the group's messages and delivers each one to every
// member. Create it with NewRelay, run it with Serve, stop it with Close.
// Its methods are safe for concurrent use.
type Relay struct {
	cfg  *config
	conn *net.UDPConn
	addr *net.UDPAddr
	fan  net.PacketConn // the fan-out twin (fanout_linux.go); nil without
	bc   *batchConn     // reads, and writes when there is no fan-out twin
	bufs [][]byte       // Serve reads into these, one datagram each

	serveWG sync.WaitGroup

	// Stats reads shown, not the counters: Serve holds mu through a
	// datagram's fan-out, which at N = 1000 is 1,000 sends. It is as new
	// as the last write (or batch), so what a member has received is
	// counted in it.
	statsMu sync.Mutex
	shown   RelayStats

	mu      sync.Mutex // guards everything below; Serve holds it while it handles a datagram
	closed  bool
	serving bool
	mode    relayMode    // the protocol, or plain text
	q       *sendQueue   // writes: through the fan-out twin, or bc
	limit   *rateLimiter // shared by the modes' senders
	group   udpPath      // WithBroadcast's target; remote invalid without
	stats   RelayStats
}

// A relayMode is what the relay speaks on its socket: the udpchat protocol
// (relay_proto.go) or plain text (plain_relay.go). NewRelay chooses it
// once; it runs under the relay's mutex and sends through its send queue.
type relayMode interface {
	// handle takes one datagram, counted and no larger than the buffer.
	handle(b []byte, from udpPath, now time.Time)
	// batchDone is called once the datagrams of a read batch are handled,
	// before they are answered: what is worked out once per batch.
	batchDone(now time.Time)
	// sweep forgets whoever has been silent for the expiry span.
	sweep(now time.Time)
	members() []MemberInfo // sorted by room, then name
	rooms() []RoomInfo     // sorted by name
	count() int
	// close tells whom it can that the relay is going away.
	close()
}

// NewRelay binds the relay's socket and returns a Relay ready to Serve.
// Options: WithAddr, WithBufferSize, WithBroadcast, WithInterface,
// WithLogger, WithHeartbeat, WithExpiry, WithHistory, WithMaxMembers,
// WithMaxRooms, WithMaxRoomMembers,
// WithRateLimit, WithNameRule, WithKey, WithSocketBuffers, WithPlainText.
func NewRelay(opts ...Option) (*Relay, error) {
	cfg, err := newConfig(sideRelay, opts)
	if err != nil {
		return nil, err
	}
	if b := cfg.broadcast; b != nil && b.Port == cfg.addr.Port && cfg.addr.IP.IsUnspecified() {
		// Its own broadcasts would come back to it: a plain relay would
		// forward them again, for ever.
		return nil, fmt.Errorf("%w: WithBroadcast(%s) to the port of a relay bound to %s: bind the relay to a specific address", ErrInvalidOption, b, cfg.addr)
	}
	if b := cfg.broadcast; b != nil && udpNetwork(b.IP) != udpNetwork(cfg.addr.IP) && (udpNetwork(cfg.addr.IP) != "udp" || b.IP.To4() != nil) {
		return nil, fmt.Errorf("%w: WithBroadcast(%s) from a relay bound to %s: the group and the relay's address must be of one IP version", ErrInvalidOption, b, cfg.addr)
	}
	var lc net.ListenConfig
	switch {
	case cfg.sharesPort():
		lc.Control = controlShared
	case cfg.broadcast != nil && !cfg.broadcast.IP.IsMulticast():
		lc.Control = controlBroadcast
	}
	c, err := lc.ListenPacket(context.Background(), udpNetwork(cfg.addr.IP), cfg.addr.String())
	if err != nil {
		return nil, fmt.Errorf("udpchat: relay listen on %s: %w", cfg.addr, err)
	}
	r := &Relay{
		cfg:  cfg,
		conn: c.(*net.UDPConn),
		addr: c.LocalAddr().(*net.UDPAddr),
		// Repairs: enough to catch up on the whole history at once.
		limit: newRateLimiter(cfg.rateMsgs, cfg.rateBytes, float64(cfg.history)),
	}
	if err := r.open(c); err != nil {
		c.Close()
		if r.fan != nil {
			r.fan.Close()
		}
		return nil, err
	}
	if cfg.broadcast != nil {
		cfg.logger.Info("udpchat relay listening", "addr", r.addr.String(), "broadcast", cfg.broadcast.String())
	} else {
		cfg.logger.Info("udpchat relay listening", "addr", r.addr.String())
	}
	return r, nil
}

// open sets up what the relay needs besides its socket c.
func (r *Relay) open(c net.PacketConn) error {
	cfg := r.cfg
	var s *sealer
	if cfg.keys != nil {
		s = newSealer(cfg.keys)
	}
	// One byte more than the limit tells an oversized datagram from one
	// that fits exactly.
	rb := make([]byte, readBatchSize*(cfg.bufferSize+1))
	r.bufs = make([][]byte, readBatchSize)
	for i := range r.bufs {
		r.bufs[i] = rb[i*(cfg.bufferSize+1) : (i+1)*(cfg.bufferSize+1)]
	}
	flags := batchOverflow
	if r.addr.IP.IsUnspecified() {
		flags |= batchLocal
	}
	var err error
	if r.bc, err = newBatchConn(c, r.bufs, flags); err != nil {
		return fmt.Errorf("udpchat: relay socket: %w", err)
	}
	if err := setBuffers(c, cfg); err != nil {
		return fmt.Errorf("udpchat: relay socket: %w", err)
	}
	r.q = newSendQueue(r.bc, cfg.bufferSize, s, &r.stats, cfg.logger)
	var took []inDatagram
	if !cfg.sharesPort() {
		if r.fan, took, err = openFanout(r.conn, cfg); err != nil {
			return fmt.Errorf("udpchat: relay fan-out socket: %w", err)
		}
	}
	if r.fan != nil {
		wbc, err := newBatchConn(r.fan, nil, 0)
		if err != nil {
			return fmt.Errorf("udpchat: relay fan-out socket: %w", err)
		}
		r.q.w = wbc
	}
	if cfg.broadcast != nil {
		if err := r.setupGroup(); err != nil {
			return err
		}
	}
	if cfg.plainText {
		r.mode = newPlainRelay(cfg, r.addr, r.q, &r.stats, r.limit, r.group)
	} else {
		r.mode = newProtoRelay(cfg, r.q, &r.stats, r.limit, r.group, r.groupSource())
	}
	r.q.beforeWrite = r.publish
	// What reached the twin before it was connected was for the relay.
	r.mu.Lock()
	for _, d := range took {
		r.handle(d.b, d.from, time.Now())
	}
	r.mode.batchDone(time.Now())
	r.q.flush()
	r.publish()
	r.mu.Unlock()
	return nil
}

// setupGroup prepares fan-out to the broadcast address or multicast group.
func (r *Relay) setupGroup() error {
	b := r.cfg.broadcast
	ga, _ := netip.AddrFromSlice(b.IP)
	r.group = udpPath{remote: netip.AddrPortFrom(ga.Unmap(), uint16(b.Port))}
	if !b.IP.IsMulticast() {
		if r.addr.IP.IsUnspecified() {
			// Pinned, so that the source members are told of in WELCOME
			// is the one the copies come from.
			if r.group.local = broadcastSource(b.IP); !r.group.local.IsValid() {
				return fmt.Errorf("%w: relay broadcast to %s: no address of this host is in its subnet", ErrInvalidOption, b)
			}
		}
		return nil
	}
	ifi, err := groupInterface(r.cfg.ifname, r.addr.IP)
	if err != nil {
		return fmt.Errorf("%w: relay multicast to %s: %w", ErrInvalidOption, b, err)
	}
	if ga.Is6() && ifi.Flags&net.FlagMulticast == 0 {
		// IPv6 has no multicast route on such an interface (Linux's lo,
		// unless set multicast): every copy would fail to send.
		return fmt.Errorf("%w: relay multicast to %s: interface %s has no MULTICAST flag", ErrInvalidOption, b, ifi.Name)
	}
	if r.addr.IP.IsUnspecified() {
		if r.group.local = interfaceSource(ifi, ga.Is4()); !r.group.local.IsValid() {
			return fmt.Errorf("%w: relay multicast to %s: interface %s has no address of the group's family to send from", ErrInvalidOption, b, ifi.Name)
		}
	}
	if ga.IsLinkLocalMulticast() && ga.Is6() {
		// A link-scope group is the interface's: the zone says which.
		r.group.remote = netip.AddrPortFrom(ga.WithZone(strconv.Itoa(ifi.Index)), uint16(b.Port))
	}
	for _, c := range []net.PacketConn{r.conn, r.fan} {
		if c == nil {
			continue
		}
		if err := setMulticast(c, ga.Is4(), ifi); err != nil {
			return fmt.Errorf("udpchat: relay multicast on %s: %w", ifi.Name, err)
		}
	}
	return nil
}

// setMulticast makes c send multicast through ifi, one hop (the group is
// the LAN's: a router must not carry it), and back to this host, whose
// members must hear it too.
func setMulticast(c net.PacketConn, v4 bool, ifi *net.Interface) error {
	if v4 {
		pc := ipv4.NewPacketConn(c)
		if err := pc.SetMulticastInterface(ifi); err != nil {
			return fmt.Errorf("interface: %w", err)
		}
		if err := pc.SetMulticastTTL(1); err != nil {
			return fmt.Errorf("TTL: %w", err)
		}
		return pc.SetMulticastLoopback(true)
	}
	pc := ipv6.NewPacketConn(c)
	if err := pc.SetMulticastInterface(ifi); err != nil {
		return fmt.Errorf("interface: %w", err)
	}
	if err := pc.SetMulticastHopLimit(1); err != nil {
		return fmt.Errorf("hop limit: %w", err)
	}
	return pc.SetMulticastLoopback(true)
}

// groupSource returns the address the group's copies come from, which
// members are told in WELCOME: the relay's own, or the one pinned for a
// relay bound to a wildcard address.
func (r *Relay) groupSource() netip.Addr {
	if r.group.local.IsValid() || !r.group.remote.IsValid() {
		return r.group.local
	}
	a, _ := netip.AddrFromSlice(r.addr.IP)
	return a.Unmap()
}

// Addr returns the address the relay is bound to.
func (r *Relay) Addr() net.Addr { return r.addr }

// Members returns the current members of every room, sorted by room and
// then by name.
func (r *Relay) Members() []MemberInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode.members()
}

// Rooms returns the rooms that have members, sorted by name. A plain-text
// relay has one, the main room "".
func (r *Relay) Rooms() []RoomInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode.rooms()
}

// Stats returns a snapshot of the relay's counters. It does not wait for
// the relay's work: the counters are as of its last write (what a member
// has received is counted) or the end of its last batch.
func (r *Relay) Stats() RelayStats {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	return r.shown
}

// publish shows the counters to Stats, with r.mu held.
func (r *Relay) publish() {
	r.statsMu.Lock()
	r.shown = r.stats
	r.shown.Members = r.mode.count()
	r.statsMu.Unlock()
}

// Serve reads and answers datagrams until ctx is done or Close is called.
// It returns nil after Close, ctx's error when ctx ends first (the relay
// stays open and Serve may be called again), and an error if the socket
// fails. Only one Serve runs at a time.
func (r *Relay) Serve(ctx context.Context) error {
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return nil
	case r.serving:
		r.mu.Unlock()
		return errors.New("udpchat: relay: Serve is already running")
	}
	r.serving = true
	r.serveWG.Add(1)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.serving = false
		r.mu.Unlock()
		r.serveWG.Done()
	}()

	// The read deadline wakes the loop for expiry sweeps; ctx ending moves
	// it into the past. The mutex keeps the loop from re-arming it after.
	var dmu sync.Mutex
	stopped := false
	stop := context.AfterFunc(ctx, func() {
		dmu.Lock()
		stopped = true
		r.conn.SetReadDeadline(time.Unix(1, 0))
		dmu.Unlock()
	})
	defer stop()

	in := make([]inMsg, readBatchSize)
	nextSweep := time.Now().Add(r.cfg.heartbeat)
	var deadline time.Time // as set; setting it costs a timer update
	for {
		if !deadline.Equal(nextSweep) {
			dmu.Lock()
			if !stopped {
				r.conn.SetReadDeadline(nextSweep)
			}
			dmu.Unlock()
			deadline = nextSweep
		}
		n, err := r.bc.read(in)
		if r.take(in[:n], time.Now(), &nextSweep) {
			return nil
		}
		if err == nil {
			continue
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case isTimeout(err):
		case isTransient(err):
			r.cfg.logger.Debug("udpchat relay read", "err", err)
		default:
			return fmt.Errorf("udpchat: relay read: %w", err)
		}
	}
}

// take handles a batch of datagrams read at now, sweeps if it is time
// (moving nextSweep on), and sends what they call for. It reports whether
// the relay is closed, and then takes nothing in: Close has said goodbye
// to every member, and a member welcomed now would be joined to a relay
// that is going.
func (r *Relay) take(in []inMsg, now time.Time, nextSweep *time.Time) (closed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return true
	}
	for i := range in {
		if i > 0 {
			// Members, Rooms and Close wait for one datagram's handling
			// at most, not a batch's: 64 chats to 1,000 members are
			// 64,000 sends.
			r.mu.Unlock()
			r.mu.Lock()
			if r.closed {
				return true
			}
		}
		r.handle(r.bufs[i][:in[i].n], in[i].from, now)
	}
	r.mode.batchDone(now)
	r.stats.DroppedKernel = r.bc.drops()
	if !now.Before(*nextSweep) {
		r.limit.sweep(now)
		r.mode.sweep(now)
		*nextSweep = now.Add(r.cfg.heartbeat)
	}
	r.q.flush()
	r.publish()
	return false
}

// Close tells every member that the relay is going away (a plain-text relay
// has no one to tell), closes the socket and waits for Serve to return. It
// is idempotent.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.serveWG.Wait()
		return nil
	}
	r.closed = true
	r.mode.close()
	r.q.flush()
	if r.fan != nil {
		// Under r.mu, so that no flush is writing to it; later flushes go
		// to the closed socket and stop at once.
		r.fan.Close()
		r.q.w = r.bc
	}
	r.publish()
	r.mu.Unlock()
	err := r.conn.Close()
	r.serveWG.Wait()
	if err != nil {
		return fmt.Errorf("udpchat: relay close: %w", err)
	}
	return nil
}

// handle processes one datagram. r.mu is held.
func (r *Relay) handle(b []byte, from udpPath, now time.Time) {
	r.stats.Received++
	if len(b) > r.cfg.bufferSize {
		r.stats.DroppedOversized++
		debugDrop(r.cfg.logger, "oversized", from.remote)
		return
	}
	r.mode.handle(b, from, now)
}

// debugDrop logs a dropped datagram, at debug level: a flood of junk must
// not flood the log, nor cost a formatted line per datagram.
func debugDrop(l *slog.Logger, reason string, from netip.AddrPort) {
	if l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug("udpchat relay dropped datagram", "reason", reason, "from", from)
	}
}
