package udpchat

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
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
	return &cookieJar{joined: make(map[uint64]int64)}
}

// check reports whether cookie is the one the jar gives src for nonce in
// this slot or the previous one; if not, want is the one to give.
func (j *cookieJar) check(cookie *[cookieLen]byte, src netip.AddrPort, nonce uint64, now time.Time) (ok bool, want [cookieLen]byte) {
	slot := now.UnixNano() / int64(cookieSlot)
	if slot != j.slot {
		j.turn(slot)
	}
	for _, s := range []int64{slot, slot - 1} {
		j.make(&want, s, src, nonce)
		if hmac.Equal(want[:], cookie[:]) {
			return true, want
		}
	}
	j.make(&want, slot, src, nonce)
	return false, want
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
