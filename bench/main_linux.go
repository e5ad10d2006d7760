//go:build linux

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

// latencyRounds is how many turns the latency cases take.
const latencyRounds = 4

// config says what to measure.
type config struct {
	Members     []int         `json:"members"`
	Dur         time.Duration `json:"dur_ns"`  // the measured window of a case
	Warm        time.Duration `json:"warm_ns"` // load before the window
	LatencyN    int           `json:"latency_members"`
	LatencyRate int           `json:"latency_msgs_per_s"`
	MemBase     int           `json:"mem_base_members"`
	MemJoins    int           `json:"mem_joins"`
	Timeout     time.Duration `json:"timeout_ns"`        // bounds each wait of a setup: joins, join events
	Rounds      int           `json:"rounds"`            // of the relays the speaker feeds (fedRounds)
	InProcess   bool          `json:"relays_in_process"` // the relays run in this process, not each in its own
	Pin         bool          `json:"pin"`               // the fed relays' processes on one CPU, this one on another (pinFed)
	relayCPUs   []int         // where fedRounds pinned the fed relays' processes

	// The end-to-end cases, through udpchat.Member and naive clients.
	E2E          bool          `json:"e2e"`      // run them
	E2EOnly      bool          `json:"e2e_only"` // and nothing else
	E2EMembers   []int         `json:"e2e_members"`
	Burst        int           `json:"burst_msgs"`       // messages of a burst, at N < 1000
	BurstLarge   int           `json:"burst_msgs_large"` // at N >= 1000
	Sustained    int           `json:"sustained_msgs"`   // messages of the sustained case, at most
	SustainedFor time.Duration `json:"sustained_ns"`     // its sending window
	E2EDeadline  time.Duration `json:"e2e_deadline_ns"`  // a burst's bound, from its first send
	E2EDrain     time.Duration `json:"e2e_drain_ns"`     // past the sustained window and the latency series, the case ends
	E2ELatency   int           `json:"e2e_latency_msgs"` // messages of the latency case, over its latencyRounds rounds, at LatencyRate to LatencyN members

	// The rooms case: the relay with RoomsMembers members in 1 room and
	// in RoomsCount rooms, and the heap of RoomsMembers idle rooms.
	Rooms        bool `json:"rooms"`      // run it
	RoomsOnly    bool `json:"rooms_only"` // and nothing else (but the end-to-end cases with E2EOnly)
	RoomsMembers int  `json:"rooms_members"`
	RoomsCount   int  `json:"rooms_count"`
}

func defaultConfig() config {
	return config{
		Members: []int{1, 10, 100, 1000},
		Dur:     2 * time.Second, Warm: 200 * time.Millisecond,
		LatencyN: 10, LatencyRate: 1000,
		MemBase: 100, MemJoins: 10000,
		Timeout: 30 * time.Second, Rounds: 3, Pin: true,
		E2E: true, E2EMembers: []int{10, 100, 1000},
		Burst: 5000, BurstLarge: 1000, Sustained: 50000, SustainedFor: 10 * time.Second,
		E2EDeadline: 20 * time.Second, E2EDrain: 5 * time.Second, E2ELatency: 4000,
		Rooms: true, RoomsMembers: 1000, RoomsCount: 100,
	}
}

// quickConfig is a tiny run: a smoke test, not a measurement.
func quickConfig() config {
	return config{
		Members: []int{1, 10},
		Dur:     200 * time.Millisecond, Warm: 50 * time.Millisecond,
		LatencyN: 10, LatencyRate: 1000,
		MemBase: 20, MemJoins: 200,
		Timeout: 5 * time.Second, Rounds: 1, Pin: true,
		E2E: true, E2EMembers: []int{10},
		Burst: 300, BurstLarge: 100, Sustained: 1000, SustainedFor: 300 * time.Millisecond,
		E2EDeadline: 5 * time.Second, E2EDrain: time.Second, E2ELatency: 200,
		Rooms: true, RoomsMembers: 40, RoomsCount: 4,
	}
}

