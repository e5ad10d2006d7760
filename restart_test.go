package udpchat

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
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

			// The old relay's copies of the chat may still be on their way
			// through carol's proxy after it stops (a repair answering
			// her NACK): they stay dropped, the new relay's pass (its seq
			// for the chat comes after dave's join, alice's and the other
			// resends: it is not the old one).
			var oldSeq uint64
			for _, msg := range logs[alice] {
				if msg.Text == "before-2" {
					oldSeq = msg.Seq
				}
			}
			carolPx.setFilter(func(up bool, p *packet) bool {
				return !up && p.typ == tDeliver && string(p.text) == "before-2" && p.seq == oldSeq
			})
			alicePx.blackout.Store(true) // alice comes back after dave joined
			rr.stopRelay(tc.kill)
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

// welcomeOf sends a JOIN with the cookie the relay gives from, and returns
// the WELCOME it answers with. r.mu is held; w is the relay's writer.
func welcomeOf(t *testing.T, r *Relay, w *fakeWriter, from netip.AddrPort, nonce, prevSession, prevInc, epoch, prevNext uint64, name, room string, now time.Time) packet {
	t.Helper()
	_, c := r.proto().cookies.check(&[cookieLen]byte{}, from, nonce, now)
	w.sent = nil
	r.handleAt(appendJoin(nil, prevSession, nonce, prevInc, epoch, 1, prevNext, &c, name, room), from, now)
	r.q.flush()
	for _, s := range w.sent {
		var p packet
		if s.to.remote == from && decode(s.b, &p) == nil && p.typ == tWelcome && p.nonce == nonce {
			return p
		}
	}
	t.Fatalf("no WELCOME for %s", name)
	return packet{}
}

// Both members of a room expire and the room empties; bob, who lacked
// alice's chat, opens it again, and alice comes back and resends it. It is
// a chat of the old incarnation, and bob gets it: what the relay
// remembers of alice's departure belongs to that incarnation, not to the
// new one.
func TestResendIntoReopenedRoom(t *testing.T) {
	r, w := idleRelay(t)
	now := time.Now()
	aliceAt, bobAt := netip.MustParseAddrPort("127.0.0.1:40011"), netip.MustParseAddrPort("127.0.0.1:40012")
	a := welcomeOf(t, r, w, aliceAt, 1, 0, 0, 111, 0, "alice", "ops", now)
	b := welcomeOf(t, r, w, bobAt, 2, 0, 0, 222, 0, "bob", "ops", now)
	r.handleAt(appendChat(nil, a.session, 1, seqAt{}, "", "lost to bob"), aliceAt, now) // seq 3
	r.q.flush()
	later := now.Add(time.Minute)
	r.mode.sweep(later)
	r.q.flush()
	if len(r.mode.rooms()) != 0 {
		t.Fatalf("rooms %v after both expired", r.mode.rooms())
	}
	// bob lacked seq 3 of the old incarnation; alice had everything.
	welcomeOf(t, r, w, bobAt, 3, b.session, a.id, 222, 3, "bob", "ops", later)
	a2 := welcomeOf(t, r, w, aliceAt, 4, a.session, a.id, 111, 4, "alice", "ops", later)
	if a2.id == a.id {
		t.Fatal("the room kept its incarnation")
	}
	w.sent = nil
	r.handleAt(appendChat(nil, a2.session, 1, seqAt{a.id, 3}, "", "lost to bob"), aliceAt, later)
	r.proto().batchDone(later)
	r.q.flush()
	for _, s := range w.sent {
		var p packet
		if s.to.remote == bobAt && decode(s.b, &p) == nil && p.typ == tDeliver && string(p.text) == "lost to bob" {
			return
		}
	}
	t.Fatalf("bob, who lacked alice's chat before the room emptied, never gets it: %d datagrams sent", len(w.sent))
}

