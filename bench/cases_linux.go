//go:build linux

package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"time"

	"github.com/udpchat/udpchat"
)

const (
	sendBatch   = 64                    // datagrams per sendmmsg of the raw sender
	speakWindow = 32                    // messages (chats, raw rounds) a sender keeps outstanding; the relay holds 64 ahead
	stallAfter  = 20 * time.Millisecond // no copy back for this long: a sender counts what is lost
	joinWindow  = 64                    // joins in flight at once
	slack       = 2 * time.Second       // past the window, every load stops by itself
	maxRate     = 5e6                   // datagrams per second no load exceeds: its count bound
	memSockets  = 16                    // sockets the memory case's members join from
)

var bcastIP = netip.AddrFrom4([4]byte{127, 255, 255, 255})

// A result is one run: a load against N receivers, or a latency series.
type result struct {
	Case      string  `json:"case"`
	N         int     `json:"n"`
	Rate      float64 `json:"delivered_per_s,omitempty"`
	Delivered uint64  `json:"delivered,omitempty"` // at the receivers, in the window
	Window    float64 `json:"window_s,omitempty"`
	Drops     uint64  `json:"receiver_drops"` // in the window, by SO_MEMINFO
	Sent      uint64  `json:"sent"`           // datagrams or chats the load sent, warm-up included
	P50       float64 `json:"p50_us,omitempty"`
	P99       float64 `json:"p99_us,omitempty"`
	Samples   int     `json:"samples,omitempty"`
	// The relay's process in the window, per chat (a datagram it read and
	// delivered): CPU time and context switches; and its GOMAXPROCS. Only
	// a relay in a process of its own tells them.
	RelayCPU      float64 `json:"relay_cpu_ns_per_chat,omitempty"`
	RelaySwitches float64 `json:"relay_switches_per_chat,omitempty"`
	RelayProcs    int     `json:"relay_gomaxprocs,omitempty"`
	// The share of one CPU the relay's process and this one (the load:
	// speaker and drain) used in the window. A load near 1 sets the rate
	// itself: the relay then waits for it, and a faster relay cannot show.
	RelayBusy float64             `json:"relay_busy,omitempty"`
	LoadBusy  float64             `json:"load_busy,omitempty"`
	Relay     *udpchat.RelayStats `json:"relay_stats,omitempty"`
	Notes     []string            `json:"notes,omitempty"`
	latencies []int64             // ns, for merge
}

func (r *result) notef(format string, a ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, a...)) }

// underLoad runs load on a goroutine of its own while measure runs, then
// stops it and waits for it. load also stops by itself at its deadline.
func underLoad(load func(stop <-chan struct{}) (uint64, error), measure func()) (uint64, error) {
	stop := make(chan struct{})
	type sent struct {
		n   uint64
		err error
	}
	res := make(chan sent, 1)
	go func() {
		n, err := load(stop)
		res <- sent{n, err}
	}()
	measure()
	close(stop)
	s := <-res
	return s.n, s.err
}

// window counts what receivers [from, to) get in cfg.Dur after cfg.Warm,
// and what the relay rl (nil: none) and this process spent meanwhile.
//
// The relay's usage is over the span between the two moments its process
// took it, which is the window only if it answers at once. A busy relay
// may answer late (udpchat's did, by 9-13% of a 2 s window at N = 1000
// unicast, while Stats waited for its fan-out), so its figures are rates
// over its own span, applied to the window.
func (cfg *config) window(d *drain, from, to int, r *result, rl benchRelay) {
	time.Sleep(cfg.Warm)
	u0 := usageOf(rl)
	c0, x0, t0, p0 := d.sum(from, to), d.drops(from, to), time.Now(), processCPU()
	time.Sleep(cfg.Dur)
	c1, x1, t1, p1 := d.sum(from, to), d.drops(from, to), time.Now(), processCPU()
	u1 := usageOf(rl)
	r.Delivered, r.Drops, r.Window = c1-c0, x1-x0, t1.Sub(t0).Seconds()
	r.Rate = float64(r.Delivered) / r.Window
	if !cfg.InProcess {
		r.LoadBusy = (p1 - p0).Seconds() / r.Window
	}
	chats := float64(r.Delivered) / float64(to-from)
	if u0 == nil || u1 == nil || u1.At <= u0.At || chats == 0 {
		return
	}
	span := float64(u1.At-u0.At) / 1e9
	r.RelayBusy = float64(u1.CPU-u0.CPU) / 1e9 / span
	r.RelayCPU = float64(u1.CPU-u0.CPU) * (r.Window / span) / chats
	r.RelaySwitches = float64(u1.Switches-u0.Switches) * (r.Window / span) / chats
	r.RelayProcs = u1.Procs
}

