package udpchat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of the inbox alone: no sockets, time passed in.

// testInbox returns an inbox with a queue of size, taking the stream from
// seq 1.
func testInbox(size int) (*inbox, *roster) {
	in := newInbox(size)
	in.start(1)
	in.forget = 100
	r := newRoster()
	return &in, &r
}

// chatAt is the chat of a sender (epoch, mseq) delivered at seq.
type chatAt struct {
	seq   uint64
	from  string
	epoch uint64
	mseq  uint64
}

// take delivers c as the member does, and returns whether it was a
// duplicate and how many copies advance dropped.
func take(in *inbox, r *roster, c chatAt) (dup bool, copies uint64) {
	dup, keep := in.offer(c.seq)
	if dup {
		return true, 0
	}
	if keep {
		in.hold(earlyMsg{msg: Message{Seq: c.seq, Kind: KindChat, From: c.from}, epoch: c.epoch, mseq: c.mseq})
	}
	return false, in.advance(r)
}

// drain pops everything queued: seqs of messages, and "gap a-b" for gaps.
func drain(in *inbox) []string {
	var out []string
	for {
		it, ok := in.pop()
		if !ok {
			return out
		}
		var g *GapError
		if errors.As(it.err, &g) {
			out = append(out, fmt.Sprintf("gap %d-%d", g.First, g.Last))
			continue
		}
		out = append(out, fmt.Sprint(it.msg.Seq))
	}
}

func TestInboxOrder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chats  []chatAt
		want   []string
		dups   int    // offers refused as duplicates
		copies uint64 // chats dropped as sequenced twice
	}{
		{"in order", []chatAt{{1, "a", 1, 1}, {2, "a", 1, 2}, {3, "b", 2, 1}}, []string{"1", "2", "3"}, 0, 0},
		{"out of order", []chatAt{{3, "a", 1, 3}, {1, "a", 1, 1}, {2, "a", 1, 2}}, []string{"1", "2", "3"}, 0, 0},
		{"duplicate held", []chatAt{{2, "a", 1, 2}, {2, "a", 1, 2}, {1, "a", 1, 1}}, []string{"1", "2"}, 1, 0},
		{"duplicate taken", []chatAt{{1, "a", 1, 1}, {1, "a", 1, 1}}, []string{"1"}, 1, 0},
		{"sequenced twice", []chatAt{{1, "a", 1, 1}, {2, "a", 1, 2}, {3, "a", 1, 1}, {4, "a", 1, 3}}, []string{"1", "2", "4"}, 0, 1},
		{"new epoch starts over", []chatAt{{1, "a", 1, 5}, {2, "a", 2, 1}}, []string{"1", "2"}, 0, 0},
		{"senders apart", []chatAt{{1, "a", 1, 5}, {2, "b", 1, 1}}, []string{"1", "2"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, r := testInbox(8)
			dups, copies := 0, uint64(0)
			for _, c := range tc.chats {
				d, n := take(in, r, c)
				if d {
					dups++
				}
				copies += n
			}
			if got := drain(in); !slices.Equal(got, tc.want) || dups != tc.dups || copies != tc.copies {
				t.Errorf("got %v, %d duplicates, %d copies; want %v, %d, %d", got, dups, copies, tc.want, tc.dups, tc.copies)
			}
			if in.missing() {
				t.Errorf("missing seqs after all arrived: next %d, last %d", in.next, in.lastSeq)
			}
		})
	}
}

// Join and leave events go to the roster as they reach the queue.
func TestInboxEvents(t *testing.T) {
	in, r := testInbox(4)
	in.offer(2)
	in.hold(earlyMsg{msg: Message{Seq: 2, Kind: KindJoin, From: "bob"}})
	in.advance(r)
	if len(r.entries) != 0 {
		t.Fatal("an event ahead of its turn reached the roster")
	}
	in.offer(1)
	in.hold(earlyMsg{msg: Message{Seq: 1, Kind: KindJoin, From: "alice"}})
	in.advance(r)
	if got := rosterNames(r.list("")); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("roster %v", got)
	}
}

