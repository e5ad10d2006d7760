package udpchat

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// Tests of the outbox alone: no sockets, time passed in.

// testOutbox returns an outbox holding n chats, as Send adds them; the
// first sendWindow have a waiting Send (the rest have been answered).
func testOutbox(t *testing.T, history, n int) *outbox {
	t.Helper()
	o := newOutbox()
	o.history = history
	for i := range n {
		c := &pendingChat{text: "x", rto: rtoMin}
		if i < sendWindow {
			o.window <- struct{}{}
			c.done = make(chan error, 1)
		}
		o.add(c)
	}
	return &o
}

func mseqs(cs []*pendingChat) []uint64 {
	var out []uint64
	for _, c := range cs {
		out = append(out, c.mseq)
	}
	return out
}

func TestOutboxAdd(t *testing.T) {
	o := testOutbox(t, 10, 0)
	if o.first() != 1 {
		t.Errorf("first of an empty outbox = %d, want 1", o.first())
	}
	for i := 1; i <= sendWindow+1; i++ {
		now := o.add(&pendingChat{})
		if want := i <= sendWindow; now != want {
			t.Errorf("chat %d: send at once = %v, want %v", i, now, want)
		}
	}
	// Confirming the second lets the chat sendWindow places after it go.
	o.ack(2, 2, time.Now())
	if !o.add(&pendingChat{}) {
		t.Error("chat sendWindow+2 waits, though the chat sendWindow back is confirmed")
	}
	if o.first() != 1 || o.mseq != sendWindow+2 {
		t.Errorf("first %d, mseq %d; want 1, %d", o.first(), o.mseq, sendWindow+2)
	}
}

func TestOutboxCap(t *testing.T) {
	for _, history := range []int{0, 1, 100} {
		o := testOutbox(t, history, 0)
		want := 2*history + sendWindow
		if o.cap() != want {
			t.Errorf("history %d: cap %d, want %d", history, o.cap(), want)
		}
		for range want {
			if o.full() {
				t.Fatalf("history %d: full at %d chats", history, len(o.chats))
			}
			o.add(&pendingChat{})
		}
		if !o.full() {
			t.Errorf("history %d: not full at %d chats", history, len(o.chats))
		}
	}
}

func TestOutboxAckPrune(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name             string
		ack, bound       uint64 // ack up to mseq, at seqs up to bound
		stable, prunable uint64 // heard from the relay afterwards
		answered         int
		kept             []uint64
	}{
		{"nothing", 0, 0, 0, 0, 0, []uint64{1, 2, 3, 4}},
		{"confirmed, not stable", 2, 20, 100, 19, 2, []uint64{1, 2, 3, 4}},
		{"confirmed and prunable", 2, 20, 100, 20, 2, []uint64{3, 4}},
		{"prunable capped by stable", 4, 20, 19, 50, 4, []uint64{1, 2, 3, 4}},
		{"all", 4, 20, 30, 30, 4, nil},
		{"ack past the end", 9, 20, 30, 30, 4, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOutbox(t, 10, 4)
			answered, _ := o.ack(tc.ack, tc.bound, now)
			o.heard(tc.stable, tc.prunable)
			o.prune()
			if answered != tc.answered || !slices.Equal(mseqs(o.chats), tc.kept) {
				t.Errorf("answered %d, kept %v; want %d, %v", answered, mseqs(o.chats), tc.answered, tc.kept)
			}
			if len(o.window) != 4-tc.answered {
				t.Errorf("%d window tokens held, want %d", len(o.window), 4-tc.answered)
			}
			// A second ack answers no one twice.
			if again, _ := o.ack(tc.ack, tc.bound, now); again != 0 {
				t.Errorf("a repeated ack answered %d Sends", again)
			}
		})
	}
}

func TestOutboxHeardKeepsMax(t *testing.T) {
	o := testOutbox(t, 10, 0)
	o.heard(10, 8)
	o.heard(5, 5) // a late status
	if o.stable != 10 || o.prunable != 8 {
		t.Errorf("stable %d prunable %d, want 10 8", o.stable, o.prunable)
	}
	o.newRelay()
	if o.stable != 0 || o.prunable != 0 {
		t.Errorf("after a new relay: stable %d prunable %d, want 0 0", o.stable, o.prunable)
	}
}

