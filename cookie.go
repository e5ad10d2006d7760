package udpchat

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math"
	"net/netip"
	"time"
)

const (
	cookieSlot = 30 * time.Second // a cookie is good for the slot it was made in and the next
	maxJoined  = 1 << 16          // join nonces remembered against replays
)

// A cookieJar makes and checks the relay's join cookies, and remembers
// the join nonces that made a session so that a replayed join cannot make
// another. A cookie is an HMAC over the slot, the joiner's address and
// nonce, keyed with the secret of the current or the previous slot: the
// relay keeps no state for a joiner until it proves it receives at its
// address.
type cookieJar struct {
	mac    [2]hash.Hash // by slot%2
	slot   int64        // the current slot
	sum    [sha256.Size]byte
	joined map[uint64]int64 // nonces of joins that made a session, by cookie slot
}

func newCookieJar() *cookieJar {
	return &cookieJar{slot: math.MinInt64, joined: make(map[uint64]int64)}
}

// check reports whether cookie is the one the jar gives src for nonce in
// this slot or the previous one; if not, want is the one to give.
func (j *cookieJar) check(cookie *[cookieLen]byte, src netip.AddrPort, nonce uint64, now time.Time) (ok bool, want [cookieLen]byte) {
	slot := j.at(now)
	for _, s := range []int64{slot, slot - 1} {
		j.make(&want, s, src, nonce)
		if hmac.Equal(want[:], cookie[:]) {
			return true, want
		}
	}
	j.make(&want, slot, src, nonce)
	return false, want
}

// at returns the slot of now, turning to it if it is later. The jar
// never turns back: a wall clock stepped back (an NTP step) keeps the
// current slot, whose cookies are out, rather than a later turn making a
// second secret for a slot that had one.
func (j *cookieJar) at(now time.Time) int64 {
	if slot := now.UnixNano() / int64(cookieSlot); slot > j.slot {
		j.turn(slot)
	}
	return j.slot
}

// turn moves to a new slot: new secrets for the slots that begin (the
// previous slot's stays if it is the one before), and the nonces of
// cookies no longer good are forgotten.
func (j *cookieJar) turn(slot int64) {
	for s := max(slot-1, j.slot+1); s <= slot; s++ {
		var secret [32]byte
		rand.Read(secret[:])
		j.mac[s&1] = hmac.New(sha256.New, secret[:])
	}
	j.slot = slot
	for nonce, s := range j.joined {
		if s < slot-1 {
			delete(j.joined, nonce)
		}
	}
}

func (j *cookieJar) make(c *[cookieLen]byte, slot int64, src netip.AddrPort, nonce uint64) {
	mac := j.mac[slot&1]
	mac.Reset()
	var in [8 + 16 + 2 + 8]byte
	binary.BigEndian.PutUint64(in[0:], uint64(slot))
	ip := src.Addr().As16()
	copy(in[8:], ip[:])
	binary.BigEndian.PutUint16(in[24:], src.Port())
	binary.BigEndian.PutUint64(in[26:], nonce)
	mac.Write(in[:])
	copy(c[:], mac.Sum(j.sum[:0]))
}

// Path tokens (relay_path.go) come from the same secrets. A token is the
// tick it was made in (16 bits of pathTick) and 48 bits of an HMAC over
// that tick, the session and the address it was sent to: any address can
// answer its own challenge, and the relay keeps no token to be displaced.
const pathTick = 64 * time.Millisecond

// pathToken returns the token of a challenge to session's new address to.
func (j *cookieJar) pathToken(session uint64, to netip.AddrPort, now time.Time) uint64 {
	j.at(now)
	tick := now.UnixNano() / int64(pathTick)
	return uint64(tick&0xffff)<<48 | j.pathMAC(tick, session, to)
}

// checkPathToken reports whether token is one pathToken gave session for
// from no longer than life ago.
func (j *cookieJar) checkPathToken(token, session uint64, from netip.AddrPort, now time.Time, life time.Duration) bool {
	slot := j.at(now)
	cur := now.UnixNano() / int64(pathTick)
	// The latest tick at or before now whose low 16 bits the token carries.
	tick := cur - (cur-int64(token>>48))&0xffff
	if time.Duration(cur-tick)*pathTick > life || tickSlot(tick) < slot-1 {
		return false // too old, or its secret is gone
	}
	return token&(1<<48-1) == j.pathMAC(tick, session, from)
}

// tickSlot is the cookie slot a path tick falls in.
func tickSlot(tick int64) int64 { return tick * int64(pathTick) / int64(cookieSlot) }

// pathMAC is the low 48 bits of the HMAC, with the secret of the cookie
// slot the tick falls in, over the tick, session and address.
func (j *cookieJar) pathMAC(tick int64, session uint64, to netip.AddrPort) uint64 {
	mac := j.mac[tickSlot(tick)&1]
	mac.Reset()
	var in [1 + 8 + 8 + 16 + 2]byte
	in[0] = 'P' // not a cookie's input, which is longer
	binary.BigEndian.PutUint64(in[1:], uint64(tick))
	binary.BigEndian.PutUint64(in[9:], session)
	ip := to.Addr().As16()
	copy(in[17:], ip[:])
	binary.BigEndian.PutUint16(in[33:], to.Port())
	mac.Write(in[:])
	return binary.BigEndian.Uint64(mac.Sum(j.sum[:0])) & (1<<48 - 1)
}

// used reports whether nonce made or renewed a session while its cookie
// is still good: a join with it again is a replay.
func (j *cookieJar) used(nonce uint64) bool {
	_, ok := j.joined[nonce]
	return ok
}

// record remembers a nonce that made or renewed a session for as long as
// its cookie is good. The map holds what two cookie slots of joins bring
// (each needs a cookie round trip); past maxJoined the older slot's go
// first.
func (j *cookieJar) record(nonce uint64) {
	if len(j.joined) >= maxJoined {
		for n, s := range j.joined {
			if s < j.slot {
				delete(j.joined, n)
			}
		}
	}
	if len(j.joined) < maxJoined {
		j.joined[nonce] = j.slot
	}
}

// forget lets nonce make a session again.
func (j *cookieJar) forget(nonce uint64) { delete(j.joined, nonce) }