// usageOf asks rl for its process's usage: nil if it has none to tell.
func usageOf(rl benchRelay) *usage {
	if rl == nil {
		return nil
	}
	rep, err := rl.report(false)
	if err != nil {
		return nil
	}
	return rep.Usage
}

// deadline and limit bound a load that starts now.
func (cfg *config) deadline() time.Time { return time.Now().Add(cfg.Warm + cfg.Dur + slack) }
func (cfg *config) limit() uint64       { return uint64((cfg.Warm + cfg.Dur + slack).Seconds() * maxRate) }

// openReceivers starts a drain with n receivers, on 127.0.0.1 or, with
// broadcast, sharing a port, and returns their sockets and where a sender
// writes to reach them: their addresses, or the one group address
// (127.255.255.255 and the port). The caller stops the drain.
func openReceivers(n int, broadcast bool) (*drain, []int, []netip.AddrPort, error) {
	d, err := newDrain(n, 0, 0, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	port, release := 0, func() {}
	if broadcast {
		if port, release, err = reservePort(); err != nil {
			d.stop()
			return nil, nil, nil, err
		}
	}
	_, fds, addrs, err := d.receivers(n, port)
	release()
	if err != nil {
		d.stop()
		return nil, nil, nil, err
	}
	if broadcast {
		addrs = []netip.AddrPort{netip.AddrPortFrom(bcastIP, uint16(port))}
	}
	return d, fds, addrs, nil
}

// runRaw measures sendmmsg from an unpolled socket: one payload to n
// receivers in turn, or, with broadcast, to 127.255.255.255 where n
// receivers share a port. Open-loop it sends as fast as it can; windowed
// it keeps at most speakWindow rounds (one datagram to each receiver)
// ahead of receiver #0, as the speaker does through a relay, so that the
// receivers' queues stay short instead of overflowing.
func runRaw(cfg *config, n int, broadcast, windowed bool) (result, error) {
	r := result{Case: "raw", N: n}
	if broadcast {
		r.Case += " broadcast"
	}
	if windowed {
		r.Case += " windowed"
	}
	d, _, addrs, err := openReceivers(n, broadcast)
	if err != nil {
		return r, err
	}
	defer d.stop()
	b, err := newBlaster(addrs, broadcast, sendBatch)
	if err != nil {
		return r, err
	}
	defer b.close()
	load := func(stop <-chan struct{}) (uint64, error) {
		if !windowed {
			return b.blast(stop, cfg.deadline(), cfg.limit())
		}
		_, err := closedLoop(stop, cfg.deadline(), cfg.limit(), d, b.sendRounds)
		return b.sent, err
	}
	if r.Sent, err = underLoad(load, func() { cfg.window(d, 0, n, &r, nil) }); err != nil {
		return r, err
	}
	return r, d.stop()
}

// closedLoop sends messages while at most speakWindow are outstanding, a
// message being done when its copy reaches receiver #0 (the drain's watch
// socket): send(room) sends, or goes on sending, at most room messages and
// says how many it started. So the relay's input never overflows, and udpchat's
// relay, which sequences a member's chats in member-seq order, never
// waits for a lost one. To stay live when copies are lost, a stall of
// stallAfter counts as done the copies the kernel dropped at that
// receiver, or else one message: never the whole window, which would let
// the receivers' queues grow whenever the drain is slow to come round.
func closedLoop(stop <-chan struct{}, deadline time.Time, max uint64, d *drain, send func(room int) (int, error)) (uint64, error) {
	w := d.watch
	start, drops0 := d.count(w), d.drops(w, w+1)
	var sent, extra, dropped uint64 // extra: messages counted done without a copy
	idle := time.NewTimer(stallAfter)
	defer idle.Stop()
	for sent < max && !stopped(stop) && time.Now().Before(deadline) {
		done := d.count(w) - start + extra
		if room := speakWindow - (int64(sent) - int64(done)); room > 0 {
			n, err := send(int(min(room, int64(max-sent))))
			sent += uint64(n)
			if err == nil {
				continue
			}
			if !transient(err) {
				return sent, err
			}
			// The socket is full for a moment: wait below.
		}
		idle.Reset(stallAfter)
		select {
		case <-stop:
		case <-d.notify:
		case <-idle.C:
			if d.count(w)-start+extra != done || sent <= done {
				break
			}
			if lost := d.drops(w, w+1) - drops0; lost > dropped {
				extra += lost - dropped
				dropped = lost
			} else {
				extra++
			}
		}
	}
	return sent, nil
}

// speak sends the speaker's messages closed-loop, one per send(seq).
func speak(stop <-chan struct{}, deadline time.Time, max uint64, d *drain, send func(seq uint64) error) (uint64, error) {
	var seq uint64
	return closedLoop(stop, deadline, max, d, func(int) (int, error) {
		if err := send(seq + 1); err != nil {
			return 0, err
		}
		seq++
		return 1, nil
	})
}

// runLatency sends cfg.LatencyRate messages a second to cfg.LatencyN
// receivers for dur, and takes the one-way latency at every receiver:
// directly with sendmmsg ("direct"), through the naive relay or through
// udpchat's. The samples are left for merge.
func runLatency(cfg *config, via string, dur time.Duration) (result, error) {
	// Its relays stay in this process: at 1,000 messages a second nothing
	// waits for a P, and a relay's own process would add a wake-up across
	// processes that the direct case, its baseline, does not have.
	local := *cfg
	local.InProcess = true
	cfg = &local
	n := cfg.LatencyN
	r := result{Case: "latency " + via, N: n}
	count := uint64(dur.Seconds() * float64(cfg.LatencyRate))
	samples := int(count)*n + n
	interval := time.Second / time.Duration(cfg.LatencyRate)
	var (
		d     *drain
		first int
		send  func(uint64) error
		done  func() error
		err   error
	)
	switch via {
	case "direct", "naive":
		if d, err = newDrain(n, 0, samples, nil); err != nil {
			return r, err
		}
		defer d.stop()
		_, fds, addrs, err := d.receivers(n, 0)
		if err != nil {
			return r, err
		}
		if via == "direct" {
			b, err := newBlaster(addrs, false, n) // one batch: one datagram to each
			if err != nil {
				return r, err
			}
			defer b.close()
			send = func(uint64) error { _, err := b.sendBatch(n); return err }
			break
		}
		nr, ap, err := startRelayAt(cfg, relaySpec{Kind: "fed naive", Dsts: addrs})
		if err != nil {
			return r, err
		}
		to, msg := sockaddr(ap), payload(payloadSize)
		send = func(uint64) error { stamp(msg, nowNS()); return sendTo(fds[0], msg, &to) }
		done = func() error { return errors.Join(noteFailures(nr, &r), nr.close()) }
	case "udpchat":
		g, err := newGroup(cfg, n, false, samples, &r)
		if err != nil {
			return r, err
		}
		d, first, send = g.d, g.first, g.chats()
		done = func() error { g.settle(n, r.Sent, &r); return g.close() }
	default:
		return r, fmt.Errorf("no latency case %q", via)
	}
	d.record.Store(true)
	r.Sent, err = pace(nil, time.Now().Add(dur+slack), count, interval, send)
	if err == nil && !d.waitSum(first, first+n, r.Sent*uint64(n), slack) {
		r.notef("%d of %d copies arrived", d.sum(first, first+n), r.Sent*uint64(n))
	}
	if done != nil {
		if derr := done(); err == nil {
			err = derr
		}
	}
	if derr := d.stop(); err == nil {
		err = derr
	}
	r.latencies = d.samples
	return r, err
}

// merge adds the latency series o to r and works out the percentiles of
// them all; the relay's stats are the last series'.
func (r *result) merge(o result) {
	r.Case, r.N, r.Relay = o.Case, o.N, o.Relay
	r.Sent += o.Sent
	r.Notes = append(r.Notes, o.Notes...)
	r.latencies = append(r.latencies, o.latencies...)
	r.Samples, r.P50, r.P99 = percentiles(r.latencies)
}

// memResult is the memory and join-rate case.
type memResult struct {
	Members      int                 `json:"members"`      // joined and measured
	Base         int                 `json:"base_members"` // joined before
	BroadcastVia string              `json:"broadcast"`
	HeapDelta    int64               `json:"heap_delta_bytes"`
	PerMember    float64             `json:"heap_bytes_per_member"`
	JoinsPerSec  float64             `json:"joins_per_s"`
	JoinSeconds  float64             `json:"join_seconds"`
	Relay        *udpchat.RelayStats `json:"relay_stats,omitempty"`
	Notes        []string            `json:"notes,omitempty"`
}

// runMemory joins cfg.MemBase and then cfg.MemJoins members and takes the
// relay's heap growth per member over the latter, and their join rate.
// The relay broadcasts to a port no one listens on, so that each join
// event costs one datagram instead of one per member; several members
// join from each socket (the relay keys members by name and address).
func runMemory(cfg *config) (m memResult, err error) {
	total := cfg.MemBase + cfg.MemJoins
	m.Members, m.Base = cfg.MemJoins, cfg.MemBase
	port, err := freePort()
	if err != nil {
		return m, err
	}
	group := netip.AddrPortFrom(bcastIP, uint16(port))
	m.BroadcastVia = group.String()
	relay, err := startRelay(total, udpchat.WithBroadcast(group.String()))
	if err != nil {
		return m, err
	}
	names := make([]string, total)
	for i, k := range rand.Perm(total) { // joins in no particular name order
		names[i] = fmt.Sprintf("member-%05d", k)
	}
	j, d, err := spreadJoiner(relay, names, rcvBufMax)
	if err != nil {
		relay.close()
		return m, err
	}
	defer stopBoth(relay, d, &err)
	if err := j.join(0, cfg.MemBase, joinWindow, cfg.Timeout); err != nil {
		return m, err
	}
	// Everything of the joiner's is allocated by now: the growth is the
	// relay's.
	h0 := heapAlloc()
	t0 := time.Now()
	if err := j.join(cfg.MemBase, total, joinWindow, cfg.Timeout); err != nil {
		return m, err
	}
	m.JoinSeconds = time.Since(t0).Seconds()
	h1 := heapAlloc()
	m.HeapDelta = int64(h1) - int64(h0)
	m.PerMember = float64(m.HeapDelta) / float64(cfg.MemJoins)
	m.JoinsPerSec = float64(cfg.MemJoins) / m.JoinSeconds
	s := relay.Stats()
	m.Relay = &s
	if s.Members != total {
		m.Notes = append(m.Notes, fmt.Sprintf("relay has %d members, want %d", s.Members, total))
	}
	return m, nil
}

// spreadJoiner readies a joiner of names to relay, joining from memSockets
// sockets (name i from socket i % memSockets, each with a receive buffer
// of rcvBuf bytes, 0 for the system's) drained by one drain.
func spreadJoiner(relay *relayRun, names []string, rcvBuf int) (*joiner, *drain, error) {
	j := newJoiner(relay.ap, names, joinWindow)
	d, err := newDrain(memSockets, -1, 0, j.handle)
	if err != nil {
		return nil, nil, err
	}
	for i := range memSockets {
		fd, _, err := openUDP(loopback, 0, false, true, rcvBuf)
		if err == nil {
			_, err = d.add(fd)
		}
		if err != nil {
			d.stop()
			return nil, nil, err
		}
		for k := i; k < len(names); k += memSockets {
			j.reqs[k].fd = fd
		}
	}
	return j, d, nil
}

// stopBoth stops the relay and the drain, and sets *err to what stopping
// them failed with if it is not set yet.
func stopBoth(relay *relayRun, d *drain, err *error) {
	rerr := relay.close()
	if derr := d.stop(); rerr == nil {
		rerr = derr
	}
	if *err == nil {
		*err = rerr
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
