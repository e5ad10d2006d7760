package udpchat

import "hash/fnv"

// RelayFor picks the relay that serves room among relays (their addresses,
// as given to WithAddr), by rendezvous hashing: every program that calls
// it with the same room and the same list, in any order, gets the same
// answer, with no coordination. Rooms spread evenly over the relays, and
// when a relay is added to or removed from the list, only the rooms that
// move to or from it change relay. It returns "" if relays is empty.
//
// The choice depends only on the strings: list each relay the same way
// everywhere ("10.0.0.7:2410", not sometimes a name). It is fixed: later
// versions of this package choose the same relay for the same input.
func RelayFor(room string, relays []string) string {
	best, bestScore := "", uint64(0)
	for _, r := range relays {
		s := rendezvousScore(r, room)
		if best == "" || s > bestScore || (s == bestScore && r < best) {
			best, bestScore = r, s
		}
	}
	return best
}

// rendezvousScore is relay's weight for room: FNV-1a over both, the two
// kept apart by a byte no name holds, then mixed (SplitMix64's finaliser)
// so that relays whose addresses differ in a digit score independently.
func rendezvousScore(relay, room string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(relay))
	h.Write([]byte{0})
	h.Write([]byte(room))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
