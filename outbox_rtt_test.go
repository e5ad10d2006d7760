package udpchat

// The outbox's resend timing: the round trips it measures and the backoff
// of its timeouts.

import (
	"testing"
	"time"
)

// Timeouts back off the first timeout of new chats, once per round of
// chats that went out under the same timeout, up to rtoMax; a chat sent
// once and confirmed (a round trip measured) ends the backoff. Resends
// that were not timeouts (a loss known from the confirmations, a
// challenge, a new session) leave it.
func TestOutboxBackoff(t *testing.T) {
	t0 := time.Unix(1000, 0)
	o := testOutbox(t, 100, 4)
	send := func(now time.Time) []uint64 {
		var sent []uint64
		o.due(now, func(c *pendingChat) { sent = append(sent, c.mseq); o.sent(c, now) })
		return sent
	}
	if got := send(t0); len(got) != 4 {
		t.Fatalf("first sends: %v", got)
	}
	// All four time out together: one doubling, not four.
	t1 := t0.Add(rtoMin)
	if got := send(t1); len(got) != 4 || o.rto() != 2*rtoMin {
		t.Fatalf("timeouts: sent %v, rto %v; want 4 sent, %v", got, o.rto(), 2*rtoMin)
	}
	// A new chat goes out under the backed-off timeout.
	o.window <- struct{}{}
	c := o.newChat("", "new")
	o.add(c)
	if send(t1); c.rto != 4*rtoMin || !c.next.Equal(t1.Add(2*rtoMin)) {
		t.Fatalf("new chat: rto %v, next %v; want next at %v", c.rto, c.next, t1.Add(2*rtoMin))
	}
	// The resent ones time out again, and so does the new one: each was
	// sent under the current timeout, but they count once.
	t2 := t1.Add(2 * rtoMin)
	if got := send(t2); len(got) != 5 || o.rto() != 4*rtoMin {
		t.Fatalf("second timeouts: sent %v, rto %v; want 5 sent, %v", got, o.rto(), 4*rtoMin)
	}
	for range 10 {
		o.timedOut(c, t2.Add(time.Hour))
		c.sentAt = t2.Add(time.Hour)
	}
	c.sentAt = t2 // its last send, as it was
	if o.rto() != rtoMax {
		t.Errorf("rto %v after many timeouts, want the ceiling %v", o.rto(), rtoMax)
	}
	// An early resend is no timeout.
	o.backoff, o.backedOff = 0, time.Time{}
	o.ack(1, 1, t2)
	o.chats[1].next, o.chats[1].early = t2, true
	if got := send(t2); len(got) != 1 || o.backoff != 0 {
		t.Errorf("an early resend: sent %v, backoff %d; want one sent, 0", got, o.backoff)
	}
	// A chat confirmed after one send is a round trip: the estimate takes
	// over from the backoff.
	o.backoff = 3
	o.window <- struct{}{}
	d := o.newChat("", "measured")
	o.add(d)
	o.ack(d.mseq-1, 9, t2)              // the resent ones, measuring nothing
	o.sent(d, t2.Add(time.Millisecond)) // after the resends
	o.ack(d.mseq, 10, t2.Add(31*time.Millisecond))
	if want := 90 * time.Millisecond; o.backoff != 0 || o.rto() != want { // srtt + 4 x rttvar
		t.Errorf("after a round trip of 30ms: backoff %d, rto %v; want 0, %v", o.backoff, o.rto(), want)
	}
	// A new session starts without the old relay's backoff.
	o.backoff = 2
	o.newSession(t2)
	if o.backoff != 0 {
		t.Errorf("new session kept backoff %d", o.backoff)
	}
}

// TestOutboxEarlyResends checks that every resend that is not a timeout
// is marked so and leaves the backoff alone: an overdue head resent on an
// ack, a challenge, a new session.
func TestOutboxEarlyResends(t *testing.T) {
	t0 := time.Unix(1000, 0)
	resend := func(o *outbox, now time.Time) []uint64 {
		var sent []uint64
		o.due(now, func(c *pendingChat) { sent = append(sent, c.mseq); o.sent(c, now) })
		return sent
	}
	for _, tc := range []struct {
		name string
		mark func(o *outbox, now time.Time) bool
		want int // chats resent
	}{
		{"overdue head", func(o *outbox, now time.Time) bool {
			o.chats[0].sentAt = now.Add(-5 * time.Millisecond) // its ack: a short round trip
			_, due := o.ack(1, 1, now)
			return due
		}, 1},
		{"challenged", func(o *outbox, now time.Time) bool { return o.challenged(now) }, 4},
		{"new session", func(o *outbox, now time.Time) bool { o.newSession(now); return true }, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOutbox(t, 100, 4)
			resend(o, t0)
			// Well before any timeout (rtoMin), past the head's round
			// trip (rtoMin/5 at the least).
			now := t0.Add(rtoMin / 2)
			if !tc.mark(o, now) {
				t.Fatalf("nothing marked to go again")
			}
			got := resend(o, now) // the overdue head alone, or all
			if len(got) != tc.want || o.backoff != 0 {
				t.Errorf("resent %v, backoff %d; want %d resent, no backoff", got, o.backoff, tc.want)
			}
		})
	}
}

