package udpchat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/net/ipv4"
)

// Retransmission timing. Loopback and LAN round trips are far below these;
// they bound how fast a member repairs a loss, not how fast it chats.
const (
	rtoMin       = 50 * time.Millisecond  // first chat or roster retransmission
	rtoMax       = time.Second            // retransmission backoff ceiling
	nackInterval = 50 * time.Millisecond  // between repeated NACKs for one gap
	joinRetryMin = 100 * time.Millisecond // first join retransmission
	leaveWait    = 100 * time.Millisecond // per LEAVE attempt in Close
	leaveTries   = 3
	maxOrigins   = 4096 // senders remembered for dropping re-sequenced copies, before pruning
	readBufSize  = maxBufferSize + 1
)

type memberState uint8

const (
	stateJoining memberState = iota // waiting for a welcome
	stateJoined                     // in the group (the roster may still be loading)
	stateFailed                     // the group refused us for good; failErr says why
	stateClosed
)

// A Member is one participant of a group. Create it with Join; its methods
// are safe for concurrent use.
type Member struct {
	cfg   *config
	name  string
	relay netip.AddrPort
	pc    *ipv4.PacketConn // unicast, connected to the relay
	plain []byte           // an opened datagram, with a key

	wg       sync.WaitGroup
	done     chan struct{} // closed by Close
	kick     chan struct{} // wakes the timer loop early
	joined   chan struct{} // closed once the first join and roster are complete
	failed   chan struct{} // closed by fail
	leaveAck chan struct{}

	closeOnce sync.Once

	mu          sync.Mutex // guards everything below
	state       memberState
	failErr     error
	nonce       uint64          // of the join under way
	cookie      [cookieLen]byte // the relay's answer to our address and nonce; zero until it gives one
	joinNext    time.Time
	joinBackoff time.Duration
	rejoinSince time.Time // when the current rejoin began; zero for the first join
	lastErr     error     // the last socket error, for ErrRelayUnreachable's message
	sealer      *sealer   // nil without a key
	relaySalt   uint32    // with a key: the relay's sealing salt
	relayReplay replay    // and the counters of its control datagrams taken

	inc, session uint64
	heartbeat    time.Duration
	expiry       time.Duration
	maxDatagram  int
	group        netip.AddrPort
	gpc          *ipv4.PacketConn // broadcast/multicast listener, nil in unicast mode
	lastHeard    time.Time        // any valid datagram from the relay
	lastBeat     time.Time        // our last heartbeat

	roster roster // who is in the group

	in  inbox  // what the relay delivers, in order for Receive
	out outbox // our chats until every member has them

	stats MemberStats

	// With WithPlainText (plain.go): the names heard from, and the count
	// that numbers received lines.
	heard    map[string]*heardName
	plainSeq uint64
}

