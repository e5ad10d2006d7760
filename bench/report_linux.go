//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"iter"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/udpchat/udpchat"
	"golang.org/x/sys/unix"
)

type report struct {
	Machine machine      `json:"machine"`
	Config  config       `json:"config"`
	Rows    []row        `json:"rows"`
	Runs    []result     `json:"runs"`
	Memory  memResult    `json:"memory"`
	Rooms   *roomsResult `json:"rooms,omitempty"`
	E2E     []e2eResult  `json:"e2e,omitempty"`
	Elapsed float64      `json:"elapsed_s"`
}

type machine struct {
	Go         string `json:"go"`
	OSArch     string `json:"os_arch"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	NumCPU     int    `json:"num_cpu"`
	Kernel     string `json:"kernel"`
	CPU        string `json:"cpu"`
}

// A row compares one udpchat figure with its baseline from the same run.
type row struct {
	Case     string    `json:"case"`
	N        int       `json:"n"`
	Baseline string    `json:"baseline"`
	Base     float64   `json:"baseline_value"`
	Value    float64   `json:"udpchat_value"`
	Unit     string    `json:"unit"`
	Ratio    float64   `json:"ratio,omitempty"`  // Value / Base
	Target   string    `json:"target,omitempty"` // none: for information
	OK       *bool     `json:"ok,omitempty"`
	Rounds   []float64 `json:"round_ratios,omitempty"` // each round's own ratio, where the figures are medians of rounds
}

// rateRow compares delivered datagrams per second; with target, the ratio
// should be at least min.
func rateRow(name string, base, uc result, baseline string, target bool, min float64) row {
	r := row{Case: name, N: uc.N, Baseline: baseline, Base: base.Rate, Value: uc.Rate, Unit: "dgram/s"}
	if base.Rate > 0 {
		r.Ratio = uc.Rate / base.Rate
	}
	if target {
		r.Target = fmt.Sprintf(">=%.2fx", min)
		r.OK = ptr(r.Ratio >= min)
	}
	return r
}

func latencyRows(lat map[string]result) []row {
	d, nv, uc := lat["direct"], lat["naive"], lat["udpchat"]
	mk := func(name, baseline string, base, v float64) row {
		r := row{Case: name, N: uc.N, Baseline: baseline, Base: base, Value: v, Unit: "us"}
		if base > 0 {
			r.Ratio = v / base
		}
		return r
	}
	p50 := mk("latency p50", "direct", d.P50, uc.P50)
	p50.Target, p50.OK = "<=1.40x", ptr(p50.Ratio > 0 && p50.Ratio <= 1.4)
	return []row{
		p50,
		mk("latency p99", "direct", d.P99, uc.P99),
		mk("latency p50", "naive relay", nv.P50, uc.P50),
		mk("latency p99", "naive relay", nv.P99, uc.P99),
	}
}

func memoryRows(m memResult) []row {
	return []row{
		{Case: "heap per member", N: m.Members, Baseline: "-", Value: m.PerMember, Unit: "B",
			Target: "<1024 B", OK: ptr(m.PerMember < 1024)},
		{Case: "join rate", N: m.Members, Baseline: "-", Value: m.JoinsPerSec, Unit: "joins/s"},
	}
}

func ptr[T any](v T) *T { return &v }

// summary is the one-line progress report of a run.
func (r result) summary() string {
	if r.Samples > 0 {
		return fmt.Sprintf("p50 %.1fus p99 %.1fus (%d samples)", r.P50, r.P99, r.Samples)
	}
	return fmt.Sprintf("%s delivered/s, %d receiver drops", human(r.Rate), r.Drops)
}

func (rep *report) print(w io.Writer) error {
	m := rep.Machine
	fmt.Fprintf(w, "udpchat relay benchmark: %s %s, GOMAXPROCS=%d, %d CPUs, kernel %s\nCPU: %s\n",
		m.Go, m.OSArch, m.GOMAXPROCS, m.NumCPU, m.Kernel, m.CPU)
	fmt.Fprintf(w, "Every delivered datagram is %d bytes, on loopback; each case warms up for %v, then counts for %v.\n"+
		"Receivers: non-blocking sockets drained by one locked thread (epoll_wait + recvmmsg), alike in every case.\n"+
		"raw: sendmmsg from a socket the Go runtime never polls, to the N receivers in turn (broadcast: once to\n"+
		"  127.255.255.255, N receivers sharing the port), open-loop and windowed (at most %d rounds ahead of\n"+
		"  receiver #0, as the speaker keeps its chats), the faster being the limit. raw relay: recvmmsg, then sendmmsg\n"+
		"  to the N receivers (or once to 127.255.255.255), on a socket the Go runtime never polls, no protocol.\n"+
		"  naive: one WriteToUDP per member (or once to 127.255.255.255). The relays are fed alike by the speaker.\n"+
		"udpchat: members join through the handshake (JOIN, COOKIE, JOIN, WELCOME), in unicast from their receivers,\n"+
		"  in broadcast from a unicast socket each, receiving on shared 0.0.0.0:port sockets; member #0 speaks.\n"+
		"Ratios are udpchat over its baseline within this run; figures drift 15-25%%. The relays fed by the speaker run\n"+
		"  in %d round(s), in a turning order: their figures are the median rounds, and rounds lists each round's ratio.\n"+
		"  %s.\n\n",
		payloadSize, rep.Config.Warm, rep.Config.Dur, speakWindow, rep.Config.Rounds, relaysWhere(&rep.Config, rep.Machine.NumCPU))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tN\tbaseline\tbaseline figure\tudpchat figure\tratio\ttarget\tok\trounds")
	for _, r := range rep.Rows {
		base, ratio, target, ok := "-", "-", "-", "-"
		if r.Base > 0 || r.Unit == "%" {
			base = value(r.Base, r.Unit)
		}
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2fx", r.Ratio)
		}
		if r.Target != "" {
			target = r.Target
		}
		if r.OK != nil {
			ok = map[bool]string{true: "yes", false: "NO"}[*r.OK]
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Case, r.N, r.Baseline, base, value(r.Value, r.Unit), ratio, target, ok, roundRatios(r.Rounds))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(rep.Runs) > 0 {
		fmt.Fprintf(w, "\nRuns (sent counts the warm-up too; drops are the receivers' in the window; cpu/chat, csw/chat and P: the\n"+
			"relay's process in the window, CPU time and context switches per chat it delivered, and its GOMAXPROCS;\n"+
			"busy: the share of one CPU the relay's process and this one (speaker and drain) used in the window;\n"+
			"relay: udpchat's RelayStats)\n")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "run\tN\tresult\tsent\tdrops\tcpu/chat\tcsw/chat\tP\tbusy relay/load\trelay")
		for _, r := range rep.Runs {
			res := human(r.Rate) + " dgram/s"
			if r.Samples > 0 {
				res = fmt.Sprintf("p50 %.1fus p99 %.1fus", r.P50, r.P99)
			}
			cpu, csw, procs := "-", "-", "-"
			if r.RelayCPU > 0 {
				cpu, csw, procs = fmt.Sprintf("%.2fus", r.RelayCPU/1e3), fmt.Sprintf("%.3f", r.RelaySwitches), strconv.Itoa(r.RelayProcs)
			}
			busy := "-"
			if r.LoadBusy > 0 {
				busy = fmt.Sprintf("%.2f/%.2f", r.RelayBusy, r.LoadBusy)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Case, r.N, res, r.Sent, r.Drops, cpu, csw, procs, busy, relayStats(r.Relay))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if mem := rep.Memory; mem.Members > 0 {
		fmt.Fprintf(w, "memory: %d members joined after %d, relay heap +%d bytes (%.0f B/member), %.0f joins/s in %.2fs;\n"+
			"  the relay broadcast to %s, where no one listens, so a join event is one datagram, not one per member.\n  relay: %s\n",
			mem.Members, mem.Base, mem.HeapDelta, mem.PerMember, mem.JoinsPerSec, mem.JoinSeconds, mem.BroadcastVia, relayStats(mem.Relay))
	}
	if rep.Rooms != nil {
		if err := rep.Rooms.print(w); err != nil {
			return err
		}
	}
	if err := printE2E(w, rep.E2E, rep.Config.InProcess); err != nil {
		return err
	}
	for _, r := range rep.E2E {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "note: e2e %s %s N=%d: %s\n", r.Case, r.Via, r.N, n)
		}
	}
	for _, r := range rep.Runs {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "note: %s N=%d: %s\n", r.Case, r.N, n)
		}
	}
	for _, n := range rep.Memory.Notes {
		fmt.Fprintf(w, "note: memory: %s\n", n)
	}
	if rep.Rooms != nil {
		rep.Rooms.notes(w)
	}
	_, err := fmt.Fprintf(w, "elapsed %.1fs\n", rep.Elapsed)
	return err
}

// relayStats lists Members and the counters of s that are not zero.
func relayStats(s *udpchat.RelayStats) string {
	if s == nil {
		return "-"
	}
	out := fmt.Sprintf("Members=%d", s.Members)
	for name, v := range counters(s) {
		if v != 0 {
			out += fmt.Sprintf(" %s=%d", name, v)
		}
	}
	return out
}

// counters yields the unsigned counters of RelayStats by name. It reads
// them by reflection, so that a counter the package adds shows up here
// without a change.
func counters(s *udpchat.RelayStats) iter.Seq2[string, uint64] {
	return func(yield func(string, uint64) bool) {
		v := reflect.ValueOf(s).Elem()
		for i := range v.NumField() {
			if f := v.Field(i); f.CanUint() && !yield(v.Type().Field(i).Name, f.Uint()) {
				return
			}
		}
	}
}

func value(v float64, unit string) string {
	switch unit {
	case "us":
		return fmt.Sprintf("%.1fus", v)
	case "ns":
		return fmt.Sprintf("%.0fns", v)
	case "B":
		return fmt.Sprintf("%.0f B", v)
	case "%":
		return fmt.Sprintf("%.2f%%", v)
	}
	return human(v) + "/s"
}

// human writes a rate with k or M.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func machineInfo() machine {
	m := machine{
		Go:         runtime.Version(),
		OSArch:     runtime.GOOS + "/" + runtime.GOARCH,
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		Kernel:     "?",
		CPU:        "?",
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Version[:])
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// relaysWhere says where the fed relays ran.
func relaysWhere(cfg *config, cpus int) string {
	switch {
	case cfg.InProcess:
		return "Each fed relay ran in this process (-in-process), beside the drain and the speaker"
	case cfg.Pin && cpus >= 2:
		return "Each fed relay ran in a process of its own, as relays are deployed, pinned to a CPU of its own (and so\n" +
			"  with one P, P below); the drain and the speaker in this one, pinned to another (-pin)"
	}
	return "Each fed relay ran in a process of its own, as relays are deployed; the drain and the speaker in this one"
}

// printE2E writes the end-to-end runs, one line each.
func printE2E(w io.Writer, runs []e2eResult, inProcess bool) error {
	if len(runs) == 0 {
		return nil
	}
	where, inProc := "each relay in a process of its own, the members in this one", ""
	if inProcess {
		where = "the relays and the members in this process (-in-process)"
		inProc = " and the relay's"
	}
	fmt.Fprintf(w, "\nEnd to end: udpchat.Member on every end (Join, Send with up to %d in flight, a Receive loop per member),\n"+
		"against naive clients (WriteToUDP, ReadFromUDP) through a naive relay. N receivers, the sender among them;\n"+
		"%s.\n"+
		"sent: messages the sender sent of those asked; delivered: chats counted at the receivers; s: first send to\n"+
		"last receipt (or to the deadline); lost: sent messages some receiver never got; ctl/dlv: datagrams the\n"+
		"relay took in that were not chats (Received - Sequenced - DroppedDuplicate), per delivered chat; resent: the\n"+
		"sender's MemberStats.Retransmitted; stall: the longest time no Send returned; @%d: when Send #%d returned;\n"+
		"cpu/dlv: this process's CPU time (user and system: the members'%s) over the run, per delivered chat;\n"+
		"to relay: from Send to the relay's sequencing (Message.Time), p50.\n",
		e2eSenders, where, e2eMark, e2eMark, inProc)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "case\tN\tvia\tsent\tsend s\tdelivered\ts\tdelivered/s\tcpu/dlv\tlost\tp50\tp99\tto relay\tctl/dlv\tNACKs\tresent\tstall\t@%d\tdeadline\n", e2eMark)
	for _, r := range runs {
		cpu, lat, ctl := "-", "-\t-\t-", "-\t-\t-\t-\t-"
		if r.CPUPerDlv > 0 {
			cpu = fmt.Sprintf("%.1fus", r.CPUPerDlv)
		}
		if r.Samples > 0 {
			lat = fmt.Sprintf("%.1fus\t%.1fus\t-", r.P50, r.P99)
			if r.ToRelayP50 != 0 {
				lat = strings.TrimSuffix(lat, "-") + fmt.Sprintf("%.1fus", r.ToRelayP50)
			}
		}
		if r.Via == "udpchat" {
			ctl = fmt.Sprintf("%.4f\t%d\t%d\t%.0fms\t-", r.CtlPerDlv, r.NACKs, r.Retrans, r.MaxStall)
			if r.MarkSecs > 0 {
				ctl = strings.TrimSuffix(ctl, "-") + fmt.Sprintf("%.2fs", r.MarkSecs)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d/%d\t%.2f\t%d/%d\t%.2f\t%s\t%s\t%.2f%%\t%s\t%s\t%s\n", r.Case, r.N, r.Via,
			r.Sent, r.Msgs, r.SendSecs, r.Delivered, r.Sent*uint64(r.N), r.Seconds, human(r.Rate), cpu, r.LossPct, lat, ctl,
			map[bool]string{true: "HIT", false: "-"}[r.TimedOut])
	}
	return tw.Flush()
}

// percentiles sorts lat (ns) and returns its count, median and 99th
// percentile, in microseconds.
func percentiles(lat []int64) (n int, p50, p99 float64) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	return len(lat), float64(lat[len(lat)/2]) / 1e3, float64(lat[len(lat)*99/100]) / 1e3
}