// TestOutboxRoundTrips checks what an ack measures: the round trip of the
// chat it answers, once; nothing when it also confirms a chat sent twice,
// which the relay may have held others behind.
func TestOutboxRoundTrips(t *testing.T) {
	t0 := time.Unix(1000, 0)
	o := testOutbox(t, 100, 4)
	for _, c := range o.chats {
		o.sent(c, t0)
	}
	// The ack of chat 1 was lost; chat 2's answers both, 40ms after they
	// went out. One sample of 40ms.
	o.ack(2, 2, t0.Add(40*time.Millisecond))
	if o.srtt != 40*time.Millisecond || o.rttvar != 20*time.Millisecond {
		t.Errorf("after one ack: srtt %v, rttvar %v; want 40ms, 20ms", o.srtt, o.rttvar)
	}
	// Chat 3 was lost and resent; chat 4, sent once, was held behind it.
	// Their ack measures nothing, however long chat 4 waited.
	if o.chats[2].mseq != 3 {
		t.Fatalf("third chat is %d", o.chats[2].mseq)
	}
	o.sent(o.chats[2], t0.Add(300*time.Millisecond))
	o.ack(4, 4, t0.Add(301*time.Millisecond))
	if o.srtt != 40*time.Millisecond {
		t.Errorf("a repair measured: srtt %v, want 40ms", o.srtt)
	}
}

// TestOutboxRoundTripsAfterARepair checks that a chat sent before a
// resend measures nothing even when its own ack confirms it alone: the
// relay sequenced it only once the chat resent filled the gap. A chat
// sent after the resend measures again.
func TestOutboxRoundTripsAfterARepair(t *testing.T) {
	t0 := time.Unix(1000, 0)
	o := testOutbox(t, 100, 5)
	for _, c := range o.chats[:4] {
		o.sent(c, t0)
	}
	o.ack(1, 1, t0.Add(40*time.Millisecond)) // srtt 40ms
	o.sent(o.chats[1], t0.Add(300*time.Millisecond))
	o.ack(2, 2, t0.Add(301*time.Millisecond))
	o.ack(3, 3, t0.Add(302*time.Millisecond))
	o.ack(4, 4, t0.Add(303*time.Millisecond))
	if o.srtt != 40*time.Millisecond {
		t.Errorf("chats held behind a repair measured: srtt %v, want 40ms", o.srtt)
	}
	o.sent(o.chats[4], t0.Add(310*time.Millisecond))
	o.ack(5, 5, t0.Add(320*time.Millisecond))
	if want := 40*time.Millisecond + (10*time.Millisecond-40*time.Millisecond)/8; o.srtt != want {
		t.Errorf("a chat sent after the repair: srtt %v, want %v", o.srtt, want)
	}
}

// TestOutboxTimeoutsOfNewSessionsAndQueuedChats checks that a chat takes
// its first timeout when it first goes out, and that a new session's
// resends follow the round trip measured, not the floor.
func TestOutboxTimeoutsOfNewSessionsAndQueuedChats(t *testing.T) {
	t0 := time.Unix(1000, 0)
	o := testOutbox(t, 100, 1)
	o.srtt, o.rttvar = 300*time.Millisecond, 10*time.Millisecond // rto 340ms
	c := o.chats[0]
	c.rto = rtoMin // as made before the round trip was known
	o.sent(c, t0)
	if want := t0.Add(340 * time.Millisecond); !c.next.Equal(want) {
		t.Errorf("first send: next at %v, want %v", c.next.Sub(t0), want.Sub(t0))
	}
	o.backoff = 2
	o.newSession(t0)
	if o.backoff != 0 || c.rto != 340*time.Millisecond {
		t.Errorf("new session: backoff %d, rto %v; want 0, 340ms", o.backoff, c.rto)
	}
}
