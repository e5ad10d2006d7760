package udpchat

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// A sender never stalls: what one member (or several) sending through
// Member gets, end to end, with the application's Receive loops counting.

// flow is one run: senders each send n chats with up to inflight Sends at
// once, to a group of members (the senders among them); every member
// receives every chat in one order.
type flow struct {
	members, senders, n, inflight int
	opts                          []Option // the relay's
}

type flowResult struct {
	elapsed    time.Duration // first Send to the last chat received
	delivered  int           // chats received, over all members
	sendTimes  []time.Duration
	control    uint64 // datagrams the relay received that were not chats
	chats      uint64 // chat datagrams the relay received (retransmissions too)
	deliveries uint64 // deliver datagrams the relay sent
}

func (r flowResult) rate() float64 { return float64(r.delivered) / r.elapsed.Seconds() }

func (r flowResult) sendQuantile(q float64) time.Duration {
	s := slices.Clone(r.sendTimes)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// run runs the flow and checks that every member received every chat once,
// each sender's in its order, and that all members hold one order.
func (f flow) run(tb testing.TB) flowResult {
	tb.Helper()
	r := startRelay(tb, append([]Option{WithRateLimit(0, 0)}, f.opts...)...)
	ms := make([]*Member, f.members)
	for i := range ms {
		ms[i] = join(tb, r, fmt.Sprint("m", i))
	}
	// Everyone has seen every join: from here on, only chats.
	for i, m := range ms {
		for seen := i; seen < f.members; { // m_i sees the joins from its own on
			if msg := recv(tb, m); msg.Kind == KindJoin {
				seen++
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before := r.Stats()

	total := f.senders * f.n
	logs := make([][]string, f.members) // each member's chats, in its order
	var recvWG sync.WaitGroup
	var last time.Time
	var lastMu sync.Mutex
	for i, m := range ms {
		recvWG.Go(func() {
			seen := make(map[string]bool, total)
			log := make([]string, 0, total)
			for len(log) < total {
				msg, err := m.Receive(ctx)
				if err != nil {
					tb.Errorf("%s: Receive after %d of %d chats: %v", m.Name(), len(log), total, err)
					return
				}
				if msg.Kind != KindChat {
					continue
				}
				c := fmt.Sprintf("%d %s %s", msg.Seq, msg.From, msg.Text)
				if seen[msg.From+" "+msg.Text] {
					tb.Errorf("%s: %s received twice", m.Name(), c)
					return
				}
				seen[msg.From+" "+msg.Text] = true
				log = append(log, c)
			}
			logs[i] = log
			lastMu.Lock()
			if now := time.Now(); now.After(last) {
				last = now
			}
			lastMu.Unlock()
		})
	}

	start := time.Now()
	times := make([][]time.Duration, f.senders)
	var sendWG sync.WaitGroup
	for s := range f.senders {
		m := ms[s]
		work := make(chan int, f.n)
		for k := range f.n {
			work <- k
		}
		close(work)
		var mu sync.Mutex
		for range f.inflight {
			sendWG.Go(func() {
				for k := range work {
					t0 := time.Now()
					if err := m.Send(ctx, strconv.Itoa(k)); err != nil {
						tb.Errorf("%s: Send(%d): %v", m.Name(), k, err)
						return
					}
					d := time.Since(t0)
					mu.Lock()
					times[s] = append(times[s], d)
					mu.Unlock()
				}
			})
		}
	}
	sendWG.Wait()
	recvWG.Wait()
	after := r.Stats()
	res := flowResult{elapsed: last.Sub(start), deliveries: after.Delivered - before.Delivered}
	for _, l := range logs {
		res.delivered += len(l)
	}
	for _, t := range times {
		res.sendTimes = append(res.sendTimes, t...)
	}
	for i := 1; i < len(logs); i++ {
		if logs[i] != nil && logs[0] != nil && !slices.Equal(logs[i], logs[0]) {
			tb.Errorf("m%d and m0 hold different conversations", i)
			break
		}
	}
	received := after.Received - before.Received
	chatsIn := uint64(0)
	for _, m := range ms {
		st := m.Stats()
		chatsIn += st.Retransmitted
	}
	res.chats = uint64(total) + chatsIn
	res.control = received - min(received, res.chats)
	return res
}

// BenchmarkSender: one member sends back to back (64 Sends at once, rate
// limit off) to a group of 10; the sustained run must keep the burst's
// pace, and no Send may wait long. Run with -benchtime 1x.
func BenchmarkSender(b *testing.B) {
	var burst float64
	for _, tc := range []struct {
		name string
		n    int
	}{{"burst=2000", 2000}, {"sustained=50000", 50000}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				res := flow{members: 10, senders: 1, n: tc.n, inflight: 64}.run(b)
				b.ReportMetric(res.rate(), "deliveries/s")
				b.ReportMetric(float64(res.sendQuantile(0.99).Microseconds())/1000, "p99-send-ms")
				b.ReportMetric(float64(res.sendQuantile(1).Microseconds())/1000, "max-send-ms")
				b.ReportMetric(float64(res.control)/float64(res.delivered), "control/delivered")
				if tc.n == 2000 {
					burst = res.rate()
				} else if burst > 0 {
					b.ReportMetric(res.rate()/burst, "x-burst")
				}
			}
		})
	}
	// Ten members send 5,000 each at once: all 50,000 reach all ten, in
	// one order (run checks).
	b.Run("senders=10x5000", func(b *testing.B) {
		for range b.N {
			res := flow{members: 10, senders: 10, n: 5000, inflight: 64}.run(b)
			b.ReportMetric(res.rate(), "deliveries/s")
			b.ReportMetric(float64(res.sendQuantile(0.99).Microseconds())/1000, "p99-send-ms")
			b.ReportMetric(float64(res.sendQuantile(1).Microseconds())/1000, "max-send-ms")
			b.ReportMetric(float64(res.control)/float64(res.delivered), "control/delivered")
		}
	})
}

// Many senders at once: every chat reaches every member once, and all
// members hold one conversation. (BenchmarkSender runs it at full size.)
func TestManySendersOneOrder(t *testing.T) {
	n := 3000
	if raceEnabled {
		n = 300
	}
	res := flow{members: 10, senders: 10, n: n, inflight: 64}.run(t)
	if res.delivered != 10*10*n {
		t.Fatalf("delivered %d, want %d", res.delivered, 10*10*n)
	}
	t.Logf("%d senders x %d chats to %d members: %.0f deliveries/s, Send p99 %v max %v, %.4f control datagrams per delivery",
		10, n, 10, res.rate(), res.sendQuantile(0.99), res.sendQuantile(1), float64(res.control)/float64(res.delivered))
}

// A sender well past the outbox's bound never waits for stability: with
// the smallest history (an outbox of 320 chats), 5 seconds' worth at the
// default rate limit go out, each Send answered in a round trip.
func TestSenderAtDefaultRateNeverWaits(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 5 seconds")
	}
	r := startRelay(t, WithHistory(minHistory)) // the default rate: 100 messages a second
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	const rate, n = 100, 500 // 5s, past 320
	got := make(chan error, 1)
	go func() {
		for k := 0; k < n; {
			msg, err := bob.Receive(ctxT(t))
			if err != nil {
				got <- err
				return
			}
			if msg.Kind == KindChat {
				if msg.Text != strconv.Itoa(k) {
					got <- fmt.Errorf("chat %q when %d was due", msg.Text, k)
					return
				}
				k++
			}
		}
		got <- nil
	}()
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	var slowest time.Duration
	for k := range n {
		<-tick.C
		t0 := time.Now()
		if err := alice.Send(ctxT(t), strconv.Itoa(k)); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(t0))
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if slowest > 100*time.Millisecond {
		t.Errorf("a Send waited %v at %d messages a second", slowest, rate)
	}
	if s := r.Stats(); s.DroppedRateLimited > 0 {
		t.Errorf("the relay dropped %d chats for the rate: the test sent too fast", s.DroppedRateLimited)
	}
	t.Logf("slowest Send %v", slowest)
}

