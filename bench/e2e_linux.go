//go:build linux

package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udpchat/udpchat"
	"golang.org/x/sys/unix"
)

// The end-to-end cases: what an application gets. On the udpchat side,
// every member is a udpchat.Member joined with Join, and a goroutine per
// member calls Receive in a loop and counts the chats; one member sends
// with Send. On the naive side, a relay reads a datagram with ReadFromUDP
// and writes it with WriteToUDP to every address it has heard from, and
// naive clients send "name: text" lines with WriteToUDP and read them with
// ReadFromUDP in a loop, split at ": ".
const (
	e2eSenders  = 64                     // the udpchat sender's concurrent Sends (Send returns once sequenced)
	e2eJoiners  = 64                     // Joins at once
	e2eIdle     = 500 * time.Millisecond // naive: nothing more for this long after the last send, nothing more comes
	naiveBuffer = 4 << 20                // the naive sockets' SO_RCVBUF and SO_SNDBUF: udpchat's default
	e2eTextPad  = 40                     // text: "seq stamp" and this many bytes of padding
	e2eMark     = 2000                   // the Send whose return is timed: below the outbox bound of 2x1024+64
)

// An e2eSpec is one end-to-end case.
type e2eSpec struct {
	Case     string        // burst, sustained, latency
	N        int           // receivers, the sender among them
	Msgs     int           // messages the sender sends at most
	SendFor  time.Duration // the sender starts no message after this
	Interval time.Duration // between sends; 0: as fast as it can
	Deadline time.Duration // from the first send, the case ends
}

// An e2eResult is one end-to-end run, through udpchat or the naive relay.
type e2eResult struct {
	Case       string  `json:"case"`
	Via        string  `json:"via"`
	N          int     `json:"n"`
	Msgs       int     `json:"msgs"`      // messages the case asked for
	Sent       uint64  `json:"sent"`      // messages the sender sent (udpchat: Send called)
	Confirmed  uint64  `json:"confirmed"` // udpchat: Sends that returned nil
	SendErrs   uint64  `json:"send_errors"`
	Delivered  uint64  `json:"delivered"` // chats counted at the N receivers
	Seconds    float64 `json:"seconds"`   // first send to last receipt, or to the deadline
	Rate       float64 `json:"delivered_per_s"`
	Lost       uint64  `json:"lost"` // sent messages some receiver never got
	LossPct    float64 `json:"loss_pct"`
	SendSecs   float64 `json:"send_seconds"`           // first send to the sender's end
	MaxStall   float64 `json:"max_stall_ms,omitempty"` // udpchat: the longest time no Send returned
	MarkSecs   float64 `json:"mark_seconds,omitempty"` // udpchat: first send to the return of Send #e2eMark
	TimedOut   bool    `json:"timed_out"`              // the deadline hit before every copy arrived
	P50        float64 `json:"p50_us,omitempty"`
	P99        float64 `json:"p99_us,omitempty"`
	Samples    int     `json:"samples,omitempty"`
	Control    uint64  `json:"relay_control_in,omitempty"` // udpchat: datagrams the relay took in that were not chats
	CtlPerDlv  float64 `json:"control_per_delivered,omitempty"`
	NACKs      uint64  `json:"nacks,omitempty"`         // udpchat: sent by the members during the run
	Retrans    uint64  `json:"retransmitted,omitempty"` // udpchat: chats the sender sent again
	Missed     uint64  `json:"missed,omitempty"`        // udpchat: messages reported lost through a GapError, summed over members
	KernelDrop uint64  `json:"kernel_drops,omitempty"`  // udpchat: MemberStats.DroppedKernel, summed
	// The CPU time (user and system) of this process over the run, per
	// delivered chat: what the members cost, the sender's included (and,
	// with -in-process, the relay's).
	CPUPerDlv float64 `json:"cpu_us_per_delivered,omitempty"`
	// udpchat, latency case: from Send to the relay's sequencing (the
	// Message's Time; the relay runs on this machine's clock), p50.
	ToRelayP50 float64 `json:"to_relay_p50_us,omitempty"`
	lat        []int64 // the latency samples, ns, for pooling rounds
	// The relay's counters over the run (end minus start), udpchat only.
	Relay *udpchat.RelayStats `json:"relay_stats_delta,omitempty"`
	Notes []string            `json:"notes,omitempty"`
}

