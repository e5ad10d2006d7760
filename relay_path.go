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
	"net/netip"
	"time"
)

// challengeGap is the least time between two challenges to one address: a
// member whose challenge was lost sends again soon enough (heartbeats,
// resends), and a burst of its datagrams from the new address needs only
// one.
const challengeGap = 50 * time.Millisecond

// probeLife is how long after a challenge its answer is taken (to within
// a pathTick): a round trip, with room for a slow link. An address that no longer speaks
// for the member (a NAT mapping given to someone else) cannot answer an
// old challenge later.
const probeLife = 2 * time.Second

// A pathProbe is what the relay spends on challenges to a member's new
// address: the bytes it may still send there. The challenge's token holds
// nothing the relay must keep (cookieJar.pathToken), so a datagram from a
// third address, which takes the probe over, cannot void the member's
// answer.
type pathProbe struct {
	to     netip.AddrPort // the zero AddrPort if there is none
	budget int            // bytes received from to, less those sent to it
	sent   time.Time      // the last challenge; zero before the first
}

// otherPath takes a datagram of m's session from an address that is not
// m's: a challenge goes there, or the answer to one moves the session.
// Nothing else of it is acted on; count is its seal's counter (with a key),
// recorded only if it moves the session.
func (r *protoRelay) otherPath(m *relayMember, p *packet, from udpPath, size int, count uint64, now time.Time) {
	r.stats.DroppedUnvalidated++
	pr := &m.probe
	if p.typ == tResponse {
		if r.cookies.checkPathToken(p.token, m.session, from.remote, now, probeLife) {
			r.stats.DroppedUnvalidated--
			if r.q.sealer != nil {
				m.replay.fresh(count)
			}
			r.migrate(m, from, now)
		} else {
			debugDrop(r.cfg.logger, "path response that answers no challenge", from.remote)
		}
		return
	}
	debugDrop(r.cfg.logger, "session's datagram from an address not its own", from.remote)
	if pr.to != from.remote {
		// The newest address is the one to try: a NAT does not give an
		// old mapping back.
		*pr = pathProbe{to: from.remote}
	}
	pr.budget += size
	n := tokenLen
	if r.q.sealer != nil {
		n += sealOverhead
	}
	if pr.budget >= n && now.Sub(pr.sent) >= challengeGap {
		pr.budget -= n
		pr.sent = now
		token := r.cookies.pathToken(m.session, from.remote, now)
		r.q.reply(from, appendToken(r.q.replyBuf(tokenLen), tChallenge, m.room.inc, token))
	}
}

// migrate moves m's session to the path that answered its challenge, and
// tells the member at once where the group stands, so that it asks for
// what went to its old address meanwhile.
func (r *protoRelay) migrate(m *relayMember, to udpPath, now time.Time) {
	old := m.path.remote
	m.room.members.move(m, to)
	m.lastHeard = now
	r.stats.Migrated++
	r.sendStatus(m)
	r.cfg.logger.Info("udpchat member moved", "name", m.name, "from", old, "to", to.remote)
}
