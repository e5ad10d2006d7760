//go:build linux

package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// The relays the speaker feeds: the raw relay, the naive relay and
// udpchat's, each run and their rounds.

// fedRun holds the rounds of the relays the speaker feeds, the raw relay,
// the naive relay and udpchat's, for one N and mode: round i of each is
// element i.
type fedRun struct {
	rawRelay, naive, uc []result
}

// fedRounds measures the fed relays cfg.Rounds times, one after the other
// within a round and in a turning order (round 0 raw relay, naive,
// udpchat; round 1 naive, udpchat, raw relay; ...), so that a round
// compares the relays a few seconds apart and none always goes first. On
// this machine a figure moves by a quarter from one window to the next
// (where the scheduler puts the relay's thread, mostly); one window each
// made a ratio a draw.
func fedRounds(cfg *config, n int, broadcast bool, step func(result, error) (result, error)) (_ fedRun, err error) {
	var f fedRun
	cpus, unpin, err := pinFed(cfg)
	if err != nil {
		return f, err
	}
	defer func() { err = errors.Join(err, unpin()) }()
	fed := *cfg
	fed.relayCPUs = cpus
	cfg = &fed
	runs := []struct {
		to  *[]result
		run func() (result, error)
	}{
		{&f.rawRelay, func() (result, error) { return runRawRelay(cfg, n, broadcast) }},
		{&f.naive, func() (result, error) { return runNaive(cfg, n, broadcast) }},
		{&f.uc, func() (result, error) { return runUdpchat(cfg, n, broadcast) }},
	}
	for i := range cfg.Rounds {
		for k := range runs {
			c := runs[(i+k)%len(runs)]
			r, err := step(c.run())
			if err != nil {
				return f, err
			}
			*c.to = append(*c.to, r)
		}
	}
	return f, nil
}

// runNaive measures the naive relay fed by the speaker; with broadcast it
// writes each datagram once to 127.255.255.255, where the n receivers
// share a port, and the speaker sends from a unicast socket of its own.
func runNaive(cfg *config, n int, broadcast bool) (result, error) {
	return runFed(cfg, n, broadcast, "naive", "fed naive")
}

// runRawRelay measures the raw relay fed by the speaker, as the naive relay
// and udpchat's are fed.
func runRawRelay(cfg *config, n int, broadcast bool) (result, error) {
	return runFed(cfg, n, broadcast, "raw relay", "raw relay")
}

// runFed measures a baseline relay of kind (a relaySpec's) writing to the
// receivers' addresses (in broadcast mode, the group address), fed by the
// speaker.
func runFed(cfg *config, n int, broadcast bool, name, kind string) (result, error) {
	r := result{Case: name, N: n}
	if broadcast {
		r.Case += " broadcast"
	}
	d, fds, addrs, err := openReceivers(n, broadcast)
	if err != nil {
		return r, err
	}
	defer d.stop()
	speaker := fds[0]
	if broadcast {
		// The speaker sends from a unicast socket of its own; its copies
		// are counted at receiver #0, as for udpchat's broadcast.
		if speaker, _, err = openUDP(loopback, 0, false, true, 0); err != nil {
			return r, err
		}
		defer unix.Close(speaker)
	}
	fr, ap, err := startRelayAt(cfg, relaySpec{Kind: kind, Dsts: addrs, Broadcast: broadcast})
	if err != nil {
		return r, err
	}
	to, msg := sockaddr(ap), payload(payloadSize)
	r.Sent, err = underLoad(func(stop <-chan struct{}) (uint64, error) {
		return speak(stop, cfg.deadline(), cfg.limit(), d, func(uint64) error {
			stamp(msg, nowNS())
			return sendTo(speaker, msg, &to)
		})
	}, func() { cfg.window(d, 0, n, &r, fr) })
	err = errors.Join(err, noteFailures(fr, &r), fr.close())
	if err != nil {
		return r, err
	}
	return r, d.stop()
}

// noteFailures notes in r the reads and writes the baseline relay rl
// failed.
func noteFailures(rl benchRelay, r *result) error {
	rep, err := rl.report(false)
	if err != nil {
		return err
	}
	if rep.Errs > 0 {
		r.notef("%s: %d reads or writes failed, the first with %s", r.Case, rep.Errs, rep.First)
	}
	return nil
}

// runUdpchat measures the relay fed by the speaker.
func runUdpchat(cfg *config, n int, broadcast bool) (result, error) {
	r := result{Case: "udpchat", N: n}
	if broadcast {
		r.Case = "udpchat broadcast"
	}
	g, err := newGroup(cfg, n, broadcast, 0, &r)
	if err != nil {
		return r, err
	}
	send := g.chats()
	r.Sent, err = underLoad(func(stop <-chan struct{}) (uint64, error) {
		return speak(stop, cfg.deadline(), cfg.limit(), g.d, send)
	}, func() { cfg.window(g.d, g.first, g.first+n, &r, g.relay) })
	if err == nil {
		g.settle(n, r.Sent, &r)
	}
	if cerr := g.close(); err == nil {
		err = cerr
	}
	return r, err
}

// row compares udpchat's median round with the median round of base (the
// ratio should be at least want), and lists each round's own ratio beside
// it.
func (f fedRun) row(name string, base []result, baseline string, want float64) row {
	r := rateRow(name, median(base), median(f.uc), baseline, true, want)
	for i := range min(len(base), len(f.uc)) {
		if base[i].Rate > 0 {
			r.Rounds = append(r.Rounds, f.uc[i].Rate/base[i].Rate)
		}
	}
	return r
}

// median returns the round of median rate (of an even count, the upper
// of the two middle ones).
func median(rs []result) result {
	if len(rs) == 0 {
		return result{}
	}
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int {
		switch {
		case a.Rate < b.Rate:
			return -1
		case a.Rate > b.Rate:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

// roundRatios prints the ratios of each round: "0.91 1.02 0.97".
func roundRatios(rs []float64) string {
	if len(rs) < 2 {
		return "-"
	}
	f := make([]string, len(rs))
	for i, v := range rs {
		f[i] = fmt.Sprintf("%.2f", v)
	}
	return strings.Join(f, " ")
}
