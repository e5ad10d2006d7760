package udpchat

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The rate limiter, without sockets: time is passed in.

func TestRateLimiterTake(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name        string
		msgs, bytes float64
		takes       []int           // datagram sizes, all at t0 unless at says otherwise
		at          []time.Duration // offset of each take from t0
		want        []bool
	}{
		{
			name: "burst of two seconds' messages, then refused",
			msgs: 2, takes: []int{10, 10, 10, 10, 10}, at: []time.Duration{0, 0, 0, 0, 0},
			want: []bool{true, true, true, true, false},
		},
		{
			name: "refills at the rate",
			msgs: 2, takes: []int{10, 10, 10, 10, 10, 10}, at: []time.Duration{0, 0, 0, 0, 500 * time.Millisecond, 500 * time.Millisecond},
			want: []bool{true, true, true, true, true, false},
		},
		{
			name:  "bytes bound a burst of large datagrams",
			bytes: 40000, takes: []int{30000, 30000, 30000}, at: []time.Duration{0, 0, 0},
			want: []bool{true, true, false},
		},
		{
			name:  "no limit",
			takes: []int{65000, 65000, 65000}, at: []time.Duration{0, 0, 0},
			want: []bool{true, true, true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newRateLimiter(tt.msgs, tt.bytes, 128)
			b := l.join(netip.MustParseAddr("127.0.0.1"), "alice", t0)
			for i, n := range tt.takes {
				if got := l.take(&b, n, t0.Add(tt.at[i])); got != tt.want[i] {
					t.Fatalf("take %d (%d bytes at +%v) = %v, want %v", i, n, tt.at[i], got, tt.want[i])
				}
			}
		})
	}
}

// Leaving and joining again carries on with the drained buckets, for the
// same name and address only, until they would be full again anyway.
func TestRateLimiterRejoinKeepsBuckets(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ip := netip.MustParseAddr("127.0.0.1")
	l := newRateLimiter(1, 0, 128)
	b := l.join(ip, "alice", t0)
	for l.take(&b, 1, t0) {
	}
	l.leave(ip, "alice", b)

	neighbour := l.join(ip, "bob", t0)
	if !l.take(&neighbour, 1, t0) {
		t.Fatal("bob, behind the same address, was charged for alice's chats")
	}
	again := l.join(ip, "alice", t0)
	if l.take(&again, 1, t0) {
		t.Fatal("alice rejoined with a fresh burst")
	}
	if len(l.left) != 0 {
		t.Fatalf("a rejoin did not take the kept buckets: %d left", len(l.left))
	}

	l.leave(ip, "alice", again)
	l.sweep(t0.Add(leftFor))
	if len(l.left) != 1 {
		t.Fatal("buckets forgotten before they are full again")
	}
	l.sweep(t0.Add(leftFor + time.Millisecond))
	if len(l.left) != 0 {
		t.Fatal("buckets of a sender long gone are still kept")
	}
}

// Repairs are budgeted by datagrams actually resent.
func TestRateLimiterRepairs(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newRateLimiter(100, 0, 10) // bursts of 20 repairs
	b := l.join(netip.MustParseAddr("127.0.0.1"), "alice", t0)
	if got := l.repairs(&b, 128, t0); got != 20 {
		t.Fatalf("repairs allowed = %d, want the burst of 20", got)
	}
	l.spendRepairs(&b, 5) // only five were in history
	if got := l.repairs(&b, 128, t0); got != 15 {
		t.Fatalf("after resending 5: %d allowed, want 15", got)
	}
	l.spendRepairs(&b, 15)
	if got := l.repairs(&b, 128, t0.Add(100*time.Millisecond)); got != 1 {
		t.Fatalf("100ms after spending all: %d allowed, want 1", got)
	}

	free := newRateLimiter(0, 0, 10)
	fb := free.join(netip.MustParseAddr("127.0.0.1"), "bob", t0)
	free.spendRepairs(&fb, 1000)
	if got := free.repairs(&fb, 128, t0); got != 128 {
		t.Fatalf("without limits: %d repairs allowed, want all 128", got)
	}
}

func TestRejoinDoesNotRefillBurst(t *testing.T) {
	const rate = 100
	r := startRelay(t, WithRateLimit(rate, 0))
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	fl := dialRaw(t, r.Addr())
	start := time.Now()
	cycles, sent := 0, 0
	for time.Since(start) < time.Second && cycles < 50 {
		w := fl.joinWith(uint64(100+cycles), "flood", tWelcome)
		for i := 1; i <= 2*rate; i++ {
			fl.send(appendChat(nil, w.session, uint64(i), seqAt{}, "", "spam"))
			sent++
		}
		fl.send(appendHeader(nil, tLeave, w.session))
		fl.readType(tBye)
		cycles++
	}
	elapsed := time.Since(start)
	// The flooder's last BYE came after the relay handled all it sent.
	st := r.Stats()
	chats := int(st.Sequenced) - 1 - 2*cycles // minus bob's join and the flooder's join/leave events
	limit := int(2*rate + elapsed.Seconds()*rate)
	t.Logf("%d join/leave cycles in %v: %d of %d spam chats sequenced (rate limit allows %d); %+v", cycles, elapsed.Round(time.Millisecond), chats, sent, limit, st)
	if chats > limit {
		t.Errorf("rejoining lifts the rate limit: %d chats sequenced, limit %d", chats, limit)
	}
}

