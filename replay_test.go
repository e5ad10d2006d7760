package udpchat

// Regressions from the third review: replays with a group key, and ways
// around the rate limits. Forged source addresses go through a raw socket
// on loopback (the tests skip without one).

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

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
	sp.send(px.front.LocalAddr().(*net.UDPAddr).Port, alice.pc.PacketConn.LocalAddr().(*net.UDPAddr), bye)
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

func TestRejoinDoesNotRefillBurst(t *testing.T) {
	const rate = 100
	r := startRelay(t, WithRateLimit(rate, 0))
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	fl := dialRaw(t, r.Addr())
	start := time.Now()
	cycles, sent := 0, 0
	for time.Since(start) < time.Second && cycles < 50 {
		w := fl.joinWith(uint64(100+cycles), "flood", tWelcome)
		for i := 1; i <= 2*rate; i++ {
			fl.send(appendChat(nil, w.session, uint64(i), "spam"))
			sent++
		}
		fl.send(appendHeader(nil, tLeave, w.session))
		fl.readType(tBye)
		cycles++
	}
	elapsed := time.Since(start)
	// The flooder's last BYE came after the relay handled all it sent.
	st := r.Stats()
	chats := int(st.Sequenced) - 1 - 2*cycles // minus bob's join and the flooder's join/leave events
	limit := int(2*rate + elapsed.Seconds()*rate)
	t.Logf("%d join/leave cycles in %v: %d of %d spam chats sequenced (rate limit allows %d); %+v", cycles, elapsed.Round(time.Millisecond), chats, sent, limit, st)
	if chats > limit {
		t.Errorf("rejoining lifts the rate limit: %d chats sequenced, limit %d", chats, limit)
	}
}

// NACKs are cheap to send and costly to answer: a member flooding them gets
// no more repairs than its budget (history per second, bursts of twice).
func TestNackFloodIsBudgeted(t *testing.T) {
	r := startRelay(t, WithHistory(128))
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	fl := dialRaw(t, r.Addr())
	w := fl.joinRaw("flood")
	expect(t, bob, KindJoin, "flood", "")
	for i := 1; i <= 100; i++ {
		fl.send(appendChat(nil, w.session, uint64(i), strings.Repeat("L", 100)))
		for fl.readType(tDeliver).mseq != uint64(i) {
		}
		expect(t, bob, KindChat, "flood", strings.Repeat("L", 100))
	}
	before := r.Stats()
	start := time.Now()
	nack := appendU64Pair(nil, tNack, w.session, 1, 1000)
	sent := 0
	for time.Since(start) < time.Second && sent < 20000 {
		for range 10 {
			fl.c.Write(nack)
			sent++
		}
		time.Sleep(time.Millisecond) // pacing the flood
	}
	// A datagram from bob marks when the relay has handled the flood.
	if err := bob.Send(ctxT(t), "after"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "bob", "after")
	elapsed := time.Since(start)
	resent := int(r.Stats().Retransmitted - before.Retransmitted)
	budget := int(2*128 + elapsed.Seconds()*128)
	t.Logf("%d NACKs in %v made the relay resend %d datagrams (budget %d)", sent, elapsed.Round(time.Millisecond), resent, budget)
	if resent > budget {
		t.Errorf("the relay resent %d datagrams for a NACK flood, more than the budget %d", resent, budget)
	}
}

