//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/udpchat/udpchat"
)

// The end-to-end cases' relays, udpchat's and the naive one. By default
// each runs in a process of its own, this program started again with
// -serve-e2e-relay, as a relay is deployed: its goroutines then do not
// share the Go scheduler (and its two processors here) with a hundred
// members' Receive loops and a sender, and the kernel's scheduler, not
// Go's, shares the CPUs between them. -e2e-in-process keeps them here.

// An e2eRelay is a relay of the end-to-end cases, wherever it runs.
type e2eRelay interface {
	addr() string
	// report tells of the relay; with known, the naive relay lists the
	// clients it has heard from (a thousand addresses, asked for only
	// while they register).
	report(known bool) (relayReport, error)
	close() error
}

// A relayReport is what a relay tells of itself: udpchat's relay its
// Stats, the naive one its writes and, asked, the clients it has heard
// from.
type relayReport struct {
	Addr   string             `json:"addr"`
	Stats  udpchat.RelayStats `json:"stats"`
	Known  []string           `json:"known,omitempty"` // the clients, by address
	Writes uint64             `json:"writes"`
	Errs   uint64             `json:"errs"`
	First  string             `json:"first_error,omitempty"`
	Err    string             `json:"error,omitempty"` // the child's own failure
}

// startE2ERelay starts a relay of kind "udpchat" or "naive" for up to
// maxMembers members, in its own process unless cfg says otherwise.
func startE2ERelay(cfg *config, kind string, maxMembers int) (e2eRelay, error) {
	if cfg.E2EInProcess {
		return startLocalRelay(kind, maxMembers)
	}
	return startRelayProcess(kind, maxMembers, cfg.Timeout)
}

// startLocalRelay starts a relay of kind in this process.
func startLocalRelay(kind string, maxMembers int) (e2eRelay, error) {
	var r e2eRelay
	var err error
	switch kind {
	case "naive":
		r, err = startNaiveE2E()
	case "udpchat":
		r, err = startUdpchatE2E(maxMembers)
	default:
		err = fmt.Errorf("-serve-e2e-relay %q: want udpchat or naive", kind)
	}
	if err != nil {
		return nil, err // not a nil pointer in an interface
	}
	return r, nil
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
func relayQuiet(r e2eRelay, idle, timeout time.Duration) (bool, error) {
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

// A relayProcess is a relay in a child process. The child says its
// address in a first line; each line the parent writes ("report", or
// "known" for the naive relay's clients too) asks for a relayReport, a
// line of JSON; the end of its input stops it.
type relayProcess struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
	address string
	timeout time.Duration
	dead    error // the child did not answer in time and was killed: no more asks
}

func startRelayProcess(kind string, maxMembers int, timeout time.Duration) (*relayProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("relay process: %w", err)
	}
	cmd := exec.Command(exe, "-serve-e2e-relay", kind, "-serve-e2e-members", strconv.Itoa(maxMembers))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("relay process: %w", err)
	}
	p := &relayProcess{cmd: cmd, in: in, out: bufio.NewReader(out), timeout: timeout}
	rep, err := p.read()
	if err != nil {
		p.close()
		return nil, fmt.Errorf("%s relay process: %w", kind, err)
	}
	p.address = rep.Addr
	return p, nil
}

func (p *relayProcess) addr() string { return p.address }

func (p *relayProcess) report(known bool) (relayReport, error) {
	if p.dead != nil {
		return relayReport{}, fmt.Errorf("relay process: %w", p.dead)
	}
	ask := "report\n"
	if known {
		ask = "known\n"
	}
	if _, err := io.WriteString(p.in, ask); err != nil {
		return relayReport{}, fmt.Errorf("relay process: %w", err)
	}
	rep, err := p.read()
	if err != nil {
		return rep, fmt.Errorf("relay process: %w", err)
	}
	return rep, nil
}

// read reads one relayReport, within p.timeout: a child that hangs ends
// the run instead of stalling it, and is killed; the read left waiting
// then ends, and no other starts beside it.
func (p *relayProcess) read() (relayReport, error) {
	type line struct {
		b   []byte
		err error
	}
	got := make(chan line, 1)
	go func() {
		b, err := p.out.ReadBytes('\n')
		got <- line{b, err}
	}()
	var rep relayReport
	select {
	case l := <-got:
		if l.err != nil {
			return rep, l.err
		}
		if err := json.Unmarshal(l.b, &rep); err != nil {
			return rep, fmt.Errorf("%q: %w", l.b, err)
		}
		if rep.Err != "" {
			return rep, errors.New(rep.Err)
		}
		return rep, nil
	case <-time.After(p.timeout):
		p.cmd.Process.Kill() // a read blocked on its output then ends
		p.dead = fmt.Errorf("no answer in %v", p.timeout)
		return rep, p.dead
	}
}

func (p *relayProcess) close() error {
	p.in.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("relay process: %w", err)
		}
		return nil
	case <-time.After(p.timeout):
		p.cmd.Process.Kill()
		<-done
		return fmt.Errorf("relay process: did not stop in %v", p.timeout)
	}
}

// serveE2ERelay is the child's side: it serves a relay of kind until its
// input ends, answering each line with a report. A relay it cannot start
// is its one report's error.
func serveE2ERelay(kind string, maxMembers int) error {
	enc := json.NewEncoder(os.Stdout)
	l, err := startLocalRelay(kind, maxMembers)
	if err != nil {
		enc.Encode(relayReport{Err: err.Error()})
		return err
	}
	say := func(known bool) error {
		rep, err := l.report(known)
		if err != nil {
			rep.Err = err.Error()
		}
		return enc.Encode(rep)
	}
	if err := say(false); err != nil {
		l.close()
		return err
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if err := say(sc.Text() == "known"); err != nil {
			l.close()
			return err
		}
	}
	return errors.Join(sc.Err(), l.close())
}
