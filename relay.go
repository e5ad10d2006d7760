package udpchat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/net/ipv4"
)

const (
	maxRepairPerNak = 128 // deliver datagrams resent for one NACK; the member asks again for more
)

// A Relay sequences the group's messages and delivers each one to every
// member. Create it with NewRelay, run it with Serve, stop it with Close.
// Its methods are safe for concurrent use.
type Relay struct {
	cfg  *config
	pc   *ipv4.PacketConn
	addr *net.UDPAddr
	inc  uint64 // incarnation: random per NewRelay, so members notice a restart

	serveWG sync.WaitGroup

	cookies *cookieJar

	mu       sync.Mutex // guards everything below; Serve holds it while it handles a batch
	closed   bool
	serving  bool
	members  map[uint64]*relayMember // by session
	byName   map[string]*relayMember
	list     []*relayMember   // index kept in relayMember.idx
	dsts     []netip.AddrPort // list's addresses, side by side for the fan-out loop
	names    []string         // sorted, for roster pages
	stable   uint64           // every member has every seq up to this (or history lost it)
	prunable uint64           // every member knows stable reached this: senders may forget it
	bc       *batchConn       // reads, and writes when there is no fan-out twin
	q        *sendQueue       // writes: through the fan-out twin, or bc
	fan      *ipv4.PacketConn // the fan-out twin (fanout_linux.go); nil without
	bufs     [][]byte         // Serve reads into these, one datagram each
	plain    []byte           // an opened datagram
	stats    RelayStats
	limit    *rateLimiter

	// With WithPlainText: the addresses lines are forwarded to (their
	// order is dsts'), and the names seen on them.
	sources    map[netip.AddrPort]*plainSource
	plainNames map[string]*plainName
	localIPs   []netip.Addr // of this host, for a relay bound to 0.0.0.0
}

// relayMember is the relay's state for one member.
type relayMember struct {
	name     string
	session  uint64
	nonce    uint64 // of the join that created or last renewed the session
	joinSeq  uint64 // first seq the session was told to expect
	addr     netip.AddrPort
	epoch    uint64            // the member's lifetime id, in each of its delivers
	salt     uint32            // with a key: the member's sealing salt
	replay   replay            // and its counters taken, against replays
	progress uint64            // the member has every seq up to this, by its heartbeats
	knows    uint64            // the stable seq the member has heard of, by its heartbeats
	nextMseq uint64            // the member seq the relay sequences next
	ahead    map[uint64][]byte // chat texts that arrived before nextMseq; nil until needed
	buckets
	refused   uint64 // the last member seq refused, and why: a resent one
	refusedAs byte   // is refused again, not confirmed
	lastHeard time.Time
	idx       int // position in Relay.list
}

// NewRelay binds the relay's socket and returns a Relay ready to Serve.
// Options: WithAddr, WithBufferSize, WithBroadcast, WithInterface,
// WithLogger, WithHeartbeat, WithExpiry, WithHistory, WithMaxMembers,
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
	var lc net.ListenConfig
	switch {
	case cfg.plainText && cfg.broadcast != nil:
		// The classic programs share one port between the relay (bound to
		// 127.0.0.1) and their clients (bound to 0.0.0.0), all with
		// SO_REUSEPORT: so must a relay that stands in for theirs.
		lc.Control = controlShared
	case cfg.broadcast != nil && !cfg.broadcast.IP.IsMulticast():
		lc.Control = controlBroadcast
	}
	c, err := lc.ListenPacket(context.Background(), "udp4", cfg.addr.String())
	if err != nil {
		return nil, fmt.Errorf("udpchat: relay listen on %s: %w", cfg.addr, err)
	}
	r := &Relay{
		cfg:        cfg,
		pc:         ipv4.NewPacketConn(c),
		addr:       c.LocalAddr().(*net.UDPAddr),
		inc:        randomID(),
		members:    make(map[uint64]*relayMember),
		cookies:    newCookieJar(),
		limit:      newRateLimiter(cfg.rateMsgs, cfg.rateBytes, float64(cfg.history)),
		sources:    make(map[netip.AddrPort]*plainSource),
		plainNames: make(map[string]*plainName),
		byName:     make(map[string]*relayMember),
	}
	if err := r.open(c); err != nil {
		c.Close()
		if r.fan != nil {
			r.fan.Close()
		}
		return nil, err
	}
	cfg.logger.Info("udpchat relay listening", "addr", r.addr, "broadcast", cfg.broadcast)
	return r, nil
}

