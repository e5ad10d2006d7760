package udpchat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Rejoins and one order: a member that comes back with a new session
// resends the chats it keeps, and no member may see them twice or see a
// Seq skipped.

// carol's chats reach everyone; she is cut off and expired; dave joins
// while she is away; she comes back to the same relay and resends what her
// outbox keeps. The relay confirms those instead of sequencing them again,
// so alice sees consecutive Seqs, dave never receives carol's old chats,
// and from dave's join on alice and dave hold the same conversation.
func TestExpiredRejoinKeepsOneOrder(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 16)
	for _, tc := range []struct {
		name string
		opts []Option
		link impairment
	}{
		{"protocol", nil, impairment{}},
		{"key", []Option{WithKey(key)}, impairment{}},
		{"lossy", nil, lossy},
		{"lossy key", []Option{WithKey(key)}, lossy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Two heartbeats or more pass before a sender may forget a
			// chat: carol is cut off well before that.
			r := startRelay(t, append([]Option{WithHeartbeat(100 * time.Millisecond), WithExpiry(300 * time.Millisecond), WithRateLimit(0, 0)}, tc.opts...)...)
			px := newLossyProxy(t, r.Addr(), 12, tc.link, tc.link)
			alice := join(t, r, "alice", tc.opts...)
			carol := joinAt(t, px.Addr(), "carol", tc.opts...)
			for i := range 3 {
				if err := carol.Send(ctxT(t), fmt.Sprint("carol-", i)); err != nil {
					t.Fatal(err)
				}
			}
			px.blackout.Store(true)
			waitFor(t, func() bool { return r.Stats().Expired >= 1 }, "the relay to expire carol")
			dave := join(t, r, "dave", tc.opts...)
			px.blackout.Store(false)
			waitFor(t, func() bool { return carol.Stats().Rejoins >= 1 }, "carol to rejoin")
			for _, m := range []*Member{carol, alice} {
				if err := m.Send(ctxT(t), m.Name()+"-after"); err != nil {
					t.Fatal(err)
				}
			}
			logs := map[string][]Message{}
			for _, m := range []*Member{alice, dave, carol} {
				logs[m.Name()] = receiveUntil(t, m, "carol-after", "alice-after")
			}
			for name, log := range logs {
				checkConsecutive(t, name, log)
			}
			if got := linkNews(logs["carol"]); got != "lost: the relay went silent, rejoined: same relay" {
				t.Errorf("carol was told %q of her link", got)
			}
			for _, msg := range logs["dave"] {
				if msg.From == "carol" && msg.Kind == KindChat && msg.Text != "carol-after" {
					t.Errorf("dave, who joined later, received carol's %q at Seq %d", msg.Text, msg.Seq)
				}
			}
			sameConversation(t, logs["alice"], logs["dave"])
			if s := r.Stats(); s.DroppedDuplicate == 0 {
				t.Errorf("carol resent nothing to the relay (stats %+v): the test did not reach its case", s)
			}
		})
	}
}

// checkConsecutive checks that the numbered messages of a log have
// consecutive Seqs, but for those each says it skipped.
func checkConsecutive(t *testing.T, name string, log []Message) {
	t.Helper()
	var last uint64
	for _, msg := range log {
		if msg.Seq == 0 {
			continue
		}
		if last != 0 && msg.Seq != last+1+msg.Skipped {
			t.Errorf("%s: Seq %d follows %d\n%s", name, msg.Seq, last, showLog(log))
		}
		last = msg.Seq
	}
}

// linkNews lists a log's KindLost and KindRejoined messages.
func linkNews(log []Message) string {
	var s []string
	for _, msg := range log {
		if msg.Kind == KindLost || msg.Kind == KindRejoined {
			s = append(s, msg.Kind.String()+": "+msg.Text)
		}
	}
	return strings.Join(s, ", ")
}

// receiveUntil receives until every one of texts has arrived as a chat.
func receiveUntil(t *testing.T, m *Member, texts ...string) []Message {
	t.Helper()
	want := map[string]bool{}
	for _, s := range texts {
		want[s] = true
	}
	var log []Message
	for len(want) > 0 {
		msg, err := m.Receive(ctxT(t))
		if err != nil {
			t.Fatalf("%s: Receive: %v\n%s", m.Name(), err, showLog(log))
		}
		log = append(log, msg)
		if msg.Kind == KindChat {
			delete(want, msg.Text)
		}
	}
	return log
}

// sameConversation checks that two members hold the same message at every
// Seq both received.
func sameConversation(t *testing.T, a, b []Message) {
	t.Helper()
	at := map[uint64]Message{}
	for _, msg := range a {
		at[msg.Seq] = msg
	}
	for _, msg := range b {
		if o, ok := at[msg.Seq]; ok && (o.Kind != msg.Kind || o.From != msg.From || o.Text != msg.Text) {
			t.Errorf("Seq %d: %v %s %q against %v %s %q", msg.Seq, o.Kind, o.From, o.Text, msg.Kind, msg.From, msg.Text)
		}
	}
}

