//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/udpchat/udpchat"
	"golang.org/x/sys/unix"
)

// Where the relays run. By default each relay the speaker feeds, and each
// end-to-end relay, runs in a process of its own, this program started
// again with -serve-relay, as a relay is deployed: its goroutines then do
// not share the Go scheduler and its Ps with the drain's locked thread,
// the speaker and the members' Receive loops, and the kernel's scheduler,
// not Go's, shares the CPUs between them. In one process a relay's
// goroutine waits for a P that a thread in a system call holds; the raw
// relay, on a locked thread of its own, waits less, so the comparison was
// not even (BENCHMARKS.md). -in-process keeps the relays here. The
// latency, memory and rooms cases keep udpchat's relay in this process:
// their baseline has no relay, or they measure its heap, or two
// arrangements of its own.

// A benchRelay is a relay a case measures, wherever it runs.
type benchRelay interface {
	addr() string
	// report tells of the relay; with known, the end-to-end naive relay
	// lists the clients it has heard from (a thousand addresses, asked
	// for only while they register).
	report(known bool) (relayReport, error)
	close() error
}

// A relaySpec says which relay to serve: "udpchat" or "naive" for the
// end-to-end cases, "fed udpchat", "fed naive" or "raw relay" for the
// relays the speaker feeds.
type relaySpec struct {
	Kind    string           `json:"kind"`
	Members int              `json:"members,omitempty"` // the members a udpchat relay takes
	Dsts    []netip.AddrPort `json:"dsts,omitempty"`    // fed naive, raw relay: whom each datagram goes to
	// Broadcast: Dsts is one broadcast address (SO_BROADCAST); Group: a
	// fed udpchat relay's WithBroadcast.
	Broadcast bool           `json:"broadcast,omitempty"`
	Group     netip.AddrPort `json:"group"`
	CPUs      []int          `json:"cpus,omitempty"` // the child's process runs on these (pinFed); none: anywhere
}

// A relayReport is what a relay tells of itself: udpchat's relay its
// Stats, a naive or raw relay its failed writes, the end-to-end naive
// relay its writes and, asked, the clients it has heard from.
type relayReport struct {
	Addr   string             `json:"addr"`
	Stats  udpchat.RelayStats `json:"stats"`
	Known  []string           `json:"known,omitempty"` // the clients, by address
	Writes uint64             `json:"writes"`
	Errs   uint64             `json:"errs"`
	First  string             `json:"first_error,omitempty"`
	Err    string             `json:"error,omitempty"` // the child's own failure
	Usage  *usage             `json:"usage,omitempty"` // the child's process, so far
}

// usage is what a relay's process has spent: CPU time (user and system)
// and context switches (voluntary and not), and its Ps: pinned to one CPU,
// the Go runtime gives it one.
type usage struct {
	CPU      int64 `json:"cpu_ns"`
	Switches int64 `json:"switches"`
	Procs    int   `json:"gomaxprocs"`
	At       int64 `json:"at_ns"` // CLOCK_MONOTONIC when taken: a busy relay may answer a report late
}

// selfUsage is this process's usage; nil if the kernel will not say.
func selfUsage() *usage {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return nil
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return nil
	}
	return &usage{CPU: ru.Utime.Nano() + ru.Stime.Nano(), Switches: ru.Nvcsw + ru.Nivcsw, Procs: runtime.GOMAXPROCS(0), At: ts.Nano()}
}

// startBenchRelay starts the relay s says, in a process of its own unless
// cfg says otherwise.
func startBenchRelay(cfg *config, s relaySpec) (benchRelay, error) {
	if cfg.InProcess {
		return startLocalRelay(s)
	}
	s.CPUs = cfg.relayCPUs
	return startRelayProcess(s, cfg.Timeout)
}

// startRelayAt is startBenchRelay that also returns the relay's address
// as the sockets take it.
func startRelayAt(cfg *config, s relaySpec) (benchRelay, netip.AddrPort, error) {
	r, err := startBenchRelay(cfg, s)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	ap, err := relayAddrPort(r)
	if err != nil {
		r.close()
		return nil, ap, err
	}
	return r, ap, nil
}

// relayAddrPort is r's address as the sockets take it.
func relayAddrPort(r benchRelay) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(r.addr())
	if err != nil {
		return ap, fmt.Errorf("relay address: %w", err)
	}
	return ap, nil
}