func (r *e2eResult) notef(format string, a ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, a...))
}

func (r e2eResult) summary() string {
	s := fmt.Sprintf("%s delivered/s, %d of %d sent in %.2fs, %d/%d delivered in %.2fs, lost %.2f%%",
		human(r.Rate), r.Sent, r.Msgs, r.SendSecs, r.Delivered, r.Sent*uint64(r.N), r.Seconds, r.LossPct)
	if r.Samples > 0 {
		s += fmt.Sprintf(", p50 %.1fus p99 %.1fus", r.P50, r.P99)
	}
	if r.TimedOut {
		s += ", DEADLINE"
	}
	return s
}

// chatText is the text of message seq, sent at ns (nowNS).
func chatText(seq uint64, ns int64) string {
	return fmt.Sprintf("%d %016x %s", seq, ns, strings.Repeat("x", e2eTextPad))
}

// parseText reads what chatText wrote.
func parseText(s string) (seq uint64, ns int64, ok bool) {
	a, rest, ok := strings.Cut(s, " ")
	if !ok || len(rest) < 16 {
		return 0, 0, false
	}
	seq, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	u, err := strconv.ParseUint(rest[:16], 16, 64)
	return seq, int64(u), err == nil
}

// A tally counts what the receivers of one run got: each receiver's own
// goroutine marks its bit per message, so that loss is per message.
type tally struct {
	msgs  int
	total atomic.Uint64
	recv  []receiverTally
}

type receiverTally struct {
	got     []uint64      // bit per message seq-1
	last    atomic.Int64  // nowNS of the last chat
	lat     []int64       // latencies, ns, when recording
	toRelay []int64       // udpchat: from the send to the relay's sequencing, ns, when recording
	_       [4]uint64     // keep receivers' hot words apart
	dups    atomic.Uint64 // copies of a message already counted
}

func newTally(n, msgs int, latency bool) *tally {
	t := &tally{msgs: msgs, recv: make([]receiverTally, n)}
	for i := range t.recv {
		t.recv[i].got = make([]uint64, (msgs+63)/64)
		if latency {
			t.recv[i].lat = make([]int64, 0, msgs)
		}
	}
	return t
}

// hit counts a chat text at receiver r; relayAt is when the relay
// sequenced it (Unix ns), if the message says.
func (t *tally) hit(r int, text string, relayAt int64) {
	seq, ns, ok := parseText(text)
	if !ok || seq < 1 || seq > uint64(t.msgs) {
		return
	}
	now := nowNS()
	rt := &t.recv[r]
	w, b := (seq-1)/64, uint64(1)<<((seq-1)%64)
	if rt.got[w]&b != 0 {
		rt.dups.Add(1)
		return
	}
	rt.got[w] |= b
	if rt.lat != nil && len(rt.lat) < cap(rt.lat) {
		rt.lat = append(rt.lat, now-ns)
		if relayAt != 0 {
			// ns is on the monotonic clock since base; the relay's time
			// is wall clock, which does not step within a run.
			rt.toRelay = append(rt.toRelay, relayAt-(baseWall+ns))
		}
	}
	rt.last.Store(now)
	t.total.Add(1)
}