func showLog(log []Message) string {
	var b bytes.Buffer
	for _, msg := range log {
		fmt.Fprintf(&b, "  %d (+%d) %v %s %q\n", msg.Seq, msg.Skipped, msg.Kind, msg.From, msg.Text)
	}
	return b.String()
}

// The relay sequences alice's chat but she never hears so and is expired;
// she rejoins the same relay with a new session and sends it again. Her
// origin (epoch, member seq) makes everyone take it once, and her Send
// still succeeds.
func TestNoDuplicateAfterExpiryRejoin(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")

	sent := expireWhileDeaf(t, r, alice, bob, "once")
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
	expect(t, bob, KindJoin, "alice", "")
	if err := alice.Send(ctxT(t), "twice?"); err != nil {
		t.Fatal(err)
	}
	for {
		msg := recv(t, bob)
		if msg.Text == "once" {
			t.Fatalf("bob received alice's message again at seq %d", msg.Seq)
		}
		if msg.Text == "twice?" {
			break
		}
	}
}

// A member that lags behind what the relay's history holds when the relay
// crashes: what senders no longer keep is reported as a GapError, never
// dropped silently, and what they keep arrives.
func TestRestartLaggardGetsGap(t *testing.T) {
	opts := []Option{WithHeartbeat(20 * time.Millisecond), WithExpiry(200 * time.Millisecond), WithHistory(128), WithRateLimit(0, 0)}
	rr := restartable{opts: opts}
	rr.startRelayAt(t, "127.0.0.1:0")
	alice := join(t, rr.relay, "alice")
	bob := join(t, rr.relay, "bob", WithQueueSize(8)) // does not Receive for now
	const count = 300
	for i := range count {
		if err := alice.Send(ctxT(t), strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		alice.mu.Lock()
		defer alice.mu.Unlock()
		return alice.out.prunable > 128 // she forgot chats bob lacks
	}, "the stable seq to pass the history")
	rr.stopRelay(true) // crash
	startRelay(t, append(opts, WithAddr(rr.addr))...)

	got := map[int]bool{}
	lost := 0
	for !got[count-1] {
		msg, err := bob.Receive(ctxT(t))
		var g *GapError
		switch {
		case errors.As(err, &g):
			lost += int(g.Last - g.First + 1)
			continue
		case err != nil:
			t.Fatalf("bob: %v after %d chats", err, len(got))
		}
		if msg.Kind == KindChat {
			n, _ := strconv.Atoi(msg.Text)
			if got[n] {
				t.Fatalf("bob got %d twice", n)
			}
			got[n] = true
		}
	}
	if len(got)+lost < count {
		t.Errorf("bob got %d chats and was told of %d lost: %d of %d missing without notice", len(got), lost, count-len(got)-lost, count)
	}
}