// startLocalRelay starts the relay s says in this process.
func startLocalRelay(s relaySpec) (benchRelay, error) {
	var r benchRelay
	var err error
	switch s.Kind {
	case "udpchat":
		r, err = startUdpchatE2E(s.Members)
	case "naive":
		r, err = startNaiveE2E()
	case "fed udpchat":
		var extra []udpchat.Option
		if s.Group.IsValid() {
			extra = append(extra, udpchat.WithBroadcast(s.Group.String()))
		}
		r, err = startRelay(s.Members, extra...)
	case "fed naive":
		r, err = startNaive(s.Dsts, s.Broadcast)
	case "raw relay":
		r, err = startRawRelay(s.Dsts, s.Broadcast)
	default:
		err = fmt.Errorf("relay of kind %q: want udpchat, naive, fed udpchat, fed naive or raw relay", s.Kind)
	}
	if err != nil {
		return nil, err // not a nil pointer in an interface
	}
	return r, nil
}

// failures counts a relay's failed reads and writes and keeps the first
// error, for a report while the relay runs. Failures are rare: a mutex
// costs nothing here.
type failures struct {
	mu    sync.Mutex
	n     uint64
	first error
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n++; f.first == nil {
		f.first = err
	}
}

// put writes the count and the first error into rep.
func (f *failures) put(rep *relayReport) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rep.Errs = f.n; f.first != nil {
		rep.First = f.first.Error()
	}
}

// A relayProcess is a relay in a child process. The parent writes the
// relaySpec as a first line; the child says its address in a first line
// of its own; each line the parent writes then ("report", or "known" for
// the naive relay's clients too) asks for a relayReport, a line of JSON;
// the end of its input stops it.
type relayProcess struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
	address string
	timeout time.Duration
	dead    error // the child did not answer in time and was killed: no more asks
}

func startRelayProcess(s relaySpec, timeout time.Duration) (*relayProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("relay process: %w", err)
	}
	spec, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("relay process: %w", err)
	}
	cmd := exec.Command(exe, "-serve-relay")
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
	// The child reads its spec before it writes anything, so a spec larger
	// than the pipe holds (5,000 addresses are about 90 KB) waits for the
	// child's read, not for ours. A child that never reads it is killed,
	// which ends the write.
	wrote := make(chan error, 1)
	go func() {
		_, err := in.Write(append(spec, '\n'))
		wrote <- err
	}()
	select {
	case err = <-wrote:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-wrote
		err = fmt.Errorf("spec not read in %v", timeout)
		p.dead = err
	}
	var rep relayReport
	if err == nil {
		rep, err = p.read()
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("%s relay process: %w", s.Kind, err)
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

// serveRelay is the child's side: it reads a relaySpec, serves that relay
// until its input ends, and answers each line with a report. A relay it
// cannot start is its one report's error.
func serveRelay() error {
	enc := json.NewEncoder(os.Stdout)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 1<<20) // a spec of 5,000 addresses is about 100 KB
	var s relaySpec
	var err error
	if sc.Scan() {
		err = json.Unmarshal(sc.Bytes(), &s)
	} else if err = sc.Err(); err == nil {
		err = errors.New("no relay spec on stdin")
	}
	if err == nil && len(s.CPUs) > 0 {
		// Its Ps follow its CPUs now, not within the runtime's next look.
		if err = setAffinity(s.CPUs); err == nil && os.Getenv("GOMAXPROCS") == "" {
			runtime.SetDefaultGOMAXPROCS()
		}
	}
	var l benchRelay
	if err == nil {
		l, err = startLocalRelay(s)
	}
	if err != nil {
		enc.Encode(relayReport{Err: err.Error()})
		return err
	}
	say := func(known bool) error {
		rep, err := l.report(known)
		if err != nil {
			rep.Err = err.Error()
		}
		rep.Usage = selfUsage()
		return enc.Encode(rep)
	}
	if err := say(false); err != nil {
		l.close()
		return err
	}
	for sc.Scan() {
		if err := say(sc.Text() == "known"); err != nil {
			l.close()
			return err
		}
	}
	return errors.Join(sc.Err(), l.close())
}
