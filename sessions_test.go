package udpchat

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// The session table, without sockets: after any run of adds, removes and
// moves, its three views agree.
func TestSessionTable(t *testing.T) {
	tab := &sessionTable{}
	rng := rand.New(rand.NewPCG(1, 2))
	in := map[string]*relayMember{}
	for i := range 2000 {
		switch {
		case len(in) > 0 && rng.IntN(4) == 0:
			for _, m := range in { // any one
				tab.remove(m)
				delete(in, m.name)
				break
			}
		case len(in) > 0 && rng.IntN(4) == 0:
			for _, m := range in { // any one, to a new address
				tab.move(m, udpPath{remote: netip.AddrPortFrom(netip.MustParseAddr("::1"), uint16(i+1)), local: netip.MustParseAddr("::1")})
				break
			}
		default:
			name := fmt.Sprintf("m%d", rng.IntN(500))
			if in[name] != nil {
				continue
			}
			m := &relayMember{name: name, session: uint64(i + 1), path: udpPath{remote: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(i+1))}}
			tab.add(m)
			in[name] = m
		}
		if tab.len() != len(in) || len(tab.byName) != len(in) || len(tab.dsts) != len(in) || len(tab.names) != len(in) {
			t.Fatalf("step %d: sizes %d %d %d %d, want %d", i, tab.len(), len(tab.byName), len(tab.dsts), len(tab.names), len(in))
		}
	}
	if !slices.IsSorted(tab.names) {
		t.Fatal("names not sorted")
	}
	for i, m := range tab.list {
		if m.idx != i || tab.dsts[i] != m.path || tab.byName[m.name] != m || in[m.name] != m {
			t.Fatalf("list[%d] = %s disagrees with the other views", i, m.name)
		}
	}
	for _, n := range tab.names {
		if in[n] == nil {
			t.Fatalf("names lists %s, who left", n)
		}
	}
	if len(tab.names) > 1 {
		if got := tab.namesAfter(tab.names[0]); !slices.Equal(got, tab.names[1:]) {
			t.Fatalf("namesAfter(first) = %v", got)
		}
		if got := tab.namesAfter(""); !slices.Equal(got, tab.names) {
			t.Fatalf("namesAfter(\"\") = %v", got)
		}
	}
}