// A full queue holds what fits its room and leaves the rest to be asked
// for again; Receive's pop makes room.
func TestInboxFullQueue(t *testing.T) {
	in, r := testInbox(2)
	for _, s := range []uint64{1, 2, 3, 5} {
		if dup, _ := take(in, r, chatAt{s, "a", 1, s}); dup {
			t.Fatalf("seq %d refused", s)
		}
	}
	// 3 fits the queue's room once Receive makes it; 5 does not.
	if !in.full() || in.next != 3 || len(in.early) != 1 || in.lastSeq != 5 {
		t.Fatalf("full %v, next %d, %d held, last %d; want true 3 1 5", in.full(), in.next, len(in.early), in.lastSeq)
	}
	now := time.Unix(1000, 0)
	var ranges [maxNackRanges][2]uint64
	if n := in.nack(now, false, ranges[:]); n != 0 || !in.nackAt.Equal(now.Add(nackInterval)) {
		t.Errorf("full queue: %d ranges, next NACK at %v; want none, at %v", n, in.nackAt, now.Add(nackInterval))
	}
	if got := drain(in); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("got %v", got)
	}
	in.advance(r) // as Receive does
	// Room for one more: 4 is asked for, and arrives.
	if n := in.nack(now, false, ranges[:]); n != 1 || ranges[0] != [2]uint64{4, 4} {
		t.Errorf("after Receive: ranges %v, want [[4 4]]", ranges[:n])
	}
	take(in, r, chatAt{4, "a", 1, 4})
	if got := drain(in); !slices.Equal(got, []string{"3", "4"}) {
		t.Errorf("got %v", got)
	}
}

func TestInboxNackRanges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		held     []uint64 // besides seq 1, taken
		last     uint64
		nackHigh uint64 // asked for before
		all      bool
		max      int
		want     [][2]uint64
	}{
		{"one missing", []uint64{3}, 3, 1, false, 8, [][2]uint64{{2, 2}}},
		{"runs", []uint64{4, 7}, 9, 1, false, 8, [][2]uint64{{2, 3}, {5, 6}, {8, 9}}},
		{"only new ones", []uint64{4, 7}, 9, 5, false, 8, [][2]uint64{{6, 6}, {8, 9}}},
		{"all again", []uint64{4, 7}, 9, 9, true, 8, [][2]uint64{{2, 3}, {5, 6}, {8, 9}}},
		{"nothing new", []uint64{4, 7}, 9, 9, false, 8, nil},
		{"as many as fit", []uint64{4, 7}, 9, 1, false, 2, [][2]uint64{{2, 3}, {5, 6}}},
		{"no room in the datagram", []uint64{4}, 9, 1, false, 0, nil},
		{"within the queue's room", nil, 100, 1, false, 8, [][2]uint64{{2, 17}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, r := testInbox(16)
			take(in, r, chatAt{1, "a", 1, 1})
			in.pop()
			for _, s := range tc.held {
				take(in, r, chatAt{s, "a", 1, s})
			}
			in.saw(tc.last)
			in.nackHigh = tc.nackHigh
			now := time.Unix(1000, 0)
			ranges := make([][2]uint64, tc.max)
			n := in.nack(now, tc.all, ranges)
			if got := ranges[:n]; !slices.Equal(got, tc.want) {
				t.Errorf("ranges %v, want %v", got, tc.want)
			}
			if n > 0 && in.nackHigh != max(tc.nackHigh, tc.want[n-1][1]) {
				t.Errorf("nackHigh %d, want %d", in.nackHigh, max(tc.nackHigh, tc.want[n-1][1]))
			}
		})
	}
}

// The NACK schedule: new seqs are asked for at once; asking again for all
// waits nackInterval.
func TestInboxNackSchedule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	in, r := testInbox(16)
	take(in, r, chatAt{3, "a", 1, 3})
	var ranges [maxNackRanges][2]uint64
	if n := in.nack(t0, false, ranges[:]); n != 1 || !in.nackAt.Equal(t0.Add(nackInterval)) {
		t.Fatalf("first NACK: %d ranges, again at %v", n, in.nackAt)
	}
	// A new loss is asked for at once, without moving the schedule.
	t1 := t0.Add(time.Millisecond)
	take(in, r, chatAt{5, "a", 1, 5})
	if n := in.nack(t1, false, ranges[:]); n != 1 || ranges[0] != [2]uint64{4, 4} || !in.nackAt.Equal(t0.Add(nackInterval)) {
		t.Errorf("new loss: ranges %v, again at %v", ranges[:n], in.nackAt)
	}
	// Asking again for all re-arms the schedule.
	t2 := t0.Add(nackInterval)
	if n := in.nack(t2, true, ranges[:]); n != 2 || !in.nackAt.Equal(t2.Add(nackInterval)) {
		t.Errorf("again: %d ranges, again at %v", n, in.nackAt)
	}
	// Nothing to ask: the schedule stays.
	take(in, r, chatAt{1, "a", 1, 1})
	take(in, r, chatAt{2, "a", 1, 2})
	take(in, r, chatAt{4, "a", 1, 4})
	if in.missing() {
		t.Errorf("missing seqs after all arrived")
	}
	if n := in.nack(t2.Add(time.Hour), true, ranges[:]); n != 0 || !in.nackAt.Equal(t2.Add(nackInterval)) {
		t.Errorf("nothing missing: %d ranges, again at %v", n, in.nackAt)
	}
}

