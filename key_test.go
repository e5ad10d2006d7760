package udpchat

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	key1 = bytes.Repeat([]byte{1}, 32)
	key2 = bytes.Repeat([]byte{2}, 16)
)

// With a group key the conversation works as without, and neither the
// text nor the names ever appear on the wire.
func TestKeySealsEverything(t *testing.T) {
	r := startRelay(t, WithKey(key1))
	px := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
	var mu sync.Mutex
	var wire [][]byte
	px.tap.Store(ptr(func(up bool, b []byte) {
		mu.Lock()
		wire = append(wire, append([]byte(nil), b...))
		mu.Unlock()
	}))
	at := WithAddr(px.Addr())
	alice, err := Join(ctxT(t), "alice-secret-name", at, WithKey(key1))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := Join(ctxT(t), "bob", at, WithKey(key1))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	expect(t, bob, KindJoin, "bob", "")
	if err := alice.Send(ctxT(t), "the plaintext of a secret"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice-secret-name", "the plaintext of a secret")
	if got := names(bob.Members()); got != "alice-secret-name,bob" {
		t.Errorf("bob.Members() = %s", got)
	}
	alice.Close()
	expect(t, bob, KindLeave, "alice-secret-name", "")
	mu.Lock()
	defer mu.Unlock()
	for _, b := range wire {
		if bytes.Contains(b, []byte("plaintext")) || bytes.Contains(b, []byte("secret-name")) {
			t.Fatalf("plaintext on the wire: %q", b)
		}
		if b[3] != tSealed {
			t.Fatalf("an unsealed datagram on the wire: % x", b)
		}
	}
	if len(wire) < 10 {
		t.Fatalf("only %d datagrams seen", len(wire))
	}
}

func ptr[T any](v T) *T { return &v }

// Without the key, or with a wrong one, a member cannot join; the relay
// counts what it could not open.
func TestKeyMismatch(t *testing.T) {
	keyed := startRelay(t, WithKey(key1))
	open := startRelay(t)
	for _, tc := range []struct {
		name  string
		relay *Relay
		opts  []Option
	}{
		{"no key", keyed, nil},
		{"wrong key", keyed, []Option{WithKey(key2)}},
		{"relay without key", open, []Option{WithKey(key1)}},
		// Rolled out too early: the relay opens key1 but seals with
		// key2, which the member cannot open.
		{"relay sealing with a newer key", startRelay(t, WithKey(key2, key1)), []Option{WithKey(key1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := Join(ctx, "mallory", append(tc.opts, WithAddr(tc.relay.Addr().String()))...)
			if !errors.Is(err, ErrRelayUnreachable) {
				t.Fatalf("Join = %v, want ErrRelayUnreachable", err)
			}
			// With a key, the error says that silence can mean a key the
			// relay does not hold.
			if keyed := tc.opts != nil; keyed != strings.Contains(err.Error(), "does not hold our key") {
				t.Errorf("Join's error with key %v: %v", keyed, err)
			}
		})
	}
	if st := keyed.Stats(); st.DroppedUnauthenticated == 0 || st.Members != 0 {
		t.Errorf("keyed relay: %+v", st)
	}
}

// Changing keys without losing messages: the relay seals with the new key
// and opens both; a member that still seals with the old key and one that
// has only the new key chat with each other.
func TestKeyRotation(t *testing.T) {
	r := startRelay(t, WithKey(key2, key1))
	old := join(t, r, "old", WithKey(key1, key2))
	recent := join(t, r, "new", WithKey(key2))
	expect(t, old, KindJoin, "old", "")
	expect(t, old, KindJoin, "new", "")
	expect(t, recent, KindJoin, "new", "")
	if err := old.Send(ctxT(t), "from the old key"); err != nil {
		t.Fatal(err)
	}
	if err := recent.Send(ctxT(t), "from the new key"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Member{old, recent} {
		expect(t, m, KindChat, "old", "from the old key")
		expect(t, m, KindChat, "new", "from the new key")
	}
}

// Sealed datagrams captured and replayed from the member's own address are
// not taken again: control datagrams by their counters, chats by their
// member seqs.
func TestKeyReplay(t *testing.T) {
	r := startRelay(t, WithKey(key1))
	px, caps := capture(t, r)
	alice := joinAt(t, px.Addr(), "alice", WithKey(key1))
	bob := join(t, r, "bob", WithKey(key1))
	expect(t, bob, KindJoin, "bob", "")
	if err := alice.Send(ctxT(t), "once"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice", "once")

	// The relay knows alice by the proxy's upstream socket.
	port := upstreamPort(px)
	before := r.Stats()
	captured := caps()
	sp := newSpoofer(t)
	for _, b := range captured {
		sp.send(port, r.addr, b)
	}
	n := len(captured)
	if err := alice.Send(ctxT(t), "twice?"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice", "twice?") // nothing replayed came first
	after := r.Stats()
	if after.DroppedReplayed == before.DroppedReplayed || after.Sequenced != before.Sequenced+1 {
		t.Errorf("replayed %d datagrams: relay %+v", n, after)
	}
	if after.Members != 2 {
		t.Errorf("replays changed the group: %d members", after.Members)
	}
}

// The seal's 33 bytes count against the buffer size.
func TestKeyMessageSize(t *testing.T) {
	r := startRelay(t, WithKey(key1), WithBufferSize(256))
	m := join(t, r, "alice", WithKey(key1), WithBufferSize(256))
	room := 256 - deliverHdrLen - len("alice") - sealOverhead
	if err := m.Send(ctxT(t), strings.Repeat("x", room)); err != nil {
		t.Fatalf("Send of a text that fits exactly: %v", err)
	}
	if err := m.Send(ctxT(t), strings.Repeat("x", room+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("Send one byte over: %v, want ErrMessageTooLarge", err)
	}
	expect(t, m, KindJoin, "alice", "")
	expect(t, m, KindChat, "alice", strings.Repeat("x", room))
	for _, bad := range [][]byte{nil, make([]byte, 15), make([]byte, 33)} {
		if _, err := NewRelay(WithAddr("127.0.0.1:0"), WithKey(bad)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithKey of %d bytes: %v, want ErrInvalidOption", len(bad), err)
		}
	}
}

// capture returns a proxy in front of r that records every datagram a
// member sends upstream (sealed, as on the wire).
func capture(t *testing.T, r *Relay) (*lossyProxy, func() [][]byte) {
	px := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
	var mu sync.Mutex
	var up [][]byte
	px.tap.Store(ptr(func(isUp bool, b []byte) {
		if isUp {
			mu.Lock()
			up = append(up, append([]byte(nil), b...))
			mu.Unlock()
		}
	}))
	return px, func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return append([][]byte(nil), up...)
	}
}

func upstreamPort(px *lossyProxy) int {
	px.mu.Lock()
	defer px.mu.Unlock()
	for _, u := range px.upstreams {
		return u.LocalAddr().(*net.UDPAddr).Port
	}
	return 0
}

// pick opens captured datagrams with the key (only to choose one by type;
// the attacker could as well replay all of them).
func pick(t *testing.T, caps [][]byte, typ byte) []byte {
	ring, _ := newKeyring([][]byte{key1})
	for i := len(caps) - 1; i >= 0; i-- {
		plain, _, _, err := ring.open(make([]byte, 2048), caps[i])
		var p packet
		if err == nil && decode(plain, &p) == nil && p.typ == typ {
			return caps[i]
		}
	}
	t.Fatalf("no captured datagram of type %d", typ)
	return nil
}

// An on-path attacker without the key replays one of alice's sealed
// datagrams from its own address to get a BYE naming her session, to
// forward to her as if from the relay: the relay answers a known session
// from a foreign address with nothing, and a BYE from another relay with
// the same key (which does not know the session) is not taken either.
func TestKeyNoBYEForACapturedSession(t *testing.T) {
	r := startRelay(t, WithKey(key1))
	other := startRelay(t, WithKey(key1))
	px, caps := capture(t, r)
	alice := joinAt(t, px.Addr(), "alice", WithKey(key1))
	expect(t, alice, KindJoin, "alice", "")
	waitFor(t, func() bool { return len(caps()) >= 3 }, "alice's heartbeat")
	hb := pick(t, caps(), tHeartbeat)
	attacker := dialRaw(t, r.Addr())
	attacker.send(hb)
	if b := attacker.read(300 * time.Millisecond); b != nil {
		t.Fatalf("the relay answered a replayed datagram of a known session: % x", b)
	}
	// The other relay does answer: it does not know the session.
	toOther := dialRaw(t, other.Addr())
	toOther.send(hb)
	bye := toOther.read(time.Second)
	if bye == nil {
		t.Fatal("the other relay did not answer")
	}
	sp := newSpoofer(t)
	sp.send(px.front.LocalAddr().(*net.UDPAddr).Port, alice.conn.LocalAddr().(*net.UDPAddr), bye)
	if err := alice.Send(ctxT(t), "still here"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, KindChat, "alice", "still here")
	if n := alice.Stats().Rejoins; n != 0 {
		t.Errorf("a BYE minted from a captured datagram made alice rejoin %d times", n)
	}
}

func TestKeyReplayedJoinAfterLeave(t *testing.T) {
	r := startRelay(t, WithKey(key1))
	bob := join(t, r, "bob", WithKey(key1))
	expect(t, bob, KindJoin, "bob", "")
	px, caps := capture(t, r)
	alice, err := Join(ctxT(t), "alice", WithAddr(px.Addr()), WithKey(key1))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindJoin, "alice", "")
	joins := caps()[:2] // JOIN without cookie, JOIN with cookie
	port := upstreamPort(px)
	alice.Close()
	expect(t, bob, KindLeave, "alice", "")
	before := r.Stats()
	sp := newSpoofer(t)
	for _, b := range joins {
		sp.send(port, r.addr, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	msg, err := bob.Receive(ctx)
	t.Logf("bob after replay: %v %q err=%v; members %s; DroppedReplayed %d->%d", msg.Kind, msg.From, err, names(r.Members()), before.DroppedReplayed, r.Stats().DroppedReplayed)
	if err == nil && msg.Kind == KindJoin && msg.From == "alice" {
		t.Errorf("replayed sealed JOIN re-created alice's session: members %s", names(r.Members()))
	}
	again, err := Join(ctxT(t), "alice", WithAddr(r.Addr().String()), WithKey(key1))
	if err != nil {
		t.Fatalf("the real alice, joining again, gets %v", err)
	}
	again.Close()
}

func TestKeyReplayedChatsDoNotStarve(t *testing.T) {
	r := startRelay(t, WithKey(key1))
	px, caps := capture(t, r)
	alice := joinAt(t, px.Addr(), "alice", WithKey(key1))
	expect(t, alice, KindJoin, "alice", "")
	if err := alice.Send(ctxT(t), "hello"); err != nil {
		t.Fatal(err)
	}
	chat := pick(t, caps(), tChat)
	port := upstreamPort(px)
	sp := newSpoofer(t)
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) && n < 40000 {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			for range 10 {
				sp.send(port, r.addr, chat)
				n++
			}
			time.Sleep(time.Millisecond)
		}
		done <- n
	}()
	waitFor(t, func() bool { return r.Stats().DroppedReplayed >= 100 }, "the replays to reach the relay")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sent := 0
	for ; ctx.Err() == nil; sent++ {
		if err := alice.Send(ctx, "can I speak?"); err != nil {
			break
		}
	}
	close(stop)
	n := <-done
	st := r.Stats()
	t.Logf("replayed one chat %d times; alice got %d chats through in 2s; DroppedRateLimited %d DroppedDuplicate %d",
		n, sent, st.DroppedRateLimited, st.DroppedDuplicate)
	if sent < 100 {
		t.Errorf("alice was starved by replays of her own sealed chat: %d chats in 2s at a 100/s limit", sent)
	}
}

func TestKeyReplayedChatDoesNotKeepDeadMember(t *testing.T) {
	r := startRelay(t, WithKey(key1), WithHeartbeat(100*time.Millisecond)) // expiry 1.3s
	px, caps := capture(t, r)
	alice, err := Join(ctxT(t), "alice", WithAddr(px.Addr()), WithKey(key1))
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Send(ctxT(t), "hello"); err != nil {
		t.Fatal(err)
	}
	chat := pick(t, caps(), tChat)
	port := upstreamPort(px)
	px.blackout.Store(true) // alice's process dies: no LEAVE reaches the relay
	alice.Close()
	sp := newSpoofer(t)
	stop := make(chan struct{})
	replayed := make(chan struct{})
	go func() {
		defer close(replayed)
		tick := time.NewTicker(200 * time.Millisecond) // well within the 1.3s expiry
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sp.send(port, r.addr, chat)
			}
		}
	}()
	// With replays every 200ms, alice is expired all the same.
	waitFor(t, func() bool { return !strings.Contains(names(r.Members()), "alice") }, "dead alice to expire despite the replays")
	close(stop)
	<-replayed
	if st := r.Stats(); st.Expired != 1 || st.DroppedReplayed == 0 {
		t.Errorf("relay %+v: want alice expired and the replays counted", st)
	}
}

// A renewal join (its welcome was lost) keeps the member's replay window:
// datagrams sealed before it stay replays.
func TestRenewalKeepsReplayWindow(t *testing.T) {
	r := startRelay(t, WithKey(key1))
	ring, err := newKeyring([][]byte{key1})
	if err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, r.Addr())
	s := newSealer(ring)
	readSealed := func(typ byte) packet {
		for {
			b := c.read(testTimeout)
			if b == nil {
				t.Fatalf("no sealed datagram of type %d", typ)
			}
			plain, _, _, err := ring.open(make([]byte, len(b)), b)
			var p packet
			if err == nil && decode(plain, &p) == nil && p.typ == typ {
				return p
			}
		}
	}
	c.send(s.seal(appendJoin(nil, 0, 77, 0, 4242, 1, 0, &[cookieLen]byte{}, "alice", "")))
	ck := readSealed(tCookie)
	join := appendJoin(nil, 0, 77, 0, 4242, 1, 0, &ck.cookie, "alice", "")
	c.send(s.seal(join))
	w := readSealed(tWelcome)
	var sent [][]byte
	for i := 1; i <= 5; i++ {
		b := s.seal(appendChat(nil, w.session, uint64(i), seqAt{}, "", "hi"))
		c.send(b)
		sent = append(sent, b)
	}
	c.send(s.seal(join)) // a renewal, as when the welcome is lost
	readSealed(tWelcome)
	before := r.Stats().DroppedReplayed
	for _, b := range sent {
		c.send(b)
	}
	c.send(s.seal(appendHeartbeat(nil, w.session, 1, 0)))
	readSealed(tStatus)
	if got := r.Stats().DroppedReplayed - before; got != uint64(len(sent)) {
		t.Errorf("after a renewal, %d of %d replayed chats were caught", got, len(sent))
	}
}

// TestKeyStableOutOfOrder: a STABLE comes by the group's socket, out of
// order with the member's own control datagrams, so the member takes one
// sealed before its newest STATUS; a STATUS as old it drops, as a replay.
func TestKeyStableOutOfOrder(t *testing.T) {
	r := startRelay(t, WithKey(key1), WithHeartbeat(time.Hour), WithExpiry(2*time.Hour)) // no STATUS but what the test sends
	alice := join(t, r, "alice", WithKey(key1))
	if err := alice.Send(ctxT(t), "kept until prunable passes it"); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	s := *r.q.sealer // the relay's salt, and counters of its own
	r.mu.Unlock()
	c := s.count + 1<<20 // past anything the relay seals meanwhile
	sealAt := func(count uint64, b []byte) []byte { s.count = count - 1; return s.seal(b) }
	alice.mu.Lock()
	defer alice.mu.Unlock()
	ms := alice.mode.(*memberSession)
	now := time.Now()
	ms.handle(sealAt(c+100, appendStatus(nil, ms.inc, 1, 0, 0, 0)), now)
	dropped := ms.stats.Dropped
	stable := sealAt(c, appendStable(nil, ms.inc, 1, 1000, 900))
	ms.handle(stable, now)
	if ms.out.stable != 1000 || ms.out.prunable != 900 || ms.stats.Dropped != dropped || len(ms.out.chats) != 0 {
		t.Fatalf("after a STABLE sealed 100 counters back: stable %d, prunable %d, %d more dropped, %d chats kept; want 1000, 900, none, none",
			ms.out.stable, ms.out.prunable, ms.stats.Dropped-dropped, len(ms.out.chats))
	}
	ms.handle(stable, now) // a replay moves nothing
	ms.handle(sealAt(c+1, appendStatus(nil, ms.inc, 1, 0, 2000, 2000)), now)
	if ms.out.stable != 1000 || ms.stats.Dropped != dropped+1 {
		t.Errorf("a STATUS 99 counters back: stable %d, %d more dropped; want 1000, 1", ms.out.stable, ms.stats.Dropped-dropped)
	}
}
