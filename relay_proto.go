package udpchat

import (
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// protoRelay is the relay's side of the udpchat protocol: it admits
// members to their rooms (relay_join.go), sequences their chats and
// repairs their losses (relay_chat.go), expires the silent, and works out
// which messages every member of a room has (room.go). The Relay runs it
// under its mutex; it sends through the Relay's send queue.
type protoRelay struct {
	cfg      *config
	inc      uint64 // incarnation: random per NewRelay, in what it sends before a session exists
	q        *sendQueue
	stats    *RelayStats
	limit    *rateLimiter
	cookies  *cookieJar
	sessions map[uint64]*relayMember // every room's members, by session
	byRoom   map[string]*room        // the rooms that have members
	departed departedOrigins         // how far members who left were sequenced
	owed     []*relayMember          // members whose reports the end of the batch answers
	opened   []byte                  // an opened datagram, with a key
	group    udpPath                 // the broadcast or multicast target of the main room; remote invalid if none
	groupSrc netip.Addr              // where the group's copies come from, for WELCOME
}

func newProtoRelay(cfg *config, q *sendQueue, stats *RelayStats, limit *rateLimiter, group udpPath, groupSrc netip.Addr) *protoRelay {
	r := &protoRelay{
		cfg:      cfg,
		inc:      randomID(),
		q:        q,
		stats:    stats,
		limit:    limit,
		cookies:  newCookieJar(),
		sessions: make(map[uint64]*relayMember),
		byRoom:   make(map[string]*room),
		group:    group,
		groupSrc: groupSrc,
	}
	if cfg.keys != nil {
		r.opened = make([]byte, cfg.bufferSize)
	}
	return r
}

func (r *protoRelay) count() int { return len(r.sessions) }

func (r *protoRelay) members() []MemberInfo {
	out := make([]MemberInfo, 0, len(r.sessions))
	for _, rm := range r.sortedRooms() {
		for _, n := range rm.members.names {
			m := rm.members.byName[n]
			out = append(out, MemberInfo{Name: n, Addr: net.UDPAddrFromAddrPort(m.path.remote), Room: rm.name})
		}
	}
	return out
}

func (r *protoRelay) rooms() []RoomInfo {
	rooms := r.sortedRooms()
	out := make([]RoomInfo, len(rooms))
	for i, rm := range rooms {
		out[i] = RoomInfo{Name: rm.name, Members: rm.members.len()}
	}
	return out
}

func (r *protoRelay) sortedRooms() []*room {
	rooms := slices.Collect(maps.Values(r.byRoom))
	slices.SortFunc(rooms, func(a, b *room) int { return strings.Compare(a.name, b.name) })
	return rooms
}

// close tells every member that the relay is going away.
func (r *protoRelay) close() {
	for _, m := range r.sessions {
		r.sendBye(m)
	}
}

// sendBye tells m the relay holds its session no more.
func (r *protoRelay) sendBye(m *relayMember) {
	r.q.reply(m.path, appendBye(r.q.replyBuf(byeLen), m.room.inc, m.session))
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
	m := r.sessions[p.id]
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
		rm := m.room
		if p.seq > m.progress && p.seq <= rm.hist.seq+1 {
			m.progress = p.seq - 1
		}
		m.knows = max(m.knows, min(p.stable, rm.stable))
		// The answer waits for the end of the batch, where stable and
		// prunable are worked out once for all the batch's reports.
		rm.unsettled = true
		r.owe(m)
	case tNack:
		r.handleNack(m, &p, now)
	case tRosterReq:
		if !r.limit.take(&m.buckets, len(b), now) {
			r.stats.DroppedRateLimited++
			return
		}
		r.handleRosterReq(m, p.name)
	case tLeave:
		r.sendBye(m)
		r.remove(m, now)
	}
}