// A NACK for many gaps must fit the buffer (and the seal): it asks for as
// many ranges as fit, and the member still catches up.
func TestNackFitsSmallBuffer(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"plain", nil}, {"sealed", []Option{WithKey(key1)}}} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]Option{WithBufferSize(128)}, tc.opts...)
			r := startRelay(t, opts...)
			alice := join(t, r, "alice", opts...)
			px := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
			px.keys = r.cfg.keys // the filter reads sealed datagrams too
			bob, err := Join(ctxT(t), "bob", append([]Option{WithAddr(px.Addr())}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer bob.Close()
			expect(t, bob, KindJoin, "bob", "")
			// Every second deliver is lost until bob has asked for the
			// repairs once: more gaps than one NACK can name.
			var mu sync.Mutex
			drop := 0
			bob.mu.Lock()
			first := bob.in.next
			bob.mu.Unlock()
			px.setFilter(func(up bool, p *packet) bool {
				mu.Lock()
				defer mu.Unlock()
				if !up && p.typ == tDeliver && p.seq >= first && (p.seq-first)%2 == 1 && drop < 9 {
					drop++
					return true
				}
				return false
			})
			for i := range 20 {
				if err := alice.Send(ctxT(t), strings.Repeat("m", i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				msg, err := bob.Receive(ctx)
				cancel()
				if err != nil || msg.Text != strings.Repeat("m", i) {
					t.Fatalf("bob's message %d: %q, %v (relay %+v)", i, msg.Text, err, r.Stats())
				}
			}
			if st := r.Stats(); st.DroppedOversized != 0 {
				t.Errorf("the relay dropped %d oversized datagrams", st.DroppedOversized)
			}
		})
	}
}

// handled waits until the relay has handled everything c sent so far: it
// answers a heartbeat, sent last, with STATUS.
func (c *rawClient) handled(session uint64) {
	c.t.Helper()
	c.send(appendHeartbeat(nil, session, 1, 0))
	c.readType(tStatus)
}

// A NACK is charged for what it got resent, not for what it could have:
// two one-message NACKs once used up 256 of a 256-datagram budget.
func TestNackChargedForWhatIsResent(t *testing.T) {
	r := startRelay(t, WithHistory(128)) // repairs: 128/s, bursts of 256
	c := dialRaw(t, r.Addr())
	w := c.joinRaw("lag")
	for i := 1; i <= 100; i++ {
		c.send(appendChat(nil, w.session, uint64(i), strings.Repeat("L", 50)))
		for c.readType(tDeliver).mseq != uint64(i) {
		}
	}
	before := r.Stats().Retransmitted
	c.send(appendU64Pair(nil, tNack, w.session, 10, 10))
	c.send(appendU64Pair(nil, tNack, w.session, 20, 20))
	c.send(appendU64Pair(nil, tNack, w.session, 2, 101))
	c.handled(w.session)
	if got := r.Stats().Retransmitted - before; got != 2+100 {
		t.Errorf("two one-message NACKs and one for 100 got %d resends, want 102", got)
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
	c.send(s.seal(appendJoin(nil, 77, 0, 4242, 1, &[cookieLen]byte{}, "alice")))
	ck := readSealed(tCookie)
	join := appendJoin(nil, 77, 0, 4242, 1, &ck.cookie, "alice")
	c.send(s.seal(join))
	w := readSealed(tWelcome)
	var sent [][]byte
	for i := 1; i <= 5; i++ {
		b := s.seal(appendChat(nil, w.session, uint64(i), "hi"))
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

// The buckets of a member that left go only to the same name from the same
// address: a neighbour behind the same address keeps its full burst, and
// a second socket cannot take a flooder's drained buckets for it.
func TestLeftBucketsStayWithTheName(t *testing.T) {
	const rate = 100
	burst := func(r *Relay, c *rawClient, nonce uint64, name string) (session uint64, sequenced int) {
		w := c.joinWith(nonce, name, tWelcome)
		before := r.Stats().Sequenced
		for i := 1; i <= 2*rate; i++ {
			c.send(appendChat(nil, w.session, uint64(i), "x"))
		}
		c.handled(w.session)
		return w.session, int(r.Stats().Sequenced - before)
	}
	r := startRelay(t, WithRateLimit(rate, 0))
	flood, neighbour := dialRaw(t, r.Addr()), dialRaw(t, r.Addr())
	s, _ := burst(r, flood, 1, "flood")
	flood.send(appendHeader(nil, tLeave, s))
	flood.readType(tBye)
	if _, got := burst(r, neighbour, 2, "neighbour"); got < 2*rate*9/10 {
		t.Errorf("a neighbour on the same address got %d of its %d-chat burst through", got, 2*rate)
	}
	if _, got := burst(r, flood, 3, "flood"); got > rate/2 {
		t.Errorf("the flooder, back under its name, got %d chats through at once", got)
	}
}