// An outage longer than the expiry under 20% loss: members are expired,
// rejoin the same relay with new sessions, and can all still send.
func TestLossyExpiryRejoin(t *testing.T) {
	r := startRelay(t, WithHeartbeat(50*time.Millisecond), WithExpiry(300*time.Millisecond), WithHistory(4096), WithRateLimit(0, 0))
	px := newLossyProxy(t, r.Addr(), 21, lossy, lossy)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ms []*Member
	for i := range 3 {
		m, err := Join(ctx, "m"+strconv.Itoa(i), WithAddr(px.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		ms = append(ms, m)
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		for k := range 100 {
			wg.Go(func() {
				if err := m.Send(ctx, strconv.Itoa(k)); err != nil {
					t.Errorf("%s Send %d: %v", m.Name(), k, err)
				}
			})
		}
	}
	waitFor(t, func() bool { return ms[0].Stats().Sent >= 30 }, "some chats to go through")
	px.blackout.Store(true)
	waitFor(t, func() bool { return r.Stats().Expired >= 3 }, "the relay to expire everyone")
	px.blackout.Store(false)
	wg.Wait()
	for _, m := range ms {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.Send(c, "after"); err != nil {
			t.Errorf("%s: Send after the outage: %v", m.Name(), err)
		}
		cancel()
	}
}

// expireWhileDeaf makes alice deaf to the relay (as if all it sends her were
// lost), has her send text, waits for bob to get it, and has the relay
// expire her. She does not know the relay sequenced her chat; her Send's
// answer comes on the channel once she has rejoined.
func expireWhileDeaf(t *testing.T, r *Relay, alice, bob *Member, text string) <-chan error {
	t.Helper()
	alice.mu.Lock()
	alice.mode.(*memberSession).rejoin(time.Now(), "test: deaf to the relay") // drops what the relay says until welcomed
	alice.mu.Unlock()
	sent := make(chan error, 1)
	go func() { sent <- alice.Send(ctxT(t), text) }()
	expect(t, bob, KindChat, alice.Name(), text)
	r.mu.Lock()
	r.stats.Expired++
	r.proto().remove(r.proto().main().byName[alice.Name()], time.Now())
	r.q.flush()
	r.mu.Unlock()
	expect(t, bob, KindLeave, alice.Name(), "")
	return sent
}

// Across a relay restart a member is told it lost the relay and rejoined a
// new one; the members who come back produce no join, and one who does
// not come back within the expiry span is reported as left.
func TestRestartPresence(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill bool
		lost string
	}{
		{"closed", false, "the relay said goodbye"},
		{"killed", true, ""}, // silence, or the new relay's BYE, whichever comes first
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The expiry span is also how long alice, back first, waits for
			// bob: 200ms was once not enough under -race on a loaded
			// machine, and she reported him gone.
			opts := []Option{WithHeartbeat(20 * time.Millisecond), WithExpiry(600 * time.Millisecond)}
			rr := restartable{opts: opts}
			rr.startRelayAt(t, "127.0.0.1:0")
			alice := join(t, rr.relay, "alice")
			bob := join(t, rr.relay, "bob")
			carol := join(t, rr.relay, "carol")
			expect(t, alice, KindJoin, "alice", "")
			expect(t, alice, KindJoin, "bob", "")
			expect(t, alice, KindJoin, "carol", "")

			rr.stopRelay(tc.kill)
			carol.Close() // gone with the old relay: she never comes back
			r2 := startRelay(t, append(opts, WithAddr(rr.addr))...)
			waitFor(t, func() bool { return names(r2.Members()) == "alice,bob" }, "alice and bob to rejoin")
			if err := bob.Send(ctxT(t), "back"); err != nil {
				t.Fatal(err)
			}

			var log []Message
			for {
				msg := recv(t, alice)
				log = append(log, msg)
				if msg.Kind == KindLeave && msg.From == "carol" {
					break
				}
			}
			var news []string
			for _, msg := range log {
				switch {
				case msg.Kind == KindJoin:
					t.Errorf("alice was told %s joined at Seq %d: back from before the restart, no news", msg.From, msg.Seq)
				case msg.Seq == 0:
					news = append(news, msg.Kind.String()+" "+msg.From+" "+msg.Text)
				}
			}
			want := []string{"lost  " + tc.lost, "rejoined  new relay", "leave carol "}
			if len(news) != 3 || (tc.lost != "" && news[0] != want[0]) || !strings.HasPrefix(news[0], "lost  the relay ") || news[1] != want[1] || news[2] != want[2] {
				t.Errorf("alice's news: %q, want %q\n%s", news, want, showLog(log))
			}
			// Seq starts anew after the restart; the returners' joins, not
			// delivered, leave their Seqs out (see doc.go).
			if got := names(alice.Members()); got != "alice,bob" {
				t.Errorf("alice's roster after the span: %s", got)
			}
		})
	}
}

// A member that joins a restarted relay before the old members come back
// is told of each of them when they do (the others, who still list them,
// are not), and lists them.
func TestRestartLateReturnersAnnounced(t *testing.T) {
	opts := []Option{WithHeartbeat(20 * time.Millisecond), WithExpiry(200 * time.Millisecond)}
	rr := restartable{opts: opts}
	rr.startRelayAt(t, "127.0.0.1:0")
	px := newLossyProxy(t, rr.relay.Addr(), 3, impairment{}, impairment{})
	alice := joinAt(t, px.Addr(), "alice")
	bob := joinAt(t, px.Addr(), "bob")
	expect(t, alice, KindJoin, "alice", "")
	expect(t, alice, KindJoin, "bob", "")

	px.blackout.Store(true) // alice and bob hear nothing of what follows
	rr.stopRelay(true)
	r2 := startRelay(t, append(opts, WithAddr(rr.addr))...)
	dave := join(t, r2, "dave")
	expect(t, dave, KindJoin, "dave", "")
	px.blackout.Store(false)
	waitFor(t, func() bool { return names(r2.Members()) == "alice,bob,dave" }, "alice and bob to come back")

	back := map[string]bool{}
	for len(back) < 2 {
		msg := recv(t, dave)
		if msg.Kind != KindJoin || (msg.From != "alice" && msg.From != "bob") {
			t.Fatalf("dave received %v %s %q, want the joins of alice and bob", msg.Kind, msg.From, msg.Text)
		}
		back[msg.From] = true
	}
	waitFor(t, func() bool { return names(dave.Members()) == "alice,bob,dave" }, "dave to list everyone")
	if err := bob.Send(ctxT(t), "we are back"); err != nil {
		t.Fatal(err)
	}
	for {
		msg := recv(t, alice)
		if msg.Kind == KindJoin && msg.From != "dave" {
			t.Fatalf("alice was told %s joined: she lists %s from before the restart", msg.From, msg.From)
		}
		if msg.Kind == KindChat && msg.Text == "we are back" {
			break
		}
	}
	waitFor(t, func() bool { return names(alice.Members()) == "alice,bob,dave" }, "alice to list everyone")
}
