package udpchat

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// A memberSession is the member side of the protocol: the handshake
// (cookie, welcome) and rejoins, the datagrams the relay sends, and the
// timer's joins, heartbeats, retransmissions, NACKs and roster requests. It
// moves the state the Member owns (inbox, outbox, roster) by what the relay
// says. Its methods run under m.mu, except join and send.
type memberSession struct {
	*Member

	joined chan struct{} // closed once the first join and roster are complete

	nonce       uint64          // of the join under way
	cookie      [cookieLen]byte // the relay's answer to our address and nonce; zero until it gives one
	joinNext    time.Time
	joinBackoff time.Duration
	rejoinSince time.Time // when the current rejoin began; zero for the first join

	opened      []byte // an opened datagram, with a key
	relaySalt   uint32 // with a key: the relay's sealing salt
	relayReplay replay // and the counters of its control datagrams taken

	inc, session   uint64    // the relay's incarnation, and our session with it
	lastHeard      time.Time // any valid datagram from the relay
	reportAt       uint64    // report progress once the inbox's next seq reaches this
	reportedStable uint64    // the stable seq the last report said we know
}

func newMemberSession(m *Member) *memberSession {
	s := &memberSession{
		Member:      m,
		joined:      make(chan struct{}),
		nonce:       randomID(),
		joinBackoff: joinRetryMin,
	}
	if m.cfg.keys != nil {
		s.opened = make([]byte, readBufSize)
	}
	return s
}

// send sends a chat and waits until the relay has sequenced it (see Send).
func (m *memberSession) send(ctx context.Context, to, text string) error {
	m.mu.Lock()
	limit := min(m.cfg.bufferSize, m.maxDatagram)
	m.mu.Unlock()
	if size := deliverLen(m.name, to, len(text)) + m.cfg.sealOverhead(); size > limit {
		return fmt.Errorf("%w: %d bytes with header and names, limit %d", ErrMessageTooLarge, size, limit)
	}
	select {
	case m.out.window <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return ErrClosed
	}
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
			m.rd.reclaim() // the relay's word that it shrank is to be read
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
			if !m.out.full() {
				// One signal for however much the outbox shrank: pass it
				// on to the next Send that waits.
				signal(m.out.room)
			}
			continue
		}
		break
	}
	if err := ctx.Err(); err != nil {
		// Done while waiting for room: the chat never goes out.
		m.mu.Unlock()
		<-m.out.window
		return err
	}
	now := time.Now()
	p := m.out.newChat(to, text)
	done := p.ch // p.done is cleared under m.mu once answered
	if m.out.add(p) && m.state == stateJoined {
		m.sendChat(p, now)
	}
	if m.state == stateJoined && m.out.nearlyFull() && now.Sub(m.lastBeat) >= rtoMin {
		// Near its bound: ask where stability stands rather than wait for
		// the next report to bring the answer.
		m.beat(now)
	}
	m.rd.reclaim() // the answer is to be read, with or without a Receive
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

// members returns the group's members as the roster knows them.
func (m *memberSession) members() []MemberInfo { return m.roster.list(m.cfg.room) }

// received asks for more now that Receive made room.
func (m *memberSession) received(now time.Time) { m.advance(now) }

// leaving returns LEAVE if the member is in the group.
func (m *memberSession) leaving() []byte {
	if m.state != stateJoined {
		return nil
	}
	return appendHeader(nil, tLeave, m.session)
}

// handle processes one datagram from the relay (the protocol's).
func (m *memberSession) handle(b []byte, now time.Time) {
	var salt uint32
	var count uint64
	if m.sealer != nil {
		plain, s, c, err := m.cfg.keys.open(m.opened, b)
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
	m.refusals = 0 // something listens at the relay's address
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
	case m.sealer != nil && (p.id != m.inc || salt != m.relaySalt || (p.typ != tDeliver && p.typ != tStable && !m.relayReplay.fresh(count))):
		// Replayed, or sealed by another sender with the key (another
		// relay of the group included: anyone who captured one of our
		// datagrams could have it answer with a BYE for our session, so
		// with a key a restarted relay is noticed by its silence).
		// Delivers are exempt: they are resent from history, and their
		// seqs make a replayed one harmless. So are STABLEs: they come
		// through the group, not in order with our own control datagrams,
		// and what they say only ever moves forward.
		m.stats.Dropped++
		return
	case p.typ == tBye:
		// The relay does not know our session: it restarted (its
		// incarnation differs), expired us or is closing.
		m.rejoin(now, "the relay said goodbye")
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
	case tStatus, tStable:
		m.out.heard(p.stable, p.prunable)
		if p.typ == tStatus {
			m.ack(p.mseq, p.seq, now) // prunes
			m.in.saw(p.seq)
			m.advance(now)
		} else {
			// A STABLE is everyone's: it confirms no one's chats. Its last
			// seq is not taken as seen either: it comes by the group's
			// socket, and may overtake a message to us alone that a NACK
			// would then ask for again.
			m.out.prune()
		}
		if m.state == stateJoined && m.out.stable >= m.reportedStable+m.reportStep() {
			// Senders forget what is stable only once every member has
			// heard that it is: say so now, not at the next heartbeat.
			m.beat(now)
		}
	case tGone:
		m.gone(p.ranges[0][0], p.ranges[0][1], now)
	case tSkip:
		// A message not for us took the seq: nothing to receive, and
		// nothing lost. It names our session: a SKIP of another member's
		// is not ours to take.
		if p.session != m.session {
			m.stats.Dropped++
			return
		}
		if m.in.skip(p.seq) {
			m.stats.Duplicates++
			return
		}
		m.advance(now)
	case tChallenge:
		// Our datagrams reach the relay from a new address (a NAT gave
		// us a new mapping): the answer, from there, moves our session.
		m.writeLocked(appendToken(make([]byte, 0, tokenLen), tResponse, m.session, p.token))
		if m.out.challenged(now) {
			signal(m.kick)
		}
	case tRoster:
		more, loaded, gone := m.roster.page(&p, now)
		for _, name := range gone {
			m.notify(KindLeave, name, "", now)
		}
		switch {
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

// notify queues news for Receive that the relay did not number: the
// member's own link, and members found gone after a restart.
func (m *memberSession) notify(kind Kind, from, text string, now time.Time) {
	if !m.in.note(rxItem{msg: Message{Kind: kind, From: from, Text: text, Time: now}}) {
		m.stats.Dropped++ // no one has called Receive through a storm of restarts
	}
}

// deliver takes a deliver datagram into the ordered stream.
func (m *memberSession) deliver(p *packet, now time.Time) {
	if (p.kind == KindChat || p.kind == KindPrivate) && p.epoch == m.out.epoch && p.seq >= m.in.ackFrom && string(p.name) == m.name {
		m.ack(p.mseq, p.seq, now)
		m.out.sequenced(p.mseq, p.seq)
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
				To:   m.privateTo(p),
				Text: string(p.text),
				Time: time.Unix(0, p.unixNano),
			},
			epoch: p.epoch,
			mseq:  p.mseq,
		})
	}
	m.advance(now)
}

