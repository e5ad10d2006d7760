package udpchat

// maxDeparted bounds the departures a relay remembers: about 40 bytes
// each, so at most a few MiB after a storm of leaves.
const maxDeparted = 1 << 16

// departedOrigins remembers, for members that left or were expired, how
// far the relay sequenced their chats: the next member seq of their epoch.
// A Member expired while its link was down comes back with a new session
// and resends every chat its outbox still keeps; the relay confirms those
// it sequenced before instead of sequencing them again, which would give
// them a second Seq that members holding the first must skip.
//
// Records are found by the departed session, which the member names in its
// JOIN: only the relay and the member know it, so another member, who sees
// the epoch in every deliver, cannot claim the record and have the relay
// drop the member's next chats as already sequenced.
//
// It holds the newest maxDeparted departures; older ones give way.
type departedOrigins struct {
	next  map[uint64]departure // by session
	order []uint64             // sessions in departure order, a ring once full
	head  int                  // with order full: the oldest
	count uint64               // departures recorded so far
}

type departure struct {
	epoch    uint64
	nextMseq uint64 // its chats were sequenced up to this (exclusive)
	prevInc  uint64 // the incarnation it came back from, and the first seq
	prevNext uint64 // of it it lacked (relayMember), kept for its resends
	n        uint64 // which departure: a ring slot still names it only if n matches
}

// leave records that the member of session left.
func (d *departedOrigins) leave(session uint64, dep departure) {
	if d.next == nil {
		d.next = make(map[uint64]departure)
	}
	d.count++
	if len(d.order) < maxDeparted {
		d.order = append(d.order, session)
	} else {
		old := d.order[d.head]
		// The ring slot's departure is the oldest; forget it unless it
		// was recorded again since.
		if dep, ok := d.next[old]; ok && dep.n == d.count-maxDeparted {
			delete(d.next, old)
		}
		d.order[d.head] = session
		d.head = (d.head + 1) % maxDeparted
	}
	dep.n = d.count
	d.next[session] = dep
}

// rejoin returns the departure of the member that held session with
// epoch, and forgets it: the member has a session again. ok is false for a
// session not remembered, or of another epoch.
func (d *departedOrigins) rejoin(session, epoch uint64) (dep departure, ok bool) {
	dep, ok = d.next[session]
	if !ok || dep.epoch != epoch {
		return departure{}, false
	}
	delete(d.next, session)
	return dep, true
}

func (d *departedOrigins) len() int { return len(d.next) }