// Join joins the group at the relay as name and returns once the relay has
// welcomed the member and the member list is loaded. Names are 1 to 32 bytes
// of UTF-8 without control characters or ':', unique in the group.
//
// Join retries until ctx is done; if the relay never answers, the error
// matches ErrRelayUnreachable. A refusal matches ErrNameTaken, ErrRelayFull
// or ErrInvalidName. Options: WithAddr (the relay), WithBufferSize,
// WithInterface, WithLogger, WithQueueSize, WithKey, WithSocketBuffers,
// WithPlainText (with which Join returns at once: there is no handshake),
// and with WithPlainText also WithBroadcast, WithHeartbeat and WithExpiry.
func Join(ctx context.Context, name string, opts ...Option) (*Member, error) {
	cfg, err := newConfig(sideMember, opts)
	if err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	// A connected socket: the kernel drops datagrams from anyone but the
	// relay, and reports ICMP errors (such as a relay that is not running).
	c, err := net.DialUDP("udp4", nil, cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("udpchat: join: %w", err)
	}
	pc := ipv4.NewPacketConn(c)
	buf := make([]byte, readBufSize)
	bc, err := newBatchConn(pc, [][]byte{buf}, true)
	if err == nil {
		err = setBuffers(c, cfg)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("udpchat: join: %w", err)
	}
	m := &Member{
		cfg:         cfg,
		name:        name,
		relay:       addrPortOf(cfg.addr),
		pc:          pc,
		done:        make(chan struct{}),
		kick:        make(chan struct{}, 1),
		joined:      make(chan struct{}),
		failed:      make(chan struct{}),
		leaveAck:    make(chan struct{}, 1),
		nonce:       randomID(),
		joinBackoff: joinRetryMin,
		roster:      newRoster(),
		in:          newInbox(cfg.queueSize),
		out:         newOutbox(),
	}
	if cfg.keys != nil {
		m.sealer = newSealer(cfg.keys)
		m.plain = make([]byte, readBufSize)
	}
	if cfg.plainText {
		// No handshake: the member is in as soon as it listens.
		m.state, m.heard = stateJoined, make(map[string]*heardName)
		m.heartbeat, m.expiry, m.maxDatagram = cfg.heartbeat, cfg.expiry, cfg.bufferSize
		if cfg.broadcast != nil {
			if err := m.listenGroup(addrPortOf(cfg.broadcast)); err != nil {
				c.Close()
				return nil, fmt.Errorf("udpchat: join: listening for the relay's broadcast at %s: %w", cfg.broadcast, err)
			}
		}
		m.wg.Add(2)
		go m.readLoop(bc, buf, false)
		go m.timerLoop()
		return m, nil
	}
	m.wg.Add(2)
	go m.readLoop(bc, buf, false)
	go m.timerLoop()

	select {
	case <-m.joined:
		cfg.logger.Info("udpchat joined", "name", name, "relay", cfg.addr)
		return m, nil
	case <-m.failed:
	case <-ctx.Done():
	}
	m.mu.Lock()
	state, failErr, lastErr, welcomed := m.state, m.failErr, m.lastErr, m.inc != 0
	m.mu.Unlock()
	m.Close()
	switch {
	case state == stateFailed:
		return nil, failErr
	case welcomed:
		return nil, fmt.Errorf("udpchat: join: loading the member list: %w", ctx.Err())
	case lastErr != nil:
		return nil, fmt.Errorf("%w at %s (%w): %w", ErrRelayUnreachable, cfg.addr, lastErr, ctx.Err())
	}
	return nil, fmt.Errorf("%w at %s: %w", ErrRelayUnreachable, cfg.addr, ctx.Err())
}

// Send sends text to the group and returns once the relay has sequenced it.
// The text must be valid UTF-8 (ErrInvalidText) and fit the buffer size
// together with the member's name and a 46-byte header
// (ErrMessageTooLarge). If the relay does not confirm, Send resends with
// backoff, also across a relay restart, until ctx is done; the message may
// still be delivered after Send has returned ctx's error. Concurrent Sends
// are delivered in the order they were called in. At most 64 Sends of one
// member wait for confirmation at a time; more wait for their turn. A Send
// also waits while the member keeps more than twice the relay's history of
// its own messages that not every member has yet (see doc.go: they are
// kept to survive a relay crash).
func (m *Member) Send(ctx context.Context, text string) error {
	if !utf8.ValidString(text) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidText)
	}
	if m.cfg.plainText {
		return m.sendPlain(ctx, text)
	}
	m.mu.Lock()
	limit := min(m.cfg.bufferSize, m.maxDatagram)
	m.mu.Unlock()
	if size := deliverHdrLen + len(m.name) + len(text) + m.cfg.sealOverhead(); size > limit {
		return fmt.Errorf("%w: %d bytes with header and name, limit %d", ErrMessageTooLarge, size, limit)
	}
	select {
	case m.out.window <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return ErrClosed
	}
	done := make(chan error, 1) // p.done is cleared under m.mu once answered
	p := &pendingChat{text: text, done: done, rto: rtoMin}
	m.mu.Lock()
	for {
		switch {
		case m.state == stateClosed:
			m.mu.Unlock()
			<-m.out.window
			return ErrClosed
		case m.state == stateFailed:
			err := m.failErr
			m.mu.Unlock()
			<-m.out.window
			return err
		case !m.out.full():
		default:
			// The outbox keeps what not every member has yet, for a relay
			// restart; it may not outgrow what the relay's history holds.
			m.mu.Unlock()
			select {
			case <-m.out.room:
			case <-ctx.Done():
				<-m.out.window
				return ctx.Err()
			case <-m.done:
				<-m.out.window
				return ErrClosed
			case <-m.failed:
			}
			m.mu.Lock()
			continue
		}
		break
	}
	if m.out.add(p) && m.state == stateJoined {
		m.sendChat(p, time.Now())
	}
	m.mu.Unlock()

	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		m.mu.Lock()
		silent := m.state == stateJoining
		m.mu.Unlock()
		if silent {
			return fmt.Errorf("%w: %w", ErrRelayUnreachable, ctx.Err())
		}
		return ctx.Err()
	case <-m.done:
		return ErrClosed
	}
}

