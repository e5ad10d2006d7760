package udpchat

import (
	"net/netip"
	"time"
)

// buckets are one sender's token buckets: chat messages and bytes, and
// datagrams resent to repair its losses (repairs cost the relay far more
// than the NACK that asks for them). Each holds two seconds' worth.
type buckets struct {
	msgTokens, byteTokens, repairTokens float64
	refilled                            time.Time
}

// leftKey names the buckets of a member that left: its IP address and
// its name, so that a neighbour behind the same address is not charged.
type leftKey struct {
	ip   netip.Addr
	name string
}

// leftFor is how long the buckets of a sender that left are kept: by then
// they are full again, and a fresh set costs nothing extra.
const leftFor = 4 * time.Second

// A rateLimiter holds the relay's per-sender rates and the buckets of
// senders that left a moment ago, so that leaving and joining again does
// not buy a fresh burst. The buckets themselves live with their sender.
type rateLimiter struct {
	msgs, bytes float64 // per second; 0: no limit
	repair      float64 // resent datagrams per second
	left        map[leftKey]buckets
}

// newRateLimiter limits senders to msgs chats and bytes bytes a second (0:
// no limit), and repairs to repair datagrams a second, enough to catch a
// member up on the whole history at once.
func newRateLimiter(msgs, bytes, repair float64) *rateLimiter {
	return &rateLimiter{msgs: msgs, bytes: bytes, repair: repair, left: make(map[leftKey]buckets)}
}

// limited reports whether chats are limited at all.
func (l *rateLimiter) limited() bool { return l.msgs != 0 || l.bytes != 0 }

// take takes one datagram of n bytes from b, or reports that it goes
// beyond the rate.
func (l *rateLimiter) take(b *buckets, n int, now time.Time) bool {
	if !l.limited() {
		return true
	}
	l.refill(b, now)
	if (l.msgs > 0 && b.msgTokens < 1) || (l.bytes > 0 && b.byteTokens < float64(n)) {
		return false
	}
	b.msgTokens--
	b.byteTokens -= float64(n)
	return true
}

// repairs returns how many of want datagrams may be resent to b's owner
// now; spendRepairs then charges what was resent, not what was allowed.
func (l *rateLimiter) repairs(b *buckets, want int, now time.Time) int {
	if !l.limited() {
		return want
	}
	l.refill(b, now)
	return min(want, int(b.repairTokens))
}

func (l *rateLimiter) spendRepairs(b *buckets, n int) {
	if l.limited() {
		b.repairTokens -= float64(n)
	}
}

func (l *rateLimiter) refill(b *buckets, now time.Time) {
	dt := now.Sub(b.refilled).Seconds()
	b.refilled = now
	b.msgTokens = min(b.msgTokens+dt*l.msgs, 2*l.msgs)
	b.byteTokens = min(b.byteTokens+dt*l.bytes, 2*l.bytes)
	b.repairTokens = min(b.repairTokens+dt*l.repair, 2*l.repair)
}

// join gives a new sender full buckets, unless a sender of the same name
// and IP address left a moment ago: then it carries on with those.
func (l *rateLimiter) join(ip netip.Addr, name string, now time.Time) buckets {
	k := leftKey{ip, name}
	if b, ok := l.left[k]; ok {
		delete(l.left, k)
		l.refill(&b, now)
		return b
	}
	return buckets{2 * l.msgs, 2 * l.bytes, 2 * l.repair, now}
}

// leave keeps the buckets of a sender that left, for join.
func (l *rateLimiter) leave(ip netip.Addr, name string, b buckets) {
	l.left[leftKey{ip, name}] = b
}

// sweep forgets the buckets of senders that left long enough ago.
func (l *rateLimiter) sweep(now time.Time) {
	for k, b := range l.left {
		if now.Sub(b.refilled) > leftFor {
			delete(l.left, k)
		}
	}
}
