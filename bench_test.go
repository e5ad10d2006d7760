package udpchat

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The benchmarks here measure the library's own costs per datagram. The
// whole system (relay, kernel and draining members, against the raw
// sendmmsg limit) is measured by the program in bench/; BENCHMARKS.md has
// both.

var benchText = []byte(strings.Repeat("x", 100))

func BenchmarkEncodeDeliver(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, DefaultBufferSize)
	for i := 0; b.Loop(); i++ {
		buf = appendDeliver(buf[:0], 9, uint64(i), 1, 7, uint64(i), KindChat, "alice", "", benchText)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeDeliver(b *testing.B) {
	b.ReportAllocs()
	d := appendDeliver(nil, 9, 3, 1, 7, 1, KindChat, "alice", "", benchText)
	b.SetBytes(int64(len(d)))
	var p packet
	for b.Loop() {
		if err := decode(d, &p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealDeliver(b *testing.B) {
	b.ReportAllocs()
	s := newSealer(mustKeyring(b, key1))
	buf := make([]byte, sealOverhead+deliverHdrLen+5+len(benchText))
	d := appendDeliver(buf[sealPrefix(s):sealPrefix(s)], 9, 3, 1, 7, 1, KindChat, "alice", "", benchText)
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		d = appendDeliver(buf[sealPrefix(s):sealPrefix(s)], 9, 3, 1, 7, 1, KindChat, "alice", "", benchText)
		s.sealInPlace(buf[:0], len(d))
	}
}

func mustKeyring(b *testing.B, keys ...[]byte) *keyring {
	k, err := newKeyring(keys)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// BenchmarkRelayFanout measures the relay's whole path for one chat to
// members=N (decode, sequence, encode once, sendmmsg to every member)
// against a naive relay's in the same run: one WriteToUDPAddrPort of a
// prebuilt datagram per member. Its ns/op is per chat; dgrams/s counts
// the datagrams the kernel took. Every member's copy goes to one sink
// socket that is not read, so the figure is the sender's cost: kernel
// delivery is cut short once the sink's buffer is full. The relay runs
// over IPv4 (udpchat), over IPv6 (udpchat-ipv6) and bound to 0.0.0.0,
// naming each copy's source in a control message (udpchat-wildcard).
func BenchmarkRelayFanout(b *testing.B) {
	relays := []struct{ name, bind, sink, local string }{
		{"udpchat", "127.0.0.1:0", "127.0.0.1:0", ""},
		{"udpchat-ipv6", "[::1]:0", "[::1]:0", ""},
		{"udpchat-wildcard", "0.0.0.0:0", "127.0.0.1:0", "127.0.0.1"},
	}
	for _, n := range []int{1, 10, 100, 1000} {
		for _, rc := range relays {
			b.Run(fmt.Sprintf("%s/members=%d", rc.name, n), func(b *testing.B) {
				if strings.Contains(rc.sink, "::") {
					requireIPv6(b)
				}
				r, sess := fanoutRelay(b, n, rc.bind, rc.sink, rc.local)
				from := r.proto().main().list[0].path.remote
				chats := make([][]byte, 1024)
				r.mu.Lock()
				defer r.mu.Unlock()
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if i%len(chats) == 0 {
						b.StopTimer()
						for j := range chats {
							chats[j] = appendChat(chats[j][:0], sess, uint64(i+j+1), seqAt{}, "", string(benchText))
						}
						b.StartTimer()
					}
					r.handleAt(chats[i%len(chats)], from, time.Now())
					r.q.flush()
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "dgrams/s")
				if r.stats.DroppedSendErrors > 0 {
					b.Fatalf("%d send errors", r.stats.DroppedSendErrors)
				}
			})
		}
		b.Run(fmt.Sprintf("naive/members=%d", n), func(b *testing.B) {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			sink := fanoutSink(b, "127.0.0.1:0")
			d := appendDeliver(nil, 9, 3, 1, 7, 1, KindChat, "alice", "", benchText)
			b.ReportAllocs()
			for b.Loop() {
				for range n {
					if _, err := c.WriteToUDPAddrPort(d, sink); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "dgrams/s")
		})
	}
}

// fanoutSink returns the address of a socket bound to addr that absorbs
// what is sent to it until the benchmark ends.
func fanoutSink(b *testing.B, addr string) netip.AddrPort {
	s, err := net.ListenPacket("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return addrPortOf(s.LocalAddr())
}

// fanoutRelay returns a relay bound to bind, not serving, with n members
// whose copies all go to one sink at sink (sent from local, if set), and
// the session of the first member.
func fanoutRelay(b *testing.B, n int, bind, sink, local string) (*Relay, uint64) {
	r, err := NewRelay(WithAddr(bind), WithRateLimit(0, 0), WithMaxMembers(n))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	to := udpPath{remote: fanoutSink(b, sink)}
	if local != "" {
		to.local = netip.MustParseAddr(local)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for i := range n {
		from := netip.AddrPortFrom(to.remote.Addr(), uint16(10000+i))
		r.handleAt(cookieJoin(r, from, uint64(i+1), uint64(i+1), fmt.Sprint("m", i)), from, now)
		m := r.proto().main().byName[fmt.Sprint("m", i)]
		if m == nil {
			b.Fatalf("member %d did not join", i)
		}
		r.proto().main().dsts[m.idx] = to
		r.q.flush()
	}
	return r, r.proto().main().list[0].session
}

// BenchmarkMemberReceive measures a member's path for one message, from
// its socket to Receive, with the relay sending in batches of 64 as it
// does under load; allocs/op is the Message's text.
func BenchmarkMemberReceive(b *testing.B) {
	r := startRelay(b, WithRateLimit(0, 0))
	m := join(b, r, "bob")
	ctx := context.Background()
	if msg, err := m.Receive(ctx); err != nil || msg.Kind != KindJoin {
		b.Fatalf("Receive: %v, %v", msg, err)
	}
	// The speaker is a member only the relay knows: its copies go to a
	// sink, and each chat has an origin of its own.
	r.mu.Lock()
	from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 2}), 9)
	r.handleAt(cookieJoin(r, from, 1, 1, "speaker"), from, time.Now())
	speaker := r.proto().main().byName["speaker"]
	r.proto().main().dsts[speaker.idx] = udpPath{remote: fanoutSink(b, "127.0.0.1:0")}
	r.q.flush()
	r.mu.Unlock()
	if msg, err := m.Receive(ctx); err != nil || msg.Kind != KindJoin {
		b.Fatalf("Receive: %v, %v", msg, err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchText)))
	mseq := uint64(0)
	for done := 0; done < b.N; {
		k := min(64, b.N-done)
		r.mu.Lock()
		for range k {
			mseq++
			r.proto().sequence(KindChat, speaker, mseq, benchText, time.Now())
		}
		r.q.flush()
		r.mu.Unlock()
		for range k {
			if msg, err := m.Receive(ctx); err != nil || len(msg.Text) != len(benchText) {
				b.Fatalf("Receive: %v, %v", msg, err)
			}
		}
		done += k
	}
	if s := m.Stats(); s.NACKs > 0 || s.DroppedKernel > 0 {
		b.Logf("with %d NACKs, %d kernel drops", s.NACKs, s.DroppedKernel)
	}
}

// handleAt hands the relay a datagram from addr, as Serve would.
func (r *Relay) handleAt(b []byte, from netip.AddrPort, now time.Time) {
	r.handle(b, udpPath{remote: from}, now)
}
