package udpchat

// Path validation, on the relay. A member behind a NAT may be given a new
// mapping at any moment (home routers and mobile networks do), and its
// datagrams then come from a new address. The relay moves the session
// there only once the member has answered a challenge sent there, as
// QUIC validates a new path: otherwise anyone who captured one of the
// member's datagrams could replay it from a third address and have the
// relay send the member's traffic there.
//
// Until then the session stays where it was, and what comes from the new
// address only asks for a challenge: without a key, a captured datagram
// replayed from elsewhere must not speak for the member. The member's
// chats sent meanwhile are resent once the session has moved (the STATUS
// that follows the move tells it at once which the relay lacks). The new
// address gets no more bytes than it sent: a challenge goes out only on
// the budget of what came from there.

import (
	"time"
)

// challengeGap is the least time between two challenges to one address: a
// member whose challenge was lost sends again soon enough (heartbeats,
// resends), and a burst of its datagrams from the new address needs only
// one.
const challengeGap = 50 * time.Millisecond

// A pathProbe is a challenge under way for a member's new address.
type pathProbe struct {
	to     udpPath
	token  uint64
	budget int       // bytes received from to, less those sent to it
	sent   time.Time // the last challenge; zero before the first
}

// otherPath takes a datagram of m's session from an address that is not
// m's: a challenge goes there, or the answer to one moves the session.
func (r *protoRelay) otherPath(m *relayMember, p *packet, from udpPath, size int, now time.Time) {
	pr := m.probe
	if p.typ == tResponse {
		if pr != nil && pr.to.remote == from.remote && pr.sent != (time.Time{}) && p.token == pr.token {
			r.migrate(m, from, now)
		} else {
			r.stats.DroppedUnknown++ // stale, or a guess
			debugDrop(r.cfg.logger, "path response that answers no challenge", from.remote)
		}
		return
	}
	if pr == nil || pr.to.remote != from.remote {
		// The newest address is the one to try: a NAT does not give an
		// old mapping back.
		pr = &pathProbe{to: from, token: randomID()}
		m.probe = pr
	}
	pr.budget += size
	n := tokenLen
	if r.q.sealer != nil {
		n += sealOverhead
	}
	if pr.budget >= n && now.Sub(pr.sent) >= challengeGap {
		pr.budget -= n
		pr.sent = now
		r.q.reply(from, appendToken(r.q.replyBuf(tokenLen), tChallenge, r.inc, pr.token))
	}
}

// migrate moves m's session to the path that answered its challenge, and
// tells the member at once where the group stands, so that it asks for
// what went to its old address meanwhile.
func (r *protoRelay) migrate(m *relayMember, to udpPath, now time.Time) {
	old := m.path.remote
	r.sessions.move(m, to)
	m.probe = nil
	m.lastHeard = now
	r.stats.Migrated++
	r.sendStatus(m)
	r.cfg.logger.Info("udpchat member moved", "name", m.name, "from", old, "to", to.remote)
}
