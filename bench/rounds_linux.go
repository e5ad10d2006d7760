//go:build linux

package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

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