// privateTo returns the recipient of a private message: our own name, or
// the name of the member we sent it to.
func (m *memberSession) privateTo(p *packet) string {
	switch {
	case p.kind != KindPrivate:
		return ""
	case string(p.to) == m.name:
		return m.name
	}
	return m.roster.intern(p.to)
}

// advance moves messages that are next in order into the queue while it
// has room, and asks the relay for missing ones.
func (m *memberSession) advance(now time.Time) {
	m.stats.Duplicates += m.in.advance(&m.roster)
	if m.in.missing() {
		m.nack(now, false)
	}
	if m.state == stateJoined && m.in.next >= m.reportAt {
		m.beat(now)
	}
}

// beat sends a heartbeat: how far the member has received, and the stable
// seq it knows of. Besides every heartbeat interval, a member beats each
// time it has taken an eighth of the relay's history: the relay's stable
// and prunable seqs, and so its senders' outboxes, then move with the
// traffic rather than with the clock. The STATUS answer says where the
// relay stands.
func (m *memberSession) beat(now time.Time) {
	m.writeLocked(appendHeartbeat(make([]byte, 0, headerLen+16), m.session, m.in.next, m.out.stable))
	m.lastBeat = now
	m.reportAt = m.in.next + m.reportStep()
	m.reportedStable = m.out.stable
}

// prevNext is, in a JOIN, the first seq of the relay (incarnation m.inc)
// the member lacks: a restarted relay sends it the chats resent to it that
// it lacks, and to the others a SKIP.
func (m *memberSession) prevNext() uint64 {
	if m.inc == 0 {
		return 0
	}
	return m.in.next
}

// reportStep is how far the member's progress, or the stable seq it
// knows, moves before it reports: an eighth of the relay's history.
func (m *memberSession) reportStep() uint64 { return max(1, uint64(m.out.history)/8) }

// nack asks the relay for missing seqs (see inbox.nack), in as many ranges
// as fit the smaller buffer, sealed.
func (m *memberSession) nack(now time.Time, all bool) {
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
func (m *memberSession) gone(first, last uint64, now time.Time) {
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
func (m *memberSession) ack(mseq, bound uint64, now time.Time) {
	answered, resend := m.out.ack(mseq, bound, now)
	m.stats.Sent += uint64(answered)
	if resend {
		signal(m.kick)
	}
}

// sendChat sends c (again) and counts a retransmission.
func (m *memberSession) sendChat(c *pendingChat, now time.Time) {
	// Built after room for the seal's header, and sealed where it lies:
	// a chat costs one allocation, the datagram.
	p := sealPrefix(m.sealer)
	m.writePrefixed(appendChat(make([]byte, p, p+chatHdrLen+len(c.to)+len(c.text)+16), m.session, c.mseq, c.was, c.to, c.text))
	if m.out.sent(c, now) {
		m.stats.Retransmitted++
	}
}

// tick does what is due at now and returns how long until something is
// due next.
func (m *memberSession) tick(now time.Time) time.Duration {
	var due time.Time
	soonest := func(t time.Time) {
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	switch m.state {
	case stateJoining:
		if m.inc == 0 && m.refusals >= joinRefusals {
			// Never welcomed, and the relay's port refuses: no relay runs
			// there now, and waiting out the caller's context helps no one.
			// (A relay that restarts refuses for a while too, but a member
			// that was welcomed keeps trying.)
			m.fail(fmt.Errorf("%w at %s: %w", ErrRelayUnreachable, m.cfg.addr, m.lastErr))
			return time.Hour
		}
		if !now.Before(m.joinNext) {
			m.writeLocked(appendJoin(make([]byte, 0, joinMinLen+2*maxNameLen), m.session, m.nonce, m.inc, m.out.epoch, m.out.first(), m.prevNext(), &m.cookie, m.name, m.cfg.room))
			m.joinNext = now.Add(m.joinBackoff)
			m.joinBackoff = min(2*m.joinBackoff, rtoMax)
		}
		soonest(m.joinNext)
	case stateJoined:
		if now.Sub(m.lastHeard) > m.expiry {
			m.rejoin(now, "the relay went silent")
			return 0
		}
		if now.Sub(m.lastBeat) >= m.heartbeat {
			m.beat(now)
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