// open sets up what the relay needs besides its socket c.
func (r *Relay) open(c net.PacketConn) error {
	cfg := r.cfg
	var s *sealer
	if cfg.keys != nil {
		s = newSealer(cfg.keys)
		r.plain = make([]byte, cfg.bufferSize)
	}
	// One byte more than the limit tells an oversized datagram from one
	// that fits exactly.
	rb := make([]byte, readBatchSize*(cfg.bufferSize+1))
	r.bufs = make([][]byte, readBatchSize)
	for i := range r.bufs {
		r.bufs[i] = rb[i*(cfg.bufferSize+1) : (i+1)*(cfg.bufferSize+1)]
	}
	var err error
	if r.bc, err = newBatchConn(r.pc, r.bufs, true); err != nil {
		return fmt.Errorf("udpchat: relay socket: %w", err)
	}
	if err := setBuffers(c, cfg); err != nil {
		return err
	}
	r.q = newSendQueue(r.bc, cfg.history, cfg.bufferSize, s, &r.stats, cfg.logger)
	var took []inDatagram
	if !(cfg.plainText && cfg.broadcast != nil) { // that one shares its port
		if r.fan, took, err = openFanout(c.(*net.UDPConn), cfg); err != nil {
			return err
		}
	}
	if r.fan != nil {
		wbc, err := newBatchConn(r.fan, nil, false)
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
	if cfg.plainText && r.addr.IP.IsUnspecified() {
		r.localIPs = localIPs()
	}
	// What reached the twin before it was connected was for the relay.
	r.mu.Lock()
	for _, d := range took {
		r.handle(d.b, d.from, time.Now())
	}
	r.q.flush()
	r.mu.Unlock()
	return nil
}

// setupGroup prepares fan-out to the broadcast address or multicast group.
func (r *Relay) setupGroup() error {
	b := r.cfg.broadcast
	r.q.group = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b.IP.To4())), uint16(b.Port))
	if !b.IP.IsMulticast() {
		return nil
	}
	ifi, err := groupInterface(r.cfg.ifname, r.addr.IP)
	if err != nil {
		return fmt.Errorf("udpchat: relay multicast to %s: %w", b, err)
	}
	for _, pc := range []*ipv4.PacketConn{r.pc, r.fan} {
		if pc == nil {
			continue
		}
		if err := pc.SetMulticastInterface(ifi); err != nil {
			return fmt.Errorf("udpchat: relay multicast interface %s: %w", ifi.Name, err)
		}
		// One hop: the group is the LAN's; a router must not carry it.
		if err := pc.SetMulticastTTL(1); err != nil {
			return fmt.Errorf("udpchat: relay multicast TTL: %w", err)
		}
		// Members on the relay's own host must hear it too.
		if err := pc.SetMulticastLoopback(true); err != nil {
			return fmt.Errorf("udpchat: relay multicast loopback: %w", err)
		}
	}
	return nil
}

// Addr returns the address the relay is bound to.
func (r *Relay) Addr() net.Addr { return r.addr }

// Members returns the current members, sorted by name.
func (r *Relay) Members() []MemberInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg.plainText {
		return r.plainMembers()
	}
	out := make([]MemberInfo, 0, len(r.names))
	for _, n := range r.names {
		m := r.byName[n]
		out = append(out, MemberInfo{Name: n, Addr: net.UDPAddrFromAddrPort(m.addr)})
	}
	return out
}

