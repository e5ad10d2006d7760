package udpchat

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var soak = flag.Duration("soak", 0, "run TestLossSoak for this long (for example 60s)")

// lossRun is one chat over a lossyProxy: every member sends perMember
// messages, all at once, while every member receives.
type lossRun struct {
	members, perMember int
	imp                impairment
	seed               uint64
	// midway, if set, runs once the relay has sequenced a third of the
	// messages: an outage, a relay restart (then set restarts).
	midway   func(t *testing.T, env *lossEnv)
	restarts bool
}

type lossEnv struct {
	restartable
	proxy *lossyProxy
}

type lossResult struct {
	elapsed time.Duration
	resent  int         // messages some member got from another relay than the first member did
	member  MemberStats // summed over members
	relay   RelayStats
	proxy   proxyStats
}

func (lr lossRun) run(t *testing.T) lossResult {
	env := &lossEnv{restartable: restartable{opts: []Option{WithHeartbeat(100 * time.Millisecond), WithHistory(4096)}}}
	env.startRelayAt(t, "127.0.0.1:0")
	defer func() { env.stopRelay(false) }()
	env.proxy = newLossyProxy(t, env.relay.Addr(), lr.seed, lr.imp, lr.imp)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ms := make([]*Member, lr.members)
	for i := range ms {
		m, err := Join(ctx, fmt.Sprintf("m%d", i), WithAddr(env.proxy.Addr()))
		if err != nil {
			t.Fatalf("Join through the lossy proxy: %v", err)
		}
		defer m.Close()
		ms[i] = m
	}
	// From the last join on, every member's stream is the same.
	last := ms[len(ms)-1].Name()
	lastJoin := make([]uint64, len(ms))
	for i, m := range ms {
		for {
			msg, err := m.Receive(ctx)
			if err != nil {
				t.Fatalf("%s waiting for the last join: %v", m.Name(), err)
			}
			if msg.Kind == KindJoin && msg.From == last {
				lastJoin[i] = msg.Seq
				break
			}
		}
	}

	total := lr.members * lr.perMember
	start := time.Now()
	got := make([][]string, len(ms))
	// Where each member got each message: its seq, and which relay
	// incarnation (counted by seq going back) sequenced it.
	type where struct{ seq, incarnation uint64 }
	at := make([]map[string]where, len(ms))
	var rwg, swg sync.WaitGroup
	for i, m := range ms {
		at[i] = make(map[string]where, total)
		rwg.Go(func() {
			// A new relay numbers from 1 again: seq going back is a restart.
			lastSeq, inc := lastJoin[i], uint64(0)
			for len(got[i]) < total {
				msg, err := m.Receive(ctx)
				if err != nil {
					t.Errorf("%s after %d of %d messages: %v", m.Name(), len(got[i]), total, err)
					return
				}
				if msg.Seq < lastSeq {
					inc++
				}
				lastSeq = msg.Seq
				if msg.Kind != KindChat {
					continue // presence around a restart
				}
				if _, dup := at[i][msg.Text]; dup {
					t.Errorf("%s received %q twice", m.Name(), msg.Text)
				}
				at[i][msg.Text] = where{msg.Seq, inc}
				got[i] = append(got[i], msg.Text)
			}
		})
	}
	var failed atomic.Int64
	for _, m := range ms {
		for k := range lr.perMember {
			swg.Go(func() {
				if err := m.Send(ctx, fmt.Sprintf("%s/%d", m.Name(), k)); err != nil {
					failed.Add(1)
					t.Errorf("%s Send %d: %v", m.Name(), k, err)
				}
			})
		}
	}
	if lr.midway != nil {
		waitFor(t, func() bool { return env.relay.Stats().Sequenced >= uint64(lr.members+total/3) }, "the relay to sequence a third of the messages")
		lr.midway(t, env)
	}
	swg.Wait()
	rwg.Wait()
	res := lossResult{elapsed: time.Since(start), relay: env.relay.Stats(), proxy: env.proxy.Stats()}
	for _, m := range ms {
		s := m.Stats()
		res.member.Sent += s.Sent
		res.member.Retransmitted += s.Retransmitted
		res.member.Duplicates += s.Duplicates
		res.member.NACKs += s.NACKs
		res.member.Missed += s.Missed
		res.member.Rejoins += s.Rejoins
	}
	if t.Failed() {
		return res
	}
	// One order: a message that two members got from the same relay
	// incarnation has the same seq for both. Without a restart that is
	// every message, so every member's stream is the same.
	for i := range got {
		if len(got[i]) != total {
			t.Fatalf("%s received %d of %d", ms[i].Name(), len(got[i]), total)
		}
		for text, w := range at[i] {
			w0 := at[0][text]
			switch {
			case w.incarnation != w0.incarnation:
				res.resent++
			case w.seq != w0.seq:
				t.Fatalf("%q: %s got it as seq %d, %s as seq %d of the same relay", text, ms[i].Name(), w.seq, ms[0].Name(), w0.seq)
			}
			if !lr.restarts && w.incarnation != 0 {
				t.Fatalf("%s saw the relay restart", ms[i].Name())
			}
		}
	}
	return res
}

