package udpchat

import (
	"net"
	"net/netip"
	"time"
)

// protoRelay is the relay's side of the udpchat protocol: it admits
// members (relay_join.go), sequences their chats and repairs their losses
// (relay_chat.go), expires the silent, and works out which messages every
// member has. The Relay runs it under its mutex; it sends through the
// Relay's send queue.
type protoRelay struct {
	cfg       *config
	inc       uint64 // incarnation: random per NewRelay, so members notice a restart
	q         *sendQueue
	stats     *RelayStats
	limit     *rateLimiter
	cookies   *cookieJar
	sessions  *sessionTable
	departed  departedOrigins // how far members who left were sequenced
	stable    uint64          // every member has every seq up to this (or history lost it)
	prunable  uint64          // every member knows stable reached this: senders may forget it
	unsettled bool            // a progress report came since stable and prunable were worked out
	owed      []*relayMember  // members whose reports the end of the batch answers
	opened    []byte          // an opened datagram, with a key
	groupSrc  netip.Addr      // where the group's copies come from, for WELCOME
}

func newProtoRelay(cfg *config, q *sendQueue, stats *RelayStats, limit *rateLimiter, groupSrc netip.Addr) *protoRelay {
	r := &protoRelay{
		cfg:      cfg,
		inc:      randomID(),
		q:        q,
		stats:    stats,
		limit:    limit,
		cookies:  newCookieJar(),
		sessions: newSessionTable(),
		groupSrc: groupSrc,
	}
	if cfg.keys != nil {
		r.opened = make([]byte, cfg.bufferSize)
	}
	return r
}

func (r *protoRelay) count() int { return r.sessions.len() }

func (r *protoRelay) members() []MemberInfo {
	out := make([]MemberInfo, 0, r.sessions.len())
	for _, n := range r.sessions.names {
		m := r.sessions.byName[n]
		out = append(out, MemberInfo{Name: n, Addr: net.UDPAddrFromAddrPort(m.path.remote)})
	}
	return out
}

// close tells every member that the relay is going away.
func (r *protoRelay) close() {
	for _, m := range r.sessions.list {
		r.q.reply(m.path, appendBye(r.q.replyBuf(byeLen), r.inc, m.session))
	}
}

// handle takes one datagram: counted, and no larger than the buffer.
func (r *protoRelay) handle(b []byte, from udpPath, now time.Time) {
	size := len(b) // as it came, sealed or not: what a challenge may spend
	var salt uint32
	var count uint64
	if r.cfg.keys != nil {
		plain, s, c, err := r.cfg.keys.open(r.opened, b)
		if err != nil {
			r.stats.DroppedUnauthenticated++
			debugDrop(r.cfg.logger, err.Error(), from.remote)
			return
		}
		b, salt, count = plain, s, c
	}
	var p packet
	if err := decode(b, &p); err != nil {
		r.stats.DroppedMalformed++
		debugDrop(r.cfg.logger, err.Error(), from.remote)
		return
	}
	if from.remote.Port() == 0 {
		r.stats.DroppedMalformed++ // nothing can be sent back to port 0
		debugDrop(r.cfg.logger, "source port 0", from.remote)
		return
	}
	if p.typ == tJoin {
		r.handleJoin(&p, from, now, salt, count)
		return
	}
	switch p.typ {
	case tChat, tHeartbeat, tNack, tRosterReq, tLeave, tResponse:
	default:
		r.stats.DroppedMalformed++
		debugDrop(r.cfg.logger, "relay-bound datagram of a member-bound type", from.remote)
		return
	}
	m := r.sessions.bySession[p.id]
	if m == nil {
		r.stats.DroppedUnknown++
		debugDrop(r.cfg.logger, "unknown session", from.remote)
		// BYE tells a member of a relay that restarted, or that expired
		// it, to join again. It names the session it answers, and is no
		// larger than the datagram it answers: the answer to a spoofed
		// source never amplifies.
		if len(b) >= byeLen {
			r.q.reply(from, appendBye(r.q.replyBuf(byeLen), r.inc, p.id))
		}
		return
	}
	other := m.path.remote != from.remote
	if r.q.sealer != nil && (salt != m.salt || (other && m.replay.replayed(count)) || (!other && !m.replay.fresh(count))) {
		// Sealed by another sender with the key, or replayed: a Member
		// seals every datagram anew, resent chats too.
		r.stats.DroppedReplayed++
		debugDrop(r.cfg.logger, "replayed", from.remote)
		return
	}
	if other {
		// The session's datagram from another address: its NAT moved
		// it, or someone replays it from there (relay_path.go). Its
		// counter is not taken: a copy sent from elsewhere ahead of the
		// member's own must not make the relay drop the original.
		r.otherPath(m, &p, from, size, count, now)
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
		// The answer waits for the end of the batch, where stable and
		// prunable are worked out once for all the batch's reports.
		r.unsettled = true
		if !m.owed {
			m.owed = true
			r.owed = append(r.owed, m)
		}
	case tNack:
		r.handleNack(m, &p, now)
	case tRosterReq:
		if !r.limit.take(&m.buckets, len(b), now) {
			r.stats.DroppedRateLimited++
			return
		}
		r.handleRosterReq(m, p.name)
	case tLeave:
		r.q.reply(m.path, appendBye(r.q.replyBuf(byeLen), r.inc, m.session))
		r.remove(m, now)
	}
}

