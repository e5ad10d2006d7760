package udpchat

// Every network a user has, on loopback: IPv6, dual stack, a relay bound
// to a wildcard address answering from the address each member dialled,
// and a member whose NAT mapping changes mid-chat (a proxy that moves its
// upstream port), with forged and replayed datagrams that try to take or
// disturb a session from a third address. The multi-host versions are in
// lan_linux_test.go and lan6_linux_test.go.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// requireIPv6 skips where the host has no IPv6 loopback.
func requireIPv6(t testing.TB) {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	c.Close()
}

// chatBoth has a and b each send one chat, and checks that both receive
// both, in one order.
func chatBoth(t *testing.T, a, b *Member, tag string) {
	t.Helper()
	for _, m := range []*Member{a, b} {
		if err := m.Send(ctxT(t), tag+" from "+m.Name()); err != nil {
			t.Fatalf("%s: Send: %v", m.Name(), err)
		}
	}
	for _, m := range []*Member{a, b} {
		expect(t, m, KindChat, a.Name(), tag+" from "+a.Name())
		expect(t, m, KindChat, b.Name(), tag+" from "+b.Name())
	}
}

// twoMembers joins alice at addrA and bob at addrB, and takes the join
// events.
func twoMembers(t *testing.T, addrA, addrB string, opts ...Option) (*Member, *Member) {
	t.Helper()
	alice := joinAt(t, addrA, "alice", opts...)
	expect(t, alice, KindJoin, "alice", "")
	bob := joinAt(t, addrB, "bob", opts...)
	expect(t, alice, KindJoin, "bob", "")
	expect(t, bob, KindJoin, "bob", "")
	return alice, bob
}

func TestIPv6(t *testing.T) {
	requireIPv6(t)
	for _, key := range []bool{false, true} {
		t.Run(fmt.Sprintf("key=%v", key), func(t *testing.T) {
			var opts []Option
			if key {
				opts = append(opts, WithKey(key1))
			}
			r := startRelay(t, append([]Option{WithAddr("[::1]:0")}, opts...)...)
			alice, bob := twoMembers(t, r.Addr().String(), r.Addr().String(), opts...)
			chatBoth(t, alice, bob, "v6")
			for _, mi := range r.Members() {
				if ip := mi.Addr.(*net.UDPAddr).IP; ip.To4() != nil || !ip.IsLoopback() {
					t.Errorf("%s is at %s, want ::1", mi.Name, mi.Addr)
				}
			}
		})
	}
}

// A relay on [::] takes IPv4 members too, and they chat with IPv6 ones.
func TestDualStack(t *testing.T) {
	requireIPv6(t)
	r := startRelay(t, WithAddr("[::]:0"))
	port := r.Addr().(*net.UDPAddr).Port
	alice, bob := twoMembers(t, fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("[::1]:%d", port))
	chatBoth(t, alice, bob, "dual")
	got := map[string]string{}
	for _, mi := range r.Members() {
		got[mi.Name] = mi.Addr.(*net.UDPAddr).IP.String()
	}
	if got["alice"] != "127.0.0.1" || got["bob"] != "::1" {
		t.Errorf("members' addresses %v, want alice at 127.0.0.1 (not mapped), bob at ::1", got)
	}
}

// A relay bound to a wildcard address answers each member from the address
// it dialled: a member's connected socket takes nothing else.
func TestWildcardAnswersFromDialledAddress(t *testing.T) {
	cases := []struct{ bind, a, b string }{
		{"0.0.0.0:0", "127.0.0.1", "127.0.0.2"},
		{"[::]:0", "127.0.0.2", "::1"},
	}
	for _, tc := range cases {
		t.Run(tc.bind, func(t *testing.T) {
			if tc.bind == "[::]:0" {
				requireIPv6(t)
			}
			for _, key := range []bool{false, true} {
				t.Run(fmt.Sprintf("key=%v", key), func(t *testing.T) {
					var opts []Option
					if key {
						opts = append(opts, WithKey(key1))
					}
					r := startRelay(t, append([]Option{WithAddr(tc.bind)}, opts...)...)
					port := r.Addr().(*net.UDPAddr).Port
					alice, bob := twoMembers(t,
						net.JoinHostPort(tc.a, fmt.Sprint(port)), net.JoinHostPort(tc.b, fmt.Sprint(port)), opts...)
					chatBoth(t, alice, bob, "wildcard")
					if err := alice.Close(); err != nil {
						t.Fatal(err)
					}
					expect(t, bob, KindLeave, "alice", "")
				})
			}
		})
	}
}