// Stats returns a snapshot of the relay's counters.
func (r *Relay) Stats() RelayStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Members = len(r.list) + len(r.plainNames)
	return s
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
		r.pc.SetReadDeadline(time.Unix(1, 0))
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
				r.pc.SetReadDeadline(nextSweep)
			}
			dmu.Unlock()
			deadline = nextSweep
		}
		n, err := r.bc.read(in)
		now := time.Now()
		r.mu.Lock()
		for i := range n {
			r.handle(r.bufs[i][:in[i].n], in[i].from, now)
		}
		r.stats.DroppedKernel = r.bc.drops()
		if !now.Before(nextSweep) {
			r.sweep(now)
			nextSweep = now.Add(r.cfg.heartbeat)
		}
		r.q.flush()
		closed := r.closed
		r.mu.Unlock()
		if err == nil {
			continue
		}
		switch {
		case closed:
			return nil
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
	for _, m := range r.list {
		r.q.reply(m.addr, appendBye(r.q.replyBuf(byeLen), r.inc, m.session))
	}
	r.q.flush()
	if r.fan != nil {
		// Under r.mu, so that no flush is writing to it; later flushes go
		// to the closed socket and stop at once.
		r.fan.Close()
		r.q.w = r.bc
	}
	r.mu.Unlock()
	err := r.pc.Close()
	r.serveWG.Wait()
	if err != nil {
		return fmt.Errorf("udpchat: relay close: %w", err)
	}
	return nil
}

// handle processes one datagram. r.mu is held.
func (r *Relay) handle(b []byte, from netip.AddrPort, now time.Time) {
	r.stats.Received++
	if len(b) > r.cfg.bufferSize {
		r.stats.DroppedOversized++
		r.debugDrop("oversized", from)
		return
	}
	if r.cfg.plainText {
		r.handlePlain(b, from, now)
		return
	}
	var salt uint32
	var count uint64
	if r.cfg.keys != nil {
		plain, s, c, err := r.cfg.keys.open(r.plain, b)
		if err != nil {
			r.stats.DroppedUnauthenticated++
			r.debugDrop(err.Error(), from)
			return
		}
		b, salt, count = plain, s, c
	}
	var p packet
	if err := decode(b, &p); err != nil {
		r.stats.DroppedMalformed++
		r.debugDrop(err.Error(), from)
		return
	}
	if from.Port() == 0 {
		r.stats.DroppedMalformed++ // nothing can be sent back to port 0
		r.debugDrop("source port 0", from)
		return
	}
	if p.typ == tJoin {
		r.handleJoin(&p, from, now, salt, count)
		return
	}
	m := r.members[p.id]
	if m == nil || m.addr != from {
		switch p.typ {
		case tChat, tHeartbeat, tNack, tRosterReq, tLeave:
			r.stats.DroppedUnknown++
			r.debugDrop("unknown session", from)
			// BYE tells a member of a relay that restarted, or that
			// expired it, to join again. It names the session it answers,
			// and goes only where that session is unknown: a session the
			// relay knows, used from another address, is someone replaying
			// it, who must not get a BYE for it. It is no larger than the
			// datagram it answers: the answer to a spoofed source never
			// amplifies.
			if m == nil && len(b) >= byeLen {
				r.q.reply(from, appendBye(r.q.replyBuf(byeLen), r.inc, p.id))
			}
		default:
			r.stats.DroppedMalformed++
			r.debugDrop("relay-bound datagram of a member-bound type", from)
		}
		return
	}
	if r.q.sealer != nil && (salt != m.salt || !m.replay.fresh(count)) {
		// Sealed by another sender with the key, or replayed: a Member
		// seals every datagram anew, resent chats too.
		r.stats.DroppedReplayed++
		r.debugDrop("replayed", from)
		return
	}
	m.lastHeard = now
	switch p.typ {
	case tChat:
		r.handleChat(m, &p, now)
	case tHeartbeat:
		if p.seq > m.progress && p.seq <= r.q.seq+1 {
			m.progress = p.seq - 1
		}
		m.knows = max(m.knows, min(p.stable, r.stable))
		r.sendStatus(m)
	case tNack:
		r.handleNack(m, &p, now)
	case tRosterReq:
		if !r.limit.take(&m.buckets, len(b), now) {
			r.stats.DroppedRateLimited++
			return
		}
		r.handleRosterReq(m, p.name)
	case tLeave:
		r.q.reply(m.addr, appendBye(r.q.replyBuf(byeLen), r.inc, m.session))
		r.remove(m, now)
	default:
		r.stats.DroppedMalformed++
	}
}

