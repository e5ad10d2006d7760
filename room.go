package udpchat

import "time"

// A room is one group of a relay: its members, the order of its messages
// (its history) and how far every member has them. Rooms share the
// relay's socket, send queue, cookies and rate limits, and nothing else:
// nothing of one room reaches a member of another. A room exists while it
// has members; one that empties is forgotten, and the next member to join
// opens it anew, with a new incarnation and Seq from 1.
type room struct {
	name      string
	inc       uint64 // random per room opened: its members tell a new one from the old
	members   sessionTable
	hist      *history
	group     udpPath // the relay's broadcast or multicast target, for the main room; remote invalid otherwise
	stable    uint64  // every member has every seq up to this (or history lost it)
	prunable  uint64  // every member knows stable reached this: senders may forget it
	unsettled bool    // a progress report came since stable and prunable were worked out
	toldGroup uint64  // the stable seq the last STABLE to the group told (room.settle)
	opened    time.Time
}

func newRoom(name string, history, bufferSize int, group udpPath, now time.Time) *room {
	return &room{
		name:   name,
		opened: now,
		inc:    randomID(),
		hist:   newHistory(history, bufferSize),
		group:  group,
	}
}

// settle works out which seqs every member has (stable) and which every
// member knows to be stable (prunable), from their progress reports: a
// walk over the room's members, once per batch at most while reports come
// in. Members that should hear where stable is though they did not ask
// are told: each by tell, or, in a room with a group, all at once by
// tellGroup, which one datagram to the group reaches.
func (rm *room) settle(tell func(*relayMember), tellGroup func(*room)) {
	rm.unsettled = false
	h := rm.hist
	stable, prunable := h.seq, rm.stable
	step := uint64(h.max / 8)
	group := rm.group.remote.IsValid()
	groupDue, lagging := group && rm.toldGroup+2*step <= rm.stable, false
	for _, m := range rm.members.list {
		stable = min(stable, m.progress)
		prunable = min(prunable, m.knows)
		if m.knows+2*step > rm.stable {
			continue
		}
		// A member that is not taking messages (its application is slow)
		// reports nothing: tell it where stable is, so that its answer
		// lets senders forget what history has dropped anyway.
		switch {
		case group:
			lagging = groupDue
		case m.told+2*step <= rm.stable:
			tell(m)
			m.told = rm.stable
		}
	}
	// What history no longer holds cannot be repaired by anyone. A member
	// behind that learns of it from stable, and only once every member
	// has, senders forget: so a member that lacks what senders forgot
	// knows it, should the relay die.
	rm.stable = max(stable, h.oldest()-1)
	rm.prunable = max(rm.prunable, prunable)
	if lagging {
		// In broadcast every member of the room hears the group: one
		// datagram for all who lag, instead of one each (N/256 a message
		// when none reports).
		rm.toldGroup = rm.stable
		tellGroup(rm)
	}
}

// behind reports whether history is dropping what some member lacks, so
// that stable must move on without that member's report.
func (rm *room) behind() bool {
	n := uint64(len(rm.hist.slots))
	return rm.hist.seq > rm.stable+n+n/8
}

// member returns the member of the room called name, if there is one. A
// nil room has none.
func (rm *room) member(name []byte) *relayMember {
	if rm == nil {
		return nil
	}
	return rm.members.byName[string(name)]
}
