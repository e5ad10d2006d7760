package udpchat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in these tests; nothing sleeps and hopes.
const testTimeout = 10 * time.Second

// startRelay runs a relay on a free loopback port until the test ends, and
// checks that Serve returned nil after Close.
func startRelay(t testing.TB, opts ...Option) *Relay {
	t.Helper()
	r, err := NewRelay(append([]Option{WithAddr("127.0.0.1:0")}, opts...)...)
	if err != nil {
		t.Fatalf("NewRelay: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(context.Background()) }()
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Relay.Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Close, want nil", err)
		}
	})
	return r
}

// restartable runs a relay that a test can stop, or kill without a
// goodbye, and start again on the same port.
type restartable struct {
	relay *Relay
	addr  string // the relay's address, to restart it on the same port
	opts  []Option
	serve chan error
}

// startRelayAt runs a relay with the options at addr until stopRelay.
func (rr *restartable) startRelayAt(t testing.TB, addr string) {
	t.Helper()
	r, err := NewRelay(append(rr.opts, WithAddr(addr))...)
	if err != nil {
		t.Fatal(err)
	}
	rr.relay, rr.addr = r, r.Addr().String()
	rr.serve = make(chan error, 1)
	go func() { rr.serve <- r.Serve(context.Background()) }()
}

// stopRelay closes the relay, or kills it: its socket closes without a
// word to the members, as when its process dies.
func (rr *restartable) stopRelay(kill bool) {
	if kill {
		// A killed relay says nothing more: not even Close's goodbyes,
		// which would still leave by the fan-out socket.
		rr.relay.mu.Lock()
		rr.relay.q.w = &fakeWriter{}
		rr.relay.mu.Unlock()
		rr.relay.conn.Close()
	}
	rr.relay.Close()
	<-rr.serve
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// join joins r as name and closes the member when the test ends.
func join(t testing.TB, r *Relay, name string, opts ...Option) *Member {
	t.Helper()
	return joinAt(t, r.Addr().String(), name, opts...)
}

// joinAt joins the relay at addr (or a proxy in front of it) as name and
// closes the member when the test ends.
func joinAt(t testing.TB, addr, name string, opts ...Option) *Member {
	t.Helper()
	m, err := Join(ctxT(t), name, append([]Option{WithAddr(addr)}, opts...)...)
	if err != nil {
		t.Fatalf("Join(%q): %v", name, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func recv(t testing.TB, m *Member) Message {
	t.Helper()
	msg, err := m.Receive(ctxT(t))
	if err != nil {
		t.Fatalf("%s: Receive: %v", m.Name(), err)
	}
	return msg
}

// expect receives one message and checks its kind, sender and text.
func expect(t testing.TB, m *Member, kind Kind, from, text string) Message {
	t.Helper()
	msg := recv(t, m)
	if msg.Kind != kind || msg.From != from || msg.Text != text {
		t.Fatalf("%s received %v from %q: %q; want %v from %q: %q", m.Name(), msg.Kind, msg.From, msg.Text, kind, from, text)
	}
	return msg
}

func names(ms []MemberInfo) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	return strings.Join(s, ",")
}

func TestJoinChatLeave(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice")
	expect(t, alice, KindJoin, "alice", "")
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	expect(t, alice, KindJoin, "bob", "")

	if got := names(alice.Members()); got != "alice,bob" {
		t.Errorf("alice.Members() = %s, want alice,bob", got)
	}
	if got := names(bob.Members()); got != "alice,bob" {
		t.Errorf("bob.Members() = %s, want alice,bob (the roster loaded at join)", got)
	}
	if got := names(r.Members()); got != "alice,bob" {
		t.Errorf("relay.Members() = %s, want alice,bob", got)
	}

	ctx := ctxT(t)
	if err := alice.Send(ctx, "hello, bob"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	a := expect(t, alice, KindChat, "alice", "hello, bob")
	b := expect(t, bob, KindChat, "alice", "hello, bob")
	if a.Seq != b.Seq || !a.Time.Equal(b.Time) {
		t.Errorf("alice got seq %d at %v, bob seq %d at %v: want the same", a.Seq, a.Time, b.Seq, b.Time)
	}
	if time.Since(a.Time) > testTimeout || a.Time.After(time.Now()) {
		t.Errorf("message time %v is not the relay's recent clock", a.Time)
	}

	if err := bob.Close(); err != nil {
		t.Fatalf("bob.Close: %v", err)
	}
	expect(t, alice, KindLeave, "bob", "")
	if got := names(alice.Members()); got != "alice" {
		t.Errorf("after bob left, alice.Members() = %s", got)
	}
	if got := names(r.Members()); got != "alice" {
		t.Errorf("after bob left, relay.Members() = %s", got)
	}
	if _, err := bob.Receive(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Receive after Close: %v, want ErrClosed", err)
	}
	if err := bob.Send(ctx, "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if err := bob.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	st := r.Stats()
	if st.Members != 1 || st.Sequenced != 4 || st.Delivered < 5 {
		t.Errorf("relay stats %+v: want 1 member, 4 sequenced (2 joins, 1 chat, 1 leave), at least 5 delivered", st)
	}
}

// TestOneOrder has several members send concurrently and checks that every
// member receives every message once, in one identical order that keeps
// each sender's own order.
func TestOneOrder(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts func(t *testing.T) []Option
	}{
		{"unicast", func(*testing.T) []Option { return nil }},
		{"broadcast", func(t *testing.T) []Option {
			return []Option{WithBroadcast(fmt.Sprintf("127.255.255.255:%d", freePort(t)))}
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			const members, senders, perSender = 5, 3, 40
			r := startRelay(t, mode.opts(t)...)
			ms := make([]*Member, members)
			for i := range ms {
				ms[i] = join(t, r, fmt.Sprintf("m%d", i))
			}
			// Everyone's stream from the last join on is the same.
			for _, m := range ms {
				for {
					if msg := recv(t, m); msg.Kind == KindJoin && msg.From == ms[members-1].Name() {
						break
					}
				}
			}
			var wg sync.WaitGroup
			errs := make(chan error, senders*perSender)
			for s := range senders {
				wg.Go(func() {
					for i := range perSender {
						if err := ms[s].Send(ctxT(t), fmt.Sprintf("%d", i)); err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("Send: %v", err)
			}
			var first []Message
			for _, m := range ms {
				got := make([]Message, senders*perSender)
				next := map[string]int{}
				for i := range got {
					got[i] = recv(t, m)
					if got[i].Kind != KindChat {
						t.Fatalf("%s: got %v, want only chat", m.Name(), got[i])
					}
					if want := fmt.Sprint(next[got[i].From]); got[i].Text != want {
						t.Fatalf("%s: from %s got %q, want %q (sender order broken)", m.Name(), got[i].From, got[i].Text, want)
					}
					next[got[i].From]++
					if i > 0 && got[i].Seq != got[i-1].Seq+1 {
						t.Fatalf("%s: seq %d after %d", m.Name(), got[i].Seq, got[i-1].Seq)
					}
				}
				if first == nil {
					first = got
					continue
				}
				for i := range got {
					if got[i].Seq != first[i].Seq || got[i].From != first[i].From || got[i].Text != first[i].Text {
						t.Fatalf("%s message %d is %+v, %s got %+v", m.Name(), i, got[i], ms[0].Name(), first[i])
					}
				}
			}
			st := r.Stats()
			perMsg := uint64(members)
			if mode.name == "broadcast" {
				perMsg = 1
			}
			if want := uint64(senders*perSender) * perMsg; st.Delivered-st.Retransmitted < want {
				t.Errorf("relay delivered %d datagrams, want at least %d", st.Delivered, want)
			}
			t.Logf("relay stats: %+v", st)
		})
	}
}

// freePort returns a UDP port that was free on loopback a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// rawClient speaks the wire protocol by hand, to play a member that
// vanishes, misbehaves or attacks.
type rawClient struct {
	t testing.TB
	c *net.UDPConn
}

func dialRaw(t testing.TB, relay net.Addr) *rawClient {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, relay.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t, c}
}

func (rc *rawClient) send(b []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatalf("raw write: %v", err)
	}
}

// read returns the next datagram, or nil when none comes within d.
func (rc *rawClient) read(d time.Duration) []byte {
	rc.t.Helper()
	buf := make([]byte, 65536)
	rc.c.SetReadDeadline(time.Now().Add(d))
	n, err := rc.c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// readType returns the next datagram of type typ, skipping others.
func (rc *rawClient) readType(typ byte) packet {
	rc.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		b := rc.read(time.Until(deadline))
		var p packet
		if b != nil && decode(b, &p) == nil && p.typ == typ {
			return p
		}
	}
	rc.t.Fatalf("no datagram of type %d within %v", typ, testTimeout)
	return packet{}
}

// joinRaw performs the handshake and returns the welcome.
func (rc *rawClient) joinRaw(name string) packet {
	return rc.joinWith(42, name, tWelcome)
}

// joinWith sends a join, echoes the cookie the relay answers with, and
// returns the relay's answer to that, which must be of type want.
func (rc *rawClient) joinWith(nonce uint64, name string, want byte) packet {
	rc.t.Helper()
	rc.send(appendJoin(nil, 0, nonce, 0, 4242, 1, 0, &[cookieLen]byte{}, name, ""))
	c := rc.readType(tCookie)
	if c.nonce != nonce {
		rc.t.Fatalf("cookie for nonce %d, want %d", c.nonce, nonce)
	}
	rc.send(appendJoin(nil, 0, nonce, 0, 4242, 1, 0, &c.cookie, name, ""))
	return rc.readType(want)
}

// cookieJoin returns a join from `from` with the cookie the relay gives
// it. r.mu is held.
func cookieJoin(r *Relay, from netip.AddrPort, nonce, epoch uint64, name string) []byte {
	now := time.Now()
	_, c := r.proto().cookies.check(&[cookieLen]byte{}, from, nonce, now)
	return appendJoin(nil, 0, nonce, 0, epoch, 1, 0, &c, name, "")
}

func TestExpirySilentMember(t *testing.T) {
	r := startRelay(t, WithHeartbeat(20*time.Millisecond), WithExpiry(100*time.Millisecond))
	alice := join(t, r, "alice")
	expect(t, alice, KindJoin, "alice", "")
	ghost := dialRaw(t, r.Addr())
	w := ghost.joinRaw("ghost")
	if w.heartbeat != 20*time.Millisecond || w.expiry != 100*time.Millisecond {
		t.Errorf("welcome announces heartbeat %v expiry %v", w.heartbeat, w.expiry)
	}
	expect(t, alice, KindJoin, "ghost", "")
	// The ghost now says nothing; alice heartbeats and stays.
	start := time.Now()
	expect(t, alice, KindLeave, "ghost", "")
	if d := time.Since(start); d > time.Second {
		t.Errorf("ghost expired after %v, want about 100ms", d)
	}
	if got := names(r.Members()); got != "alice" {
		t.Errorf("relay.Members() = %s after expiry", got)
	}
	if r.Stats().Expired != 1 {
		t.Errorf("Expired = %d, want 1", r.Stats().Expired)
	}
	// Nothing more goes to the expired address but the BYE that tells it.
	ghost.readType(tBye)
	if err := alice.Send(ctxT(t), "still here"); err != nil {
		t.Fatal(err)
	}
	for b := ghost.read(100 * time.Millisecond); b != nil; b = ghost.read(100 * time.Millisecond) {
		var p packet
		if decode(b, &p) == nil && p.typ == tDeliver && p.seq > w.seq+1 {
			t.Fatalf("expired member still receives deliveries: seq %d", p.seq)
		}
	}
}

func TestJoinRefused(t *testing.T) {
	r := startRelay(t, WithMaxMembers(2))
	join(t, r, "alice")
	for _, tc := range []struct {
		name string
		want error
	}{
		{"alice", ErrNameTaken},
		{"", ErrInvalidName},
		{"a:b", ErrInvalidName},
		{"tab\there", ErrInvalidName},
		{" padded", ErrInvalidName},
		{strings.Repeat("x", 33), ErrInvalidName},
		{"bad\xffutf8", ErrInvalidName},
	} {
		_, err := Join(ctxT(t), tc.name, WithAddr(r.Addr().String()))
		if !errors.Is(err, tc.want) {
			t.Errorf("Join(%q) = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A raw client skips the local check: the relay refuses too.
	rc := dialRaw(t, r.Addr())
	if p := rc.joinWith(7, "a:b", tError); p.code != codeBadName || p.ref != 7 {
		t.Errorf("relay answered a bad name with code %d ref %d", p.code, p.ref)
	}
	join(t, r, "bob")
	if _, err := Join(ctxT(t), "carol", WithAddr(r.Addr().String())); !errors.Is(err, ErrRelayFull) {
		t.Errorf("third Join with WithMaxMembers(2) = %v, want ErrRelayFull", err)
	}
	if got := names(r.Members()); got != "alice,bob" {
		t.Errorf("relay.Members() = %s", got)
	}
}

func TestMessageSize(t *testing.T) {
	r := startRelay(t, WithBufferSize(256))
	m := join(t, r, "alice") // member's own buffer: the default 1024
	expect(t, m, KindJoin, "alice", "")
	ctx := ctxT(t)
	room := 256 - deliverHdrLen - len("alice")
	fit := strings.Repeat("é", room/2) + strings.Repeat("x", room%2)
	if err := m.Send(ctx, fit); err != nil {
		t.Fatalf("Send of a text that fits exactly: %v", err)
	}
	expect(t, m, KindChat, "alice", fit)
	err := m.Send(ctx, fit+"x")
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("Send one byte over the relay's limit: %v, want ErrMessageTooLarge", err)
	}
	if err := m.Send(ctx, "bad \xff"); !errors.Is(err, ErrInvalidText) {
		t.Errorf("Send of invalid UTF-8: %v, want ErrInvalidText", err)
	}
	// A member with a smaller buffer than the relay's is bound by its own.
	small := join(t, r, "bob", WithBufferSize(128))
	if err := small.Send(ctx, strings.Repeat("y", 128-deliverHdrLen-len("bob")+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("Send over the member's own limit: %v, want ErrMessageTooLarge", err)
	}
	// Raw chats the relay must refuse: too large for its buffer, or junk
	// text. Nothing of them is delivered.
	rc := dialRaw(t, r.Addr())
	w := rc.joinRaw("raw")
	rc.send(appendChat(nil, w.session, 1, seqAt{}, "", strings.Repeat("z", 256-chatHdrLen)))
	if p := rc.readType(tError); p.code != codeTooLarge || p.ref != 1 {
		t.Errorf("oversized deliver: relay answered code %d ref %d", p.code, p.ref)
	}
	rc.send(appendChat(nil, w.session, 2, seqAt{}, "", "\xff\xfe"))
	if p := rc.readType(tError); p.code != codeInvalidText || p.ref != 2 {
		t.Errorf("invalid text: relay answered code %d ref %d", p.code, p.ref)
	}
	rc.send(appendChat(nil, w.session, 3, seqAt{}, "", "ok"))
	expect(t, m, KindJoin, "bob", "")
	expect(t, m, KindJoin, "raw", "")
	expect(t, m, KindChat, "raw", "ok")
	if st := r.Stats(); st.DroppedRejected != 2 {
		t.Errorf("DroppedRejected = %d, want 2", st.DroppedRejected)
	}
}

func TestJoinUnreachable(t *testing.T) {
	// A socket that never answers, and a port where nothing listens (the
	// kernel answers with ICMP port unreachable).
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for _, tc := range []struct {
		name, addr string
		deadline   time.Duration
		cause      error
	}{
		{"silent", silent.LocalAddr().String(), 300 * time.Millisecond, context.DeadlineExceeded},
		// The kernel says at once that nothing listens: Join gives up
		// after a few refusals, long before its deadline.
		{"refused", fmt.Sprintf("127.0.0.1:%d", freePort(t)), 10 * time.Second, syscall.ECONNREFUSED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			start := time.Now()
			m, err := Join(ctx, "alice", WithAddr(tc.addr))
			if !errors.Is(err, ErrRelayUnreachable) || !errors.Is(err, tc.cause) {
				t.Fatalf("Join = %v, %v; want ErrRelayUnreachable and %v", m, err, tc.cause)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Join took %v", d)
			}
			t.Log(err)
		})
	}
}

func TestInvalidOptions(t *testing.T) {
	relay := []Option{
		WithAddr("nonsense"),
		WithBufferSize(10),
		WithBufferSize(70000),
		WithBroadcast("255.255.255.255:2411"),
		WithBroadcast("127.255.255.255"),
		WithBroadcast("[::1]:2411"),        // IPv6 has no broadcast
		WithBroadcast("[ff05::77:7]:2411"), // an IPv6 group from an IPv4 relay
		WithHeartbeat(time.Microsecond),
		WithExpiry(-time.Second),
		WithHistory(1),
		WithMaxMembers(0),
		WithQueueSize(10), // member only
		WithRateLimit(-1, 0),
		WithRateLimit(10, 100), // a burst could not hold a large datagram
		WithNameRule(nil),
		WithSocketBuffers(-1, 0),
		WithSocketBuffers(0, 2<<30),
		nil,
	}
	for i, o := range relay {
		if r, err := NewRelay(WithAddr("127.0.0.1:0"), o); !errors.Is(err, ErrInvalidOption) {
			if r != nil {
				r.Close()
			}
			t.Errorf("NewRelay with bad option %d: %v, want ErrInvalidOption", i, err)
		}
	}
	if _, err := NewRelay(WithAddr("127.0.0.1:0"), WithHeartbeat(time.Second), WithExpiry(time.Second)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("expiry shorter than two heartbeats: %v", err)
	}
	member := []Option{
		WithAddr("127.0.0.1:0"),
		WithAddr("0.0.0.0:2410"),
		WithBroadcast("127.255.255.255:2411"), // relay only
		WithHeartbeat(time.Second),
		WithQueueSize(0),
		WithRateLimit(10, 0),
		WithNameRule(func(string) error { return nil }),
	}
	for i, o := range member {
		if _, err := Join(ctxT(t), "alice", o); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("Join with bad option %d: %v, want ErrInvalidOption", i, err)
		}
	}
}

func TestRelayListenError(t *testing.T) {
	r := startRelay(t)
	if _, err := NewRelay(WithAddr(r.Addr().String())); err == nil || !strings.Contains(err.Error(), r.Addr().String()) {
		t.Errorf("second relay on %s: %v, want an error naming the address", r.Addr(), err)
	}
}

func TestServeAndClose(t *testing.T) {
	r, err := NewRelay(WithAddr("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx) }()
	m := join(t, r, "alice")
	if err := r.Serve(context.Background()); err == nil {
		t.Error("a second concurrent Serve returned nil")
	}
	cancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve after cancel = %v, want context.Canceled", err)
	}
	// The relay stays open; Serve may run again.
	go func() { served <- r.Serve(context.Background()) }()
	if err := m.Send(ctxT(t), "after restart of Serve"); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := r.Serve(context.Background()); err != nil {
		t.Errorf("Serve on a closed relay = %v, want nil", err)
	}
}

// What Serve reads as the relay closes is not taken in: Close has said
// goodbye to every member, and a JOIN answered then would welcome a member
// to a relay that is going (to lose it again at once, and rejoin the next
// one as if from a relay of its own). Without Close, the same JOIN is
// welcomed.
func TestClosingRelayTakesNothing(t *testing.T) {
	from := netip.MustParseAddrPort("127.0.0.1:40031")
	for _, closed := range []bool{false, true} {
		t.Run(fmt.Sprintf("closed=%v", closed), func(t *testing.T) {
			r, err := NewRelay(WithAddr("127.0.0.1:0"))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			r.mu.Lock()
			join := cookieJoin(r, from, 1, 1, "alice")
			r.mu.Unlock()
			if closed {
				r.Close()
			}
			w := &fakeWriter{}
			r.mu.Lock()
			r.q.w = w
			r.mu.Unlock()
			n := copy(r.bufs[0], join)
			next := time.Now().Add(time.Hour)
			if got := r.take([]inMsg{{n: n, from: udpPath{remote: from}}}, time.Now(), &next); got != closed {
				t.Fatalf("take reported closed %v, want %v", got, closed)
			}
			var welcomed bool
			for _, s := range w.sent {
				var p packet
				welcomed = welcomed || decode(s.b, &p) == nil && p.typ == tWelcome && s.to.remote == from
			}
			if welcomed == closed || (len(r.Members()) == 1) == closed {
				t.Errorf("welcomed %v, members %v", welcomed, r.Members())
			}
		})
	}
}

// TestCloseUnblocks checks that Close ends a blocked Receive and Send.
func TestCloseUnblocks(t *testing.T) {
	r := startRelay(t)
	m := join(t, r, "alice")
	recv(t, m) // own join
	got := make(chan error, 1)
	go func() {
		_, err := m.Receive(context.Background())
		got <- err
	}()
	// Close may run before or after Receive blocks: both must end it.
	m.Close()
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Receive = %v, want ErrClosed", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Receive still blocked after Close")
	}
}

// TestJunkDatagrams sprays malformed, truncated, oversized, forged and
// replayed datagrams at the relay while two members chat: nothing bogus is
// delivered, the chat goes on, everything is counted, and the relay sends
// the attacker no more bytes than it received.
func TestJunkDatagrams(t *testing.T) {
	r := startRelay(t, WithBufferSize(512))
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	expect(t, alice, KindJoin, "alice", "")
	expect(t, alice, KindJoin, "bob", "")
	expect(t, bob, KindJoin, "bob", "")

	// A genuine chat of alice's, as an eavesdropper would capture it.
	alice.mu.Lock()
	genuine := appendChat(nil, alice.mode.(*memberSession).session, alice.out.mseq+1, seqAt{}, "", "captured")
	alice.mu.Unlock()

	attacker := dialRaw(t, r.Addr())
	var sent, junk int
	spray := func(b []byte) {
		attacker.send(b)
		sent += len(b)
		junk++
	}
	spray(genuine) // replayed from a foreign address
	for n := range len(genuine) {
		spray(genuine[:n]) // truncated at every length
	}
	for i := range len(genuine) * 8 {
		b := append([]byte(nil), genuine...)
		b[i/8] ^= 1 << (i % 8) // every single-bit flip
		spray(b)
	}
	spray(make([]byte, 600))                                           // oversized
	spray(appendDeliver(nil, 1, 1, 0, 1, 0, KindChat, "eve", "", nil)) // member-bound type
	spray([]byte("alice: plain text is not the protocol"))
	for i := range 200 {
		spray(fmt.Appendf(nil, "UC\x01%c%s", byte(i), strings.Repeat("?", i%40)))
	}
	spray(appendHeartbeat(nil, 12345, 1, 0)) // unknown session

	if err := alice.Send(ctxT(t), "after the storm"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice", "after the storm")
	expect(t, alice, KindChat, "alice", "after the storm")

	var got int
	for b := attacker.read(50 * time.Millisecond); b != nil; b = attacker.read(50 * time.Millisecond) {
		var p packet
		if err := decode(b, &p); err != nil || (p.typ != tBye && p.typ != tStatus && p.typ != tWelcome && p.typ != tError && p.typ != tChallenge) {
			t.Errorf("relay sent the attacker an unexpected datagram: %x", b)
		}
		if p.typ == tDeliver {
			t.Errorf("relay delivered to the attacker")
		}
		got += len(b)
	}
	if got > sent {
		t.Errorf("relay sent the attacker %d bytes for %d received: amplification", got, sent)
	}
	st := r.Stats()
	t.Logf("attacker sent %d datagrams, %d bytes, got %d bytes back; relay stats %+v", junk, sent, got, st)
	if st.DroppedOversized != 1 || st.DroppedUnknown == 0 || st.DroppedMalformed < uint64(len(genuine)) {
		t.Errorf("drops not counted: %+v", st)
	}
	if st.Members != 2 || st.Sequenced != 3 {
		t.Errorf("junk changed the group: %+v", st)
	}
	if names(r.Members()) != "alice,bob" {
		t.Errorf("members after the storm: %s", names(r.Members()))
	}
}

// TestRelayRestart restarts the relay on the same port: cleanly (members
// are told), killed (the new relay tells them it does not know them), and
// killed with no relay for longer than the expiry (members notice the
// silence). Members rejoin by themselves, and a Send made during the outage
// completes once the new relay is up and reaches the others.
func TestRelayRestart(t *testing.T) {
	for _, tc := range []struct {
		name       string
		kill, wait bool
	}{
		{"closed", false, false},
		{"killed", true, false},
		{"killed and silent", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []Option{WithHeartbeat(20 * time.Millisecond), WithExpiry(200 * time.Millisecond)}
			rr := restartable{opts: opts}
			rr.startRelayAt(t, "127.0.0.1:0")
			alice := join(t, rr.relay, "alice")
			bob := join(t, rr.relay, "bob")
			expect(t, bob, KindJoin, "bob", "")
			if err := alice.Send(ctxT(t), "before"); err != nil {
				t.Fatal(err)
			}
			expect(t, bob, KindChat, "alice", "before")

			rr.stopRelay(tc.kill)

			sent := make(chan error, 1)
			go func() { sent <- alice.Send(ctxT(t), "during") }()
			if tc.wait {
				for _, m := range []*Member{alice, bob} {
					waitFor(t, func() bool {
						m.mu.Lock()
						defer m.mu.Unlock()
						return m.state == stateJoining
					}, m.Name()+" to notice the relay is gone")
					// Its heartbeats and joins met a closed port: the
					// kernel's ICMP answer reached the read loop, which
					// went on.
					m.mu.Lock()
					lastErr := m.lastErr
					m.mu.Unlock()
					if !errors.Is(lastErr, syscall.ECONNREFUSED) {
						t.Errorf("%s's last socket error is %v, want ECONNREFUSED", m.Name(), lastErr)
					}
				}
			}

			r2 := startRelay(t, append(opts, WithAddr(rr.addr))...)
			if err := <-sent; err != nil {
				t.Fatalf("Send across the restart: %v", err)
			}
			for {
				msg := recv(t, bob)
				if msg.Kind == KindChat {
					if msg.Text != "during" || msg.From != "alice" {
						t.Fatalf("bob got %+v, want alice's message sent during the outage", msg)
					}
					break
				}
			}
			if alice.Stats().Rejoins != 1 || bob.Stats().Rejoins != 1 {
				t.Errorf("rejoins: alice %d, bob %d; want 1 each", alice.Stats().Rejoins, bob.Stats().Rejoins)
			}
			if got := names(r2.Members()); got != "alice,bob" {
				t.Errorf("new relay's members: %s", got)
			}
			waitFor(t, func() bool { return names(bob.Members()) == "alice,bob" }, "bob's roster after the restart")
		})
	}
}

// waitFor polls cond until it holds or the test timeout passes.
func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSlowReceiver has bob stop calling Receive while alice sends: his queue
// fills, and once he reads again he catches up from the relay's history.
// What history no longer holds comes back as one GapError, in place.
func TestSlowReceiver(t *testing.T) {
	for _, tc := range []struct {
		name  string
		count int
		gap   bool
	}{
		{"within history", 100, false},
		{"beyond history", 400, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, WithHistory(128), WithRateLimit(0, 0))
			alice := join(t, r, "alice")
			bob := join(t, r, "bob", WithQueueSize(8))
			expect(t, bob, KindJoin, "bob", "")
			for i := range tc.count {
				if err := alice.Send(ctxT(t), fmt.Sprint(i)); err != nil {
					t.Fatal(err)
				}
			}
			want, gaps := 0, 0
			for want < tc.count {
				msg, err := bob.Receive(ctxT(t))
				var gap *GapError
				switch {
				case errors.As(err, &gap):
					gaps++
					if gap.Last < gap.First {
						t.Fatalf("bad gap %+v", gap)
					}
					want += int(gap.Last - gap.First + 1)
					continue
				case err != nil:
					t.Fatal(err)
				}
				if msg.Text != fmt.Sprint(want) {
					t.Fatalf("bob got %q, want %d", msg.Text, want)
				}
				want++
			}
			if want != tc.count || (gaps == 1) != tc.gap {
				t.Errorf("got through %d messages with %d gaps", want, gaps)
			}
			if st := bob.Stats(); tc.gap && st.Missed == 0 {
				t.Errorf("bob's stats do not count the loss: %+v", st)
			}
			t.Logf("bob: %+v, relay: %+v", bob.Stats(), r.Stats())
		})
	}
}

func TestMulticastLoopback(t *testing.T) {
	r, err := NewRelay(WithAddr("127.0.0.1:0"), WithBroadcast(fmt.Sprintf("239.77.1.2:%d", freePort(t))))
	if err != nil {
		t.Fatalf("NewRelay with a multicast group: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(context.Background()) }()
	defer func() { r.Close(); <-served }()
	a := join(t, r, "alice")
	b := join(t, r, "bob")
	expect(t, b, KindJoin, "bob", "")
	if err := a.Send(ctxT(t), "to the group"); err != nil {
		t.Fatal(err)
	}
	expect(t, b, KindChat, "alice", "to the group")
	if st := r.Stats(); st.Delivered != st.Sequenced {
		t.Errorf("multicast relay delivered %d datagrams for %d messages, want one each", st.Delivered, st.Sequenced)
	}
}

// proto and plainMode reach the relay's mode, for tests that look inside.
func (r *Relay) proto() *protoRelay     { return r.mode.(*protoRelay) }
func (r *Relay) plainMode() *plainRelay { return r.mode.(*plainRelay) }

// main returns the member table of the main room (empty if it is not open).
func (r *protoRelay) main() *sessionTable {
	if rm := r.byRoom[""]; rm != nil {
		return &rm.members
	}
	return &sessionTable{}
}

// check reports whether the relay's views of its members disagree: the
// sessions, each room's tables, the rooms.
func (r *protoRelay) check() error {
	n := 0
	for name, rm := range r.byRoom {
		t := &rm.members
		if rm.name != name || t.len() == 0 || len(t.byName) != t.len() || len(t.dsts) != t.len() || len(t.names) != t.len() {
			return fmt.Errorf("room %q out of step: %d list, %d names, %d paths, %d sorted", name, t.len(), len(t.byName), len(t.dsts), len(t.names))
		}
		for i, m := range t.list {
			if m.idx != i || m.room != rm || r.sessions[m.session] != m || t.byName[m.name] != m || t.dsts[i] != m.path {
				return fmt.Errorf("member %q of room %q indexed wrongly", m.name, name)
			}
		}
		n += t.len()
	}
	if n != len(r.sessions) {
		return fmt.Errorf("%d sessions, %d members in rooms", len(r.sessions), n)
	}
	return nil
}

// A Send whose context is already done returns its error and sends
// nothing: the next chat the others receive is the one sent after.
func TestSendCancelledSendsNothing(t *testing.T) {
	r := startRelay(t)
	bob := join(t, r, "bob")
	alice := join(t, r, "alice")
	expect(t, bob, KindJoin, "bob", "")
	expect(t, bob, KindJoin, "alice", "")
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 200 {
		if err := alice.Send(done, fmt.Sprint("cancelled ", i)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Send with a cancelled context = %v, want context.Canceled", err)
		}
	}
	if err := alice.Send(ctxT(t), "after"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice", "after")
}

// Names: what is refused says why and what is allowed, with one prefix.
func TestNameRules(t *testing.T) {
	for _, tc := range []struct{ name, why string }{
		{"alice", ""},
		{"ok name", ""},
		{"日本語", ""},
		{strings.Repeat("x", 32), ""},
		{"", "empty"},
		{strings.Repeat("x", 33), "33 bytes"},
		{" lead", "space at the start"},
		{"trail ", "space at the end"},
		{"a:b", "':'"},
		{"bell\a", "control character U+0007"},
		{"evil\u202e", "control character U+202E"},
		{"\xff", "not valid UTF-8"},
	} {
		err := checkName(tc.name)
		if tc.why == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), nameRules) || strings.Count(err.Error(), "udpchat:") != 1 {
			t.Errorf("%q: %v; want ErrInvalidName saying %q and the rules, once prefixed", tc.name, err, tc.why)
		}
	}
}

// A refusal reads as one error, with one prefix.
func TestJoinRefusalOnePrefix(t *testing.T) {
	r := startRelay(t)
	join(t, r, "alice")
	_, err := Join(ctxT(t), "alice", WithAddr(r.Addr().String()))
	if !errors.Is(err, ErrNameTaken) || strings.Count(err.Error(), "udpchat:") != 1 || !strings.Contains(err.Error(), `"alice"`) {
		t.Fatalf("Join as a taken name: %v", err)
	}
}

// A message that arrives as Receive's ctx ends is returned before ctx's
// error, whichever the waiting Receive sees first: a program that stops
// its receive loop after a last Send still shows its own copy.
func TestReceiveReturnsQueuedBeforeCtxError(t *testing.T) {
	r := startRelay(t)
	m := join(t, r, "alice")
	expect(t, m, KindJoin, "alice", "")
	for i := range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan error, 1)
		go func() {
			msg, err := m.Receive(ctx)
			if err == nil && msg.Text != fmt.Sprint(i) {
				err = fmt.Errorf("got %q", msg.Text)
			}
			got <- err
		}()
		waitParked(t, "udpchat.(*Member).Receive")
		// ctx ends first and wakes Receive; the message comes before it
		// can look (the read loop holds the lock while it queues one).
		m.mu.Lock()
		cancel()
		m.in.push(rxItem{msg: Message{Kind: KindChat, From: "alice", Text: fmt.Sprint(i)}})
		m.mu.Unlock()
		if err := <-got; err != nil {
			t.Fatalf("round %d: Receive = %v, want the message queued as ctx ended", i, err)
		}
	}
}

// waitParked waits until a goroutine whose stack holds fn is blocked, as
// the runtime's goroutine dump shows it: in a select, or (a Receive that
// holds the read role) in a read of the socket.
func waitParked(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	waitFor(t, func() bool {
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			parked := strings.Contains(g, "[select") || strings.Contains(g, "[IO wait")
			if parked && strings.Contains(g, fn) {
				return true
			}
		}
		return false
	}, fn+" to block")
}