func (r *Relay) debugDrop(reason string, from netip.AddrPort) {
	if r.cfg.logger.Enabled(context.Background(), slog.LevelDebug) {
		r.cfg.logger.Debug("udpchat relay dropped datagram", "reason", reason, "from", from)
	}
}

// checkCookie reports whether the join carries the cookie the relay gave
// its address; otherwise it answers with one. Until then the relay keeps no
// state for the joiner, and its answer is smaller than the join.
func (r *Relay) checkCookie(p *packet, src netip.AddrPort, now time.Time) bool {
	ok, want := r.cookies.check(&p.cookie, src, p.nonce, now)
	if !ok {
		r.q.reply(src, appendCookie(r.q.replyBuf(cookieMsgLen), r.inc, p.nonce, &want))
	}
	return ok
}

func (r *Relay) handleJoin(p *packet, src netip.AddrPort, now time.Time, salt uint32, count uint64) {
	if !r.checkCookie(p, src, now) {
		return
	}
	refuse := func(code byte) {
		r.stats.DroppedRejected++
		r.q.reply(src, appendError(r.q.replyBuf(headerLen+9), r.inc, code, p.nonce))
	}
	if m := r.byName[string(p.name)]; m != nil {
		switch {
		case m.addr != src:
			refuse(codeNameTaken)
			return
		case m.epoch == p.epoch:
			// The same member again: a lost welcome, or a member that lost
			// track of the relay. Renew the session in place; nothing is
			// announced.
			if r.q.sealer != nil {
				switch {
				case salt != m.salt:
					m.salt, m.replay = salt, replay{newest: count, seen: 1}
				case !m.replay.fresh(count):
					r.stats.DroppedReplayed++ // a replayed join
					return
				}
			}
			r.cookies.record(p.nonce)
			m.nonce = p.nonce
			m.lastHeard = now
			r.sendWelcome(m)
			return
		}
		// Another Member on the same socket address: the old one is gone.
		r.remove(m, now)
	}
	name := string(p.name)
	if err := checkName(name); err != nil || (r.cfg.nameRule != nil && r.cfg.nameRule(name) != nil) {
		refuse(codeBadName)
		return
	}
	if len(r.list) >= r.cfg.maxMembers {
		refuse(codeFull)
		return
	}
	if r.cookies.used(p.nonce) {
		// This join made or renewed a session before (its cookie is
		// still good): a replay, perhaps after the member left. A Member
		// joins again with a new nonce.
		r.stats.DroppedReplayed++
		return
	}
	r.cookies.record(p.nonce)
	// A new member has everything before its join. A member coming back
	// to this relay (it was expired) keeps its place and reports it in its
	// next heartbeat; until then it must not move stable on.
	joinSeq, progress, knows := r.q.seq+1, r.q.seq, r.stable
	switch {
	case p.prevInc == r.inc:
		progress, knows = r.stable, 0
	case p.prevInc != 0:
		// A member of the relay this one replaced: it has seen none of
		// this incarnation's messages, so it starts from the first. What
		// history no longer holds it learns through GONE.
		joinSeq, progress, knows = 1, 0, 0
	}
	m := &relayMember{
		name:      name,
		session:   randomID(),
		nonce:     p.nonce,
		joinSeq:   joinSeq,
		addr:      src,
		epoch:     p.epoch,
		salt:      salt,
		replay:    replay{newest: count, seen: 1},
		progress:  progress,
		knows:     knows,
		nextMseq:  p.mseq,
		buckets:   r.limit.join(src.Addr(), name, now),
		lastHeard: now,
		idx:       len(r.list),
	}
	r.members[m.session] = m
	r.byName[name] = m
	r.list = append(r.list, m)
	r.dsts = append(r.dsts, src)
	i, _ := slices.BinarySearch(r.names, name)
	r.names = slices.Insert(r.names, i, name)
	// The welcome goes out before the join event, so the member knows its
	// session when the event arrives.
	r.sendWelcome(m)
	r.sequence(KindJoin, m, 0, nil, now)
	r.cfg.logger.Info("udpchat member joined", "name", name, "addr", src)
}