// Receive returns the next message in the relay's order: chat messages and
// join and leave events, each exactly once. Messages the member can no
// longer get are reported once, in their place, as a *GapError (see ErrGap);
// Receive carries on after it. It blocks until a message arrives, ctx is
// done or the member is closed (ErrClosed).
func (m *Member) Receive(ctx context.Context) (Message, error) {
	for {
		m.mu.Lock()
		if m.state == stateClosed {
			m.mu.Unlock()
			return Message{}, ErrClosed
		}
		if it, ok := m.in.pop(); ok {
			if !m.cfg.plainText {
				m.advance(time.Now())
			}
			if it.err == nil {
				m.stats.Received++
			}
			m.mu.Unlock()
			return it.msg, it.err
		}
		if m.state == stateFailed {
			err := m.failErr
			m.mu.Unlock()
			return Message{}, err
		}
		m.mu.Unlock()
		select {
		case <-m.in.ready:
		case <-m.failed:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		case <-m.done:
		}
	}
}

// Members returns the group's members, sorted by name, as far as this member
// knows them. MemberInfo.Addr is nil: the relay does not tell members each
// other's addresses.
func (m *Member) Members() []MemberInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg.plainText {
		return m.plainMembers()
	}
	return m.roster.list()
}

// Name returns the member's name.
func (m *Member) Name() string { return m.name }

// Stats returns a snapshot of the member's counters.
func (m *Member) Stats() MemberStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Close tells the relay the member leaves (waiting briefly for its answer;
// a plain-text member has nothing to tell), fails Sends in progress with
// ErrClosed, unblocks Receive and stops the member's goroutines. It is
// idempotent.
func (m *Member) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		joined := m.state == stateJoined && !m.cfg.plainText
		m.state = stateClosed
		m.out.closeAll(ErrClosed)
		leave := appendHeader(nil, tLeave, m.session)
		m.mu.Unlock()
		if joined {
			m.leave(leave)
		}
		close(m.done)
		m.pc.Close()
		m.mu.Lock()
		if m.gpc != nil {
			m.gpc.Close()
		}
		m.mu.Unlock()
		m.wg.Wait()
		m.cfg.logger.Info("udpchat member closed", "name", m.name)
	})
	return nil
}

// leave sends LEAVE until the relay answers BYE, a few times at most. If
// every try is lost the relay expires the member instead.
func (m *Member) leave(b []byte) {
	t := time.NewTimer(leaveWait)
	defer t.Stop()
	for range leaveTries {
		m.write(b)
		select {
		case <-m.leaveAck:
			return
		case <-t.C:
			t.Reset(leaveWait)
		}
	}
}

func (m *Member) write(b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writeLocked(b)
}

// writeLocked seals b if the group has a key, and sends it. m.mu is held.
func (m *Member) writeLocked(b []byte) {
	if m.sealer != nil {
		b = m.sealer.seal(b)
	}
	if _, err := m.pc.WriteTo(b, nil, nil); err != nil {
		m.lastErr = err
	}
}

// readLoop reads datagrams from the relay until the socket is closed.
// group is true for the broadcast/multicast listener, whose datagrams are
// checked to come from the relay (the unicast socket is connected).
func (m *Member) readLoop(bc *batchConn, buf []byte, group bool) {
	defer m.wg.Done()
	in := make([]inMsg, 1)
	var drops uint64 // this socket's share of stats.DroppedKernel
	for {
		_, err := bc.read(in)
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
		if group && in[0].from != m.relay {
			m.mu.Lock()
			m.stats.Dropped++
			m.mu.Unlock()
			continue
		}
		m.handle(buf[:in[0].n])
	}
}

