package udpchat

import (
	"slices"
	"testing"
	"time"
)

// Tests of the roster alone: no sockets, time passed in.

func rosterPagePacket(after string, seq uint64, more bool, names ...string) *packet {
	var entries []byte
	for _, n := range names {
		entries = append(append(entries, byte(len(n))), n...)
	}
	return &packet{typ: tRoster, name: []byte(after), seq: seq, more: more, entries: entries}
}

func rosterNames(ms []MemberInfo) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func TestRosterLoad(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newRoster()
	if ask, at := r.due(t0); ask || !at.IsZero() {
		t.Fatalf("not loading: due %v at %v", ask, at)
	}
	r.load(t0)
	if ask, at := r.due(t0); !ask || !at.Equal(t0.Add(rtoMin)) {
		t.Fatalf("loading: due %v at %v, want a request now, again at %v", ask, at, t0.Add(rtoMin))
	}
	if ask, _ := r.due(t0.Add(rtoMin - 1)); ask {
		t.Fatal("asked again before rtoMin")
	}
	// A page for another request is not ours.
	if more, loaded, _ := r.page(rosterPagePacket("bob", 10, false, "carol"), t0); more || loaded {
		t.Fatalf("a page after %q taken while asking for the first", "bob")
	}
	t1 := t0.Add(time.Millisecond)
	if more, loaded, _ := r.page(rosterPagePacket("", 10, true, "alice", "bob"), t1); !more || loaded {
		t.Fatalf("first page: more %v loaded %v", more, loaded)
	}
	if r.after != "bob" {
		t.Fatalf("asks after %q, want bob", r.after)
	}
	if ask, at := r.due(t1); !ask || !at.Equal(t1.Add(rtoMin)) {
		t.Fatalf("the next page is not asked for at once: %v %v", ask, at)
	}
	// Events arrive while loading: a leave is kept as absent until loaded.
	r.setPresent("bob", false, 12)
	r.setPresent("dave", true, 13)
	if more, loaded, _ := r.page(rosterPagePacket("bob", 11, false, "carol"), t1); more || !loaded {
		t.Fatalf("last page: more %v loaded %v", more, loaded)
	}
	if got := rosterNames(r.list("")); !slices.Equal(got, []string{"alice", "carol", "dave"}) {
		t.Errorf("list %v", got)
	}
	if len(r.entries) != 3 {
		t.Errorf("%d entries kept, want 3 (the absent are forgotten)", len(r.entries))
	}
	if ask, at := r.due(t1.Add(time.Hour)); ask || !at.IsZero() {
		t.Errorf("loaded, yet due %v at %v", ask, at)
	}
}

// Pages and events may arrive in either order: the newer seq wins.
func TestRosterSetPresent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		loading bool
		events  []rosterEntry // name, present, seq
		want    []string
		entries int
	}{
		{"join", false, []rosterEntry{{name: "a", present: true, seq: 5}}, []string{"a"}, 1},
		{"join, leave", false, []rosterEntry{{name: "a", present: true, seq: 5}, {name: "a", present: false, seq: 6}}, nil, 0},
		{"leave, then an older join", false, []rosterEntry{{name: "a", present: false, seq: 6}, {name: "a", present: true, seq: 5}}, []string{"a"}, 1},
		// Events come in seq order; once loaded, a leave just forgets.
		{"leave when loaded forgets", false, []rosterEntry{{name: "a", present: true, seq: 6}, {name: "a", present: false, seq: 5}}, nil, 0},
		{"older join while loading ignored", true, []rosterEntry{{name: "a", present: false, seq: 6}, {name: "a", present: true, seq: 5}}, nil, 1},
		{"leave while loading is remembered", true, []rosterEntry{{name: "a", present: true, seq: 5}, {name: "a", present: false, seq: 6}, {name: "a", present: true, seq: 4}}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRoster()
			r.loading = tc.loading
			for _, e := range tc.events {
				r.setPresent(e.name, e.present, e.seq)
			}
			if got := rosterNames(r.list("")); !slices.Equal(got, tc.want) || len(r.entries) != tc.entries {
				t.Errorf("list %v with %d entries, want %v with %d", got, len(r.entries), tc.want, tc.entries)
			}
		})
	}
}

func TestRosterIntern(t *testing.T) {
	r := newRoster()
	r.setPresent("alice", true, 1)
	name := []byte("alice")
	if n := testing.AllocsPerRun(10, func() { _ = r.intern(name) }); n != 0 {
		t.Errorf("interning a known name allocates %v times", n)
	}
	if got := r.intern([]byte("zed")); got != "zed" {
		t.Errorf("intern(zed) = %q", got)
	}
}

// After a relay restart the members of the old relay stay listed until the
// new relay's list is loaded, an expiry span later; those it does not list
// have gone, and page says so. Those it lists, and those an event told of
// meanwhile, have not.
func TestRosterCarriedAcrossRestart(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newRoster()
	r.load(t0)
	r.page(rosterPagePacket("", 90, false, "alice", "bob", "carol", "dave", "erin"), t0)
	r.setPresent("erin", false, 95) // left before the restart: not carried
	r.carry()
	r.loadAt(t0.Add(time.Second))
	if ask, at := r.due(t0); ask || !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("the new list is asked for at once (%v, %v), not after the expiry span", ask, at)
	}
	if got := rosterNames(r.list("")); !slices.Equal(got, []string{"alice", "bob", "carol", "dave"}) {
		t.Fatalf("while the old members may come back: %v", got)
	}
	// Numbered anew by the new relay: dave, back within the span, leaves
	// again, and frank is new.
	r.setPresent("dave", false, 3)
	r.setPresent("frank", true, 4)
	more, loaded, gone := r.page(rosterPagePacket("", 5, false, "alice", "frank"), t0.Add(time.Second))
	if more || !loaded {
		t.Fatalf("more %v loaded %v", more, loaded)
	}
	if !slices.Equal(gone, []string{"bob", "carol"}) {
		t.Errorf("gone %v, want bob and carol (dave's leave was an event of its own)", gone)
	}
	if got := rosterNames(r.list("")); !slices.Equal(got, []string{"alice", "frank"}) {
		t.Errorf("list %v", got)
	}
	// A later load reports no one again.
	r.load(t0.Add(2 * time.Second))
	if _, _, gone := r.page(rosterPagePacket("", 9, false), t0.Add(2*time.Second)); gone != nil {
		t.Errorf("a second load reports %v gone", gone)
	}
}