// sequence assigns the next seq to a message, keeps it in history and fans
// it out to every member.
func (r *protoRelay) sequence(kind Kind, from *relayMember, mseq uint64, text []byte, now time.Time) {
	seq, buf := r.q.next()
	r.q.fanout(appendDeliver(buf, r.inc, seq, now.UnixNano(), from.epoch, mseq, kind, from.name, text), r.sessions.dsts)
	if h := uint64(len(r.q.history)); seq > r.stable+h+h/8 {
		// History is dropping what some member lacks: stable moves on
		// without that member's report.
		r.settle()
	}
}

// remove drops a member and announces that it left.
func (r *protoRelay) remove(m *relayMember, now time.Time) {
	r.sessions.remove(m)
	r.departed.leave(m.session, m.epoch, m.nextMseq)
	r.limit.leave(m.path.remote.Addr(), m.name, m.buckets)
	r.sequence(KindLeave, m, 0, nil, now)
	r.cfg.logger.Info("udpchat member left", "name", m.name, "addr", m.path.remote)
}

// batchDone works out stable and prunable if a progress report came in
// the batch just handled, and answers each report with a STATUS.
func (r *protoRelay) batchDone(time.Time) {
	if r.unsettled {
		r.settle()
	}
	for i, m := range r.owed {
		if m.owed && r.sessions.bySession[m.session] == m {
			r.sendStatus(m)
		}
		m.owed, r.owed[i] = false, nil
	}
	r.owed = r.owed[:0]
}

// settle works out which seqs every member has (stable) and which every
// member knows to be stable (prunable), from their progress reports: a
// walk over every member, once per batch at most while reports come in.
func (r *protoRelay) settle() {
	r.unsettled = false
	stable, prunable := r.q.seq, r.stable
	step := uint64(len(r.q.history) / 8)
	for _, m := range r.sessions.list {
		stable = min(stable, m.progress)
		prunable = min(prunable, m.knows)
		if m.knows+2*step <= r.stable && m.told+2*step <= r.stable {
			// A member that is not taking messages (its application is
			// slow) reports nothing: tell it where stable is, so that its
			// answer lets senders forget what history has dropped anyway.
			r.sendStatus(m)
			m.told = r.stable
		}
	}
	// What history no longer holds cannot be repaired by anyone. A member
	// behind that learns of it from stable, and only once every member
	// has, senders forget: so a member that lacks what senders forgot
	// knows it, should the relay die.
	r.stable = max(stable, r.q.oldestSeq()-1)
	r.prunable = max(r.prunable, prunable)
}

// sweep expires members that have been silent for longer than the expiry,
// and works out which seqs every member has (stable): senders keep their
// chats until then, to resend them to a new relay should this one die.
func (r *protoRelay) sweep(now time.Time) {
	defer r.settle()
	// Backwards, because remove moves the last member into the hole.
	for i := len(r.sessions.list) - 1; i >= 0; i-- {
		m := r.sessions.list[i]
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
		r.q.reply(m.path, appendBye(r.q.replyBuf(byeLen), r.inc, m.session))
		r.remove(m, now)
	}
}

func (r *protoRelay) rooms() []RoomInfo {
	if r.sessions.len() == 0 {
		return nil
	}
	return []RoomInfo{{Members: r.sessions.len()}}
}