func (res lossResult) String() string {
	return fmt.Sprintf("%v; %d messages reached a member through another relay; proxy forwarded %d, dropped %d, duplicated %d; members resent %d chats, sent %d NACKs, saw %d duplicates, rejoined %d times; relay retransmitted %d",
		res.elapsed.Round(time.Millisecond), res.resent, res.proxy.forwarded, res.proxy.dropped, res.proxy.duplicated,
		res.member.Retransmitted, res.member.NACKs, res.member.Duplicates, res.member.Rejoins, res.relay.Retransmitted)
}

var lossy = impairment{drop: 0.20, dup: 0.05, maxDelay: 2 * time.Millisecond}

// TestLoss: 5 members send 100 messages each, all at once, through 20% loss
// and 5% duplication both ways: every Send returns nil and every member
// receives all 500 exactly once, in one identical order.
func TestLoss(t *testing.T) {
	res := lossRun{members: 5, perMember: 100, imp: lossy, seed: 1}.run(t)
	t.Log(res)
}

// TestLossOutage adds a blackout: all traffic is dropped for one second
// in the middle of the stream.
func TestLossOutage(t *testing.T) {
	res := lossRun{members: 5, perMember: 100, imp: lossy, seed: 2, midway: func(t *testing.T, env *lossEnv) {
		env.proxy.blackout.Store(true)
		time.Sleep(time.Second) // the outage itself, not a synchronisation
		env.proxy.blackout.Store(false)
	}}.run(t)
	t.Log(res)
}

// TestLossSoak runs the loss test for -soak long at 30% loss.
func TestLossSoak(t *testing.T) {
	if *soak == 0 {
		t.Skip("run with -soak=60s")
	}
	deadline := time.Now().Add(*soak)
	imp := impairment{drop: 0.30, dup: 0.05, maxDelay: 2 * time.Millisecond}
	var rounds, msgs int
	var busy time.Duration
	for seed := uint64(100); time.Now().Before(deadline); seed++ {
		res := lossRun{members: 5, perMember: 100, imp: imp, seed: seed}.run(t)
		if t.Failed() {
			return
		}
		rounds++
		msgs += 500
		busy += res.elapsed
		t.Logf("round %d: %v", rounds, res)
	}
	t.Logf("soak: %d rounds, %d messages to 5 members each at 30%% loss, %.0f messages/s, no loss, no duplicate, one order",
		rounds, msgs, float64(msgs)/busy.Seconds())
}

// TestLossRelayRestart kills the relay in the middle of the stream (no
// goodbye: members notice through the new relay) and starts a new one on
// the same port, all under 20% loss: every Send returns nil and every member
// receives all 500 messages exactly once. Messages the dead relay had
// sequenced but not yet delivered everywhere come back from their senders;
// the members that had not got them get them from the new relay, at its
// place in the new order.
func TestLossRelayRestart(t *testing.T) {
	res := lossRun{members: 5, perMember: 100, imp: lossy, seed: 3, restarts: true, midway: func(t *testing.T, env *lossEnv) {
		env.stopRelay(true)
		env.startRelayAt(t, env.addr)
	}}.run(t)
	t.Log(res)
	if res.member.Rejoins != 5 {
		t.Errorf("members rejoined %d times, want 5", res.member.Rejoins)
	}
}