// handle processes one datagram from the relay.
func (m *Member) handle(b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(b) > max(m.cfg.bufferSize, m.maxDatagram) {
		m.stats.Dropped++
		return
	}
	if m.cfg.plainText {
		m.handlePlain(b)
		return
	}
	var salt uint32
	var count uint64
	if m.sealer != nil {
		plain, s, c, err := m.cfg.keys.open(m.plain, b)
		if err != nil {
			m.stats.Dropped++
			return
		}
		b, salt, count = plain, s, c
	}
	var p packet
	if decode(b, &p) != nil {
		m.stats.Dropped++
		return
	}
	now := time.Now()
	switch {
	case p.typ == tBye && p.session != m.session:
		// Only the relay knows our session: a stranger cannot end it.
		m.stats.Dropped++
		return
	case m.state == stateClosed:
		if p.typ == tBye {
			signal(m.leaveAck)
		}
		return
	case m.state == stateFailed:
		return
	case p.typ == tWelcome:
		if m.state == stateJoining && p.nonce == m.nonce {
			m.relaySalt, m.relayReplay = salt, replay{newest: count, seen: 1}
			m.welcome(&p, now)
		}
		return
	case p.typ == tCookie:
		if m.state == stateJoining && p.nonce == m.nonce {
			// Join again at once, proving we receive at our address.
			m.cookie = p.cookie
			m.joinNext = now
			signal(m.kick)
		}
		return
	case p.typ == tError:
		m.relayError(&p, now)
		return
	case m.state != stateJoined:
		return
	case m.sealer != nil && (p.id != m.inc || salt != m.relaySalt || (p.typ != tDeliver && !m.relayReplay.fresh(count))):
		// Replayed, or sealed by another sender with the key (another
		// relay of the group included: anyone who captured one of our
		// datagrams could have it answer with a BYE for our session, so
		// with a key a restarted relay is noticed by its silence).
		// Delivers are exempt: they are resent from history, and their
		// seqs make a replayed one harmless.
		m.stats.Dropped++
		return
	case p.typ == tBye:
		// The relay does not know our session: it restarted (its
		// incarnation differs), expired us or is closing.
		m.rejoin(now, "the relay holds no session for us")
		return
	case p.id != m.inc:
		// A relay that restarted answers our next heartbeat with BYE;
		// until then its datagrams, and late ones of the old relay, are
		// not ours to take.
		m.stats.Dropped++
		return
	}
	m.lastHeard = now
	switch p.typ {
	case tDeliver:
		m.deliver(&p, now)
	case tStatus:
		m.out.heard(p.stable, p.prunable)
		m.ack(p.mseq, p.seq, now)
		m.in.saw(p.seq)
		m.advance(now)
	case tGone:
		m.gone(p.ranges[0][0], p.ranges[0][1], now)
	case tRoster:
		switch more, loaded := m.roster.page(&p, now); {
		case more:
			signal(m.kick)
		case loaded:
			select {
			case <-m.joined:
			default:
				close(m.joined)
			}
		}
	default:
		m.stats.Dropped++
	}
}