func (r *Relay) sendWelcome(m *relayMember) {
	b := appendWelcome(r.q.replyBuf(welcomeLen), r.inc, m.nonce, m.session, m.joinSeq,
		r.cfg.heartbeat, r.cfg.expiry, r.cfg.history, r.cfg.bufferSize, r.q.group)
	r.q.reply(m.addr, b)
}

// handleChat sequences a member's chats in the member's order. A chat that
// arrives ahead of a lost one waits in the member's reorder buffer, which
// holds no more than the member's send window.
func (r *Relay) handleChat(m *relayMember, p *packet, now time.Time) {
	if !r.limit.take(&m.buckets, len(p.text)+chatHdrLen, now) {
		r.stats.DroppedRateLimited++
		return
	}
	switch {
	case p.mseq < m.nextMseq:
		// A retransmission: the confirmation was lost. Confirm again.
		r.stats.DroppedDuplicate++
		if p.mseq == m.refused {
			r.refuse(m, p.mseq, m.refusedAs)
			return
		}
		r.sendStatus(m)
		return
	case p.mseq-m.nextMseq >= sendWindow:
		r.stats.DroppedMalformed++ // more in flight than any member sends
		r.sendStatus(m)
		return
	case p.mseq > m.nextMseq:
		if _, dup := m.ahead[p.mseq]; dup {
			r.stats.DroppedDuplicate++
		} else {
			if m.ahead == nil {
				m.ahead = make(map[uint64][]byte)
			}
			m.ahead[p.mseq] = append([]byte(nil), p.text...)
			r.stats.Reordered++
		}
		// Telling the member where the relay stands lets it resend the
		// missing one at once.
		r.sendStatus(m)
		return
	}
	r.acceptChat(m, p.mseq, p.text, now)
	for len(m.ahead) > 0 {
		text, ok := m.ahead[m.nextMseq]
		if !ok {
			break
		}
		delete(m.ahead, m.nextMseq)
		r.acceptChat(m, m.nextMseq, text, now)
	}
}

// acceptChat sequences the member's next chat or refuses it; either way
// the member seq is used up.
func (r *Relay) acceptChat(m *relayMember, mseq uint64, text []byte, now time.Time) {
	m.nextMseq++
	switch {
	case !utf8.Valid(text):
		r.refuse(m, mseq, codeInvalidText)
	case deliverHdrLen+len(m.name)+len(text)+r.cfg.sealOverhead() > r.cfg.bufferSize:
		r.refuse(m, mseq, codeTooLarge)
	default:
		r.sequence(KindChat, m, mseq, text, now)
	}
}

func (r *Relay) refuse(m *relayMember, mseq uint64, code byte) {
	r.stats.DroppedRejected++
	m.refused, m.refusedAs = mseq, code
	r.q.reply(m.addr, appendError(r.q.replyBuf(headerLen+9), r.inc, code, mseq))
}

func (r *Relay) sendStatus(m *relayMember) {
	r.q.reply(m.addr, appendStatus(r.q.replyBuf(headerLen+32), r.inc, r.q.seq, m.nextMseq-1, r.stable, r.prunable))
}