// sequence assigns the next seq of from's room to a message, keeps it in
// the room's history and fans it out to every member of the room.
func (r *protoRelay) sequence(kind Kind, from *relayMember, mseq uint64, text []byte, now time.Time) {
	r.sequenceFor(kind, from, nil, mseq, text, selection{}, now)
}

// sequenceFor is sequence for the members sel picks: every other member of
// the room is sent a SKIP of the seq instead. With to set, the message is
// a private one from one member of a room to another (or to itself), which
// only the two get.
func (r *protoRelay) sequenceFor(kind Kind, from, to *relayMember, mseq uint64, text []byte, sel selection, now time.Time) {
	rm := from.room
	var toName string
	if to != nil {
		kind, toName = KindPrivate, to.name
		sel.private, sel.from, sel.to = true, party{from.name, from.epoch}, party{to.name, to.epoch}
	}
	n := deliverLen(from.name, toName, len(text))
	if sel.everyone() {
		seq, buf := r.q.next(rm.hist, n)
		r.q.fanout(rm.hist, appendDeliver(buf, rm.inc, seq, now.UnixNano(), from.epoch, mseq, kind, from.name, "", text), rm.members.dsts, rm.group)
	} else {
		seq, buf := r.q.next(rm.hist, n)
		b := appendDeliver(buf, rm.inc, seq, now.UnixNano(), from.epoch, mseq, kind, from.name, toName, text)
		r.q.fanoutSelected(rm.hist, rm.inc, b, rm.members.list, rm.members.dsts, sel)
	}
	r.settleIfBehind(rm)
}

func (r *protoRelay) settleIfBehind(rm *room) {
	if rm.behind() {
		// History is dropping what some member lacks: stable moves on
		// without that member's report.
		rm.settle(r.tellStatus, r.tellStable)
	}
}

// tellStatus sends m a STATUS it did not ask for (room.settle).
func (r *protoRelay) tellStatus(m *relayMember) { r.sendStatus(m) }

// tellStable sends the members of rm, through its group, a STABLE: where
// stable and prunable are (room.settle).
func (r *protoRelay) tellStable(rm *room) {
	r.q.reply(rm.group, appendStable(r.q.replyBuf(headerLen+24), rm.inc, rm.hist.seq, rm.stable, rm.prunable))
}

// remove drops a member and announces that it left; a room left empty is
// forgotten.
func (r *protoRelay) remove(m *relayMember, now time.Time) {
	rm := m.room
	rm.members.remove(m)
	delete(r.sessions, m.session)
	r.departed.leave(m.session, departure{epoch: m.epoch, nextMseq: m.nextMseq, prevInc: m.prevInc, prevNext: m.prevNext})
	r.limit.leave(m.path.remote.Addr(), m.name, m.buckets)
	if rm.members.len() == 0 {
		delete(r.byRoom, rm.name)
	} else {
		r.sequence(KindLeave, m, 0, nil, now)
	}
	r.cfg.logger.Info("udpchat member left", "name", m.name, "room", rm.name, "addr", m.path.remote)
}

// batchDone works out stable and prunable of each room a progress report
// came from in the batch just handled, and answers each report with a
// STATUS.
func (r *protoRelay) batchDone(time.Time) {
	for _, m := range r.owed {
		if rm := m.room; rm.unsettled && r.sessions[m.session] == m {
			rm.settle(r.tellStatus, r.tellStable)
		}
	}
	for i, m := range r.owed {
		if m.owed && r.sessions[m.session] == m {
			r.sendStatus(m)
		}
		m.owed, r.owed[i] = false, nil
	}
	r.owed = r.owed[:0]
}

// sweep expires members that have been silent for longer than the expiry,
// and works out which seqs every member of each room has (stable): senders
// keep their chats until then, to resend them to a new relay should this
// one die.
func (r *protoRelay) sweep(now time.Time) {
	for _, m := range r.sessions {
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
		r.sendBye(m)
		r.remove(m, now)
	}
	for _, rm := range r.byRoom {
		rm.settle(r.tellStatus, r.tellStable)
	}
}
