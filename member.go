package udpchat

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
	"unicode/utf8"
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
	joinRefusals = 3    // refused joins before a first Join gives up
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
	conn  *net.UDPConn // unicast: connected to the relay, or a plain peer's own
	mode  memberMode   // the protocol, or plain text: chosen by Join

	wg       sync.WaitGroup
	done     chan struct{} // closed by Close
	kick     chan struct{} // wakes the timer loop early
	failed   chan struct{} // closed by fail
	leaveAck chan struct{} // the relay answered our LEAVE

	closeOnce sync.Once

	mu       sync.Mutex // guards everything below
	state    memberState
	failErr  error
	lastErr  error   // the last socket error, for ErrRelayUnreachable's message
	refusals int     // datagrams to the relay's port refused (ICMP port unreachable) since the relay last spoke
	sealer   *sealer // nil without a key

	// What the relay (or, in plain text, the configuration) set.
	heartbeat   time.Duration
	expiry      time.Duration
	maxDatagram int
	group       netip.AddrPort
	groupSrc    netip.AddrPort // where the group's copies come from, if not the relay's address
	gpc         net.PacketConn // broadcast/multicast listener, nil in unicast mode
	lastBeat    time.Time      // our last heartbeat

	roster roster // who is in the group

	in  inbox  // what the relay delivers, in order for Receive
	out outbox // our chats until every member has them

	// Reading the unicast socket: by the read loop or a Receive (rd).
	sock    *memberSocket
	rd      readRole
	readCtx context.Context // of the Receive that holds the role
	watched <-chan struct{} // the Done of the ctx whose end wakes a Receive's read
	unwatch func() bool     // stops that

	stats MemberStats
}

// memberMode is how a member speaks with its relay: the protocol
// (memberSession) or plain text (plainMember). Join chooses one, so that
// Member itself need not ask which at every turn. Its methods run with m.mu
// held, except join and send, which take it as they need it.
type memberMode interface {
	// join waits until the member is in the group, or returns why not
	// (having closed the member).
	join(ctx context.Context) error
	// send sends a valid UTF-8 text (Send), to the room or, with to set,
	// to that member alone (SendTo).
	send(ctx context.Context, to, text string) error
	// handle takes one datagram from the relay, at most maxDatagram long.
	handle(b []byte, now time.Time)
	// tick does what is due at now and returns how long until something
	// is due next.
	tick(now time.Time) time.Duration
	// received is told that Receive took an item: the queue has room.
	received(now time.Time)
	members() []MemberInfo
	// leaving returns the datagram that tells the relay the member leaves,
	// or nil when there is no one to tell. Close calls it first.
	leaving() []byte
}

// Join joins a room (WithRoom; the main room by default) at the relay as
// name and returns once the relay has welcomed the member and the member
// list is loaded. Names are 1 to 32 bytes of UTF-8 without control or bidi
// characters or ':', unique in the room.
//
// Join retries until ctx is done; if the relay never answers, the error
// matches ErrRelayUnreachable. A refusal matches ErrNameTaken, ErrRelayFull
// (the relay, the room, or the relay's rooms are full) or ErrInvalidName.
// Options: WithAddr (the relay), WithRoom, WithLocalAddr, WithBufferSize,
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
	var c *net.UDPConn
	if cfg.plainText && cfg.localAddr != nil {
		// A plain peer: lines come from any source (see WithLocalAddr).
		c, err = net.ListenUDP(udpNetwork(cfg.localAddr.IP), cfg.localAddr)
	} else {
		c, err = net.DialUDP(udpNetwork(cfg.addr.IP), cfg.localAddr, cfg.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("udpchat: join: %w", err)
	}
	bc, err := newBatchConn(c, readBufs(1, readBufSize), batchOverflow)
	if err == nil {
		err = setBuffers(c, cfg)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("udpchat: join: %w", err)
	}
	m := &Member{
		cfg:      cfg,
		name:     name,
		relay:    addrPortOf(cfg.addr),
		conn:     c,
		done:     make(chan struct{}),
		kick:     make(chan struct{}, 1),
		failed:   make(chan struct{}),
		leaveAck: make(chan struct{}, 1),
		roster:   newRoster(),
		in:       newInbox(cfg.queueSize),
		out:      newOutbox(),
		sock:     newMemberSocket(bc, false),
		rd:       newReadRole(),
	}
	if directReads {
		bc.setReadWait(m.mayWait)
	}
	if cfg.keys != nil {
		m.sealer = newSealer(cfg.keys)
	}
	if cfg.plainText {
		m.mode, err = newPlainMember(m)
	} else {
		m.mode = newMemberSession(m)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("udpchat: join: %w", err)
	}
	m.wg.Add(2)
	go m.readLoop(m.sock)
	go m.timerLoop()
	if err := m.mode.join(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// Send sends text to the group and returns once the relay has sequenced it.
// The text must be valid UTF-8 (ErrInvalidText) and fit the buffer size
// together with the member's name and a 46-byte header
// (ErrMessageTooLarge). If the relay does not confirm, Send resends with
// backoff, also across a relay restart, until ctx is done; once it has gone
// out, the message may still be delivered after Send has returned ctx's
// error. A Send whose ctx is done before the message is queued sends
// nothing. Concurrent Sends
// are delivered in the order they were called in. At most 64 Sends of one
// member wait for confirmation at a time; more wait for their turn. A Send
// also waits while the member keeps more than twice the relay's history of
// its own messages that not every member has yet (see doc.go: they are
// kept to survive a relay crash).
func (m *Member) Send(ctx context.Context, text string) error {
	if !utf8.ValidString(text) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidText)
	}
	if err := ctx.Err(); err != nil {
		return err // sends nothing
	}
	return m.mode.send(ctx, "", text)
}