// finish fills in r from the tally once the receivers have stopped: loss
// among the sent messages, the latency percentiles.
func (t *tally) finish(r *e2eResult) {
	var lat, toRelay []int64
	var dups uint64
	for i := range t.recv {
		lat = append(lat, t.recv[i].lat...)
		toRelay = append(toRelay, t.recv[i].toRelay...)
		dups += t.recv[i].dups.Load()
	}
	for seq := range min(r.Sent, uint64(t.msgs)) {
		w, b := seq/64, uint64(1)<<(seq%64)
		for i := range t.recv {
			if t.recv[i].got[w]&b == 0 {
				r.Lost++
				break
			}
		}
	}
	if r.Sent > 0 {
		r.LossPct = 100 * float64(r.Lost) / float64(r.Sent)
	}
	if dups > 0 {
		r.notef("%d copies of messages already received", dups)
	}
	r.lat = lat
	r.Samples, r.P50, r.P99 = percentiles(lat)
	_, r.ToRelayP50, _ = percentiles(toRelay)
}

// baseWall is base on the wall clock, for comparing nowNS with the
// relay's stamps.
var baseWall = base.UnixNano()

// cpuPerDlv sets r's CPU time per delivered chat from the process's CPU
// time at the run's start (cpu0) and end (cpu1).
func (r *e2eResult) cpuPerDlv(cpu0, cpu1 time.Duration) {
	if r.Delivered > 0 && cpu0 > 0 && cpu1 > 0 {
		r.CPUPerDlv = float64((cpu1 - cpu0).Nanoseconds()) / 1e3 / float64(r.Delivered)
	}
}

// lastReceipt is the nowNS of the latest chat at any receiver, 0 if none.
func (t *tally) lastReceipt() int64 {
	var l int64
	for i := range t.recv {
		l = max(l, t.recv[i].last.Load())
	}
	return l
}

// rateFrom sets r's window and rate: from the first send (t0, nowNS) to
// the last receipt, or to end when the deadline hit.
func (t *tally) rateFrom(r *e2eResult, t0, end int64) {
	r.Delivered = t.total.Load()
	last := end
	if !r.TimedOut {
		if l := t.lastReceipt(); l > 0 {
			last = l
		}
	}
	r.Seconds = float64(last-t0) / 1e9
	if r.Seconds > 0 {
		r.Rate = float64(r.Delivered) / r.Seconds
	}
}

// sendLoop calls send(seq) for seq 1, 2, ... up to spec.Msgs from workers
// goroutines, as fast as they can or, with spec.Interval, paced by one
// feeder; it starts nothing after sendUntil, and send returns by the
// deadline itself. It returns how many sends it started.
func sendLoop(spec e2eSpec, workers int, sendUntil time.Time, send func(seq uint64)) uint64 {
	var next atomic.Uint64
	var wg sync.WaitGroup
	if spec.Interval == 0 {
		for range workers {
			wg.Go(func() {
				for time.Now().Before(sendUntil) {
					seq := next.Add(1)
					if seq > uint64(spec.Msgs) {
						return
					}
					send(seq)
				}
			})
		}
		wg.Wait()
		return min(next.Load(), uint64(spec.Msgs))
	}
	seqs := make(chan uint64, workers)
	for range workers {
		wg.Go(func() {
			for seq := range seqs {
				send(seq)
			}
		})
	}
	n, _ := pace(nil, sendUntil, uint64(spec.Msgs), spec.Interval, func(seq uint64) error {
		select {
		case seqs <- seq:
			return nil
		default:
			return errBusy // every worker busy: the send is skipped, as a late tick
		}
	})
	close(seqs)
	wg.Wait()
	return n
}

// errBusy makes pace skip a tick, as transient errors do.
var errBusy = fmt.Errorf("all senders busy: %w", unix.EAGAIN)

