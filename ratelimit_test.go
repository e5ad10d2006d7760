package udpchat

import (
	"net/netip"
	"testing"
	"time"
)

// The rate limiter, without sockets: time is passed in.

func TestRateLimiterTake(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name        string
		msgs, bytes float64
		takes       []int           // datagram sizes, all at t0 unless at says otherwise
		at          []time.Duration // offset of each take from t0
		want        []bool
	}{
		{
			name: "burst of two seconds' messages, then refused",
			msgs: 2, takes: []int{10, 10, 10, 10, 10}, at: []time.Duration{0, 0, 0, 0, 0},
			want: []bool{true, true, true, true, false},
		},
		{
			name: "refills at the rate",
			msgs: 2, takes: []int{10, 10, 10, 10, 10, 10}, at: []time.Duration{0, 0, 0, 0, 500 * time.Millisecond, 500 * time.Millisecond},
			want: []bool{true, true, true, true, true, false},
		},
		{
			name:  "bytes bound a burst of large datagrams",
			bytes: 40000, takes: []int{30000, 30000, 30000}, at: []time.Duration{0, 0, 0},
			want: []bool{true, true, false},
		},
		{
			name:  "no limit",
			takes: []int{65000, 65000, 65000}, at: []time.Duration{0, 0, 0},
			want: []bool{true, true, true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newRateLimiter(tt.msgs, tt.bytes, 128)
			b := l.join(netip.MustParseAddr("127.0.0.1"), "alice", t0)
			for i, n := range tt.takes {
				if got := l.take(&b, n, t0.Add(tt.at[i])); got != tt.want[i] {
					t.Fatalf("take %d (%d bytes at +%v) = %v, want %v", i, n, tt.at[i], got, tt.want[i])
				}
			}
		})
	}
}

// Leaving and joining again carries on with the drained buckets, for the
// same name and address only, until they would be full again anyway.
func TestRateLimiterRejoinKeepsBuckets(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ip := netip.MustParseAddr("127.0.0.1")
	l := newRateLimiter(1, 0, 128)
	b := l.join(ip, "alice", t0)
	for l.take(&b, 1, t0) {
	}
	l.leave(ip, "alice", b)

	neighbour := l.join(ip, "bob", t0)
	if !l.take(&neighbour, 1, t0) {
		t.Fatal("bob, behind the same address, was charged for alice's chats")
	}
	again := l.join(ip, "alice", t0)
	if l.take(&again, 1, t0) {
		t.Fatal("alice rejoined with a fresh burst")
	}
	if len(l.left) != 0 {
		t.Fatalf("a rejoin did not take the kept buckets: %d left", len(l.left))
	}

	l.leave(ip, "alice", again)
	l.sweep(t0.Add(leftFor))
	if len(l.left) != 1 {
		t.Fatal("buckets forgotten before they are full again")
	}
	l.sweep(t0.Add(leftFor + time.Millisecond))
	if len(l.left) != 0 {
		t.Fatal("buckets of a sender long gone are still kept")
	}
}

// Repairs are budgeted by datagrams actually resent.
func TestRateLimiterRepairs(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newRateLimiter(100, 0, 10) // bursts of 20 repairs
	b := l.join(netip.MustParseAddr("127.0.0.1"), "alice", t0)
	if got := l.repairs(&b, 128, t0); got != 20 {
		t.Fatalf("repairs allowed = %d, want the burst of 20", got)
	}
	l.spendRepairs(&b, 5) // only five were in history
	if got := l.repairs(&b, 128, t0); got != 15 {
		t.Fatalf("after resending 5: %d allowed, want 15", got)
	}
	l.spendRepairs(&b, 15)
	if got := l.repairs(&b, 128, t0.Add(100*time.Millisecond)); got != 1 {
		t.Fatalf("100ms after spending all: %d allowed, want 1", got)
	}

	free := newRateLimiter(0, 0, 10)
	fb := free.join(netip.MustParseAddr("127.0.0.1"), "bob", t0)
	free.spendRepairs(&fb, 1000)
	if got := free.repairs(&fb, 128, t0); got != 128 {
		t.Fatalf("without limits: %d repairs allowed, want all 128", got)
	}
}