// NACKs are cheap to send and costly to answer: a member flooding them gets
// no more repairs than its budget (history per second, bursts of twice).
func TestNackFloodIsBudgeted(t *testing.T) {
	r := startRelay(t, WithHistory(128))
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	fl := dialRaw(t, r.Addr())
	w := fl.joinRaw("flood")
	expect(t, bob, KindJoin, "flood", "")
	for i := 1; i <= 100; i++ {
		fl.send(appendChat(nil, w.session, uint64(i), seqAt{}, "", strings.Repeat("L", 100)))
		for fl.readType(tDeliver).mseq != uint64(i) {
		}
		expect(t, bob, KindChat, "flood", strings.Repeat("L", 100))
	}
	before := r.Stats()
	start := time.Now()
	nack := appendU64Pair(nil, tNack, w.session, 1, 1000)
	sent := 0
	for time.Since(start) < time.Second && sent < 20000 {
		for range 10 {
			fl.c.Write(nack)
			sent++
		}
		time.Sleep(time.Millisecond) // pacing the flood
	}
	// A datagram from bob marks when the relay has handled the flood.
	if err := bob.Send(ctxT(t), "after"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "bob", "after")
	elapsed := time.Since(start)
	resent := int(r.Stats().Retransmitted - before.Retransmitted)
	budget := int(2*128 + elapsed.Seconds()*128)
	t.Logf("%d NACKs in %v made the relay resend %d datagrams (budget %d)", sent, elapsed.Round(time.Millisecond), resent, budget)
	if resent > budget {
		t.Errorf("the relay resent %d datagrams for a NACK flood, more than the budget %d", resent, budget)
	}
}

// A NACK is charged for what it got resent, not for what it could have:
// two one-message NACKs once used up 256 of a 256-datagram budget.
func TestNackChargedForWhatIsResent(t *testing.T) {
	r := startRelay(t, WithHistory(128)) // repairs: 128/s, bursts of 256
	c := dialRaw(t, r.Addr())
	w := c.joinRaw("lag")
	for i := 1; i <= 100; i++ {
		c.send(appendChat(nil, w.session, uint64(i), seqAt{}, "", strings.Repeat("L", 50)))
		for c.readType(tDeliver).mseq != uint64(i) {
		}
	}
	before := r.Stats().Retransmitted
	c.send(appendU64Pair(nil, tNack, w.session, 10, 10))
	c.send(appendU64Pair(nil, tNack, w.session, 20, 20))
	c.send(appendU64Pair(nil, tNack, w.session, 2, 101))
	c.handled(w.session)
	if got := r.Stats().Retransmitted - before; got != 2+100 {
		t.Errorf("two one-message NACKs and one for 100 got %d resends, want 102", got)
	}
}

// The buckets of a member that left go only to the same name from the same
// address: a neighbour behind the same address keeps its full burst, and
// a second socket cannot take a flooder's drained buckets for it.
func TestLeftBucketsStayWithTheName(t *testing.T) {
	const rate = 100
	burst := func(r *Relay, c *rawClient, nonce uint64, name string) (session uint64, sequenced int) {
		w := c.joinWith(nonce, name, tWelcome)
		before := r.Stats().Sequenced
		for i := 1; i <= 2*rate; i++ {
			c.send(appendChat(nil, w.session, uint64(i), seqAt{}, "", "x"))
		}
		c.handled(w.session)
		return w.session, int(r.Stats().Sequenced - before)
	}
	r := startRelay(t, WithRateLimit(rate, 0))
	flood, neighbour := dialRaw(t, r.Addr()), dialRaw(t, r.Addr())
	s, _ := burst(r, flood, 1, "flood")
	flood.send(appendHeader(nil, tLeave, s))
	flood.readType(tBye)
	if _, got := burst(r, neighbour, 2, "neighbour"); got < 2*rate*9/10 {
		t.Errorf("a neighbour on the same address got %d of its %d-chat burst through", got, 2*rate)
	}
	if _, got := burst(r, flood, 3, "flood"); got > rate/2 {
		t.Errorf("the flooder, back under its name, got %d chats through at once", got)
	}
}

// handled waits until the relay has handled everything c sent so far: it
// answers a heartbeat, sent last, with STATUS.
func (c *rawClient) handled(session uint64) {
	c.t.Helper()
	c.send(appendHeartbeat(nil, session, 1, 0))
	c.readType(tStatus)
}
