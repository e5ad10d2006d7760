//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// Every goroutine the benchmark starts (drains, relays, loads) must have
// stopped when a run returns.
//
// Started again with -serve-relay (startRelayProcess does), this test
// binary is a relay, as the program is.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == "-serve-relay" {
		if err := serveRelay(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestQuickRun runs every case briefly in process and checks that each
// one measured something and that udpchat's relay lost nothing.
func TestQuickRun(t *testing.T) {
	cfg := quickConfig()
	cfg.Dur, cfg.Warm, cfg.Rounds = 150*time.Millisecond, 30*time.Millisecond, 2
	// Every sustained message must go (checkE2E): under -race, beside the
	// other packages' tests, 300ms was not always enough for 1,000.
	cfg.SustainedFor = 5 * time.Second
	var progress strings.Builder
	rep, err := run(cfg, &progress)
	t.Log(progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	want := map[string]bool{}
	for _, c := range []string{"raw", "raw windowed", "raw relay", "naive", "udpchat", "raw broadcast", "raw broadcast windowed",
		"raw relay broadcast", "naive broadcast", "udpchat broadcast", "latency direct", "latency naive", "latency udpchat"} {
		want[c] = true
	}
	rounds := map[string]int{} // the fed relays' runs, by case and N
	for _, r := range rep.Runs {
		delete(want, r.Case)
		rounds[fmt.Sprintf("%s N=%d", r.Case, r.N)]++
		switch {
		case strings.HasPrefix(r.Case, "latency"):
			if r.Samples == 0 || r.P50 <= 0 || r.P99 < r.P50 {
				t.Errorf("%s: %d samples, p50 %v, p99 %v", r.Case, r.Samples, r.P50, r.P99)
			}
		case r.Delivered == 0 || r.Rate <= 0 || r.Sent == 0:
			t.Errorf("%s N=%d: sent %d, delivered %d", r.Case, r.N, r.Sent, r.Delivered)
		}
		fed := !strings.HasPrefix(r.Case, "latency") && (!strings.HasPrefix(r.Case, "raw") || strings.HasPrefix(r.Case, "raw relay"))
		// Each fed relay runs in a process of its own, which tells its
		// usage; pinned to one CPU, it has one P. The latency cases'
		// relays run here, and tell none.
		if fed && (r.RelayCPU <= 0 || r.RelayProcs != 1) || !fed && r.RelayCPU != 0 {
			t.Errorf("%s N=%d: relay CPU %v ns per chat, GOMAXPROCS %d", r.Case, r.N, r.RelayCPU, r.RelayProcs)
		}
		// Busy is over the relay's own span: on its one CPU, at most all
		// of it. The load's share is this process's, outside the latency
		// cases (their relays run here).
		if fed && (r.RelayBusy <= 0 || r.RelayBusy > 1.02) || !fed && r.RelayBusy != 0 {
			t.Errorf("%s N=%d: relay busy %.3f", r.Case, r.N, r.RelayBusy)
		}
		if latency := strings.HasPrefix(r.Case, "latency"); latency != (r.LoadBusy == 0) {
			t.Errorf("%s N=%d: load busy %.3f", r.Case, r.N, r.LoadBusy)
		}
		if strings.Contains(r.Case, "udpchat") {
			// settle notes any message the relay did not sequence, any
			// member missing and any drop.
			if r.Relay == nil || len(r.Notes) > 0 {
				t.Errorf("%s N=%d: relay stats %+v, notes %q", r.Case, r.N, r.Relay, r.Notes)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("runs missing: %v", want)
	}
	for _, c := range []string{"raw relay", "naive", "udpchat", "raw relay broadcast", "naive broadcast", "udpchat broadcast"} {
		if k := rounds[c+" N=10"]; k != cfg.Rounds {
			t.Errorf("%s N=10 ran %d times, want %d rounds", c, k, cfg.Rounds)
		}
	}
	for _, r := range rep.Rows {
		if strings.HasSuffix(r.Case, "vs raw relay") || strings.HasSuffix(r.Case, "vs naive") {
			if len(r.Rounds) != cfg.Rounds || r.OK == nil {
				t.Errorf("%s N=%d: round ratios %v, target %q: want %d rounds and a target", r.Case, r.N, r.Rounds, r.Target, cfg.Rounds)
			}
		}
	}
	m := rep.Memory
	if m.Relay == nil || m.Relay.Members != cfg.MemBase+cfg.MemJoins || m.JoinsPerSec <= 0 || m.PerMember <= 0 {
		t.Errorf("memory case: %+v", m)
	}
	var out bytes.Buffer
	if err := rep.print(&out); err != nil {
		t.Fatal(err)
	}
	checkE2E(t, &cfg, rep)
	checkRoomsCase(t, &cfg, rep)
	for _, s := range []string{"unicast vs raw", "unicast vs raw relay", "unicast vs naive", "broadcast vs raw", "broadcast vs raw relay",
		"broadcast vs naive", "latency p50", "heap per member", "join rate", "e2e burst", "e2e sustained", "e2e latency p50", "ctl/dlv",
		"rooms 4x10 deliveries", "rooms 4x10 relay CPU", "heap per idle room", "4 rooms of 10 against 1 of 40"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("JSON: %v", err)
	}
}

// checkE2E checks the end-to-end runs of a quick run: every case both
// ways, and through udpchat every message sent, confirmed and delivered to
// every member, with the control datagrams counted.
func checkE2E(t *testing.T, cfg *config, rep *report) {
	t.Helper()
	want := map[string]bool{}
	for _, c := range []string{"burst", "sustained", "latency"} {
		for _, via := range []string{"naive", "udpchat"} {
			want[c+" "+via] = true
		}
	}
	for _, r := range rep.E2E {
		delete(want, r.Case+" "+r.Via)
		if r.Sent == 0 || r.Delivered == 0 || r.Rate <= 0 {
			t.Errorf("e2e %s %s N=%d: sent %d, delivered %d, rate %v", r.Case, r.Via, r.N, r.Sent, r.Delivered, r.Rate)
		}
		if r.Case == "latency" && (r.Samples == 0 || r.P99 < r.P50 || r.P50 <= 0) {
			t.Errorf("e2e latency %s: %d samples, p50 %v, p99 %v", r.Via, r.Samples, r.P50, r.P99)
		}
		if r.CPUPerDlv <= 0 {
			t.Errorf("e2e %s %s N=%d: no CPU time per delivered chat", r.Case, r.Via, r.N)
		}
		if r.Via != "udpchat" {
			if r.ToRelayP50 != 0 {
				t.Errorf("e2e %s %s: a time to the relay (%vus) without the relay's stamps", r.Case, r.Via, r.ToRelayP50)
			}
			continue
		}
		// Each message reaches the relay before it reaches a member, so
		// the medians are in that order too.
		if r.Case == "latency" && (r.ToRelayP50 <= 0 || r.ToRelayP50 >= r.P50) {
			t.Errorf("e2e latency udpchat: to the relay %vus at p50, end to end %vus", r.ToRelayP50, r.P50)
		}
		for _, n := range r.Notes {
			if strings.Contains(n, "join events") || strings.Contains(n, "members, want") {
				t.Errorf("e2e %s udpchat N=%d: %s", r.Case, r.N, n)
			}
		}
		if r.Sent != uint64(r.Msgs) || r.Confirmed != r.Sent || r.Delivered != r.Sent*uint64(r.N) || r.Lost > 0 || r.TimedOut {
			t.Errorf("e2e %s udpchat N=%d: %d of %d sent, %d confirmed, %d delivered, %d lost, deadline %v; notes %q",
				r.Case, r.N, r.Sent, r.Msgs, r.Confirmed, r.Delivered, r.Lost, r.TimedOut, r.Notes)
		}
		// Members report progress every eighth of the relay's history
		// (128 messages): past a few hundred messages, some control
		// datagrams, far fewer than the deliveries.
		if r.Relay == nil || r.Relay.Sequenced < r.Sent || r.CtlPerDlv > 0.5 || r.Sent >= 300 && r.Control == 0 {
			t.Errorf("e2e %s udpchat: relay %+v, control per delivered %v", r.Case, r.Relay, r.CtlPerDlv)
		}
	}
	if len(want) > 0 {
		t.Errorf("e2e runs missing: %v", want)
	}
	if want := 2 * (2*len(cfg.E2EMembers) + latencyRounds); len(rep.E2E) != want {
		t.Errorf("%d e2e runs, want %d", len(rep.E2E), want)
	}
	for _, r := range rep.Rows {
		if strings.HasPrefix(r.Case, "e2e latency") && (len(r.Rounds) != latencyRounds || r.Base <= 0 || r.Value <= 0) {
			t.Errorf("%s: %v over %d rounds (%v), want %d rounds pooled", r.Case, r.Value, len(r.Rounds), r.Rounds, latencyRounds)
		}
	}
}

// TestE2EOnly runs only the end-to-end cases, at two sizes, with the
// relays in processes of their own and in this one.
func TestE2EOnly(t *testing.T) {
	for _, inProc := range []bool{false, true} {
		t.Run(fmt.Sprintf("in_process=%v", inProc), func(t *testing.T) {
			cfg := quickConfig()
			cfg.E2EOnly, cfg.E2EMembers, cfg.InProcess = true, []int{3, 20}, inProc
			cfg.Burst, cfg.Sustained, cfg.E2ELatency = 100, 200, 50
			var progress strings.Builder
			rep, err := run(cfg, &progress)
			t.Log(progress.String())
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if len(rep.Runs) > 0 || rep.Memory.Members > 0 || rep.Rooms != nil {
				t.Errorf("-e2e ran other cases: %d runs, memory %+v, rooms %v", len(rep.Runs), rep.Memory, rep.Rooms != nil)
			}
			checkE2E(t, &cfg, rep)
			var out bytes.Buffer
			if err := rep.print(&out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "e2e burst") || strings.Contains(out.String(), "memory:") {
				t.Errorf("table:\n%s", out.String())
			}
		})
	}
}

// TestRelayProcess starts each kind of relay in a process of its own and
// stops it: the fed naive and raw relays pass a datagram to each of the
// destinations their spec gave; a child that cannot serve says why.
func TestRelayProcess(t *testing.T) {
	cpus, err := allowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"udpchat", "naive", "fed udpchat", "fed naive", "raw relay"} {
		t.Run(kind, func(t *testing.T) {
			s := relaySpec{Kind: kind, Members: 10}
			if kind == "fed udpchat" && len(cpus) >= 2 {
				s.CPUs = cpus[len(cpus)-1:]
			}
			var dsts []*net.UDPConn
			if kind == "fed naive" || kind == "raw relay" {
				for range 2 {
					c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					dsts = append(dsts, c)
					s.Dsts = append(s.Dsts, c.LocalAddr().(*net.UDPAddr).AddrPort())
				}
			}
			p, err := startRelayProcess(s, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := p.close(); err != nil {
					t.Errorf("close: %v", err)
				}
			}()
			rep, err := p.report(true)
			if err != nil || !strings.HasPrefix(p.addr(), "127.0.0.1:") || rep.Addr != p.addr() || rep.Errs != 0 || rep.Usage == nil {
				t.Errorf("report %+v, %v; addr %q", rep, err, p.addr())
			}
			if len(s.CPUs) > 0 {
				// Every thread of the child runs on the CPU its spec gave,
				// and the runtime gave it one P.
				tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid))
				if err != nil {
					t.Fatal(err)
				}
				for _, task := range tasks {
					st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", p.cmd.Process.Pid, task.Name()))
					if err != nil {
						continue // the thread has ended
					}
					if want := fmt.Sprintf("Cpus_allowed_list:\t%d\n", s.CPUs[0]); !strings.Contains(string(st), want) {
						t.Errorf("thread %s of the child is not on CPU %d", task.Name(), s.CPUs[0])
					}
				}
				if rep.Usage != nil && rep.Usage.Procs != 1 {
					t.Errorf("the pinned child has GOMAXPROCS %d, want 1", rep.Usage.Procs)
				}
			}
			if len(dsts) == 0 {
				return
			}
			ap, err := relayAddrPort(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := dsts[0].WriteToUDPAddrPort([]byte("hello"), ap); err != nil {
				t.Fatal(err)
			}
			for i, c := range dsts {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 64)
				n, err := c.Read(buf)
				if err != nil || string(buf[:n]) != "hello" {
					t.Errorf("destination %d got %q, %v", i, buf[:n], err)
				}
			}
		})
	}
	if _, err := startRelayProcess(relaySpec{Kind: "quic"}, 10*time.Second); err == nil || !strings.Contains(err.Error(), "want udpchat, naive") {
		t.Errorf("a relay of an unknown kind: %v", err)
	}
}

// checkRoomsCase checks the rooms case of a run: both arrangements measured,
// every delivery owed arrived, the relay as it should be, the idle rooms
// weighed.
func checkRoomsCase(t *testing.T, cfg *config, rep *report) {
	t.Helper()
	rr := rep.Rooms
	if rr == nil || len(rr.Runs) != 2 {
		t.Fatalf("rooms case: %+v", rr)
	}
	for i, rooms := range []int{1, cfg.RoomsCount} {
		r := rr.Runs[i]
		if r.Rooms != rooms || r.Size != cfg.RoomsMembers/rooms || r.N != cfg.RoomsMembers || r.Speakers != cfg.RoomsCount {
			t.Errorf("%s: %d rooms of %d, N=%d, %d speakers", r.Case, r.Rooms, r.Size, r.N, r.Speakers)
		}
		// settle notes any message the relay did not sequence, any member
		// missing and any drop; runRooms the join events and rooms.
		if r.Delivered == 0 || r.Rate <= 0 || r.Sent == 0 || r.Lost > 0 || len(r.Notes) > 0 || r.Relay == nil {
			t.Errorf("%s: sent %d, delivered %d, lost %d, relay %+v, notes %q", r.Case, r.Sent, r.Delivered, r.Lost, r.Relay, r.Notes)
		}
		if r.CPU.Rest <= 0 || r.CPU.Drain <= 0 || r.RelayNsPerDlv <= 0 || r.JoinHeapPerMember <= 0 {
			t.Errorf("%s: CPU %+v, relay %vns per delivery, join heap %v B per member", r.Case, r.CPU, r.RelayNsPerDlv, r.JoinHeapPerMember)
		}
	}
	if i := rr.Idle; i.Rooms != cfg.RoomsMembers || i.PerRoom <= 0 || len(i.Notes) > 0 {
		t.Errorf("idle rooms: %+v", i)
	}
}

// TestRoomsOnly runs only the rooms case, at other sizes.
func TestRoomsOnly(t *testing.T) {
	cfg := quickConfig()
	cfg.Dur, cfg.Warm = 150*time.Millisecond, 30*time.Millisecond
	cfg.RoomsOnly, cfg.RoomsMembers, cfg.RoomsCount = true, 30, 3
	var progress strings.Builder
	rep, err := run(cfg, &progress)
	t.Log(progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(rep.Runs) > 0 || rep.Memory.Members > 0 || len(rep.E2E) > 0 {
		t.Errorf("-rooms ran other cases: %d runs, memory %+v, %d e2e runs", len(rep.Runs), rep.Memory, len(rep.E2E))
	}
	checkRoomsCase(t, &cfg, rep)
	var out bytes.Buffer
	if err := rep.print(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"rooms 3x10 deliveries", "3 x 10", "1 x 30", "heap per idle room"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
	if strings.Contains(out.String(), "memory:") || strings.Contains(out.String(), "e2e") {
		t.Errorf("table:\n%s", out.String())
	}
}

// TestCostModel checks the split of the relay's CPU per delivery into a
// cost per delivery and one per chat.
func TestCostModel(t *testing.T) {
	run := func(size int, perDlv, perChat float64) roomsRun {
		return roomsRun{Size: size, RelayNsPerDlv: perDlv + perChat/float64(size)}
	}
	d, c, ok := costModel(run(1000, 3000, 7000), run(10, 3000, 7000))
	if !ok || d < 2999.9 || d > 3000.1 || c < 6999.9 || c > 7000.1 {
		t.Errorf("costModel: %v per delivery, %v per chat, %v", d, c, ok)
	}
	if _, _, ok := costModel(run(10, 1, 1), run(10, 2, 2)); ok {
		t.Error("costModel split two arrangements of the same room size")
	}
}

func TestChatText(t *testing.T) {
	for _, c := range []struct {
		seq uint64
		ns  int64
	}{{1, 0}, {50000, 123456789}, {1 << 40, 1<<62 + 5}} {
		seq, ns, ok := parseText(chatText(c.seq, c.ns))
		if !ok || seq != c.seq || ns != c.ns {
			t.Errorf("chatText(%d, %d): parsed %d, %d, %v", c.seq, c.ns, seq, ns, ok)
		}
	}
	for _, s := range []string{"", "hello", "x 0123", "12 zzzzzzzzzzzzzzzz"} {
		if _, _, ok := parseText(s); ok {
			t.Errorf("parsed %q", s)
		}
	}
}

// TestSendRounds checks the windowed raw sender's arithmetic: a round is
// one datagram to each receiver, started by the one to receiver #0.
func TestSendRounds(t *testing.T) {
	d, err := newDrain(3, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.stop()
	_, _, addrs, err := d.receivers(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBlaster(addrs, false, 2) // batches of 2 over 3 receivers
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	for i, want := range []struct{ rounds, next int }{
		{1, 2}, // receivers 0, 1
		{1, 1}, // 2, then 0 starts a round
		{0, 0}, // 1, 2
	} {
		rounds, err := b.sendRounds(1)
		if err != nil || rounds != want.rounds || b.next != want.next {
			t.Fatalf("batch %d: %d rounds, next %d, %v; want %d rounds, next %d", i, rounds, b.next, err, want.rounds, want.next)
		}
	}
	if !d.waitSum(0, 3, 6, 5*time.Second) {
		t.Fatalf("receivers counted %d of 6 datagrams", d.sum(0, 3))
	}
	for i := range 3 {
		if c := d.count(i); c != 2 {
			t.Errorf("receiver %d counted %d datagrams, want 2", i, c)
		}
	}
}

func TestStamp(t *testing.T) {
	for _, ts := range []int64{0, 1, 123456789, 1<<62 + 5} {
		b := payload(payloadSize)
		stamp(b, ts)
		if got, ok := parseStamp(b); !ok || got != ts {
			t.Errorf("stamp %d: parsed %d, %v from %q", ts, got, ok, b[len(b)-16:])
		}
	}
	if _, ok := parseStamp([]byte(fmt.Sprintf("%016s", "xyz"))); ok {
		t.Error("parsed a stamp from non-hex bytes")
	}
}

// TestFedRoundsRow checks how rounds become a row: the figures are the
// median rounds', each round's ratio pairs the relays of that round.
func TestFedRoundsRow(t *testing.T) {
	rates := func(vs ...float64) []result {
		rs := make([]result, len(vs))
		for i, v := range vs {
			rs[i] = result{N: 10, Rate: v}
		}
		return rs
	}
	f := fedRun{naive: rates(100, 300, 200), uc: rates(110, 150, 400)}
	r := f.row("unicast vs naive", f.naive, "naive relay", 1.0)
	if r.Base != 200 || r.Value != 150 || r.Ratio != 0.75 || r.OK == nil || *r.OK {
		t.Errorf("row %+v: want the medians 200 and 150, 0.75x, not ok", r)
	}
	if want := []float64{1.1, 0.5, 2}; !slices.Equal(r.Rounds, want) {
		t.Errorf("round ratios %v, want %v", r.Rounds, want)
	}
	if got := roundRatios(r.Rounds); got != "1.10 0.50 2.00" {
		t.Errorf("roundRatios: %q", got)
	}
	if m := median(rates(5, 1)); m.Rate != 5 {
		t.Errorf("median of two: %v, want the upper", m.Rate)
	}
	if m := median(nil); m.Rate != 0 {
		t.Errorf("median of none: %v", m.Rate)
	}
}

// TestSetAffinity binds every thread of the test process to one CPU, then
// to all of them again, and reads each thread's mask back both times.
func TestSetAffinity(t *testing.T) {
	all, err := allowedCPUs()
	if err != nil || len(all) == 0 {
		t.Fatalf("allowed CPUs %v, %v", all, err)
	}
	if len(all) < 2 {
		t.Skip("one CPU: a mask of one is a mask of all")
	}
	defer setAffinity(all)
	for _, want := range [][]int{all[len(all)-1:], all} {
		if err := setAffinity(want); err != nil {
			t.Fatal(err)
		}
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			var got unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &got); err != nil {
				continue // the thread has ended
			}
			if got.Count() != len(want) || !got.IsSet(want[0]) {
				t.Errorf("thread %d: %d CPUs, want %v", tid, got.Count(), want)
			}
		}
	}
}
