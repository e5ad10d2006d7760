package udpchat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// The read role's rules, without sockets.
func TestReadRole(t *testing.T) {
	signalled := func(c chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	r := newReadRole()
	if r.owner != ownerLoop {
		t.Fatalf("a new role is the loop's, got %v", r.owner)
	}
	if r.yield(false) {
		t.Error("the loop gave the role up before any Receive asked")
	}
	if r.take() {
		t.Fatal("a Receive took the role from a loop that reads")
	}
	if r.yield(true) || r.owner != ownerLoop {
		t.Error("the loop gave the role up while the member needs it")
	}
	if !r.yield(false) || r.owner != ownerNone || !signalled(r.handoff) {
		t.Fatalf("the loop kept the role a Receive asked for (owner %v)", r.owner)
	}
	if r.yield(false) {
		t.Error("a role given up was given up again")
	}
	if !r.take() || r.owner != ownerReceive {
		t.Fatal("a Receive did not take a free role")
	}
	if r.take() {
		t.Error("a second Receive took the role another one holds")
	}
	r.reclaim() // a Send: the Receive that reads takes its answer
	if r.owner != ownerReceive {
		t.Error("reclaim took the role from a Receive that reads")
	}

	r.blocked = true
	if !r.mustEnd() {
		t.Error("a waiting read is not to be ended")
	}
	r.interrupt()
	if r.mustEnd() {
		t.Error("a read already interrupted is to be ended again")
	}
	if !r.cleared() || r.cleared() {
		t.Error("an interrupt is not cleared once")
	}

	r.release(false)
	if r.owner != ownerNone || r.blocked || !signalled(r.handoff) {
		t.Errorf("a Receive's release did not lease the role (owner %v)", r.owner)
	}
	r.reclaim()
	if r.owner != ownerLoop || !signalled(r.loopWake) {
		t.Errorf("reclaim left a leased role with %v", r.owner)
	}
	r.take() // asks
	r.yield(false)
	r.take()
	r.release(true)
	if r.owner != ownerLoop || !signalled(r.loopWake) {
		t.Errorf("a release while the member needs the loop left the role with %v", r.owner)
	}
	if r.want {
		t.Error("the loop took the role back with a stale request to give it up")
	}
}

// readsDirect waits until m's Receive, called in the background, holds
// the read role and waits on the socket, after the member took one
// message the loop read (the loop gives the role up once it drained the
// socket). It returns the background Receive's result.
func readsDirect(t *testing.T, m *Member, from *Member, ctx context.Context) <-chan received {
	t.Helper()
	if err := from.Send(ctxT(t), "first"); err != nil {
		t.Fatal(err)
	}
	expect(t, m, KindChat, from.Name(), "first")
	got := make(chan received, 1)
	go func() {
		msg, err := m.Receive(ctx)
		got <- received{msg, err}
	}()
	waitFor(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.rd.owner == ownerReceive && m.rd.blocked
	}, m.Name()+"'s Receive reading the socket itself")
	return got
}

type received struct {
	msg Message
	err error
}

// directPair runs a relay with alice and bob in it, alice having taken
// both join events, on a platform where Receive reads its socket.
func directPair(t *testing.T) (r *Relay, alice, bob *Member) {
	t.Helper()
	if !directReads {
		t.Skip("Receive reads its socket itself only on Linux")
	}
	r = startRelay(t)
	alice = join(t, r, "alice")
	bob = join(t, r, "bob")
	expect(t, alice, KindJoin, "alice", "")
	expect(t, alice, KindJoin, "bob", "")
	return r, alice, bob
}

// returned waits for the background Receive's result; what names it.
func returned(t *testing.T, got <-chan received, what string) received {
	t.Helper()
	select {
	case g := <-got:
		return g
	case <-time.After(testTimeout):
		t.Fatalf("%s never returned", what)
		return received{}
	}
}

// A Receive reads the socket itself once the loop has given it the role,
// and takes what arrives there.
func TestReceiveReadsSocket(t *testing.T) {
	_, alice, bob := directPair(t)
	got := readsDirect(t, alice, bob, ctxT(t))
	if err := bob.Send(ctxT(t), "second"); err != nil {
		t.Fatal(err)
	}
	if g := returned(t, got, "the Receive that reads the socket"); g.err != nil || g.msg.Text != "second" {
		t.Fatalf("Receive: %+v, %v", g.msg, g.err)
	}
}

// A Receive that waits on the socket returns ctx's error when ctx ends,
// and Close ends one with ErrClosed; a Receive after the first goes on.
func TestReceiveReadingEnds(t *testing.T) {
	r, alice, bob := directPair(t)

	ctx, cancel := context.WithCancel(ctxT(t))
	got := readsDirect(t, alice, bob, ctx)
	cancel()
	if g := returned(t, got, "a cancelled Receive reading the socket"); !errors.Is(g.err, context.Canceled) {
		t.Fatalf("Receive after cancel: %+v, %v; want context.Canceled", g.msg, g.err)
	}
	if err := bob.Send(ctxT(t), "after"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, KindChat, "bob", "after")

	got = readsDirect(t, alice, bob, ctxT(t))
	alice.Close()
	if g := returned(t, got, "a Receive reading the socket at Close"); !errors.Is(g.err, ErrClosed) {
		t.Fatalf("Receive after Close: %+v, %v; want ErrClosed", g.msg, g.err)
	}
	waitFor(t, func() bool { return names(r.Members()) == "bob" }, "alice's LEAVE taken")
}

