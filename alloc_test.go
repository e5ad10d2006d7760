package udpchat

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// The relay's path for one chat (decode, sequence, encode once, fan out to
// every member with sendmmsg) allocates nothing, with and without a key.
func TestRelayPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race (.ci/run runs it)")
	}
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"plain", nil},
		{"sealed", []Option{WithKey(key1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRelay(append(tc.opts, WithAddr("127.0.0.1:0"), WithRateLimit(0, 0))...)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			port := sink.LocalAddr().(*net.UDPAddr).Port
			r.mu.Lock()
			defer r.mu.Unlock()
			now := time.Now()
			seal := func(b []byte) []byte { return b }
			if r.sealer != nil {
				s := newSealer(r.cfg.keys)
				seal = s.seal
			}
			// Ten members at addresses of their own; what the relay sends
			// them all goes to the sink, which drops what it does not read.
			var sess []uint64
			for i := range 10 {
				from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(1+i)), Port: port}
				r.handle(seal(cookieJoin(r, from, uint64(i+1), uint64(i+1), fmt.Sprint("m", i))), from, now)
				m := r.byName[fmt.Sprint("m", i)]
				m.dst = sink.LocalAddr().(*net.UDPAddr)
				sess = append(sess, m.session)
			}
			r.flush()
			from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
			mseq := uint64(1)
			before := r.stats.Sequenced
			allocs := testing.AllocsPerRun(200, func() {
				r.handle(seal(appendChat(nil, sess[0], mseq, "hello there")), from, now)
				r.flush()
				mseq++
			})
			if r.stats.Sequenced-before < 200 {
				t.Fatalf("only %d chats sequenced", r.stats.Sequenced-before)
			}
			// The chat datagram and its seal are built by the test, outside
			// the relay: subtract them.
			own := testing.AllocsPerRun(200, func() { seal(appendChat(nil, sess[0], mseq, "hello there")) })
			if allocs-own > 0 {
				t.Errorf("the relay allocates %v times per chat fanned out to 10 members", allocs-own)
			}
		})
	}
}