// GONE: the gap ends before the first message held, and only a gap that is
// next is taken.
func TestInboxGone(t *testing.T) {
	for _, tc := range []struct {
		name        string
		held        []uint64
		first, last uint64
		size        int
		lost        uint64
		want        []string
	}{
		{"whole range", nil, 1, 3, 8, 3, []string{"gap 1-3"}},
		{"up to a held one", []uint64{3, 4}, 1, 5, 8, 2, []string{"gap 1-2", "3", "4"}},
		{"from before next", nil, 0, 2, 8, 2, []string{"gap 1-2"}},
		{"not next yet", nil, 2, 3, 8, 0, nil},
		{"already past", nil, 0, 0, 8, 0, nil},
		{"full queue", nil, 1, 1, 1, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, r := testInbox(tc.size)
			for _, s := range tc.held {
				take(in, r, chatAt{s, "a", 1, s})
			}
			if tc.size == 1 {
				in.push(rxItem{}) // fill it
			}
			lost := in.gone(tc.first, tc.last)
			in.advance(r)
			if tc.size == 1 {
				in.pop()
			}
			if got := drain(in); lost != tc.lost || !slices.Equal(got, tc.want) {
				t.Errorf("lost %d, got %v; want %d, %v", lost, got, tc.lost, tc.want)
			}
		})
	}
}

// A relay restart: what arrived early is dropped (it comes again, numbered
// anew), and seqs up to the old relay's stable seq that the inbox lacks
// are reported as a gap once there is room.
func TestInboxNewRelay(t *testing.T) {
	nothing, _ := testInbox(2)
	nothing.start(5)
	if lost := nothing.newRelay(4); lost != 0 || len(nothing.pending) != 0 || nothing.queue.n != 0 {
		t.Errorf("lost %d (pending %v) of what the inbox has", lost, nothing.pending)
	}
	in, r := testInbox(2)
	take(in, r, chatAt{1, "a", 1, 1})
	take(in, r, chatAt{2, "a", 1, 2})
	take(in, r, chatAt{4, "a", 1, 4}) // held: no room in the queue yet
	in.offer(3)
	in.hold(earlyMsg{msg: Message{Seq: 3, Kind: KindChat, From: "a"}, epoch: 1, mseq: 3})
	if lost := in.newRelay(5); lost != 3 || len(in.early) != 0 {
		t.Fatalf("lost %d, %d held; want 3, 0", lost, len(in.early))
	}
	in.start(1)
	take(in, r, chatAt{1, "a", 1, 5})
	if got := drain(in); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("got %v before room", got)
	}
	in.advance(r)
	if got := drain(in); !slices.Equal(got, []string{"gap 3-5", "1"}) {
		t.Errorf("got %v, want the gap, then the new relay's seq 1", got)
	}
}

// Senders long silent are forgotten once maxOrigins are known.
func TestInboxForgetsOrigins(t *testing.T) {
	in, r := testInbox(8)
	for i := range maxOrigins {
		in.origins[fmt.Sprint("old", i)] = origin{1, 1, 1}
	}
	in.origins["recent"] = origin{1, 1, 450}
	in.start(500)
	take(in, r, chatAt{500, "new", 1, 1})
	if _, ok := in.origins["new"]; !ok || len(in.origins) != 2 {
		t.Errorf("%d origins kept, want recent and new", len(in.origins))
	}
}