func main() {
	var (
		quick   = flag.Bool("quick", false, "a tiny run: 1 and 10 members, 200ms windows, 200 joins, rooms of 40 members")
		members = flag.String("members", "1,10,100,1000", "member counts to measure, comma-separated")
		dur     = flag.Duration("dur", 2*time.Second, "measured window per case")
		joins   = flag.Int("joins", 10000, "members joined in the memory and join-rate case")
		rounds  = flag.Int("rounds", 3, "rounds of the relays the speaker feeds (raw relay, naive, udpchat), in a turning order")
		asJSON  = flag.Bool("json", false, "print the report as JSON")
		cpuProf = flag.String("cpuprofile", "", "write a CPU profile of the run (this process: not the end-to-end relays' own) to this file")
		e2e     = flag.Bool("e2e", false, "run only the end-to-end cases (udpchat.Member against naive clients); with -rooms, those two")
		noE2E   = flag.Bool("no-e2e", false, "leave the end-to-end cases out")
		e2eN    = flag.String("e2e-members", "10,100,1000", "member counts of the end-to-end burst and sustained cases")
		burst   = flag.Int("burst", 5000, "messages per end-to-end burst (at 1000 members and more: -burst-large)")
		burstL  = flag.Int("burst-large", 1000, "messages per end-to-end burst at 1000 members and more")
		rooms   = flag.Bool("rooms", false, "run only the rooms case (the relay with its members in 1 room and in -rooms-count rooms); with -e2e, those two")
		noRooms = flag.Bool("no-rooms", false, "leave the rooms case out")
		roomsN  = flag.Int("rooms-members", 1000, "members of the rooms case, in 1 room and in -rooms-count rooms, and idle rooms measured")
		roomsK  = flag.Int("rooms-count", 100, "rooms of the rooms case's second arrangement (and its speakers); it divides -rooms-members")
		inProc  = flag.Bool("in-process", false, "run the relays the speaker feeds and the end-to-end cases' relays in this process, not each in a process of its own")
		pin     = flag.Bool("pin", true, "run each fed relay's process on a CPU of its own, the speaker and the drain on another")
		serve   = flag.Bool("serve-relay", false, "serve the relay a spec on stdin says, for the run that started this one")
	)
	flag.Parse()
	if *serve {
		if err := serveRelay(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	cfg := defaultConfig()
	if *quick {
		cfg = quickConfig()
	}
	var err error
	flag.Visit(func(f *flag.Flag) { // given flags win over -quick
		switch f.Name {
		case "members":
			cfg.Members, err = parseMembers(*members)
		case "dur":
			cfg.Dur = *dur
		case "joins":
			cfg.MemJoins = *joins
		case "rounds":
			cfg.Rounds = *rounds
		case "pin":
			cfg.Pin = *pin
		case "e2e-members":
			cfg.E2EMembers, err = parseMembers(*e2eN)
		case "burst":
			cfg.Burst = *burst
		case "burst-large":
			cfg.BurstLarge = *burstL
		case "rooms-members":
			cfg.RoomsMembers = *roomsN
		case "rooms-count":
			cfg.RoomsCount = *roomsK
		}
	})
	cfg.E2EOnly, cfg.E2E = *e2e, *e2e || !*noE2E
	cfg.InProcess = *inProc
	cfg.RoomsOnly, cfg.Rooms = *rooms, *rooms || !*noRooms
	if *e2e && *noE2E {
		err = fmt.Errorf("-e2e and -no-e2e exclude each other")
	}
	if *rooms && *noRooms {
		err = fmt.Errorf("-rooms and -no-rooms exclude each other")
	}
	if err == nil && cfg.Rooms {
		err = checkRooms(cfg.RoomsMembers, cfg.RoomsCount)
	}
	if err == nil && (cfg.Burst < 1 || cfg.BurstLarge < 1) {
		err = fmt.Errorf("-burst and -burst-large must be positive")
	}
	if err == nil && (cfg.Dur <= 0 || cfg.MemJoins < 1) {
		err = fmt.Errorf("-dur and -joins must be positive")
	}
	if err == nil && (cfg.Rounds < 1 || cfg.Rounds > 20) {
		err = fmt.Errorf("-rounds %d: want 1 to 20", cfg.Rounds)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	var prof *os.File
	if *cpuProf != "" {
		prof, err = os.Create(*cpuProf)
		if err == nil {
			err = pprof.StartCPUProfile(prof)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -cpuprofile:", err)
			os.Exit(2)
		}
	}
	rep, err := run(cfg, os.Stderr)
	if prof != nil {
		pprof.StopCPUProfile() // before any exit: the file is whole
		if cerr := prof.Close(); cerr != nil {
			fmt.Fprintln(os.Stderr, "bench: -cpuprofile:", cerr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func checkRooms(members, rooms int) error {
	if members < 2 || members > 5000 || rooms < 2 || members%rooms != 0 || members/rooms < 2 {
		return fmt.Errorf("-rooms-members %d, -rooms-count %d: want 2 to 5000 members, in 2 or more rooms of 2 or more", members, rooms)
	}
	return nil
}

func parseMembers(s string) ([]int, error) {
	var ns []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 5000 {
			return nil, fmt.Errorf("-members: %q: want counts from 1 to 5000", f)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// run measures every case and returns the report; an error means a case
// could not be set up or broke down, not that a figure missed its target.
func run(cfg config, progress io.Writer) (*report, error) {
	start := time.Now()
	rep := &report{Machine: machineInfo(), Config: cfg}
	if !cfg.E2EOnly && !cfg.RoomsOnly {
		if err := runBase(&cfg, rep, progress); err != nil {
			return nil, err
		}
	}
	if cfg.Rooms && (cfg.RoomsOnly || !cfg.E2EOnly) {
		rr, rows, err := runRoomsCases(&cfg, progress)
		if err != nil {
			return nil, err
		}
		rep.Rooms = rr
		rep.Rows = append(rep.Rows, rows...)
	}
	if cfg.E2E && (cfg.E2EOnly || !cfg.RoomsOnly) {
		if err := runE2ECases(&cfg, rep, progress); err != nil {
			return nil, err
		}
	}
	rep.Elapsed = time.Since(start).Seconds()
	return rep, nil
}

// runBase runs the cases that are neither end to end nor rooms: the
// relays against their limits, latency, memory and joins.
func runBase(cfg *config, rep *report, progress io.Writer) error {
	var vsRaw, vsRawRelay, vsNaive, vsBcast, vsBcastRelay, vsBcastNaive []row
	step := func(r result, err error) (result, error) {
		if err != nil {
			return r, fmt.Errorf("%s, N=%d: %w", r.Case, r.N, err)
		}
		fmt.Fprintf(progress, "bench: %-22s N=%-5d %s\n", r.Case, r.N, r.summary())
		rep.Runs = append(rep.Runs, r)
		return r, nil
	}
	// rawLimit runs the raw sender open-loop and windowed and returns the
	// faster: the limit is the best it does either way.
	rawLimit := func(n int, broadcast bool) (result, error) {
		open, err := step(runRaw(cfg, n, broadcast, false))
		if err != nil {
			return open, err
		}
		win, err := step(runRaw(cfg, n, broadcast, true))
		if err != nil || win.Rate <= open.Rate {
			return open, err
		}
		return win, nil
	}
	// The runs compared with each other go one after the other, so that
	// the machine's drift touches them alike; the relays fed by the
	// speaker go in rounds (fedRounds).
	for _, n := range cfg.Members {
		raw, err := rawLimit(n, false)
		if err != nil {
			return err
		}
		fed, err := fedRounds(cfg, n, false, step)
		if err != nil {
			return err
		}
		vsRaw = append(vsRaw, rateRow("unicast vs raw", raw, median(fed.uc), raw.Case, n >= 100, 0.9))
		vsRawRelay = append(vsRawRelay, fed.row("unicast vs raw relay", fed.rawRelay, "raw relay", 0.9))
		vsNaive = append(vsNaive, fed.row("unicast vs naive", fed.naive, "naive relay", 1.0))
		if n < 10 {
			continue
		}
		braw, err := rawLimit(n, true)
		if err != nil {
			return err
		}
		bfed, err := fedRounds(cfg, n, true, step)
		if err != nil {
			return err
		}
		vsBcast = append(vsBcast, rateRow("broadcast vs raw", braw, median(bfed.uc), braw.Case, true, 0.9))
		vsBcastRelay = append(vsBcastRelay, bfed.row("broadcast vs raw relay", bfed.rawRelay, "raw relay broadcast", 0.9))
		vsBcastNaive = append(vsBcastNaive, bfed.row("broadcast vs naive", bfed.naive, "naive broadcast", 1.0))
	}
	// Latency goes in rounds, the three ways in turn, so that drift and
	// where the scheduler puts the threads touch them alike.
	vias := []string{"direct", "naive", "udpchat"}
	lat := map[string]result{}
	for range latencyRounds {
		for _, via := range vias {
			r, err := runLatency(cfg, via, cfg.Dur/latencyRounds)
			if err != nil {
				return fmt.Errorf("%s: %w", r.Case, err)
			}
			acc := lat[via]
			acc.merge(r)
			lat[via] = acc
		}
	}
	for _, via := range vias {
		step(lat[via], nil)
	}
	fmt.Fprintf(progress, "bench: memory and joins (%d members)\n", cfg.MemJoins)
	mem, err := runMemory(cfg)
	if err != nil {
		return fmt.Errorf("memory and joins: %w", err)
	}
	rep.Memory = mem
	rep.Rows = slices.Concat(vsRaw, vsRawRelay, vsNaive, vsBcast, vsBcastRelay, vsBcastNaive, latencyRows(lat), memoryRows(mem))
	return nil
}