// With a key, a lost SKIP's repair is sealed anew: carol's replay window,
// moved on meanwhile by the relay's later control datagrams, takes it.
func TestRepairedSkipWithKey(t *testing.T) {
	opts := []Option{WithKey(key1)}
	r := startRelay(t, append(opts, WithRateLimit(0, 0), WithHeartbeat(50*time.Millisecond))...)
	px := newLossyProxy(t, r.Addr(), 3, impairment{}, impairment{})
	px.keys = r.cfg.keys
	var dropped atomic.Bool
	px.setFilter(func(up bool, p *packet) bool {
		return !up && p.typ == tSkip && dropped.CompareAndSwap(false, true)
	})
	ops := append(opts, WithRoom("ops"))
	alice := join(t, r, "alice", ops...)
	join(t, r, "bob", ops...)
	carol := joinAt(t, px.Addr(), "carol", ops...)
	dave := join(t, r, "dave", append(opts, WithRoom("busy"))...)
	expect(t, carol, KindJoin, "carol", "")
	ctx := ctxT(t)
	if err := alice.SendTo(ctx, "bob", "psst"); err != nil {
		t.Fatal(err)
	}
	newest := func() uint64 {
		carol.mu.Lock()
		defer carol.mu.Unlock()
		return carol.mode.(*memberSession).relayReplay.newest
	}
	before := newest()
	for i := range 2 * replayWindow { // the relay seals for the other room
		if err := dave.Send(ctx, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return newest() > before+2*replayWindow }, "a STATUS to carol sealed after the other room's traffic")
	if err := alice.Send(ctx, "pub"); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, carol); m.Text != "pub" || m.Skipped != 1 || !dropped.Load() {
		t.Fatalf("carol received %+v (a SKIP dropped: %v), want pub after one skipped seq", m, dropped.Load())
	}
}

// A private message bob lacked when the relay died: alice rejoins the new
// relay first and resends it while bob is not back. It waits for him (the
// room's first expiry span), and reaches him once he is.
func TestResentPrivateWaitsForRecipient(t *testing.T) {
	opts := []Option{WithHeartbeat(time.Second), WithExpiry(3 * time.Second), WithRateLimit(0, 0)}
	rr := restartable{opts: opts}
	rr.startRelayAt(t, "127.0.0.1:0")
	bobPx := newLossyProxy(t, rr.relay.Addr(), 41, impairment{}, impairment{})
	alice := join(t, rr.relay, "alice")
	bob := joinAt(t, bobPx.Addr(), "bob")
	expect(t, alice, KindJoin, "alice", "")
	expect(t, alice, KindJoin, "bob", "")
	expect(t, bob, KindJoin, "bob", "")
	bobPx.setFilter(func(up bool, p *packet) bool { return !up && p.typ == tDeliver && p.kind == KindPrivate })
	if err := alice.SendTo(ctxT(t), "bob", "psst"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, KindPrivate, "alice", "psst")
	bobPx.blackout.Store(true)
	rr.stopRelay(false)
	bobPx.setFilter(func(bool, *packet) bool { return false })
	r2 := startRelay(t, append(opts, WithAddr(rr.addr))...)
	waitFor(t, func() bool { return names(r2.Members()) == "alice" }, "alice to rejoin")
	// Sent again at the welcome, and again for want of an answer: the
	// relay holds it rather than refusing it.
	waitFor(t, func() bool { return alice.Stats().Retransmitted >= 2 }, "alice's resend to wait at the new relay")
	bobPx.blackout.Store(false)
	for {
		msg := recv(t, bob)
		if msg.Kind == KindPrivate {
			if msg.From != "alice" || msg.To != "bob" || msg.Text != "psst" {
				t.Fatalf("bob got %+v", msg)
			}
			break
		}
	}
	if s := r2.Stats(); s.DroppedRejected != 0 {
		t.Errorf("the new relay refused %d chats", s.DroppedRejected)
	}
}
