package udpchat

// Joining, on the relay: a stateless cookie round trip proves the joiner
// receives at its address; then the room and name are checked, the session
// made (or renewed, for the same member again) and the join announced in
// the room.

import (
	"net/netip"
	"time"
)

// checkCookie reports whether the join carries the cookie the relay gave
// its address; otherwise it answers with one. Until then the relay keeps no
// state for the joiner, and its answer is smaller than the join.
func (r *protoRelay) checkCookie(p *packet, src udpPath, now time.Time) bool {
	ok, want := r.cookies.check(&p.cookie, src.remote, p.nonce, now)
	if !ok {
		r.q.reply(src, appendCookie(r.q.replyBuf(cookieMsgLen), r.inc, p.nonce, &want))
	}
	return ok
}

func (r *protoRelay) handleJoin(p *packet, src udpPath, now time.Time, salt uint32, count uint64) {
	if !r.checkCookie(p, src, now) {
		return
	}
	refuse := func(code byte) {
		r.stats.DroppedRejected++
		r.q.reply(src, appendError(r.q.replyBuf(headerLen+9), r.inc, code, p.nonce))
	}
	rm := r.byRoom[string(p.room)]
	if m := rm.member(p.name); m != nil {
		// The same member proves it from a new address by the session it
		// held: its NAT moved it while it had lost track of the relay.
		moved := m.path.remote != src.remote && p.prevInc == rm.inc && p.id == m.session
		switch {
		case m.path.remote != src.remote && (!moved || m.epoch != p.epoch):
			// Another Member (an epoch of its own) may not take the name
			// from another address, even naming the session: without a
			// key, the session can be read on the path.
			refuse(codeNameTaken)
			return
		case m.epoch == p.epoch:
			// The same member again: a lost welcome, or a member that lost
			// track of the relay. Renew the session in place; nothing is
			// announced. (The cookie has shown that it receives at src.)
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
			if m.path.remote != src.remote {
				r.stats.Migrated++
				r.cfg.logger.Info("udpchat member moved", "name", m.name, "from", m.path.remote, "to", src.remote)
			}
			rm.members.move(m, src)
			r.sendWelcome(m)
			return
		}
		if r.cookies.used(p.nonce) {
			// A replay of an old Member's join, within its cookie's life:
			// it may not put out the Member now at the address.
			r.stats.DroppedReplayed++
			return
		}
		// Another Member on the same socket address: the old one is gone,
		// and with it the room, if it was alone there.
		r.remove(m, now)
		rm = r.byRoom[string(p.room)]
	}
	name := string(p.name)
	if err := checkName(name); err != nil || (r.cfg.nameRule != nil && r.cfg.nameRule(name) != nil) || checkRoom(string(p.room)) != nil {
		refuse(codeBadName)
		return
	}
	if len(r.sessions) >= r.cfg.maxMembers {
		refuse(codeFull)
		return
	}
	if rm == nil && len(r.byRoom) >= r.cfg.maxRooms {
		refuse(codeRoomsFull)
		return
	}
	if rm != nil && rm.members.len() >= r.cfg.roomSize {
		refuse(codeRoomFull)
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
	if rm == nil {
		rm = newRoom(string(p.room), r.cfg.history, r.cfg.bufferSize, udpPath{}, now)
		if rm.name == "" {
			rm.group = r.group
		}
		r.byRoom[rm.name] = rm
	}
	// A new member has everything before its join. A member coming back
	// to this room (it was expired) keeps its place and reports it in its
	// next heartbeat; until then it must not move stable on.
	joinSeq, progress, knows := rm.hist.seq+1, rm.hist.seq, rm.stable
	switch {
	case p.prevInc == rm.inc:
		progress, knows = rm.stable, 0
	case p.prevInc != 0:
		// A member of the relay this one replaced, or of the room before
		// it emptied: it has seen none of this incarnation's messages, so
		// it starts from the first. What history no longer holds it learns
		// through GONE.
		joinSeq, progress, knows = 1, 0, 0
	}
	// A member that comes back resends the chats it keeps: those this
	// relay sequenced before are confirmed, not sequenced again. (Only
	// this relay knows the session the JOIN names.)
	nextMseq := p.mseq
	var prevInc, prevNext uint64
	if p.prevInc != 0 && p.prevInc != rm.inc {
		// Back from a replaced incarnation: where it was decides which of
		// the chats resent to this one it lacks.
		prevInc, prevNext = p.prevInc, p.prevNext
	}
	if p.prevInc == rm.inc {
		// Back to this very incarnation (it was expired): what it
		// sequenced of the member's chats, and where the member came from
		// before, are as they were.
		if dep, ok := r.departed.rejoin(p.id, p.epoch); ok {
			nextMseq = max(nextMseq, dep.nextMseq)
			prevInc, prevNext = dep.prevInc, dep.prevNext
		}
	}
	m := &relayMember{
		name:      name,
		session:   randomID(),
		nonce:     p.nonce,
		joinSeq:   joinSeq,
		path:      src,
		epoch:     p.epoch,
		salt:      salt,
		replay:    replay{newest: count, seen: 1},
		progress:  progress,
		knows:     knows,
		nextMseq:  nextMseq,
		prevInc:   prevInc,
		prevNext:  prevNext,
		buckets:   r.limit.join(src.remote.Addr(), name, now),
		lastHeard: now,
		room:      rm,
	}
	r.sessions[m.session] = m
	rm.members.add(m)
	// The welcome goes out before the join event, so the member knows its
	// session when the event arrives.
	r.sendWelcome(m)
	// A member back from the incarnation this one replaced is marked: a
	// member that still lists it from before takes the join as no news.
	var back uint64
	if p.prevInc != 0 && p.prevInc != rm.inc {
		back = joinBack
	}
	r.sequence(KindJoin, m, back, nil, now)
	r.cfg.logger.Info("udpchat member joined", "name", name, "room", rm.name, "addr", src.remote)
}

func (r *protoRelay) sendWelcome(m *relayMember) {
	rm := m.room
	var src netip.Addr
	if rm.group.remote.IsValid() {
		src = r.groupSrc
	}
	b := appendWelcome(r.q.replyBuf(welcomeLen), rm.inc, m.nonce, m.session, m.joinSeq,
		r.cfg.heartbeat, r.cfg.expiry, r.cfg.history, r.cfg.bufferSize, rm.group.remote, src)
	r.q.reply(m.path, b)
}
