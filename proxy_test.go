package udpchat

import (
	"container/heap"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// impairment says what a lossyProxy does to datagrams in one direction.
type impairment struct {
	drop     float64       // probability a datagram is lost
	dup      float64       // probability it is sent twice
	maxDelay time.Duration // each copy is held back uniformly up to this, which reorders
}

// lossyProxy stands between members and a relay on loopback, like a bad
// network with a NAT: members send to its front socket as if it were the
// relay, and it forwards each member's datagrams from an upstream socket of
// that member's own, so the relay sees one address per member. Its
// decisions come from a seeded generator. It drops, duplicates, delays and
// reorders in both directions, and can black out all traffic.
type lossyProxy struct {
	t        testing.TB
	front    *net.UDPConn
	relay    *net.UDPAddr
	up, down impairment
	blackout atomic.Bool
	filter   atomic.Pointer[func(up bool, p *packet) bool] // drops what it returns true for
	tap      atomic.Pointer[func(up bool, b []byte)]       // sees every datagram, as it is on the wire
	keys     *keyring                                      // if set, the filter sees sealed datagrams opened

	mu        sync.Mutex
	rng       *rand.Rand
	upstreams map[netip.AddrPort]*net.UDPConn
	closed    bool
	queue     delayQueue
	wake      chan struct{}
	stats     proxyStats

	wg sync.WaitGroup
}

type proxyStats struct {
	forwarded, dropped, duplicated int
}

func newLossyProxy(t testing.TB, relay net.Addr, seed uint64, up, down impairment) *lossyProxy {
	t.Helper()
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{
		t:         t,
		front:     front,
		relay:     relay.(*net.UDPAddr),
		up:        up,
		down:      down,
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		upstreams: make(map[netip.AddrPort]*net.UDPConn),
		wake:      make(chan struct{}, 1),
	}
	p.wg.Add(2)
	go p.readFront()
	go p.sendLoop()
	t.Cleanup(p.close)
	return p
}

// Addr is where members should send: the proxy's front.
func (p *lossyProxy) Addr() string { return p.front.LocalAddr().String() }

func (p *lossyProxy) close() {
	p.mu.Lock()
	p.closed = true
	ups := make([]*net.UDPConn, 0, len(p.upstreams))
	for _, u := range p.upstreams {
		ups = append(ups, u)
	}
	p.mu.Unlock()
	p.front.Close()
	for _, u := range ups {
		u.Close()
	}
	signal(p.wake)
	p.wg.Wait()
}

func (p *lossyProxy) Stats() proxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// readFront takes members' datagrams towards the relay.
func (p *lossyProxy) readFront() {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := p.front.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		up := p.upstream(from)
		if up == nil {
			return
		}
		p.schedule(true, buf[:n], func(b []byte) { up.Write(b) })
	}
}

// upstream returns the member's own socket towards the relay, making it
// and its reader on first use.
func (p *lossyProxy) upstream(member netip.AddrPort) *net.UDPConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if u := p.upstreams[member]; u != nil {
		return u
	}
	u, err := net.DialUDP("udp4", nil, p.relay)
	if err != nil {
		p.t.Errorf("proxy upstream: %v", err)
		return nil
	}
	p.upstreams[member] = u
	p.wg.Add(1)
	go p.readUpstream(u, member)
	return u
}

// readUpstream takes the relay's datagrams towards one member.
func (p *lossyProxy) readUpstream(u *net.UDPConn, member netip.AddrPort) {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := u.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP from a relay that is down
		}
		p.schedule(false, buf[:n], func(b []byte) { p.front.WriteToUDPAddrPort(b, member) })
	}
}

// setFilter makes the proxy drop the datagrams f returns true for, on top
// of its impairment; up is the direction towards the relay.
func (p *lossyProxy) setFilter(f func(up bool, pk *packet) bool) { p.filter.Store(&f) }

// schedule decides the fate of one datagram and queues its copies.
func (p *lossyProxy) schedule(up bool, b []byte, send func([]byte)) {
	imp := p.down
	if up {
		imp = p.up
	}
	if f := p.tap.Load(); f != nil {
		(*f)(up, b)
	}
	var pk packet
	filtered := false
	if f := p.filter.Load(); f != nil {
		plain := b
		if p.keys != nil {
			plain, _, _, _ = p.keys.open(make([]byte, len(b)), b)
		}
		if decode(plain, &pk) == nil {
			filtered = (*f)(up, &pk)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if filtered || p.blackout.Load() || p.rng.Float64() < imp.drop {
		p.stats.dropped++
		return
	}
	copies := 1
	if p.rng.Float64() < imp.dup {
		copies = 2
		p.stats.duplicated++
	}
	now := time.Now()
	for range copies {
		var d time.Duration
		if imp.maxDelay > 0 {
			d = time.Duration(p.rng.Int64N(int64(imp.maxDelay)))
		}
		heap.Push(&p.queue, delayed{at: now.Add(d), b: append([]byte(nil), b...), send: send, n: p.stats.forwarded})
		p.stats.forwarded++
	}
	signal(p.wake)
}

// sendLoop sends queued datagrams when their delay is over.
func (p *lossyProxy) sendLoop() {
	defer p.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		var due []delayed
		now := time.Now()
		for p.queue.Len() > 0 && !p.queue[0].at.After(now) {
			due = append(due, heap.Pop(&p.queue).(delayed))
		}
		wait := time.Hour
		if p.queue.Len() > 0 {
			wait = p.queue[0].at.Sub(now)
		}
		p.mu.Unlock()
		for _, d := range due {
			d.send(d.b)
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-p.wake:
		}
	}
}

type delayed struct {
	at   time.Time
	n    int // arrival order, to keep equal times stable
	b    []byte
	send func([]byte)
}

type delayQueue []delayed

func (q delayQueue) Len() int { return len(q) }
func (q delayQueue) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].n < q[j].n
	}
	return q[i].at.Before(q[j].at)
}
func (q delayQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *delayQueue) Push(x any)   { *q = append(*q, x.(delayed)) }
func (q *delayQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// rebind gives the member at its front address a new upstream socket, and
// so a new source port towards the relay, as a NAT does that loses its
// mapping; the old socket closes. It returns the new upstream address.
func (p *lossyProxy) rebind(member netip.AddrPort) netip.AddrPort {
	p.t.Helper()
	u, err := net.DialUDP("udp4", nil, p.relay)
	if err != nil {
		p.t.Fatalf("proxy rebind: %v", err)
	}
	p.mu.Lock()
	old := p.upstreams[member]
	p.upstreams[member] = u
	p.wg.Add(1)
	go p.readUpstream(u, member)
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return addrPortOf(u.LocalAddr())
}
