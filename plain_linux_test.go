package udpchat

// Plain-text mode in the classic shared-port setup, which rests on Linux's
// SO_REUSEPORT semantics: the relay bound to 127.0.0.1:PORT and every
// client bound to 0.0.0.0:PORT with SO_REUSEPORT; a unicast line to
// 127.0.0.1:PORT reaches the relay (the socket bound to the more specific
// address), a broadcast to 127.255.255.255:PORT reaches every 0.0.0.0:PORT
// socket. The classic Python programs live in testdata, changed only to
// take the broadcast address as an argument (never 255.255.255.255) and to
// say when their socket is bound.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sharedPort returns a UDP port that was free on every local address a
// moment ago, for the setups where several sockets share a fixed port.
func sharedPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// listenShared binds 0.0.0.0:port as a classic client does (SO_REUSEADDR,
// SO_REUSEPORT, SO_BROADCAST) and closes it when the test ends.
func listenShared(t testing.TB, port int) *net.UDPConn {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			for _, o := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT, unix.SO_BROADCAST} {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 1); serr != nil {
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatalf("bind 0.0.0.0:%d with SO_REUSEPORT: %v", port, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// readShared reads n datagrams from c and returns them.
func readShared(t testing.TB, c *net.UDPConn, n int) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(testTimeout))
	for range n {
		k, _, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("shared socket: %v after %q", err, got)
		}
		got = append(got, string(buf[:k]))
	}
	return got
}

// TestPlainBroadcastMembers: a plain relay broadcasts each line once to
// 127.255.255.255:PORT; two plain members and a classic-style socket share
// 0.0.0.0:PORT and all hear every line, byte for byte; the members speak
// from their own unicast sockets. The relay listens on the broadcast port
// itself (the classic setup) or on a port of its own.
func TestPlainBroadcastMembers(t *testing.T) {
	for _, samePort := range []bool{true, false} {
		name := "relay on its own port"
		if samePort {
			name = "relay on the broadcast port"
		}
		t.Run(name, func(t *testing.T) {
			port := sharedPort(t)
			bcast := fmt.Sprintf("127.255.255.255:%d", port)
			relayAddr := "127.0.0.1:0"
			if samePort {
				relayAddr = fmt.Sprintf("127.0.0.1:%d", port)
			}
			r := startPlainRelay(t, WithAddr(relayAddr), WithBroadcast(bcast))
			classic := listenShared(t, port)
			addr := r.Addr().String()
			alice := plainJoin(t, addr, "alice", WithBroadcast(bcast))
			bob := plainJoin(t, addr, "bob", WithBroadcast(bcast))
			waitFor(t, func() bool { return sortedNames(r.Members()) == "alice,bob" }, "the relay to list alice and bob")
			for _, m := range r.Members() {
				if a, ok := m.Addr.(*net.UDPAddr); !ok || a.Port == port {
					t.Errorf("relay lists %s at %v: want the member's own unicast socket, not the shared port %d", m.Name, m.Addr, port)
				}
			}

			ctx := ctxT(t)
			sent := time.Now()
			want := []string{"alice: hello by broadcast", "bob: me too"}
			if err := alice.Send(ctx, "hello by broadcast"); err != nil {
				t.Fatal(err)
			}
			if err := bob.Send(ctx, "me too"); err != nil {
				t.Fatal(err)
			}
			for _, m := range []*Member{alice, bob} {
				if got := recvChats(t, m, 0, 2, sent); !sameSet(got, want) {
					t.Errorf("%s received %q, want %q", m.Name(), got, want)
				}
			}
			// On the wire a plain member's lines end with a newline, as nc's do.
			wire := []string{want[0] + "\n", want[1] + "\n"}
			if got := readShared(t, classic, 2); !sameSet(got, wire) {
				t.Errorf("the classic socket on 0.0.0.0:%d received %q, want %q", port, got, wire)
			}
			st := r.Stats()
			if st.Sequenced != 2 || st.Delivered != 2 {
				t.Errorf("relay stats %+v: want 2 lines forwarded, one broadcast datagram each", st)
			}
			// One copy each: no unicast copies besides the broadcast.
			noMore(t, alice)
			noMore(t, bob)
		})
	}
}

