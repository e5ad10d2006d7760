package udpchat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestRoomSettle works out stable and prunable from progress reports, and
// tells members that report nothing where stable is: each on its own, or,
// in a room with a group, all with one datagram to the group.
func TestRoomSettle(t *testing.T) {
	group := udpPath{remote: netip.MustParseAddrPort("127.255.255.255:2411")}
	for _, tc := range []struct {
		name  string
		group udpPath
	}{{"unicast", udpPath{}}, {"broadcast", group}} {
		t.Run(tc.name, func(t *testing.T) {
			rm := newRoom("", 64, 128, tc.group, time.Now())
			alice := &relayMember{name: "alice", room: rm}
			bob := &relayMember{name: "bob", room: rm}
			rm.members.add(alice)
			rm.members.add(bob)
			var told []string
			groupTold := 0
			var heard [2]uint64 // stable and prunable, as the group was told them
			tell := func(m *relayMember) { told = append(told, m.name) }
			tellGroup := func(r *room) {
				if r != rm {
					t.Fatalf("tellGroup of another room")
				}
				groupTold++
				heard = [2]uint64{r.stable, r.prunable}
			}
			for range 40 {
				rm.hist.next()
			}
			// History holds 64, so a step is 8 seqs: a member is told when
			// what it knows is 16 behind stable.
			alice.progress, alice.knows = 40, 25
			bob.progress, bob.knows = 30, 25
			rm.settle(tell, tellGroup)
			if rm.stable != 30 || rm.prunable != 0 || len(told) != 0 || groupTold != 0 {
				t.Fatalf("stable %d, prunable %d, told %v and the group %d times; want 30, 0, no one", rm.stable, rm.prunable, told, groupTold)
			}
			// Nobody reports for a while: history drops what bob lacks, and
			// stable moves on without him, to what history still holds.
			for range 100 {
				rm.hist.next()
			}
			rm.settle(tell, tellGroup)
			if rm.stable != 76 || len(told) != 0 || groupTold != 0 {
				t.Fatalf("stable %d, told %v and the group %d times; want 76, no one yet", rm.stable, told, groupTold)
			}
			// Now both know 25, 51 behind: tell them.
			rm.settle(tell, tellGroup)
			want, wantGroup := 2, 0
			if tc.group.remote.IsValid() {
				want, wantGroup = 0, 1
			}
			if len(told) != want || groupTold != wantGroup {
				t.Fatalf("told %v and the group %d times; want %d members, the group %d times", told, groupTold, want, wantGroup)
			}
			if tc.group.remote.IsValid() {
				// The group hears what settle worked out, not what it found.
				if heard != [2]uint64{rm.stable, rm.prunable} || rm.toldGroup != 76 {
					t.Errorf("the group heard stable and prunable %v, mark %d; want [%d %d], 76", heard, rm.toldGroup, rm.stable, rm.prunable)
				}
			} else if alice.told != 76 || bob.told != 76 {
				t.Errorf("told marks %d, %d; want 76", alice.told, bob.told)
			}
			// Told once, they are not told again until stable moves on by
			// two steps more.
			rm.settle(tell, tellGroup)
			if len(told) != want || groupTold != wantGroup {
				t.Errorf("told again: %v, the group %d times", told, groupTold)
			}
			// Their answers let senders forget.
			alice.progress, alice.knows = rm.hist.seq, rm.stable
			bob.progress, bob.knows = rm.hist.seq, rm.stable
			rm.settle(tell, tellGroup)
			if rm.stable != 140 || rm.prunable != 76 {
				t.Errorf("stable %d, prunable %d; want 140, 76", rm.stable, rm.prunable)
			}
		})
	}
}

// TestBroadcastTellsSlowMembersThroughTheGroup has a sender go on far past
// its outbox's bound while another member's application takes nothing. In
// broadcast the relay tells that member where stable is through the group
// (one STABLE for all), and its answer lets the sender forget. Heartbeats
// are an hour apart: nothing else makes bob report.
func TestBroadcastTellsSlowMembersThroughTheGroup(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []Option
	}{{"plain", nil}, {"key", []Option{WithKey(key1)}}} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			tap := tapGroup(t, port, tc.key != nil)
			r := startRelay(t, append([]Option{WithHistory(128), WithRateLimit(0, 0), WithHeartbeat(time.Hour), WithExpiry(2 * time.Hour),
				WithBroadcast(fmt.Sprintf("127.255.255.255:%d", port))}, tc.key...)...)
			alice := join(t, r, "alice", append([]Option{WithQueueSize(1024)}, tc.key...)...)
			bob := join(t, r, "bob", append([]Option{WithQueueSize(8)}, tc.key...)...)
			const n = 900 // the outbox holds 2 x 128 + 64
			ctx := ctxT(t)
			for i := range n {
				if err := alice.Send(ctx, fmt.Sprint(i)); err != nil {
					t.Fatalf("Send %d: %v; bob: %+v, relay: %+v", i, err, bob.Stats(), r.Stats())
				}
			}
			select {
			case <-tap.stable:
			case <-ctx.Done():
				t.Errorf("no STABLE reached the group")
			}
			// bob lost what history dropped, and says so.
			expect(t, bob, KindJoin, "bob", "")
			var gap *GapError
			for {
				if _, err := bob.Receive(ctx); errors.As(err, &gap) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// A groupTap watches a broadcast group's port, as one more listener of
// this host: stable closes when the first STABLE reaches it.
type groupTap struct {
	stable chan struct{}
	once   sync.Once
}

func tapGroup(t *testing.T, port int, sealed bool) *groupTap {
	t.Helper()
	lc := net.ListenConfig{Control: controlShared}
	c, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	var keys *keyring
	if sealed {
		if keys, err = newKeyring([][]byte{key1}); err != nil {
			t.Fatal(err)
		}
	}
	g := &groupTap{stable: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 2048)
		for {
			n, _, err := c.ReadFrom(b)
			if err != nil {
				return
			}
			plain := b[:n]
			if keys != nil {
				if plain, _, _, err = keys.open(make([]byte, n), b[:n]); err != nil {
					continue
				}
			}
			var p packet
			if decode(plain, &p) == nil && p.typ == tStable {
				g.once.Do(func() { close(g.stable) })
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return g
}