// A wildcard relay's broadcast copies come from the address of the
// broadcast's subnet, which WELCOME announces: a member that dialled
// another address of the relay takes them, and needs no repair. (A
// member may miss the copy of its own join, sent before it listens on
// the group's port: that one is repaired.)
func TestWildcardBroadcastSource(t *testing.T) {
	group := fmt.Sprintf("127.255.255.255:%d", freePort(t))
	r := startRelay(t, WithAddr("0.0.0.0:0"), WithBroadcast(group))
	port := r.Addr().(*net.UDPAddr).Port
	alice, bob := twoMembers(t, fmt.Sprintf("127.0.0.2:%d", port), fmt.Sprintf("127.0.0.3:%d", port))
	const chats = 10
	before := r.Stats().Retransmitted
	for i := range chats {
		if err := alice.Send(ctxT(t), fmt.Sprint("broadcast ", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range chats {
		expect(t, bob, KindChat, "alice", fmt.Sprint("broadcast ", i))
	}
	for _, m := range []*Member{alice, bob} {
		if st := m.Stats(); st.Dropped != 0 {
			t.Errorf("%s dropped %d datagrams: copies from a source it was not told of", m.Name(), st.Dropped)
		}
	}
	// Were the copies lost, every chat would be repaired for both.
	if st := r.Stats(); st.DroppedSendErrors != 0 || st.Retransmitted-before >= chats {
		t.Errorf("the broadcast copies did not reach the members: %+v", st)
	}
}

// natCase runs a NAT rebinding test without and with a key.
func natCase(t *testing.T, f func(t *testing.T, opts []Option)) {
	for _, key := range []bool{false, true} {
		t.Run(fmt.Sprintf("key=%v", key), func(t *testing.T) {
			var opts []Option
			if key {
				opts = append(opts, WithKey(key1))
			}
			f(t, opts)
		})
	}
}

// A member whose NAT gives it a new source port keeps its session and
// everything in flight: the relay validates the new address and moves
// the session within a round trip or two; nobody sees it leave or join.
func TestNATRebinding(t *testing.T) {
	natCase(t, func(t *testing.T, opts []Option) {
		r := startRelay(t, opts...)
		p := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
		alice, bob := twoMembers(t, p.Addr(), r.Addr().String(), opts...)
		chatBoth(t, alice, bob, "before")
		front := addrPortOf(alice.conn.LocalAddr())

		// Chats in flight while the mapping changes: sent, not yet
		// confirmed, and more after.
		const n = 20
		sent := make(chan error, n)
		var moved netip.AddrPort
		var at time.Time
		go func() {
			for i := range n {
				sent <- alice.Send(ctxT(t), fmt.Sprint("in flight ", i))
			}
		}()
		for i := range n {
			if err := <-sent; err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
			if i == n/4 {
				at = time.Now()
				moved = p.rebind(front)
			}
		}
		took := time.Since(at)
		for i := range n {
			expect(t, bob, KindChat, "alice", fmt.Sprint("in flight ", i))
			expect(t, alice, KindChat, "alice", fmt.Sprint("in flight ", i))
		}
		t.Logf("the sends after the move took %v", took)
		if took > 500*time.Millisecond {
			t.Errorf("the chats after the move took %v, want under 500ms", took)
		}
		chatBoth(t, alice, bob, "after") // nothing else came between: no leave, no join
		if st := r.Stats(); st.Migrated != 1 || st.Expired != 0 {
			t.Errorf("relay: %d migrations, %d expired; want 1 and 0", st.Migrated, st.Expired)
		}
		if st := alice.Stats(); st.Rejoins != 0 {
			t.Errorf("alice rejoined %d times", st.Rejoins)
		}
		for _, mi := range r.Members() {
			if mi.Name == "alice" && addrPortOf(mi.Addr) != moved {
				t.Errorf("the relay has alice at %s, want %s", mi.Addr, moved)
			}
		}
	})
}

// A datagram of alice's session forged from a third address (a blind
// attacker, who cannot read what goes there) makes the relay challenge
// that address with no more bytes than came from it; the forged answer
// to the challenge moves nothing, and alice chats on undisturbed.
func TestForgedPathCannotTakeSession(t *testing.T) {
	r := startRelay(t)
	alice, bob := twoMembers(t, r.Addr().String(), r.Addr().String())
	home := addrPortOf(alice.conn.LocalAddr())
	alice.mu.Lock()
	session := alice.mode.(*memberSession).session
	alice.mu.Unlock()

	// The third address: a socket that only counts what it is sent.
	third, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	sp := newSpoofer(t)
	port := third.LocalAddr().(*net.UDPAddr).Port
	forged := [][]byte{
		appendHeartbeat(nil, session, 1, 0),
		appendChat(nil, session, 999, seqAt{}, "", "not alice"),
		appendToken(nil, tResponse, session, 12345), // a guess
		appendHeader(nil, tLeave, session),
	}
	var in int
	for _, b := range forged {
		sp.send(port, r.addr, b)
		in += len(b)
	}
	if err := alice.Send(ctxT(t), "undisturbed"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice", "undisturbed")
	expect(t, alice, KindChat, "alice", "undisturbed")

	var out int
	buf := make([]byte, 2048)
	for {
		third.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := third.Read(buf)
		if err != nil {
			break
		}
		var p packet
		if decode(buf[:n], &p) != nil || p.typ != tChallenge {
			t.Errorf("the third address got %x, want only challenges", buf[:n])
		}
		out += n
	}
	if out == 0 || out > in {
		t.Errorf("the third address got %d bytes for the %d forged from it: want a challenge, and no more", out, in)
	}
	if st := r.Stats(); st.Migrated != 0 || st.Members != 2 || st.Sequenced != 3 {
		t.Errorf("forged datagrams changed the group: %+v", st)
	}
	for _, mi := range r.Members() {
		if mi.Name == "alice" && addrPortOf(mi.Addr) != home {
			t.Errorf("the relay moved alice to %s", mi.Addr)
		}
	}
}

// With a key, a captured datagram of alice's, replayed from a third
// address before the relay saw it, gets a sealed challenge that the
// replayer cannot open: the session stays where it is.
func TestReplayedPathCannotTakeSession(t *testing.T) {
	r := startRelay(t, WithKey(key1))
	p := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
	p.keys = r.cfg.keys
	alice, bob := twoMembers(t, p.Addr(), r.Addr().String(), WithKey(key1))

	// Hold back alice's next heartbeat, as an attacker on the path would,
	// and replay it from the attacker's own socket.
	captured := make(chan []byte, 1)
	var held atomic.Bool // from the first heartbeat on, alice's heartbeats stop here
	tap := func(up bool, b []byte) {
		var pk packet
		plain, _, _, err := p.keys.open(make([]byte, len(b)), b)
		if up && err == nil && decode(plain, &pk) == nil && pk.typ == tHeartbeat && !held.Swap(true) {
			captured <- append([]byte(nil), b...)
		}
	}
	// The filter goes first: the heartbeat the tap keeps must not reach
	// the relay, or its replay is only a replay.
	p.setFilter(func(up bool, pk *packet) bool { return up && pk.typ == tHeartbeat && held.Load() })
	p.tap.Store(&tap)
	var b []byte
	select {
	case b = <-captured:
	case <-time.After(testTimeout):
		t.Fatal("no heartbeat of alice's to capture")
	}
	p.setFilter(func(bool, *packet) bool { return false })
	attacker := dialRaw(t, r.Addr())
	attacker.send(b)
	ch := attacker.read(testTimeout)
	if len(ch) == 0 || len(ch) > len(b) {
		t.Fatalf("the replayer got %d bytes for %d: want a challenge no larger", len(ch), len(b))
	}
	if _, _, _, err := p.keys.open(make([]byte, len(ch)), ch); err != nil {
		t.Fatalf("the challenge is not sealed: %v", err)
	}
	// It cannot open the challenge without the key: it answers with
	// what it has, the challenge itself.
	attacker.send(ch)

	chatBoth(t, alice, bob, "still here")
	if st := r.Stats(); st.Migrated != 0 {
		t.Errorf("the relay moved a session %d times", st.Migrated)
	}
	if addrPortOf(r.Members()[0].Addr) == addrPortOf(attacker.c.LocalAddr()) {
		t.Errorf("alice was moved to the replayer")
	}
}

// An IPv6 group needs an interface that multicasts: on Linux's loopback,
// which has no MULTICAST flag, every copy would fail to send, so NewRelay
// says so rather than serving by repair alone.
func TestIPv6MulticastNeedsMulticastInterface(t *testing.T) {
	requireIPv6(t)
	ifi, err := interfaceByIP(net.IPv6loopback)
	if err != nil {
		t.Fatal(err)
	}
	if ifi.Flags&net.FlagMulticast != 0 {
		t.Skipf("%s multicasts here", ifi.Name)
	}
	for _, g := range []string{"ff05::77:7", "ff02::77:7"} {
		r, err := NewRelay(WithAddr("[::1]:0"), WithBroadcast(fmt.Sprintf("[%s]:%d", g, freePort(t))))
		if err == nil {
			r.Close()
		}
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), ifi.Name) {
			t.Errorf("NewRelay multicasting to %s through %s: %v, want ErrInvalidOption naming the interface", g, ifi.Name, err)
		}
	}
}

// A wildcard relay answers a datagram sent to a broadcast address from
// its address on that subnet: the broadcast address is no source.
func TestWildcardAnswersBroadcastFromAddress(t *testing.T) {
	for _, bind := range []string{"0.0.0.0", "[::]"} {
		t.Run(bind, func(t *testing.T) {
			if bind == "[::]" {
				requireIPv6(t)
			}
			r := startRelay(t, WithAddr(bind+":0"))
			port := r.Addr().(*net.UDPAddr).Port
			lc := net.ListenConfig{Control: controlBroadcast}
			c, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			join := appendJoin(nil, 0, 5, 0, 4242, 1, 0, &[cookieLen]byte{}, "alice", "")
			if _, err := c.WriteTo(join, &net.UDPAddr{IP: net.IPv4(127, 255, 255, 255), Port: port}); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2048)
			c.SetReadDeadline(time.Now().Add(testTimeout))
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no answer to a join sent to 127.255.255.255: %v (relay: %+v)", err, r.Stats())
			}
			var p packet
			if want := fmt.Sprintf("127.0.0.1:%d", port); from.String() != want || decode(buf[:n], &p) != nil || p.typ != tCookie {
				t.Errorf("answer from %s of type %d, want a cookie from %s", from, p.typ, want)
			}
		})
	}
}

