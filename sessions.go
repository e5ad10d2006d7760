package udpchat

import (
	"slices"
	"time"
)

// relayMember is the relay's state for one member.
type relayMember struct {
	name     string
	session  uint64
	nonce    uint64            // of the join that created or last renewed the session
	joinSeq  uint64            // first seq the session was told to expect
	path     udpPath           // where it speaks from, and the relay address it dialled
	epoch    uint64            // the member's lifetime id, in each of its delivers
	salt     uint32            // with a key: the member's sealing salt
	replay   replay            // and its counters taken, against replays
	progress uint64            // the member has every seq up to this, by its heartbeats
	knows    uint64            // the stable seq the member has heard of, by its heartbeats
	told     uint64            // the stable seq a STATUS the member did not ask for last told it
	owed     bool              // a report of its awaits the end of the batch's STATUS
	nextMseq uint64            // the member seq the relay sequences next
	ahead    map[uint64][]byte // chat texts that arrived before nextMseq; nil until needed
	buckets
	refused   uint64 // the last member seq refused, and why: a resent one
	refusedAs byte   // is refused again, not confirmed
	lastHeard time.Time
	probe     pathProbe // a challenge to the new address its datagrams come from, if any
	prevInc   uint64    // the incarnation of the room it came back from after a restart; 0 if none
	prevNext  uint64    // the first seq of prevInc it lacked
	idx       int       // position in its room's sessionTable.list
	room      *room
}

// A sessionTable holds a room's members three ways: by name (names are
// unique in a room), in a list whose addresses sit side by side in dsts
// for the fan-out loop, and their names sorted for roster pages. add and
// remove keep the three in step.
type sessionTable struct {
	byName map[string]*relayMember
	list   []*relayMember // index kept in relayMember.idx
	dsts   []udpPath      // list's paths, in list's order
	names  []string       // sorted
}

func (t *sessionTable) len() int { return len(t.list) }

// add takes in m, whose name is not in the table.
func (t *sessionTable) add(m *relayMember) {
	m.idx = len(t.list)
	if t.byName == nil {
		t.byName = make(map[string]*relayMember)
	}
	t.byName[m.name] = m
	t.list = append(t.list, m)
	t.dsts = append(t.dsts, m.path)
	i, _ := slices.BinarySearch(t.names, m.name)
	t.names = slices.Insert(t.names, i, m.name)
}

// remove drops m. The last member moves into its place in list and dsts,
// so that a removal costs no shift of a long list.
func (t *sessionTable) remove(m *relayMember) {
	delete(t.byName, m.name)
	end := len(t.list) - 1
	last := t.list[end]
	t.list[m.idx], t.dsts[m.idx], last.idx = last, last.path, m.idx
	t.list[end] = nil
	t.list, t.dsts = t.list[:end], t.dsts[:end]
	if i, ok := slices.BinarySearch(t.names, m.name); ok {
		t.names = slices.Delete(t.names, i, i+1)
	}
}

// namesAfter returns the sorted names that come after name.
func (t *sessionTable) namesAfter(name string) []string {
	i, found := slices.BinarySearch(t.names, name)
	if found {
		i++
	}
	return t.names[i:]
}

// move points m, and its place in the fan-out, at a new path.
func (t *sessionTable) move(m *relayMember, to udpPath) {
	m.path = to
	m.probe = pathProbe{} // a challenge to another address is void now
	t.dsts[m.idx] = to
}
