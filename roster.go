package udpchat

import (
	"slices"
	"strings"
	"time"
)

// A roster is a member's view of who is in the group: loaded page by page
// from the relay after a join (and again whenever join and leave events may
// have been lost), and kept up by the events Receive hands out. The
// member's m.mu guards it.
type roster struct {
	loading bool
	after   string    // the last name of the page taken; "" for the first
	next    time.Time // when to ask for the next page
	seq     uint64    // the seq of the first page of this load
	entries map[string]rosterEntry
}

type rosterEntry struct {
	name    string // the map's key, kept to share it
	present bool
	seq     uint64 // the seq of the event or roster page that set it
	carried bool   // present at a relay that restarted, not heard of since
}

func newRoster() roster { return roster{entries: make(map[string]rosterEntry)} }

// load starts loading the list from its first page, asked for at now.
func (r *roster) load(now time.Time) { r.loadAt(now) }

// loadAt starts loading the list, with the first page asked for at t:
// meanwhile, events are kept as during a load.
func (r *roster) loadAt(t time.Time) {
	r.loading, r.after, r.next = true, "", t
}

// carry keeps who was present at a relay that restarted, as carried: the
// new relay numbers anew, so their seqs no longer count. The next load
// lists those who came back; page reports the others as gone.
func (r *roster) carry() {
	for name, e := range r.entries {
		if !e.present {
			delete(r.entries, name)
			continue
		}
		r.entries[name] = rosterEntry{name: e.name, present: true, carried: true}
	}
}

// due reports whether a page is to be asked for at now (the one after
// r.after), and when the next request is due: zero when not loading.
func (r *roster) due(now time.Time) (ask bool, at time.Time) {
	if !r.loading {
		return false, time.Time{}
	}
	if !now.Before(r.next) {
		ask, r.next = true, now.Add(rtoMin)
	}
	return ask, r.next
}

// page takes one page of the list. It reports whether the next page is to
// be asked for at once, and whether the list is now loaded; then gone
// lists, sorted, the carried members that no page listed: they did not
// come back after the relay restarted.
func (r *roster) page(p *packet, now time.Time) (more, loaded bool, gone []string) {
	if !r.loading || string(p.name) != r.after {
		return false, false, nil
	}
	if r.after == "" {
		r.seq = p.seq
	}
	last := ""
	for rest := p.entries; ; {
		name, tail, ok := nextRosterEntry(rest)
		if !ok {
			break
		}
		rest = tail
		last = string(name)
		r.setPresentSeq(last, true, p.seq)
	}
	if p.more && last != "" {
		r.after, r.next = last, now
		return true, false, nil
	}
	r.loading = false
	// Names no page listed and no newer event set have left.
	for name, e := range r.entries {
		if !e.present || e.seq < r.seq {
			if e.carried {
				gone = append(gone, name)
			}
			delete(r.entries, name)
		}
	}
	slices.Sort(gone)
	return false, true, gone
}

// carries reports whether name is listed from before a relay restart and
// not heard of since.
func (r *roster) carries(name string) bool {
	e, ok := r.entries[name]
	return ok && e.carried && e.present
}

// setPresent takes a join or leave event at seq.
func (r *roster) setPresent(name string, present bool, seq uint64) {
	r.setPresentSeq(name, present, seq)
	if !present && !r.loading {
		delete(r.entries, name)
	}
}

// setPresentSeq records a join or leave, unless something newer is known:
// roster pages and events may arrive in either order.
func (r *roster) setPresentSeq(name string, present bool, seq uint64) {
	if e, ok := r.entries[name]; ok && e.seq > seq {
		return
	}
	r.entries[name] = rosterEntry{name: name, present: present, seq: seq}
}

// intern returns name as a string, shared with the roster's copy when there
// is one, so that a busy member does not allocate a name per message.
func (r *roster) intern(name []byte) string {
	if e, ok := r.entries[string(name)]; ok {
		return e.name
	}
	return string(name)
}

// list returns the members present, sorted by name.
func (r *roster) list(room string) []MemberInfo {
	out := make([]MemberInfo, 0, len(r.entries))
	for name, e := range r.entries {
		if e.present {
			out = append(out, MemberInfo{Name: name, Room: room})
		}
	}
	slices.SortFunc(out, func(a, b MemberInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}
