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
	if more, loaded := r.page(rosterPagePacket("bob", 10, false, "carol"), t0); more || loaded {
		t.Fatalf("a page after %q taken while asking for the first", "bob")
	}
	t1 := t0.Add(time.Millisecond)
	if more, loaded := r.page(rosterPagePacket("", 10, true, "alice", "bob"), t1); !more || loaded {
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
	if more, loaded := r.page(rosterPagePacket("bob", 11, false, "carol"), t1); more || !loaded {
		t.Fatalf("last page: more %v loaded %v", more, loaded)
	}
	if got := rosterNames(r.list()); !slices.Equal(got, []string{"alice", "carol", "dave"}) {
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
		{"join", false, []rosterEntry{{"a", true, 5}}, []string{"a"}, 1},
		{"join, leave", false, []rosterEntry{{"a", true, 5}, {"a", false, 6}}, nil, 0},
		{"leave, then an older join", false, []rosterEntry{{"a", false, 6}, {"a", true, 5}}, []string{"a"}, 1},
		// Events come in seq order; once loaded, a leave just forgets.
		{"leave when loaded forgets", false, []rosterEntry{{"a", true, 6}, {"a", false, 5}}, nil, 0},
		{"older join while loading ignored", true, []rosterEntry{{"a", false, 6}, {"a", true, 5}}, nil, 1},
		{"leave while loading is remembered", true, []rosterEntry{{"a", true, 5}, {"a", false, 6}, {"a", true, 4}}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRoster()
			r.loading = tc.loading
			for _, e := range tc.events {
				r.setPresent(e.name, e.present, e.seq)
			}
			if got := rosterNames(r.list()); !slices.Equal(got, tc.want) || len(r.entries) != tc.entries {
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