// Copies of a member's sealed datagrams sent from a third address ahead
// of the originals (an attacker on the path that cannot drop them) are
// challenged there and nothing more: the originals still count, and the
// member chats on.
func TestCopiesFromElsewhereDoNotStallMember(t *testing.T) {
	r := startRelay(t, WithKey(key1))
	p := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
	alice, bob := twoMembers(t, p.Addr(), r.Addr().String(), WithKey(key1))
	attacker := dialRaw(t, r.Addr())
	tap := func(up bool, b []byte) {
		if up {
			attacker.c.Write(b)
		}
	}
	p.tap.Store(&tap)
	for i := range 5 {
		chatBoth(t, alice, bob, fmt.Sprint("copied ", i))
	}
	p.tap.Store(nil)
	st := r.Stats()
	if st.DroppedReplayed != 0 || st.Migrated != 0 || st.DroppedUnvalidated == 0 {
		t.Errorf("relay: %d dropped as replayed, %d migrations, %d unvalidated; want 0, 0 and some", st.DroppedReplayed, st.Migrated, st.DroppedUnvalidated)
	}
}

// A wildcard relay must know the source its group copies leave from, to
// announce it: a broadcast address of no subnet of this host has none.
func TestWildcardBroadcastNeedsSource(t *testing.T) {
	const bcast = "198.51.100.255" // TEST-NET-2's; NewRelay fails before sending
	if broadcastSource(net.ParseIP(bcast)).IsValid() {
		t.Skipf("this host is on %s's subnet", bcast)
	}
	r, err := NewRelay(WithAddr("0.0.0.0:0"), WithBroadcast(bcast+":2411"))
	if err == nil {
		r.Close()
	}
	if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "subnet") {
		t.Errorf("NewRelay on 0.0.0.0 broadcasting to %s: %v, want ErrInvalidOption about the subnet", bcast, err)
	}
}