// An ack that leaves the next chat unconfirmed has it resent at once,
// unless it has only just gone out; a relay that answers again cuts the
// backoff of what is left.
func TestOutboxFastResend(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name   string
		sentAt time.Duration // of chat 2, after t0; <0 for never sent
		ack    uint64
		resend bool
	}{
		{"head lost", 0, 1, true},
		{"head just sent", rtoMin/5 - time.Millisecond, 1, false},
		{"head never sent", -1, 1, false},
		{"not the head", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOutbox(t, 10, 3)
			now := t0.Add(rtoMin/5 + time.Millisecond)
			c := o.chats[1]
			if tc.sentAt >= 0 {
				c.rto = rtoMax
				o.sent(c, t0.Add(tc.sentAt))
			}
			next := c.next
			_, resend := o.ack(tc.ack, 5, now)
			if resend != tc.resend {
				t.Fatalf("resend = %v, want %v", resend, tc.resend)
			}
			switch {
			case tc.resend && !c.next.Equal(now):
				t.Errorf("head due at %v, want now", c.next)
			case tc.ack > 0 && tc.sentAt >= 0 && (c.rto != rtoMin || c.next.After(c.sentAt.Add(rtoMin))):
				t.Errorf("after progress: rto %v, next %v; want %v, by %v", c.rto, c.next, rtoMin, c.sentAt.Add(rtoMin))
			case tc.ack == 0 && !c.next.Equal(next):
				t.Errorf("no progress moved the head from %v to %v", next, c.next)
			}
		})
	}
}

// A challenge makes due at once the unconfirmed chats that went out, not
// the confirmed ones; a second challenge within challengeGap adds nothing,
// one after it does.
func TestOutboxChallenged(t *testing.T) {
	t0 := time.Unix(1000, 0)
	o := testOutbox(t, 10, 4)
	for _, c := range o.chats {
		o.sent(c, t0)
	}
	o.ack(1, 1, t0.Add(time.Millisecond))
	resend := func(now time.Time) []uint64 {
		var due []uint64
		o.due(now, func(c *pendingChat) {
			due = append(due, c.mseq)
			o.sent(c, now)
		})
		return due
	}
	now := t0.Add(2 * time.Millisecond)
	if !o.challenged(now) {
		t.Fatal("challenged: nothing due, want chats 2 to 4")
	}
	if due := resend(now); !slices.Equal(due, []uint64{2, 3, 4}) {
		t.Errorf("due after a challenge: %v, want [2 3 4]", due)
	}
	if o.challenged(now.Add(challengeGap - time.Millisecond)) {
		t.Error("a second challenge within challengeGap made chats due again")
	}
	later := now.Add(challengeGap)
	if !o.challenged(later) {
		t.Error("a challenge after challengeGap made nothing due")
	}
	if due := resend(later); !slices.Equal(due, []uint64{2, 3, 4}) {
		t.Errorf("due after the next challenge: %v, want [2 3 4]", due)
	}
}

func TestOutboxRefuse(t *testing.T) {
	o := testOutbox(t, 10, 3)
	done := o.chats[1].done
	errRefused := errors.New("refused")
	if !o.refuse(2, errRefused) {
		t.Fatal("refuse found no chat 2")
	}
	if err := <-done; err != errRefused {
		t.Errorf("Send answered %v", err)
	}
	if o.refuse(2, errRefused) || o.refuse(9, errRefused) {
		t.Error("refused a confirmed or unknown chat")
	}
	// It stays, so that a new relay is offered unbroken member seqs, until
	// the chats before it go.
	if !slices.Equal(mseqs(o.chats), []uint64{1, 2, 3}) {
		t.Errorf("kept %v", mseqs(o.chats))
	}
	o.heard(5, 5)
	o.ack(1, 1, time.Now())
	if !slices.Equal(mseqs(o.chats), []uint64{3}) {
		t.Errorf("after the first is confirmed and stable: kept %v, want [3]", mseqs(o.chats))
	}
}

