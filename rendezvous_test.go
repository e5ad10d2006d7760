package udpchat

import (
	"fmt"
	"slices"
	"testing"
)

// RelayFor, without sockets: the same answer for any order of the list,
// rooms spread evenly, and a relay added or removed moves only its share.
func TestRelayFor(t *testing.T) {
	relays := []string{"10.0.0.1:2410", "10.0.0.2:2410", "10.0.0.3:2410", "10.0.0.4:2410"}
	if got := RelayFor("ops", nil); got != "" {
		t.Fatalf("RelayFor with no relays = %q", got)
	}
	const rooms = 20000
	count := map[string]int{}
	for i := range rooms {
		room := fmt.Sprint("room-", i)
		r := RelayFor(room, relays)
		reversed := slices.Clone(relays)
		slices.Reverse(reversed)
		if RelayFor(room, reversed) != r {
			t.Fatalf("%s: the list's order changed the answer", room)
		}
		count[r]++
		// One relay fewer: only the rooms it served move.
		without := relays[1:]
		if r2 := RelayFor(room, without); r != relays[0] && r2 != r {
			t.Fatalf("%s moved from %s to %s when %s left", room, r, r2, relays[0])
		}
		// One relay more: a room moves only to it.
		with := append(slices.Clone(relays), "10.0.0.5:2410")
		if r3 := RelayFor(room, with); r3 != r && r3 != "10.0.0.5:2410" {
			t.Fatalf("%s moved from %s to %s when a relay was added", room, r, r3)
		}
	}
	for _, r := range relays {
		if share := float64(count[r]) / rooms; share < 0.23 || share > 0.27 {
			t.Errorf("%s serves %.3f of the rooms, want about 0.25", r, share)
		}
	}
	// Fixed for good: programs built from other versions agree.
	for room, want := range map[string]string{"": "10.0.0.3:2410", "ops": "10.0.0.1:2410", "dev": "10.0.0.3:2410", "lobby": "10.0.0.3:2410", "support": "10.0.0.1:2410", "random": "10.0.0.4:2410"} {
		if got := RelayFor(room, relays); got != want {
			t.Errorf("RelayFor(%q) = %s, want %s", room, got, want)
		}
	}
}

// Two relays share the rooms: each member joins RelayFor(room), so the
// members of a room meet on one relay, and each relay holds its rooms.
func TestRoomsOverTwoRelays(t *testing.T) {
	r1, r2 := startRelay(t), startRelay(t)
	relays := []string{r1.Addr().String(), r2.Addr().String()}
	byAddr := map[string]*Relay{relays[0]: r1, relays[1]: r2}
	// Where a room goes depends on the relays' ports, which are new each
	// run: take rooms until each relay has four (eight fixed names all
	// went to one relay once in 128 runs).
	var rooms []string
	perRelay := map[string]int{}
	for i := 0; i < 1000 && (perRelay[relays[0]] < 4 || perRelay[relays[1]] < 4); i++ {
		room := fmt.Sprintf("room-%d", i)
		if addr := RelayFor(room, relays); perRelay[addr] < 4 {
			perRelay[addr]++
			rooms = append(rooms, room)
		}
	}
	want := map[*Relay][]string{}
	for _, room := range rooms {
		addr := RelayFor(room, relays)
		want[byAddr[addr]] = append(want[byAddr[addr]], room)
		alice := joinAt(t, addr, "alice", WithRoom(room))
		bob := joinAt(t, RelayFor(room, []string{relays[1], relays[0]}), "bob", WithRoom(room))
		if err := alice.Send(ctxT(t), "hi "+room); err != nil {
			t.Fatal(err)
		}
		expect(t, bob, KindJoin, "bob", "")
		expect(t, bob, KindChat, "alice", "hi "+room)
	}
	if len(want[r1]) == 0 || len(want[r2]) == 0 {
		t.Fatalf("rooms %v all on one relay", want)
	}
	for r, rs := range want {
		var got []string
		for _, ri := range r.Rooms() {
			if ri.Members != 2 {
				t.Errorf("room %q has %d members", ri.Name, ri.Members)
			}
			got = append(got, ri.Name)
		}
		if slices.Sort(rs); !slices.Equal(got, rs) { // Rooms sorts by name
			t.Errorf("relay %s holds rooms %v, want %v", r.Addr(), got, rs)
		}
	}
}
