package udpchat

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The relay's path for one chat (decode, sequence, encode once, fan out to
// every member with sendmmsg) allocates nothing, with and without a key,
// over IPv4 and IPv6, and bound to a wildcard address (each datagram then
// carries its source address as a control message).
func TestRelayPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race (.ci/run runs it)")
	}
	for _, tc := range []struct {
		name  string
		bind  string // the relay's address
		sink  string // where its datagrams go
		local string // the address a wildcard relay answers from
		opts  []Option
	}{
		{"plain", "127.0.0.1:0", "127.0.0.1:0", "", nil},
		{"sealed", "127.0.0.1:0", "127.0.0.1:0", "", []Option{WithKey(key1)}},
		{"IPv6", "[::1]:0", "[::1]:0", "", nil},
		{"wildcard", "0.0.0.0:0", "127.0.0.1:0", "127.0.0.1", nil},
		{"IPv6 wildcard", "[::]:0", "[::1]:0", "::1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.sink, "::") {
				requireIPv6(t)
			}
			r, err := NewRelay(append(tc.opts, WithAddr(tc.bind), WithRateLimit(0, 0))...)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			sink, err := net.ListenPacket("udp", tc.sink)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			to := udpPath{remote: addrPortOf(sink.LocalAddr())}
			if tc.local != "" {
				to.local = netip.MustParseAddr(tc.local)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			now := time.Now()
			seal := func(b []byte) []byte { return b }
			if r.q.sealer != nil {
				s := newSealer(r.cfg.keys)
				seal = s.seal
			}
			// Ten members at addresses of their own; what the relay sends
			// them all goes to the sink, which drops what it does not read.
			var sess []uint64
			member := func(i int) netip.AddrPort {
				return netip.AddrPortFrom(to.remote.Addr(), to.remote.Port()+uint16(i)+1)
			}
			for i := range 10 {
				r.handleAt(seal(cookieJoin(r, member(i), uint64(i+1), uint64(i+1), fmt.Sprint("m", i))), member(i), now)
				m := r.proto().main().byName[fmt.Sprint("m", i)]
				if m == nil {
					t.Fatalf("m%d did not join", i)
				}
				r.proto().main().dsts[m.idx] = to
				sess = append(sess, m.session)
			}
			r.q.flush()
			mseq := uint64(1)
			// Steady state: the room's history has grown to its size and
			// every slot holds a datagram of this size.
			for range 2 * r.cfg.history {
				r.handleAt(seal(appendChat(nil, sess[0], mseq, seqAt{}, "", "hello there")), member(0), now)
				r.q.flush()
				mseq++
			}
			before, errs := r.stats.Sequenced, r.stats.DroppedSendErrors
			allocs := testing.AllocsPerRun(200, func() {
				r.handleAt(seal(appendChat(nil, sess[0], mseq, seqAt{}, "", "hello there")), member(0), now)
				r.q.flush()
				mseq++
			})
			if r.stats.Sequenced-before < 200 || r.stats.DroppedSendErrors != errs {
				t.Fatalf("%d chats sequenced, %d send errors", r.stats.Sequenced-before, r.stats.DroppedSendErrors-errs)
			}
			// The chat datagram and its seal are built by the test, outside
			// the relay: subtract them.
			own := testing.AllocsPerRun(200, func() { seal(appendChat(nil, sess[0], mseq, seqAt{}, "", "hello there")) })
			if allocs-own > 0 {
				t.Errorf("the relay allocates %v times per chat fanned out to 10 members", allocs-own)
			}
		})
	}
}

// A member's path for one message, from the datagram to Receive, allocates
// only the Message's text.
func TestMemberReceiveAllocates(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race (.ci/run runs it)")
	}
	r := startRelay(t, WithRateLimit(0, 0))
	m := join(t, r, "bob")
	expect(t, m, KindJoin, "bob", "")
	join(t, r, "alice") // a sender the member knows, as senders are
	expect(t, m, KindJoin, "alice", "")
	r.mu.Lock()
	speaker := r.proto().main().byName["alice"]
	inc := speaker.room.inc
	r.mu.Unlock()
	m.mu.Lock()
	next := m.in.next
	m.mu.Unlock()
	// Delivers as the relay sends them, from another member, in order.
	const runs = 500
	ds := make([][]byte, runs+1)
	for i := range ds {
		ds[i] = appendDeliver(nil, inc, next+uint64(i), time.Now().UnixNano(), speaker.epoch, 1000+uint64(i), KindChat, "alice", "", []byte("hello there"))
	}
	ctx := context.Background()
	i := 0
	allocs := testing.AllocsPerRun(runs, func() {
		m.handle(ds[i], netip.AddrPort{}, false)
		i++
		if msg, err := m.Receive(ctx); err != nil || msg.Text != "hello there" {
			t.Fatalf("Receive: %v, %v", msg, err)
		}
	})
	if allocs > 1 {
		t.Errorf("a member allocates %v times per message received, want 1 (the text)", allocs)
	}
}

// The relay counts what the kernel dropped because its receive buffer was
// full (Linux reports it; elsewhere the count stays 0).
func TestKernelDropsCounted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_RXQ_OVFL is Linux's")
	}
	r, err := NewRelay(WithAddr("127.0.0.1:0"), WithSocketBuffers(4096, 0))
	if err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, r.Addr())
	// Not served yet: a small buffer overflows at once.
	junk := make([]byte, 512)
	for range 200 {
		c.send(junk)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(context.Background()) }()
	defer func() {
		r.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	// The count rides on the next datagram the kernel queues.
	deadline := time.Now().Add(testTimeout)
	for r.Stats().DroppedKernel == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no kernel drops counted: %+v", r.Stats())
		}
		c.send(junk)
		c.read(time.Millisecond) // paces the loop; the relay does not answer junk
	}
	if s := r.Stats(); s.DroppedKernel+s.Received < 200 {
		t.Errorf("%d dropped by the kernel and %d received, of at least 200 sent", s.DroppedKernel, s.Received)
	}
}

// A Send costs one allocation, the datagram, with and without a key, once
// the outbox has chats to reuse. (AllocsPerRun counts the member's other
// goroutines too: the receive path of the sender's own copy, which its
// full queue does not keep, allocates nothing.)
func TestMemberSendAllocates(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race (.ci/run runs it)")
	}
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"plain", nil}, {"key", []Option{WithKey(key1)}}} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, append([]Option{WithRateLimit(0, 0), WithHistory(minHistory)}, tc.opts...)...)
			m := join(t, r, "alice", append([]Option{WithQueueSize(1)}, tc.opts...)...)
			ctx := context.Background()
			for range 2000 { // past the outbox's bound: chats are reused
				if err := m.Send(ctx, "hello there"); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(500, func() {
				if err := m.Send(ctx, "hello there"); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > 1.05 { // a heartbeat now and then
				t.Errorf("a Send allocates %v times, want 1 (the datagram)", allocs)
			}
		})
	}
}
