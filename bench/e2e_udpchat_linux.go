//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udpchat/udpchat"
)

// The end-to-end cases' udpchat side: a Relay (see startE2ERelay) and N
// Members in this process.

// runE2EUdpchat runs spec through a udpchat Relay and spec.N udpchat
// Members, member 0 sending.
func runE2EUdpchat(cfg *config, spec e2eSpec) (res e2eResult, err error) {
	n := spec.N
	res = e2eResult{Case: spec.Case, Via: "udpchat", N: n, Msgs: spec.Msgs}
	relay, err := startE2ERelay(cfg, "udpchat", n)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, relay.close()) }()
	addr := relay.addr()
	stats := func() (udpchat.RelayStats, error) {
		rep, err := relay.report(false)
		return rep.Stats, err
	}

	members := make([]*udpchat.Member, n)
	defer func() {
		var wg sync.WaitGroup
		for _, m := range members {
			if m != nil {
				wg.Go(func() { m.Close() })
			}
		}
		wg.Wait()
	}()
	// Join, e2eJoiners at a time.
	jctx, jcancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer jcancel()
	sem := make(chan struct{}, e2eJoiners)
	var jwg sync.WaitGroup
	var jerr atomic.Pointer[error]
	members[0], err = udpchat.Join(jctx, "m0", udpchat.WithAddr(addr))
	if err != nil {
		return res, fmt.Errorf("join m0: %w", err)
	}
	for i := 1; i < n; i++ {
		sem <- struct{}{}
		jwg.Go(func() {
			defer func() { <-sem }()
			m, err := udpchat.Join(jctx, fmt.Sprintf("m%d", i), udpchat.WithAddr(addr))
			if err != nil {
				jerr.CompareAndSwap(nil, &err)
				return
			}
			members[i] = m
		})
	}
	jwg.Wait()
	if e := jerr.Load(); e != nil {
		return res, fmt.Errorf("join: %w", *e)
	}

	// One Receive loop per member.
	t := newTally(n, spec.Msgs, spec.Case == "latency")
	rctx, rcancel := context.WithCancel(context.Background())
	var rwg sync.WaitGroup
	var joins, gaps atomic.Uint64
	defer func() { rcancel(); rwg.Wait() }()
	for i, m := range members {
		rwg.Go(func() {
			for {
				msg, err := m.Receive(rctx)
				switch {
				case errors.Is(err, udpchat.ErrGap):
					gaps.Add(1)
				case err != nil:
					return
				case msg.Kind == udpchat.KindJoin:
					joins.Add(1)
				case msg.Kind == udpchat.KindChat && msg.From == "m0":
					t.hit(i, msg.Text, msg.Time.UnixNano())
				}
			}
		})
	}
	// Let the join events settle: neither the relay's deliveries nor the
	// members' join events grow for 50ms. Member i gets the events of
	// members i to n-1 (its own included).
	settle := time.Now().Add(cfg.Timeout)
	for last := ^uint64(0); time.Now().Before(settle); {
		time.Sleep(50 * time.Millisecond)
		rs, err := stats()
		if err != nil {
			return res, err
		}
		j := joins.Load() + rs.Delivered
		if j == last {
			break
		}
		last = j
	}
	if j, want := joins.Load(), uint64(n)*uint64(n+1)/2; j != want {
		res.notef("members received %d join events before the run, want %d", j, want)
	}
	s0, err := stats()
	if err != nil {
		return res, err
	}
	if s0.Members != n {
		res.notef("relay has %d members, want %d", s0.Members, n)
	}
	m0 := memberTotals(members)
	start := time.Now()
	t0, cpu0 := nowNS(), processCPU()
	deadline := start.Add(spec.Deadline)
	sctx, scancel := context.WithDeadline(context.Background(), deadline)
	defer scancel()
	var confirmed, serrs atomic.Uint64
	var firstErr atomic.Pointer[error]
	sender := members[0]
	var stallMu sync.Mutex
	lastDone, stall := start, time.Duration(0)
	res.Sent = sendLoop(spec, e2eSenders, start.Add(spec.SendFor), func(seq uint64) {
		err := sender.Send(sctx, chatText(seq, nowNS()))
		stallMu.Lock()
		now := time.Now()
		stall, lastDone = max(stall, now.Sub(lastDone)), now
		if seq == e2eMark {
			res.MarkSecs = now.Sub(start).Seconds()
		}
		stallMu.Unlock()
		if err != nil {
			serrs.Add(1)
			firstErr.CompareAndSwap(nil, &err)
			return
		}
		confirmed.Add(1)
	})
	res.MaxStall = float64(stall.Microseconds()) / 1e3
	res.SendSecs = time.Since(start).Seconds()
	res.Confirmed, res.SendErrs = confirmed.Load(), serrs.Load()
	if e := firstErr.Load(); e != nil {
		res.notef("%d Sends failed, the first with %v", res.SendErrs, *e)
	}
	want := res.Sent * uint64(n)
	for t.total.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	end, cpu1 := nowNS(), processCPU()
	res.TimedOut = t.total.Load() < want
	s1, err := stats()
	if err != nil {
		return res, err
	}
	m1 := memberTotals(members)
	rcancel()
	rwg.Wait()
	t.rateFrom(&res, t0, end)
	t.finish(&res)
	res.cpuPerDlv(cpu0, cpu1)

	// The relay's counters over the run. Every datagram it took in is a
	// chat (sequenced now, or a resent one it had sequenced before) or
	// something else: NACKs, heartbeats, progress reports, joins.
	d := statsDelta(s1, s0)
	res.Relay = &d
	chatsIn := d.Sequenced + d.DroppedDuplicate + d.DroppedRateLimited + d.DroppedRejected
	if d.Received >= chatsIn {
		res.Control = d.Received - chatsIn
	}
	if res.Delivered > 0 {
		res.CtlPerDlv = float64(res.Control) / float64(res.Delivered)
	}
	res.NACKs, res.Retrans = m1.NACKs-m0.NACKs, m1.Retransmitted-m0.Retransmitted
	res.Missed, res.KernelDrop = m1.Missed-m0.Missed, m1.DroppedKernel-m0.DroppedKernel
	if g := gaps.Load(); g > 0 {
		res.notef("%d GapErrors at the receivers", g)
	}
	for name, v := range counters(&d) {
		if v > 0 && (strings.HasPrefix(name, "Dropped") || name == "Expired") {
			res.notef("relay counted %s=%d in the run", name, v)
		}
	}
	return res, nil
}

// memberTotals sums the members' counters.
func memberTotals(ms []*udpchat.Member) udpchat.MemberStats {
	var t udpchat.MemberStats
	for _, m := range ms {
		s := m.Stats()
		t.Sent += s.Sent
		t.Retransmitted += s.Retransmitted
		t.Received += s.Received
		t.Duplicates += s.Duplicates
		t.NACKs += s.NACKs
		t.Missed += s.Missed
		t.Dropped += s.Dropped
		t.DroppedKernel += s.DroppedKernel
		t.Rejoins += s.Rejoins
	}
	return t
}

// statsDelta is b's counters minus a's; Members is b's.
func statsDelta(b, a udpchat.RelayStats) udpchat.RelayStats {
	d := b
	dv := reflect.ValueOf(&d).Elem()
	for name, v := range counters(&a) {
		f := dv.FieldByName(name)
		f.SetUint(f.Uint() - v)
	}
	return d
}