// welcome completes a join or a rejoin.
func (m *Member) welcome(p *packet, now time.Time) {
	first := m.inc == 0
	restarted := !first && p.id != m.inc
	if restarted {
		// A new relay numbers anew, from 1 for members of the old one.
		clear(m.roster.entries)
		m.stats.Missed += m.in.newRelay(m.out.stable)
	}
	if first || restarted {
		m.in.start(p.seq)
		m.roster.load(now)
		m.out.newRelay()
	}
	if p.session != m.session {
		// A new session takes the outbox from its first chat on; only
		// delivers of this session confirm our chats.
		m.in.ackFrom = p.seq
		m.out.newSession(now)
	}
	if !first {
		m.stats.Rejoins++
		m.cfg.logger.Info("udpchat rejoined", "name", m.name, "restarted", restarted)
	}
	m.inc, m.session = p.id, p.session
	m.heartbeat, m.expiry, m.maxDatagram, m.out.history = p.heartbeat, p.expiry, p.maxDatagram, p.history
	m.in.forget = uint64(4 * p.history)
	m.state, m.rejoinSince = stateJoined, time.Time{}
	m.lastHeard, m.lastBeat = now, time.Time{} // beat at once: its answer says what we missed
	if p.group != m.group {
		if err := m.listenGroup(p.group); err != nil {
			m.fail(fmt.Errorf("udpchat: listening for the relay's broadcast at %s: %w", p.group, err))
			return
		}
	}
	m.advance(now)
	signal(m.kick)
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
	c, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", group.Port()))
	if err != nil {
		return err
	}
	pc := ipv4.NewPacketConn(c)
	buf := make([]byte, readBufSize)
	bc, err := newBatchConn(pc, [][]byte{buf}, true)
	if err == nil {
		err = setBuffers(c, m.cfg)
	}
	if err != nil {
		c.Close()
		return err
	}
	if group.Addr().IsMulticast() {
		local := m.pc.PacketConn.LocalAddr().(*net.UDPAddr)
		ifi, err := groupInterface(m.cfg.ifname, local.IP)
		if err == nil {
			err = pc.JoinGroup(ifi, &net.UDPAddr{IP: group.Addr().AsSlice()})
		}
		if err != nil {
			c.Close()
			return fmt.Errorf("joining multicast group: %w", err)
		}
	}
	m.gpc = pc
	m.wg.Add(1)
	go m.readLoop(bc, buf, true)
	return nil
}

// relayError handles a refusal from the relay.
func (m *Member) relayError(p *packet, now time.Time) {
	if m.state == stateJoining && p.ref == m.nonce {
		var err error
		switch p.code {
		case codeNameTaken:
			err = ErrNameTaken
		case codeFull:
			err = ErrRelayFull
		case codeBadName:
			err = ErrInvalidName
		default:
			m.stats.Dropped++
			return
		}
		// On a rejoin the name may still be held by our own expired
		// session for a while; keep trying for two expiry spans.
		if !m.rejoinSince.IsZero() && err != ErrInvalidName && now.Sub(m.rejoinSince) < 2*m.expiry {
			return
		}
		m.fail(fmt.Errorf("udpchat: join as %q: %w", m.name, err))
		return
	}
	if m.state != stateJoined || p.id != m.inc {
		return
	}
	var err error
	switch p.code {
	case codeTooLarge:
		err = ErrMessageTooLarge
	case codeInvalidText:
		err = ErrInvalidText
	default:
		err = fmt.Errorf("udpchat: relay refused the message (code %d)", p.code)
	}
	m.out.refuse(p.ref, err)
}

// fail ends the member for good: the group refused it.
func (m *Member) fail(err error) {
	m.state, m.failErr = stateFailed, err
	m.out.closeAll(err)
	close(m.failed)
	m.cfg.logger.Warn("udpchat member failed", "name", m.name, "err", err)
}

// rejoin starts joining again after losing the relay. Pending chats stay
// and are resent once the relay welcomes us.
func (m *Member) rejoin(now time.Time, why string) {
	m.cfg.logger.Info("udpchat rejoining", "name", m.name, "why", why)
	m.state = stateJoining
	m.nonce, m.cookie = randomID(), [cookieLen]byte{}
	m.joinNext, m.joinBackoff, m.rejoinSince = now, joinRetryMin, now
	signal(m.kick)
}

// deliver takes a deliver datagram into the ordered stream.
func (m *Member) deliver(p *packet, now time.Time) {
	if p.kind == KindChat && p.epoch == m.out.epoch && p.seq >= m.in.ackFrom && string(p.name) == m.name {
		m.ack(p.mseq, p.seq, now)
	}
	dup, keep := m.in.offer(p.seq)
	if dup {
		m.stats.Duplicates++
		return
	}
	if keep {
		m.in.hold(earlyMsg{
			msg: Message{
				Seq:  p.seq,
				Kind: p.kind,
				From: m.roster.intern(p.name),
				Text: string(p.text),
				Time: time.Unix(0, p.unixNano),
			},
			epoch: p.epoch,
			mseq:  p.mseq,
		})
	}
	m.advance(now)
}

// advance moves messages that are next in order into the queue while it
// has room, and asks the relay for missing ones.
func (m *Member) advance(now time.Time) {
	m.stats.Duplicates += m.in.advance(&m.roster)
	if m.in.missing() {
		m.nack(now, false)
	}
}

