//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The end-to-end cases' naive side: a ReadFromUDP/WriteToUDP relay and clients.

// runE2ENaive runs spec through the naive relay and spec.N naive clients,
// client 0 sending.
func runE2ENaive(cfg *config, spec e2eSpec) (res e2eResult, err error) {
	n := spec.N
	res = e2eResult{Case: spec.Case, Via: "naive", N: n, Msgs: spec.Msgs}
	nr, err := startE2ERelay(cfg, "naive", n)
	if err != nil {
		return res, err
	}
	defer func() {
		if rep, rerr := nr.report(false); rerr != nil {
			err = errors.Join(err, rerr)
		} else if rep.Errs > 0 {
			res.notef("naive relay: %d reads or writes failed, the first with %v", rep.Errs, rep.First)
		}
		err = errors.Join(err, nr.close())
	}()
	clients := make([]*net.UDPConn, 0, n)
	var rwg sync.WaitGroup
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		rwg.Wait()
	}()
	for range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return res, err
		}
		clients = append(clients, c)
		c.SetReadBuffer(naiveBuffer)
		c.SetWriteBuffer(naiveBuffer)
	}
	relayAddr, err := netip.ParseAddrPort(nr.addr())
	if err != nil {
		return res, err
	}
	to := net.UDPAddrFromAddrPort(relayAddr)
	t := newTally(n, spec.Msgs, spec.Case == "latency")
	for i, c := range clients {
		rwg.Go(func() {
			buf := make([]byte, recvBufLen)
			for {
				k, _, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				name, text, ok := strings.Cut(string(buf[:k]), ": ")
				if ok && name == "c0" {
					t.hit(i, text, 0)
				}
			}
		})
	}
	// Register: each client says hello until the relay has heard all.
	reg := time.Now().Add(cfg.Timeout)
	for i, c := range clients {
		if _, err := c.WriteToUDP([]byte(fmt.Sprintf("c%d: hello", i)), to); err != nil {
			return res, err
		}
		if i%64 == 63 {
			time.Sleep(time.Millisecond) // let the relay keep up
		}
	}
	for writes := ^uint64(0); ; { // the first look only takes the count
		time.Sleep(100 * time.Millisecond)
		rep, err := nr.report(true)
		if err != nil {
			return res, err
		}
		if len(rep.Known) == n {
			break
		}
		if time.Now().After(reg) {
			return res, fmt.Errorf("naive relay heard %d of %d clients", len(rep.Known), n)
		}
		if rep.Writes != writes {
			// Still fanning out the hellos it has: those not heard yet
			// may be waiting in its socket. Each hello sent again would
			// cost it a write per client, and with 1000 clients the
			// copies outran it for good.
			writes = rep.Writes
			continue
		}
		known := make(map[string]bool, len(rep.Known))
		for _, a := range rep.Known {
			known[a] = true
		}
		for i, c := range clients { // again: a hello may have been dropped
			if !known[c.LocalAddr().String()] {
				c.WriteToUDP([]byte(fmt.Sprintf("c%d: hello", i)), to)
			}
		}
	}
	// The hellos' fan-out (one write per client per hello) drains.
	if ok, err := relayQuiet(nr, 50*time.Millisecond, cfg.Timeout); err != nil {
		return res, err
	} else if !ok {
		res.notef("the naive relay was still writing hellos after %v", cfg.Timeout)
	}

	start := time.Now()
	t0, cpu0 := nowNS(), processCPU()
	deadline := start.Add(spec.Deadline)
	var serrs atomic.Uint64
	var firstErr atomic.Pointer[error]
	sender := clients[0]
	workers := 1 // one socket, one writer: WriteToUDP as fast as it goes
	res.Sent = sendLoop(spec, workers, start.Add(spec.SendFor), func(seq uint64) {
		if _, err := sender.WriteToUDP([]byte("c0: "+chatText(seq, nowNS())), to); err != nil {
			serrs.Add(1)
			firstErr.CompareAndSwap(nil, &err)
		}
	})
	res.SendSecs = time.Since(start).Seconds()
	res.SendErrs = serrs.Load()
	res.Confirmed = res.Sent - res.SendErrs
	if e := firstErr.Load(); e != nil {
		res.notef("%d writes failed, the first with %v", res.SendErrs, *e)
	}
	// Lost datagrams never come: wait until all came, the deadline, or
	// the relay and the receivers were idle for e2eIdle.
	// The relay's writes are asked for every 50ms, not at each look at
	// the receivers: a relay in its own process answers each ask.
	want := res.Sent * uint64(n)
	quiet, last, writes, asked := time.Now(), t.total.Load(), uint64(0), time.Time{}
	for t.total.Load() < want && time.Now().Before(deadline) && time.Since(quiet) < e2eIdle {
		if time.Since(asked) >= 50*time.Millisecond {
			rep, err := nr.report(false)
			if err != nil {
				return res, err
			}
			writes, asked = rep.Writes, time.Now()
		}
		if now := t.total.Load() + writes; now != last {
			quiet, last = time.Now(), now
		}
		time.Sleep(time.Millisecond)
	}
	end, cpu1 := nowNS(), processCPU()
	res.TimedOut = t.total.Load() < want && !time.Now().Before(deadline)
	for _, c := range clients {
		c.Close()
	}
	rwg.Wait()
	t.rateFrom(&res, t0, end)
	t.finish(&res)
	res.cpuPerDlv(cpu0, cpu1)
	return res, nil
}

// naiveE2E is the naive relay of the end-to-end cases: clients register
// by sending, and every datagram goes to every client heard from.
type naiveE2E struct {
	conn   *net.UDPConn
	ap     netip.AddrPort
	writes atomic.Uint64 // datagrams written
	mu     sync.Mutex    // guards known
	known  map[netip.AddrPort]bool
	fails  failures // failed reads and writes
	done   chan struct{}
}

func startNaiveE2E() (*naiveE2E, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	c.SetReadBuffer(naiveBuffer)
	c.SetWriteBuffer(naiveBuffer)
	r := &naiveE2E{conn: c, ap: c.LocalAddr().(*net.UDPAddr).AddrPort(), known: map[netip.AddrPort]bool{}, done: make(chan struct{})}
	go r.serve()
	return r, nil
}

func (r *naiveE2E) serve() {
	defer close(r.done)
	buf := make([]byte, recvBufLen)
	var clients []*net.UDPAddr
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.fails.add(err)
			continue
		}
		ap := from.AddrPort()
		r.mu.Lock()
		if !r.known[ap] {
			r.known[ap] = true
			clients = append(clients, from)
		}
		r.mu.Unlock()
		for _, c := range clients {
			r.writes.Add(1)
			if _, err := r.conn.WriteToUDP(buf[:n], c); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				r.fails.add(err)
			}
		}
	}
}

func (r *naiveE2E) addr() string { return r.ap.String() }

// report copies what it tells under the lock, which serve takes per
// datagram, and formats it after.
func (r *naiveE2E) report(known bool) (relayReport, error) {
	var clients []netip.AddrPort
	r.mu.Lock()
	if known {
		clients = make([]netip.AddrPort, 0, len(r.known))
		for a := range r.known {
			clients = append(clients, a)
		}
	}
	r.mu.Unlock()
	rep := relayReport{Addr: r.addr(), Writes: r.writes.Load()}
	r.fails.put(&rep)
	for _, a := range clients {
		rep.Known = append(rep.Known, a.String())
	}
	return rep, nil
}

func (r *naiveE2E) close() error {
	r.conn.Close()
	<-r.done
	return nil
}