func (r *Relay) handleNack(m *relayMember, p *packet, now time.Time) {
	budget := r.limit.repairs(&m.buckets, maxRepairPerNak, now)
	start := budget
	defer func() { r.limit.spendRepairs(&m.buckets, start-budget) }()
	oldest := r.q.oldestSeq()
	for _, rg := range p.ranges[:p.nranges] {
		first, last := rg[0], min(rg[1], r.q.seq)
		if first < oldest {
			// Everything before oldest is gone, not just what was asked
			// for: the member skips the whole loss at once.
			r.q.reply(m.addr, appendU64Pair(r.q.replyBuf(headerLen+16), tGone, r.inc, first, oldest-1))
			first = oldest
		}
		for s := first; s <= last && budget > 0; s++ {
			r.q.resend(s, m.addr)
			r.stats.Retransmitted++
			budget--
		}
	}
}

func (r *Relay) handleRosterReq(m *relayMember, after []byte) {
	i, found := slices.BinarySearch(r.names, string(after))
	if found {
		i++
	}
	// A page holds as many names as fit the buffer.
	b := r.q.replyBuf(r.cfg.bufferSize)
	b = appendRosterHeader(b, r.inc, r.q.seq, false, after)
	moreAt := len(b) - 2 - len(after)
	for ; i < len(r.names) && len(b)+1+len(r.names[i])+r.cfg.sealOverhead() <= r.cfg.bufferSize; i++ {
		b = appendName(b, r.names[i])
	}
	if i < len(r.names) {
		b[moreAt] = 1
	}
	r.q.reply(m.addr, b)
}

// sequence assigns the next seq to a message, keeps it in history and fans
// it out to every member.
func (r *Relay) sequence(kind Kind, from *relayMember, mseq uint64, text []byte, now time.Time) {
	seq, buf := r.q.next()
	r.q.fanout(appendDeliver(buf, r.inc, seq, now.UnixNano(), from.epoch, mseq, kind, from.name, text), r.dsts)
}

// remove drops a member and announces that it left.
func (r *Relay) remove(m *relayMember, now time.Time) {
	delete(r.members, m.session)
	delete(r.byName, m.name)
	end := len(r.list) - 1
	last := r.list[end]
	r.list[m.idx], r.dsts[m.idx], last.idx = last, last.addr, m.idx
	r.list[end] = nil
	r.list, r.dsts = r.list[:end], r.dsts[:end]
	if i, ok := slices.BinarySearch(r.names, m.name); ok {
		r.names = slices.Delete(r.names, i, i+1)
	}
	r.limit.leave(m.addr.Addr(), m.name, m.buckets)
	r.sequence(KindLeave, m, 0, nil, now)
	r.cfg.logger.Info("udpchat member left", "name", m.name, "addr", m.addr)
}

// sweep expires members that have been silent for longer than the expiry,
// and works out which seqs every member has (stable): senders keep their
// chats until then, to resend them to a new relay should this one die.
func (r *Relay) sweep(now time.Time) {
	if r.cfg.plainText {
		r.sweepPlain(now)
	}
	defer func() {
		stable, prunable := r.q.seq, r.stable
		for _, m := range r.list {
			stable = min(stable, m.progress)
			prunable = min(prunable, m.knows)
		}
		// What history no longer holds cannot be repaired by anyone. A
		// member behind that learns of it from stable, and only once every
		// member has, senders forget: so a member that lacks what senders
		// forgot knows it, should the relay die.
		r.stable = max(stable, r.q.oldestSeq()-1)
		r.prunable = max(r.prunable, prunable)
	}()
	r.limit.sweep(now)
	// Backwards, because remove moves the last member into the hole.
	for i := len(r.list) - 1; i >= 0; i-- {
		m := r.list[i]
		if now.Sub(m.lastHeard) <= r.cfg.expiry {
			continue
		}
		r.stats.Expired++
		// It may still be joining with this nonce, its welcomes lost: let
		// the nonce make a session again. (A replay of it now makes one
		// that expires in turn; what the nonce rule prevents is a replay
		// bringing back a member that left.)
		r.cookies.forget(m.nonce)
		// If it is alive after all, BYE makes it join again.
		r.q.reply(m.addr, appendBye(r.q.replyBuf(byeLen), r.inc, m.session))
		r.remove(m, now)
	}
}