// A member that answers each message it receives with a Send, in one
// goroutine, is not left waiting: the Send's answer is read though no
// Receive runs meanwhile. Were it read only at the member's next timer
// tick, each Send would wait for its resend timeout (a resend is due
// first), and be counted as resent.
func TestEchoSendsAreAnswered(t *testing.T) {
	r := startRelay(t, WithRateLimit(0, 0))
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	expect(t, alice, KindJoin, "alice", "")
	expect(t, alice, KindJoin, "bob", "")
	const rounds = 50
	done := make(chan error, 1)
	go func() {
		for i := 0; i < rounds; {
			msg, err := alice.Receive(ctxT(t))
			if err != nil {
				done <- err
				return
			}
			if msg.From != "bob" {
				continue // her own echoes, as the relay delivers them
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err = alice.Send(ctx, fmt.Sprintf("echo %d", i))
			cancel()
			if err != nil {
				done <- fmt.Errorf("echo %d: %w", i, err)
				return
			}
			i++
		}
		done <- nil
	}()
	for i := range rounds {
		if err := bob.Send(ctxT(t), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		for {
			msg := recv(t, bob)
			if msg.From == "alice" {
				if want := fmt.Sprintf("echo %d", i); msg.Text != want {
					t.Fatalf("bob got %q, want %q", msg.Text, want)
				}
				break
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A resend or two may be the machine's hiccup; a Send whose answer
	// waits for the timer is resent every time.
	if n := alice.Stats().Retransmitted; n > 2 {
		t.Errorf("alice resent %d of %d echoes: their answers were not read while she sent", n, rounds)
	}
}

// Receives from several goroutines at once get every message once, in
// the relay's order within each goroutine.
func TestConcurrentReceives(t *testing.T) {
	r := startRelay(t, WithRateLimit(0, 0))
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	const n, receivers = 300, 3
	var mu sync.Mutex
	seen := make(map[string]int)
	var wg sync.WaitGroup
	for range receivers {
		wg.Go(func() {
			var last uint64
			for {
				msg, err := bob.Receive(ctxT(t))
				if err != nil {
					t.Errorf("Receive: %v", err)
					return
				}
				if msg.Seq <= last {
					t.Errorf("seq %d after %d in one goroutine", msg.Seq, last)
				}
				last = msg.Seq
				if msg.Text == "end" {
					return
				}
				if msg.Kind != KindChat {
					t.Errorf("bob got %v from %s", msg.Kind, msg.From)
					continue
				}
				mu.Lock()
				seen[msg.Text]++
				mu.Unlock()
			}
		})
	}
	var swg sync.WaitGroup
	for i := range n {
		swg.Go(func() {
			if err := alice.Send(ctxT(t), fmt.Sprint(i)); err != nil {
				t.Error(err)
			}
		})
	}
	swg.Wait()
	for range receivers {
		if err := alice.Send(ctxT(t), "end"); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d distinct messages received, want %d", len(seen), n)
	}
	for text, c := range seen {
		if c != 1 {
			t.Errorf("%q received %d times", text, c)
		}
	}
}

// While messages wait in the queue, the loop reads: the Receives that take
// them do not, and what arrives meanwhile belongs in the member's queue
// and early messages, not in the socket's buffer, which may overflow.
func TestQueuedMessagesKeepLoopReading(t *testing.T) {
	if !directReads {
		t.Skip("Receive reads its socket itself only on Linux")
	}
	r := startRelay(t, WithRateLimit(0, 0))
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	const burst = 10
	for round := range 20 {
		got := readsDirect(t, bob, alice, ctxT(t))
		var wg sync.WaitGroup
		for i := range burst {
			wg.Go(func() {
				if err := alice.Send(ctxT(t), fmt.Sprintf("%d.%d", round, i)); err != nil {
					t.Error(err)
				}
			})
		}
		if g := returned(t, got, "bob's Receive of the burst"); g.err != nil {
			t.Fatal(g.err)
		}
		bob.mu.Lock()
		queued, owner := bob.in.queue.n, bob.rd.owner
		bob.mu.Unlock()
		receiveN(t, bob, burst-1)
		wg.Wait()
		if queued == 0 {
			continue // the read took one datagram: try again
		}
		if owner != ownerLoop {
			t.Fatalf("%d messages queued and the read role with %v, not the loop", queued, owner)
		}
		return
	}
	t.Fatal("no read took more than one datagram in 20 bursts")
}
