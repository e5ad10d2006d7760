//go:build linux

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/udpchat/udpchat"
)

// startE2ERelay starts an end-to-end relay of kind "udpchat" or "naive"
// for up to maxMembers members (see startBenchRelay).
func startE2ERelay(cfg *config, kind string, maxMembers int) (benchRelay, error) {
	return startBenchRelay(cfg, relaySpec{Kind: kind, Members: maxMembers})
}

// udpchatE2E is udpchat's relay of the end-to-end cases, served in this
// process.
type udpchatE2E struct {
	r      *udpchat.Relay
	served chan error
}

func startUdpchatE2E(maxMembers int) (*udpchatE2E, error) {
	r, err := udpchat.NewRelay(
		udpchat.WithAddr("127.0.0.1:0"),
		udpchat.WithRateLimit(0, 0),
		udpchat.WithMaxMembers(max(maxMembers, 1024)),
	)
	if err != nil {
		return nil, err
	}
	u := &udpchatE2E{r: r, served: make(chan error, 1)}
	go func() { u.served <- r.Serve(context.Background()) }()
	return u, nil
}

func (u *udpchatE2E) addr() string { return u.r.Addr().String() }

func (u *udpchatE2E) report(bool) (relayReport, error) {
	return relayReport{Addr: u.addr(), Stats: u.r.Stats()}, nil
}

func (u *udpchatE2E) close() error {
	err := u.r.Close()
	if serr := <-u.served; serr != nil && err == nil {
		err = fmt.Errorf("relay Serve returned %w after Close", serr)
	}
	return err
}

// relayQuiet waits until r has written nothing for idle (the naive
// relay's writes); false after timeout.
func relayQuiet(r benchRelay, idle, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	rep, err := r.report(false)
	if err != nil {
		return false, err
	}
	last, since := rep.Writes, time.Now()
	for time.Since(since) < idle {
		if time.Now().After(deadline) {
			return false, nil
		}
		time.Sleep(5 * time.Millisecond)
		if rep, err = r.report(false); err != nil {
			return false, err
		}
		if rep.Writes != last {
			last, since = rep.Writes, time.Now()
		}
	}
	return true, nil
}