// runE2ECases runs the end-to-end cases, naive and udpchat one after the
// other at each step so that drift touches them alike, and adds them and
// their rows to rep.
func runE2ECases(cfg *config, rep *report, progress io.Writer) error {
	pair := func(spec e2eSpec, ucFirst bool) (naive, uc e2eResult, err error) {
		vias := []string{"naive", "udpchat"}
		if ucFirst {
			slices.Reverse(vias)
		}
		for _, via := range vias {
			run := runE2ENaive
			if via == "udpchat" {
				run = runE2EUdpchat
			}
			r, err := run(cfg, spec)
			if err != nil {
				return naive, uc, fmt.Errorf("e2e %s %s, N=%d: %w", spec.Case, via, spec.N, err)
			}
			fmt.Fprintf(progress, "bench: e2e %-9s %-7s N=%-5d %s\n", spec.Case, via, spec.N, r.summary())
			rep.E2E = append(rep.E2E, r)
			if via == "naive" {
				naive = r
			} else {
				uc = r
			}
		}
		return naive, uc, nil
	}
	rateRow := func(name string, nv, uc e2eResult) row {
		r := row{Case: name, N: uc.N, Baseline: "naive clients", Base: nv.Rate, Value: uc.Rate, Unit: "dgram/s"}
		if nv.Rate > 0 {
			r.Ratio = uc.Rate / nv.Rate
		}
		return r
	}
	lossRow := func(name string, nv, uc e2eResult) row {
		return row{Case: name, N: uc.N, Baseline: "naive clients", Base: nv.LossPct, Value: uc.LossPct, Unit: "%"}
	}
	var rows []row
	for _, n := range cfg.E2EMembers {
		m := cfg.Burst
		if n >= 1000 {
			m = cfg.BurstLarge
		}
		nv, uc, err := pair(e2eSpec{Case: "burst", N: n, Msgs: m, SendFor: cfg.E2EDeadline, Deadline: cfg.E2EDeadline}, false)
		if err != nil {
			return err
		}
		rows = append(rows, rateRow("e2e burst", nv, uc), lossRow("e2e burst lost", nv, uc))
		nv, uc, err = pair(e2eSpec{Case: "sustained", N: n, Msgs: cfg.Sustained, SendFor: cfg.SustainedFor,
			Deadline: cfg.SustainedFor + cfg.E2EDrain}, false)
		if err != nil {
			return err
		}
		rows = append(rows, rateRow("e2e sustained", nv, uc), lossRow("e2e sustained lost", nv, uc))
	}
	// Latency goes in rounds, the two in turn (udpchat first in odd
	// rounds), so that the machine's drift, which moves these figures by
	// tens of percent within a minute, touches both alike. The rounds'
	// samples are pooled; each round's own ratio is listed beside.
	interval := time.Second / time.Duration(cfg.LatencyRate)
	per := max(1, cfg.E2ELatency/latencyRounds)
	sendFor := time.Duration(per) * interval
	spec := e2eSpec{Case: "latency", N: cfg.LatencyN, Msgs: per, SendFor: sendFor + cfg.E2EDrain,
		Interval: interval, Deadline: sendFor + cfg.E2EDrain}
	var nvLat, ucLat []int64
	var p50s, p99s []float64
	for i := range latencyRounds {
		nv, uc, err := pair(spec, i%2 == 1)
		if err != nil {
			return err
		}
		nvLat, ucLat = append(nvLat, nv.lat...), append(ucLat, uc.lat...)
		if nv.P50 > 0 && nv.P99 > 0 {
			p50s, p99s = append(p50s, uc.P50/nv.P50), append(p99s, uc.P99/nv.P99)
		}
	}
	_, nv50, nv99 := percentiles(nvLat)
	_, uc50, uc99 := percentiles(ucLat)
	mk := func(name string, base, v float64, rounds []float64) row {
		r := row{Case: name, N: cfg.LatencyN, Baseline: "naive clients", Base: base, Value: v, Unit: "us", Rounds: rounds}
		if base > 0 {
			r.Ratio = v / base
		}
		return r
	}
	rows = append(rows, mk("e2e latency p50", nv50, uc50, p50s), mk("e2e latency p99", nv99, uc99, p99s))
	rep.Rows = append(rep.Rows, rows...)
	return nil
}