// The resend schedule: chats due at now, within sendWindow of the first
// unconfirmed, with backoff.
func TestOutboxDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	o := testOutbox(t, 100, sendWindow+5)
	o.ack(3, 3, t0) // 1..3 confirmed, not stable
	var sent []uint64
	send := func(c *pendingChat) {
		sent = append(sent, c.mseq)
		o.sent(c, t0)
	}
	due := o.due(t0, send)
	if len(sent) != sendWindow || sent[0] != 4 || sent[len(sent)-1] != 3+sendWindow {
		t.Fatalf("sent %v, want 4..%d", sent, 3+sendWindow)
	}
	if !due.Equal(t0.Add(rtoMin)) {
		t.Errorf("next due %v, want %v", due, t0.Add(rtoMin))
	}
	sent = nil
	if due := o.due(t0.Add(rtoMin-1), send); len(sent) != 0 || !due.Equal(t0.Add(rtoMin)) {
		t.Errorf("before the timeout: sent %v, next due %v", sent, due)
	}
	// Backoff doubles up to rtoMax.
	c := o.chats[3]
	for range 10 {
		o.sent(c, t0)
	}
	if c.rto != rtoMax || !o.sent(c, t0) {
		t.Errorf("rto %v after resends, want %v", c.rto, rtoMax)
	}
	// Nothing unconfirmed: nothing due.
	o.ack(o.mseq, 10, t0)
	sent = nil
	if due := o.due(t0.Add(time.Hour), send); len(sent) != 0 || !due.IsZero() {
		t.Errorf("all confirmed: sent %v, due %v", sent, due)
	}
}

// A new session resends the whole outbox at once, confirmed chats too:
// the new relay has none of them.
func TestOutboxNewSession(t *testing.T) {
	t0 := time.Unix(1000, 0)
	o := testOutbox(t, 100, 3)
	for _, c := range o.chats {
		c.rto = rtoMax
		o.sent(c, t0)
	}
	o.ack(2, 2, t0)
	now := t0.Add(time.Second)
	o.newSession(now)
	var sent []uint64
	o.due(now, func(c *pendingChat) { sent = append(sent, c.mseq); o.sent(c, now) })
	if !slices.Equal(sent, []uint64{1, 2, 3}) {
		t.Errorf("sent %v after a new session, want [1 2 3]", sent)
	}
	for _, c := range o.chats {
		if c.confirmed || c.rto != 2*rtoMin {
			t.Errorf("chat %d: confirmed %v, rto %v", c.mseq, c.confirmed, c.rto)
		}
	}
}

func TestOutboxCloseAll(t *testing.T) {
	o := testOutbox(t, 10, 3)
	dones := []chan error{o.chats[0].done, o.chats[1].done, o.chats[2].done}
	o.ack(1, 1, time.Now())
	o.closeAll(ErrClosed)
	if len(o.chats) != 0 || len(o.window) != 0 {
		t.Errorf("%d chats and %d window tokens left", len(o.chats), len(o.window))
	}
	for i, d := range dones {
		want := error(ErrClosed)
		if i == 0 {
			want = nil
		}
		if err := <-d; err != want {
			t.Errorf("chat %d answered %v, want %v", i+1, err, want)
		}
	}
}