// nack asks the relay for missing seqs (see inbox.nack), in as many ranges
// as fit the smaller buffer, sealed.
func (m *Member) nack(now time.Time, all bool) {
	var ranges [maxNackRanges][2]uint64
	fit := max(0, min(maxNackRanges, (min(m.cfg.bufferSize, m.maxDatagram)-headerLen-m.cfg.sealOverhead())/16))
	n := m.in.nack(now, all, ranges[:fit])
	if n == 0 {
		return
	}
	b := appendHeader(make([]byte, 0, headerLen+16*n), tNack, m.session)
	for _, r := range ranges[:n] {
		b = binary.BigEndian.AppendUint64(b, r[0])
		b = binary.BigEndian.AppendUint64(b, r[1])
	}
	m.writeLocked(b)
	m.stats.NACKs++
}

// gone reports messages the relay no longer has. The join and leave events
// among them are lost too, so the member list is loaded again.
func (m *Member) gone(first, last uint64, now time.Time) {
	lost := m.in.gone(first, last)
	if lost == 0 {
		return
	}
	m.stats.Missed += lost
	if !m.roster.loading {
		m.roster.load(now)
		signal(m.kick)
	}
	m.advance(now)
}

// ack confirms our chats up to mseq, each sequenced at a seq no higher
// than bound.
func (m *Member) ack(mseq, bound uint64, now time.Time) {
	answered, resend := m.out.ack(mseq, bound, now)
	m.stats.Sent += uint64(answered)
	if resend {
		signal(m.kick)
	}
}

func (m *Member) sendChat(c *pendingChat, now time.Time) {
	m.writeLocked(appendChat(make([]byte, 0, chatHdrLen+len(c.text)), m.session, c.mseq, c.text))
	if m.out.sent(c, now) {
		m.stats.Retransmitted++
	}
}

// timerLoop sends what is due: joins, heartbeats, retransmissions, NACKs
// and roster requests, and notices a relay that went silent.
func (m *Member) timerLoop() {
	defer m.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
		case <-m.kick:
		}
		m.mu.Lock()
		var d time.Duration
		if m.cfg.plainText {
			d = m.tickPlain(time.Now())
		} else {
			d = m.tick(time.Now())
		}
		m.mu.Unlock()
		t.Reset(d)
	}
}

// tick does what is due at now and returns how long until something is
// due next.
func (m *Member) tick(now time.Time) time.Duration {
	var due time.Time
	soonest := func(t time.Time) {
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	switch m.state {
	case stateJoining:
		if !now.Before(m.joinNext) {
			m.writeLocked(appendJoin(make([]byte, 0, joinMinLen+64), m.nonce, m.inc, m.out.epoch, m.out.first(), &m.cookie, m.name))
			m.joinNext = now.Add(m.joinBackoff)
			m.joinBackoff = min(2*m.joinBackoff, rtoMax)
		}
		soonest(m.joinNext)
	case stateJoined:
		if now.Sub(m.lastHeard) > m.expiry {
			m.rejoin(now, "relay silent")
			return 0
		}
		if now.Sub(m.lastBeat) >= m.heartbeat {
			m.writeLocked(appendHeartbeat(make([]byte, 0, headerLen+16), m.session, m.in.next, m.out.stable))
			m.lastBeat = now
		}
		soonest(m.lastBeat.Add(m.heartbeat))
		soonest(m.lastHeard.Add(m.expiry + time.Millisecond))
		if ask, at := m.roster.due(now); !at.IsZero() {
			if ask {
				m.writeLocked(appendRosterReq(make([]byte, 0, headerLen+1+maxNameLen), m.session, m.roster.after))
			}
			soonest(at)
		}
		if t := m.out.due(now, func(c *pendingChat) { m.sendChat(c, now) }); !t.IsZero() {
			soonest(t)
		}
		if m.in.missing() {
			if !now.Before(m.in.nackAt) {
				m.nack(now, true)
			}
			soonest(m.in.nackAt)
		}
	default:
		return time.Hour
	}
	return max(due.Sub(now), time.Millisecond)
}

// signal wakes one waiter of a channel with a buffer of one.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
