package udpchat

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Across a relay restart, the chats a sender resends reach only the
// members that lacked them at the old relay: the others, and members who
// joined the new relay, are sent a SKIP of their seq. So every member's
// Seqs run on without a hole within each incarnation, and no two members
// hold different messages at one Seq.

// A relay restart in the middle of a conversation: alice's three chats
// reached alice and bob, but carol's link dropped the last one. The relay
// is closed (or killed) and a new one started; dave joins it before alice
// is back. alice rejoins and resends the three, which her outbox still
// keeps: carol gets the one she lacked, in the new relay's order; alice,
// bob and dave get SKIPs. Without and with a key, and over a lossy link.
func TestRestartResendsReachOnlyWhoLacks(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 16)
	for _, tc := range []struct {
		name string
		opts []Option
		link impairment
		kill bool
	}{
		{"closed", nil, impairment{}, false},
		{"killed", nil, impairment{}, true},
		{"key", []Option{WithKey(key)}, impairment{}, false},
		{"lossy", nil, lossy, false},
		{"lossy key", []Option{WithKey(key)}, lossy, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Heartbeats of a second: the chats stay in alice's outbox
			// (not every member has reported them) until well after the
			// restart. The test checks that it reached that case.
			opts := append([]Option{WithHeartbeat(time.Second), WithExpiry(3 * time.Second), WithRateLimit(0, 0)}, tc.opts...)
			rr := restartable{opts: opts}
			rr.startRelayAt(t, "127.0.0.1:0")
			alicePx := newLossyProxy(t, rr.relay.Addr(), 31, tc.link, tc.link)
			carolPx := newLossyProxy(t, rr.relay.Addr(), 32, tc.link, tc.link)
			if len(tc.opts) > 0 { // the key: the filter reads what it opens
				carolPx.keys, _ = newKeyring([][]byte{key})
			}
			alice := joinAt(t, alicePx.Addr(), "alice", tc.opts...)
			bob := join(t, rr.relay, "bob", tc.opts...)
			carol := joinAt(t, carolPx.Addr(), "carol", tc.opts...)
			logs := map[*Member][]Message{}
			for _, m := range []*Member{alice, bob, carol} {
				logs[m] = receiveUntilJoin(t, m, "carol")
			}
			// carol's link loses every copy of the last chat.
			carolPx.setFilter(func(up bool, p *packet) bool {
				return !up && p.typ == tDeliver && string(p.text) == "before-2"
			})
			for i := range 3 {
				if err := alice.Send(ctxT(t), fmt.Sprint("before-", i)); err != nil {
					t.Fatal(err)
				}
			}
			for _, m := range []*Member{alice, bob} {
				logs[m] = append(logs[m], receiveUntil(t, m, "before-2")...)
			}
			logs[carol] = append(logs[carol], receiveUntil(t, carol, "before-1")...)
			alice.mu.Lock()
			kept := len(alice.out.chats)
			alice.mu.Unlock()
			if kept != 3 {
				t.Fatalf("alice's outbox keeps %d chats at the restart, want 3: the test did not reach its case", kept)
			}

			alicePx.blackout.Store(true) // alice comes back after dave joined
			rr.stopRelay(tc.kill)
			carolPx.setFilter(func(bool, *packet) bool { return false })
			r2 := startRelay(t, append(opts, WithAddr(rr.addr))...)
			dave := join(t, r2, "dave", tc.opts...)
			waitFor(t, func() bool { return names(r2.Members()) == "bob,carol,dave" }, "bob and carol to rejoin")
			alicePx.blackout.Store(false)
			waitFor(t, func() bool { return names(r2.Members()) == "alice,bob,carol,dave" }, "alice to rejoin")
			r2.mu.Lock()
			inc := r2.proto().byRoom[""].inc
			r2.mu.Unlock()
			waitFor(t, func() bool {
				alice.mu.Lock()
				defer alice.mu.Unlock()
				for _, c := range alice.out.chats {
					if !c.confirmed || c.was.inc != inc {
						return false
					}
				}
				return len(alice.out.chats) == 3
			}, "the new relay to take alice's resends")
			if err := bob.Send(ctxT(t), "after"); err != nil {
				t.Fatal(err)
			}
			for _, m := range []*Member{alice, bob, carol, dave} {
				logs[m] = append(logs[m], receiveUntil(t, m, "after")...)
			}

			for m, log := range logs {
				checkConsecutiveEach(t, m.Name(), log)
			}
			wantResent := map[*Member]string{alice: "", bob: "", carol: "before-2", dave: ""}
			for m, want := range wantResent {
				if got := strings.Join(textsAfterRestart(logs[m], "before-"), ","); got != want {
					t.Errorf("%s received %q from alice's resends after the restart, want %q\n%s", m.Name(), got, want, showLog(logs[m]))
				}
			}
			all := []*Member{alice, bob, carol, dave}
			for i, a := range all {
				for _, b := range all[i+1:] {
					sameConversation(t, afterRestart(logs[a]), afterRestart(logs[b]))
				}
			}
		})
	}
}

// receiveUntilJoin receives until the join of name.
func receiveUntilJoin(t *testing.T, m *Member, name string) []Message {
	t.Helper()
	var log []Message
	for {
		msg := recv(t, m)
		log = append(log, msg)
		if msg.Kind == KindJoin && msg.From == name {
			return log
		}
	}
}

// checkConsecutiveEach checks that Seqs run on one by one within each
// incarnation: a KindRejoined "new relay" starts a new one.
func checkConsecutiveEach(t *testing.T, name string, log []Message) {
	t.Helper()
	start := 0
	for i, msg := range log {
		if msg.Kind == KindRejoined {
			checkConsecutive(t, name, log[start:i])
			start = i + 1
		}
	}
	checkConsecutive(t, name, log[start:])
}

// afterRestart returns what a log holds after its KindRejoined (all of it
// for a member that joined the new relay).
func afterRestart(log []Message) []Message {
	for i, msg := range log {
		if msg.Kind == KindRejoined {
			return log[i+1:]
		}
	}
	return log
}

// textsAfterRestart lists the chats after the restart whose text begins
// with prefix.
func textsAfterRestart(log []Message, prefix string) []string {
	var out []string
	for _, msg := range afterRestart(log) {
		if msg.Kind == KindChat && strings.HasPrefix(msg.Text, prefix) {
			out = append(out, msg.Text)
		}
	}
	return out
}