// BenchmarkMemberSend: one Send after another, each returning once the
// relay has sequenced the chat (a round trip on loopback), with and
// without a key. The send path allocates at most the datagram; the
// receive path (the chat's own copy, which confirms it) its text.
func BenchmarkMemberSend(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"plain", nil}, {"key", []Option{WithKey(bytes.Repeat([]byte{9}, 16))}}} {
		b.Run(tc.name, func(b *testing.B) {
			r := startRelay(b, append([]Option{WithRateLimit(0, 0)}, tc.opts...)...)
			m := join(b, r, "alice", tc.opts...)
			ctx := context.Background()
			text := string(benchText)
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				if err := m.Send(ctx, text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Sends that wait for room in a full outbox all go on when it empties,
// though the outbox signals room once.
func TestSendsWaitingForRoomAllGoOn(t *testing.T) {
	r := startRelay(t, WithRateLimit(0, 0))
	alice := join(t, r, "alice")
	// Fill the outbox with chats sequenced long ago that not every member
	// has: nothing of them is sent.
	alice.mu.Lock()
	for !alice.out.full() {
		p := alice.out.newChat("", "old")
		alice.out.add(p)
		p.done, p.confirmed, p.seqBound = nil, true, 1<<40
	}
	base := len(alice.out.chats)
	alice.mu.Unlock()
	const waiting = 10
	ctx, cancel := context.WithCancel(ctxT(t))
	var wg sync.WaitGroup
	for range waiting {
		wg.Go(func() { alice.Send(ctx, "new") })
	}
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, func() bool { return len(alice.out.window) == waiting }, "the Sends waiting for room")
	alice.mu.Lock()
	alice.out.heard(1<<41, 1<<41) // every member has them
	alice.out.prune()             // all of them: room is signalled
	alice.mu.Unlock()
	waitFor(t, func() bool {
		alice.mu.Lock()
		defer alice.mu.Unlock()
		return len(alice.out.chats) == waiting
	}, fmt.Sprintf("all %d waiting Sends to queue their chats (outbox of %d emptied)", waiting, base))
}