// After the relay expires a member and it rejoins the same relay, a repair
// of its own chat from the old session must not confirm the chat for the
// new session: the relay would wait for it forever, and every later Send
// would stall.
func TestOldSessionDeliverDoesNotConfirm(t *testing.T) {
	r := startRelay(t, WithHeartbeat(20*time.Millisecond), WithExpiry(150*time.Millisecond))
	px := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
	bob := join(t, r, "bob")
	alice := joinAt(t, px.Addr(), "alice")
	expect(t, bob, KindJoin, "bob", "")
	expect(t, bob, KindJoin, "alice", "")

	// Alice never hears her own chat delivered: STATUS confirms it, and
	// it stays in her outbox, not yet stable.
	px.setFilter(func(up bool, p *packet) bool {
		return !up && p.typ == tDeliver && p.kind == KindChat && string(p.name) == "alice"
	})
	if err := alice.Send(ctxT(t), "c1"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice", "c1")
	// Cut off until the relay expires her.
	px.setFilter(func(bool, *packet) bool { return true })
	expect(t, bob, KindLeave, "alice", "")
	// Back, but her chats towards the relay are lost for a while, while
	// her repairs (the old session's deliver of c1) reach her.
	px.setFilter(func(up bool, p *packet) bool { return up && p.typ == tChat })
	waitFor(t, func() bool {
		alice.mu.Lock()
		defer alice.mu.Unlock()
		return alice.state == stateJoined && alice.stats.Rejoins == 1 && alice.in.next > alice.in.lastSeq
	}, "alice to rejoin and catch up")
	px.setFilter(func(bool, *packet) bool { return false })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := alice.Send(ctx, "c2"); err != nil {
		t.Fatalf("Send after the rejoin on a healthy network: %v", err)
	}
	expect(t, bob, KindJoin, "alice", "")
	expect(t, bob, KindChat, "alice", "c2") // c1, sequenced again, is dropped as a copy
}

// A chat pruned before its Send took the answer keeps that answer: a chat
// reused for the next Send gets a channel of its own, so neither Send
// takes the other's answer.
func TestOutboxReuseKeepsUntakenAnswers(t *testing.T) {
	o := newOutbox()
	o.history = 64
	o.window <- struct{}{} // A's place, as Send takes it
	a := o.newChat("", "too large")
	o.add(a)
	aDone := a.done
	if !o.refuse(a.mseq, ErrMessageTooLarge) { // refused, and pruned at once
		t.Fatal("refuse found no chat")
	}
	o.window <- struct{}{}
	b := o.newChat("", "next") // reuses a's struct
	if b == a && b.ch == aDone {
		t.Fatal("the reused chat shares the channel that holds A's answer")
	}
	o.add(b)
	o.ack(b.mseq, 10, time.Unix(0, 0))
	if err := <-aDone; err != ErrMessageTooLarge {
		t.Fatalf("A's Send got %v, want its own refusal", err)
	}
	if err := <-b.ch; err != nil {
		t.Fatalf("B's Send got %v, want nil", err)
	}
}

// The first resend timeout follows the measured round trip, from chats
// sent once, within rtoMin and rtoMax.
func TestOutboxRoundTrip(t *testing.T) {
	o := newOutbox()
	o.history = 64
	if got := o.rto(); got != rtoMin {
		t.Fatalf("rto before any sample = %v, want rtoMin", got)
	}
	t0 := time.Unix(1000, 0)
	for i := range 20 { // confirmations that take 200ms: a long fan-out
		o.window <- struct{}{}
		c := o.newChat("", "x")
		o.add(c)
		at := t0.Add(time.Duration(i) * time.Second)
		o.sent(c, at)
		o.ack(c.mseq, uint64(i+1), at.Add(200*time.Millisecond))
	}
	if got := o.rto(); got < 200*time.Millisecond || got > 300*time.Millisecond {
		t.Errorf("rto after 200ms round trips = %v", got)
	}
	// A chat sent twice says nothing of the round trip (Karn).
	o.window <- struct{}{}
	c := o.newChat("", "y")
	o.add(c)
	o.sent(c, t0)
	o.sent(c, t0.Add(time.Second))
	before := o.srtt
	o.ack(c.mseq, 100, t0.Add(time.Hour))
	if o.srtt != before {
		t.Errorf("a resent chat's confirmation moved the estimate from %v to %v", before, o.srtt)
	}
	for range 50 {
		o.sample(10 * time.Second)
	}
	if got := o.rto(); got != rtoMax {
		t.Errorf("rto = %v, want the ceiling %v", got, rtoMax)
	}
}