// waitLine waits until the child has printed want as a whole line.
func (c *child) waitLine(t testing.TB, want string) {
	t.Helper()
	c.waitOut(t, fmt.Sprintf("line %q", want), func(out string) bool {
		return slices.Contains(strings.Split(out, "\n"), want)
	})
}

// waitExit waits for the child to exit by itself and checks its status.
func (c *child) waitExit(t testing.TB) {
	t.Helper()
	select {
	case <-c.done:
		if c.exitErr != nil {
			t.Errorf("%s: %v; stderr %q", c.name, c.exitErr, c.err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("%s did not exit within %v; stdout %q", c.name, testTimeout, c.out)
	}
}

// python returns the path of python3 and the absolute path of the named
// script in testdata, or skips the test.
func python(t *testing.T, script string) (string, string) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf("python3 not found: %v", err)
	}
	abs, err := filepath.Abs(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	return py, abs
}

// startClassicClient runs testdata/classic_client.py as username, sending
// to the relay at 127.0.0.1:port, and waits until its socket is bound.
func startClassicClient(t *testing.T, username string, port int) *child {
	t.Helper()
	py, script := python(t, "classic_client.py")
	c := startChild(t, "classic client "+username, py, script, username, "127.0.0.1", fmt.Sprint(port))
	c.waitLine(t, fmt.Sprintf("* ready %s on 0.0.0.0:%d", username, port))
	return c
}

// TestPlainClassicClients: two classic Python clients and one plain
// udpchat member chat through a plain udpchat relay in the classic setup
// (relay on 127.0.0.1:PORT broadcasting to 127.255.255.255:PORT, clients
// on 0.0.0.0:PORT), started in either order.
func TestPlainClassicClients(t *testing.T) {
	for _, relayFirst := range []bool{true, false} {
		name := "clients first"
		if relayFirst {
			name = "relay first"
		}
		t.Run(name, func(t *testing.T) {
			python(t, "classic_client.py") // skip early without python3
			port := sharedPort(t)
			relayAddr := fmt.Sprintf("127.0.0.1:%d", port)
			bcast := fmt.Sprintf("127.255.255.255:%d", port)
			newRelay := func() *Relay {
				t.Helper()
				r, err := NewRelay(WithPlainText(), WithAddr(relayAddr), WithBroadcast(bcast))
				if err != nil {
					t.Fatalf("NewRelay(WithPlainText, WithAddr(%s), WithBroadcast(%s)), relay first %v: %v (the plain broadcast relay must share the port with SO_REUSEPORT)", relayAddr, bcast, relayFirst, err)
				}
				served := make(chan error, 1)
				go func() { served <- r.Serve(context.Background()) }()
				t.Cleanup(func() {
					r.Close()
					if err := <-served; err != nil {
						t.Errorf("Serve: %v", err)
					}
				})
				return r
			}
			var r *Relay
			var alice *Member
			var bob, carol *child
			if relayFirst {
				r = newRelay()
				alice = plainJoin(t, relayAddr, "alice", WithBroadcast(bcast))
				bob = startClassicClient(t, "bob", port)
				carol = startClassicClient(t, "carol", port)
			} else {
				bob = startClassicClient(t, "bob", port)
				carol = startClassicClient(t, "carol", port)
				r = newRelay()
				alice = plainJoin(t, relayAddr, "alice", WithBroadcast(bcast))
			}
			waitFor(t, func() bool { return sortedNames(r.Members()) == "alice" }, "alice's keepalive")

			sent := time.Now()
			bob.write(t, "hello from bob\n")
			carol.write(t, "hello from carol\n")
			if err := alice.Send(ctxT(t), "hello from alice"); err != nil {
				t.Fatal(err)
			}
			want := []string{"bob: hello from bob", "carol: hello from carol", "alice: hello from alice"}
			for _, c := range []*child{bob, carol} {
				for _, w := range want {
					c.waitLine(t, w)
				}
			}
			if got := recvChats(t, alice, 0, 3, sent); !sameSet(got, want) {
				t.Errorf("alice received %q, want %q", got, want)
			}
			rm := r.Members()
			if got := sortedNames(rm); got != "alice,bob,carol" {
				t.Errorf("relay.Members() = %s, want alice,bob,carol", got)
			}
			shared := fmt.Sprintf("127.0.0.1:%d", port)
			for _, n := range []string{"bob", "carol"} {
				if a := memberAddr(rm, n); a == nil || a.String() != shared {
					t.Errorf("relay lists %s at %v, want %s (classic clients send from the shared port)", n, a, shared)
				}
			}

			bob.write(t, "bye\n")
			bob.waitExit(t)
			carol.waitLine(t, "bob: bye")
			expect(t, alice, KindChat, "bob", "bye")
			if st := r.Stats(); st.Sequenced != 4 || st.Delivered != 4 || st.DroppedMalformed != 0 {
				t.Errorf("relay stats %+v: want 4 lines, one broadcast each, nothing malformed", st)
			}
			noMore(t, alice)
		})
	}
}

// TestPlainClassicRelay: a plain udpchat member (with WithBroadcast) and a
// classic Python client chat through the classic Python relay, which
// re-broadcasts every datagram as it came.
func TestPlainClassicRelay(t *testing.T) {
	py, relayScript := python(t, "classic_relay.py")
	port := sharedPort(t)
	relayAddr := fmt.Sprintf("127.0.0.1:%d", port)
	bcast := fmt.Sprintf("127.255.255.255:%d", port)
	relay := startChild(t, "classic relay", py, relayScript, "127.0.0.1", fmt.Sprint(port), "127.255.255.255")
	relay.waitLine(t, fmt.Sprintf("* ready %s -> %s", relayAddr, bcast))
	alice := plainJoin(t, relayAddr, "alice", WithBroadcast(bcast))
	bob := startClassicClient(t, "bob", port)

	// The classic relay forwards everything, alice's keepalives ("alice:")
	// too. What Receive makes of an empty line is not specified; it is
	// logged, and skipped here.
	next := func() Message {
		t.Helper()
		for range 100 {
			msg := recv(t, alice)
			if msg.Kind == KindChat && msg.Text == "" {
				t.Logf("alice received an empty line from %q (Seq %d): a keepalive echoed by the classic relay", msg.From, msg.Seq)
				continue
			}
			return msg
		}
		t.Fatal("only empty lines")
		return Message{}
	}
	if err := alice.Send(ctxT(t), "hi from udpchat"); err != nil {
		t.Fatal(err)
	}
	bob.waitLine(t, "alice: hi from udpchat")
	if msg := next(); msg.From != "alice" || msg.Text != "hi from udpchat" {
		t.Errorf("alice received %q from %q, want her own line", msg.Text, msg.From)
	}
	bob.write(t, "hi from classic\n")
	bob.waitLine(t, "bob: hi from classic")
	if msg := next(); msg.From != "bob" || msg.Text != "hi from classic" {
		t.Errorf("alice received %q from %q, want bob's line", msg.Text, msg.From)
	}
	if got := sortedNames(alice.Members()); got != "alice,bob" && got != "bob" {
		t.Errorf("alice.Members() = %s, want bob (and alice, whom she heard too)", got)
	}
	bob.write(t, "bye\n")
	bob.waitExit(t)
}

// TestPlainMemberBroadcastOptions: WithBroadcast is a member option only
// together with WithPlainText, in either order.
func TestPlainMemberBroadcastOptions(t *testing.T) {
	port := sharedPort(t)
	bcast := fmt.Sprintf("127.255.255.255:%d", port)
	relay := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, opts := range [][]Option{
		{WithPlainText(), WithBroadcast(bcast)},
		{WithBroadcast(bcast), WithPlainText()},
	} {
		m, err := Join(ctxT(t), "alice", append([]Option{WithAddr(relay)}, opts...)...)
		if err != nil {
			t.Errorf("Join with WithPlainText and WithBroadcast: %v", err)
			continue
		}
		// The member shares the port: a classic client can bind it too.
		listenShared(t, port).Close()
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// A plain relay never forwards its own datagrams: bound to 0.0.0.0 on its
// broadcast port it would hear its own broadcasts, so that is refused;
// bound to 127.0.0.1 (the classic setup) it does not hear them; and in
// unicast mode a line forged from its own address is dropped.
func TestPlainBroadcastNoEcho(t *testing.T) {
	port := sharedPort(t)
	if r, err := NewRelay(WithPlainText(), WithAddr(fmt.Sprintf("0.0.0.0:%d", port)), WithBroadcast(fmt.Sprintf("127.255.255.255:%d", port))); !errors.Is(err, ErrInvalidOption) {
		if r != nil {
			r.Close()
		}
		t.Fatalf("plain relay on 0.0.0.0 broadcasting to its own port: %v, want ErrInvalidOption", err)
	}
	r := startPlainRelay(t, WithAddr(fmt.Sprintf("127.0.0.1:%d", port)), WithBroadcast(fmt.Sprintf("127.255.255.255:%d", port)), WithRateLimit(0, 0))
	raw := dialRaw(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	raw.send([]byte("dave: once"))
	waitFor(t, func() bool { return r.Stats().Delivered >= 1 }, "the relay to broadcast dave's line")
	// An echo of the first broadcast would be queued before the second line.
	raw.send([]byte("dave: twice"))
	waitFor(t, func() bool { return r.Stats().Sequenced >= 2 }, "the relay to forward dave's second line")
	if st := r.Stats(); st.Sequenced != 2 {
		t.Errorf("relay stats %+v: two lines were forwarded %d times", st, st.Sequenced)
	}
}

func TestPlainSelfSpoofDropped(t *testing.T) {
	sp := newSpoofer(t)
	r := startPlainRelay(t, WithAddr("0.0.0.0:0"), WithRateLimit(0, 0))
	port := r.Addr().(*net.UDPAddr).Port
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	sp.send(port, dst, []byte("mallory: loop"))
	waitFor(t, func() bool { return r.Stats().DroppedMalformed >= 1 }, "the forged line to be dropped")
	raw := dialRaw(t, dst)
	raw.send([]byte("dave: hi"))
	if got := raw.read(testTimeout); string(got) != "dave: hi" {
		t.Fatalf("dave got %q", got)
	}
	if st := r.Stats(); st.Sequenced != 1 || st.Delivered != 1 || len(r.Members()) != 1 {
		t.Errorf("relay stats %+v, members %v: want one line forwarded once, to dave", st, r.Members())
	}
}

// When every place is taken, the source silent longest gives way: forged
// sources cannot keep a real one out.
func TestPlainFullEvictsQuietest(t *testing.T) {
	r := startPlainRelay(t, WithMaxMembers(2), WithRateLimit(0, 0))
	addr := r.Addr().(*net.UDPAddr)
	a, b, c := dialRaw(t, addr), dialRaw(t, addr), dialRaw(t, addr)
	a.send([]byte("a:"))
	b.send([]byte("b:"))
	waitFor(t, func() bool { return len(r.Members()) == 2 }, "a and b to register")
	b.send([]byte("b: still here"))
	if got := b.read(testTimeout); string(got) != "b: still here" {
		t.Fatalf("b got %q", got)
	}
	if got := a.read(testTimeout); string(got) != "b: still here" {
		t.Fatalf("a got %q", got)
	}
	c.send([]byte("c: let me in"))
	for _, rc := range []*rawClient{b, c} {
		if got := rc.read(testTimeout); string(got) != "c: let me in" {
			t.Fatalf("got %q, want c's line", got)
		}
	}
	if got := a.read(quiet); got != nil {
		t.Errorf("a, the quietest, still gets lines: %q", got)
	}
	if ms := r.Members(); sortedNames(ms) != "b,c" {
		t.Errorf("relay lists %v, want b and c", ms)
	}
}

// A plain member talks to the classic two-person program, which sends
// "name:text" from another port than it listens on and quits on "bye".
func TestPlainClassicPeer(t *testing.T) {
	py, script := python(t, "classic_peer.py")
	pc, pm := freePort(t), freePort(t)
	carol := startChild(t, "classic peer", py, script, "carol", fmt.Sprint(pc), fmt.Sprint(pm))
	carol.waitLine(t, fmt.Sprintf("* ready carol on 127.0.0.1:%d", pc))
	alice := joinAt(t, fmt.Sprintf("127.0.0.1:%d", pc), "alice", WithPlainText(), WithLocalAddr(fmt.Sprintf("127.0.0.1:%d", pm)))
	carol.write(t, "hello alice\n")
	expect(t, alice, KindChat, "carol", "hello alice")
	if err := alice.Send(ctxT(t), "hi carol"); err != nil {
		t.Fatal(err)
	}
	carol.waitLine(t, "alice: hi carol")
	carol.write(t, "bye\n")
	expect(t, alice, KindChat, "carol", "bye")
	carol.waitExit(t)
}