// A NACK for many gaps must fit the buffer (and the seal): it asks for as
// many ranges as fit, and the member still catches up.
func TestNackFitsSmallBuffer(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"plain", nil}, {"sealed", []Option{WithKey(key1)}}} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]Option{WithBufferSize(128)}, tc.opts...)
			r := startRelay(t, opts...)
			alice := join(t, r, "alice", opts...)
			px := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
			px.keys = r.cfg.keys // the filter reads sealed datagrams too
			bob, err := Join(ctxT(t), "bob", append([]Option{WithAddr(px.Addr())}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer bob.Close()
			expect(t, bob, KindJoin, "bob", "")
			// Every second deliver is lost until bob has asked for the
			// repairs once: more gaps than one NACK can name.
			var mu sync.Mutex
			drop := 0
			bob.mu.Lock()
			first := bob.in.next
			bob.mu.Unlock()
			px.setFilter(func(up bool, p *packet) bool {
				mu.Lock()
				defer mu.Unlock()
				if !up && p.typ == tDeliver && p.seq >= first && (p.seq-first)%2 == 1 && drop < 9 {
					drop++
					return true
				}
				return false
			})
			for i := range 20 {
				if err := alice.Send(ctxT(t), strings.Repeat("m", i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				msg, err := bob.Receive(ctx)
				cancel()
				if err != nil || msg.Text != strings.Repeat("m", i) {
					t.Fatalf("bob's message %d: %q, %v (relay %+v)", i, msg.Text, err, r.Stats())
				}
			}
			if st := r.Stats(); st.DroppedOversized != 0 {
				t.Errorf("the relay dropped %d oversized datagrams", st.DroppedOversized)
			}
		})
	}
}

// GONE for a range the member partly holds: the gap ends before the first
// held message, and the held ones are delivered.
func TestGoneKeepsHeldMessages(t *testing.T) {
	r := startRelay(t)
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	bob.mu.Lock()
	inc, n := bob.mode.(*memberSession).inc, bob.in.next
	bob.mu.Unlock()
	now := time.Now().UnixNano()
	for s := n + 1; s <= n+5; s++ {
		bob.handle(appendDeliver(nil, inc, s, now, 9, s, KindChat, "zed", "", []byte(fmt.Sprint(s))), netip.AddrPort{}, false)
	}
	bob.handle(appendU64Pair(nil, tGone, inc, n, n+5), netip.AddrPort{}, false)
	_, err := bob.Receive(ctxT(t))
	var g *GapError
	if !errors.As(err, &g) || g.First != n || g.Last != n {
		t.Fatalf("Receive = %v, want a gap of exactly seq %d", err, n)
	}
	for s := n + 1; s <= n+5; s++ {
		if msg := recv(t, bob); msg.Seq != s {
			t.Fatalf("got seq %d, want the held %d", msg.Seq, s)
		}
	}
}

// A full queue with a newer message known must not make the timer loop
// spin: it waits at least the NACK interval.
func TestFullQueueDoesNotSpin(t *testing.T) {
	r := startRelay(t)
	bob := join(t, r, "bob", WithQueueSize(1)) // his own join fills the queue
	alice := join(t, r, "alice")
	if err := alice.Send(ctxT(t), "hi"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		return bob.in.lastSeq > bob.in.next
	}, "bob to learn of messages he has no room for")
	bob.mu.Lock()
	d := bob.mode.tick(time.Now())
	bob.mu.Unlock()
	if d < nackInterval/2 {
		t.Errorf("timer loop re-arms after %v with a full queue", d)
	}
}

// A sender that stays silent while others are expired and rejoin is not
// forgotten by a member pruning its origins: its chat sequenced again
// after the rejoin is still taken once.
func TestOriginsPruneKeepsRecentSenders(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	carol := join(t, r, "carol")
	expect(t, bob, KindJoin, "bob", "")
	expect(t, bob, KindJoin, "carol", "")

	sent := expireWhileDeaf(t, r, alice, bob, "once")
	bob.mu.Lock()
	for i := len(bob.in.origins); i < maxOrigins; i++ {
		bob.in.origins["gone"+strconv.Itoa(i)] = origin{uint64(i + 1), 1, 1} // senders of long ago
	}
	bob.mu.Unlock()
	if err := carol.Send(ctxT(t), "a new name speaks"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "carol", "a new name speaks")
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
	expect(t, bob, KindJoin, "alice", "")
	if err := alice.Send(ctxT(t), "after"); err != nil {
		t.Fatal(err)
	}
	for {
		msg := recv(t, bob)
		if msg.Text == "once" {
			t.Fatalf("bob received alice's %q again at seq %d", msg.Text, msg.Seq)
		}
		if msg.Text == "after" {
			break
		}
	}
}