// SendTo sends text to the member of the room called name alone, as a
// KindPrivate message, and returns once the relay has accepted it: the
// two of them receive it, each once, in its place in the room's order; no
// other member receives any of it. If the room has no such member, it
// returns an error matching ErrNoSuchMember. Otherwise it behaves as Send
// (the recipient's name counts against the buffer size too). Plain text
// has no private messages: SendTo returns an error matching
// errors.ErrUnsupported.
func (m *Member) SendTo(ctx context.Context, name, text string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrNoSuchMember, err)
	}
	if !utf8.ValidString(text) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidText)
	}
	if err := ctx.Err(); err != nil {
		return err // sends nothing
	}
	return m.mode.send(ctx, name, text)
}

// Receive returns the next message in the relay's order: chat messages and
// join and leave events, each exactly once. Messages the member can no
// longer get are reported once, in their place, as a *GapError (see ErrGap);
// Receive carries on after it. It blocks until a message arrives, ctx is
// done or the member is closed (ErrClosed). What the member holds already
// comes before ctx's error: with a done ctx, Receive returns the messages
// queued, then the error.
//
// On Linux, in unicast mode, a Receive that waits reads the member's
// socket itself: a program that calls Receive in a loop is woken by the
// network as directly as one reading its own socket. While Sends wait for
// their answers, messages are queued, or no Receive has come since the
// member's last timer tick, the member reads in the background.
func (m *Member) Receive(ctx context.Context) (Message, error) {
	reading := false // this call holds the unicast socket's read role
	for {
		m.mu.Lock()
		if m.state == stateClosed {
			m.dropRole(reading)
			m.mu.Unlock()
			return Message{}, ErrClosed
		}
		if it, ok := m.in.pop(); ok {
			m.mode.received(time.Now())
			if it.err == nil {
				m.stats.Received++
			}
			m.dropRole(reading)
			m.mu.Unlock()
			return it.msg, it.err
		}
		if m.state == stateFailed {
			err := m.failErr
			m.dropRole(reading)
			m.mu.Unlock()
			return Message{}, err
		}
		if err := ctx.Err(); err != nil {
			// Checked after the queue: a message that arrived as ctx
			// ended is not left behind.
			m.dropRole(reading)
			m.mu.Unlock()
			return Message{}, err
		}
		if reading && !m.direct() {
			m.dropRole(true)
			reading = false
		}
		if !reading && m.direct() && m.rd.take() {
			reading = true
		}
		if reading {
			// Read the socket here: the network poller wakes this
			// goroutine itself (see readRole).
			if !m.readDirect(ctx) {
				m.rd.release(true) // the loop waits out what failed
				reading = false
			}
			m.mu.Unlock()
			continue
		}
		m.mu.Unlock()
		select {
		case <-m.in.ready:
		case <-m.rd.handoff:
		case <-m.failed:
		case <-ctx.Done():
		case <-m.done:
		}
	}
}

// dropRole gives up the read role as a Receive returns, if it holds it
// (reading): leased to the next Receive, or back to the loop while the
// member needs it or messages wait in the queue (the Receives that take
// them do not read: the loop keeps taking what arrives meanwhile, as the
// queue and the early messages hold more than a socket buffer may). A
// Receive that does not hold it passes on a hand-over it may have taken
// from another waiting one.
func (m *Member) dropRole(reading bool) {
	switch {
	case reading:
		m.rd.release(m.loopNeeded() || m.in.queue.n > 0)
	case m.rd.owner == ownerNone:
		signal(m.rd.handoff)
	}
}

// Members returns the group's members, sorted by name, as far as this member
// knows them. MemberInfo.Addr is nil: the relay does not tell members each
// other's addresses.
func (m *Member) Members() []MemberInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mode.members()
}

// Name returns the member's name.
func (m *Member) Name() string { return m.name }

// Room returns the member's room: "" is the main room (see WithRoom).
func (m *Member) Room() string { return m.cfg.room }

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
		leave := m.mode.leaving()
		m.state = stateClosed
		m.out.closeAll(ErrClosed)
		m.rd.reclaim() // the loop reads the relay's answer to LEAVE
		m.wakeReceive()
		if m.unwatch != nil {
			m.unwatch()
			m.watched, m.unwatch, m.readCtx = nil, nil, nil
		}
		m.mu.Unlock()
		if leave != nil {
			m.leave(leave)
		}
		close(m.done)
		m.conn.Close()
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

// writePrefixed is writeLocked for a datagram built after
// sealPrefix(m.sealer) bytes of room, with room for the tag after it: it
// is sealed where it lies. m.mu is held.
func (m *Member) writePrefixed(b []byte) {
	if m.sealer != nil {
		b = m.sealer.sealInPlace(b, len(b)-sealHdrLen)
	}
	if _, err := m.conn.Write(b); err != nil {
		m.lastErr = err
	}
}

// writeLocked seals b if the group has a key, and sends it. m.mu is held.
func (m *Member) writeLocked(b []byte) {
	if m.sealer != nil {
		b = m.sealer.seal(b)
	}
	if _, err := m.conn.Write(b); err != nil {
		m.lastErr = err
	}
}

// timerLoop runs the mode's tick whenever something is due (joins,
// heartbeats, retransmissions, NACKs, roster requests, noticing a relay
// that went silent) or the member kicks it.
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
		// What the timer sends is answered: the loop reads unless a
		// Receive does now (see readRole).
		m.rd.reclaim()
		d := m.mode.tick(time.Now())
		m.wakeReceive()
		m.mu.Unlock()
		t.Reset(d)
	}
}

// signal wakes one waiter of a channel with a buffer of one.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
