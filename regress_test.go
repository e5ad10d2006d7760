package udpchat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A datagram from source port 0 cannot be answered; sendmmsg's error on
// the answer once made flush retry it forever with the relay's lock held.
func TestSourcePortZero(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice")
	sendSpoofed(t, 0, r.addr, appendHeartbeat(nil, 12345, 1, 0))
	if err := alice.Send(ctxT(t), "still serving"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, KindJoin, "alice", "")
	expect(t, alice, KindChat, "alice", "still serving")
	if st := r.Stats(); st.DroppedMalformed != 1 {
		t.Errorf("the port-0 datagram was not counted: %+v", st)
	}
}

// Datagrams forged with a member's address and a made-up session must not
// make the relay end the member's session: its BYE names the session.
func TestSpoofedSessionCannotEndMember(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice")
	expect(t, alice, KindJoin, "alice", "")
	port := alice.pc.PacketConn.LocalAddr().(*net.UDPAddr).Port
	for i := range 10 {
		sendSpoofed(t, port, r.addr, appendHeartbeat(nil, uint64(1000+i), 1, 0))
	}
	if err := alice.Send(ctxT(t), "undisturbed"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, KindChat, "alice", "undisturbed")
	if n := alice.Stats().Rejoins; n != 0 {
		t.Errorf("10 forged datagrams made alice rejoin %d times", n)
	}
	if st := r.Stats(); st.DroppedUnknown != 10 {
		t.Errorf("relay counted %d unknown-session datagrams, want 10", st.DroppedUnknown)
	}
}

// A NACK repair queued from the oldest history slot, and a chat sequenced
// into that slot in the same batch: the repair must go out intact.
func TestRepairNotOverwrittenInBatch(t *testing.T) {
	r := startRelay(t, WithHistory(128), WithRateLimit(0, 0)) // the raw client does not resend
	bob := join(t, r, "bob")
	raw := dialRaw(t, r.Addr())
	w := raw.joinRaw("raw")
	expect(t, bob, KindJoin, "bob", "")
	expect(t, bob, KindJoin, "raw", "")
	long := strings.Repeat("L", 200)
	const n = 200
	for i := 1; i <= n; i++ {
		raw.send(appendChat(nil, w.session, uint64(i), fmt.Sprintf("%03d%s", i, long)))
		for raw.readType(tDeliver).mseq != uint64(i) {
		}
	}
	for range n {
		recv(t, bob)
	}
	// The NACK and the chat in one batch, as Serve handles a ReadBatch.
	r.mu.Lock()
	seq, oldest := r.q.seq, r.q.oldestSeq()
	bob.mu.Lock()
	nack := appendU64Pair(nil, tNack, bob.mode.(*memberSession).session, oldest, oldest)
	bob.mu.Unlock()
	now := time.Now()
	r.handle(nack, r.proto().sessions.byName["bob"].addr, now)
	r.handle(appendChat(nil, w.session, n+1, "short"), r.proto().sessions.byName["raw"].addr, now)
	r.q.flush()
	r.mu.Unlock()

	msg := recv(t, bob)
	if msg.Seq != seq+1 || msg.Text != "short" {
		t.Errorf("bob got seq %d with %d bytes of text, want seq %d %q", msg.Seq, len(msg.Text), seq+1, "short")
	}
}

// More messages sequenced between two flushes than history holds (held-back
// chats released at once, one datagram each in broadcast mode): none of the
// queued datagrams may be overwritten before it is sent.
func TestHistoryNotOverwrittenBeforeFlush(t *testing.T) {
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	port := sink.LocalAddr().(*net.UDPAddr).Port
	r, err := NewRelay(WithAddr("127.0.0.1:0"), WithHistory(128), WithBroadcast(fmt.Sprintf("127.255.255.255:%d", port)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var sess []uint64
	from := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port+1+i))
	}
	for i := range 3 {
		r.handle(cookieJoin(r, from(i), uint64(i+1), uint64(i+1), fmt.Sprint("m", i)), from(i), now)
		sess = append(sess, r.proto().sessions.byName[fmt.Sprint("m", i)].session)
	}
	r.q.flush()
	for i := range 3 {
		for ms := uint64(2); ms <= sendWindow; ms++ {
			r.handle(appendChat(nil, sess[i], ms, "x"), from(i), now)
		}
	}
	r.q.flush()
	sent := r.stats.Sequenced
	for i := range 3 {
		r.handle(appendChat(nil, sess[i], 1, "x"), from(i), now) // releases 64 each
	}
	seen := map[uint64]bool{}
	for _, m := range r.q.out {
		var p packet
		if decode(m.b, &p) == nil && p.typ == tDeliver {
			if seen[p.seq] {
				t.Fatalf("seq %d queued twice: an earlier queued datagram was overwritten", p.seq)
			}
			seen[p.seq] = true
		}
	}
	if r.stats.Sequenced-sent != 3*sendWindow {
		t.Errorf("sequenced %d, want %d", r.stats.Sequenced-sent, 3*sendWindow)
	}
	r.q.flush()
}

// GONE for a range the member partly holds: the gap ends before the first
// held message, and the held ones are delivered.
func TestGoneKeepsHeldMessages(t *testing.T) {
	r := startRelay(t)
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	bob.mu.Lock()
	inc, n := bob.mode.(*memberSession).inc, bob.in.next
	bob.mu.Unlock()
	now := time.Now().UnixNano()
	for s := n + 1; s <= n+5; s++ {
		bob.handle(appendDeliver(nil, inc, s, now, 9, s, KindChat, "zed", []byte(fmt.Sprint(s))))
	}
	bob.handle(appendU64Pair(nil, tGone, inc, n, n+5))
	_, err := bob.Receive(ctxT(t))
	var g *GapError
	if !errors.As(err, &g) || g.First != n || g.Last != n {
		t.Fatalf("Receive = %v, want a gap of exactly seq %d", err, n)
	}
	for s := n + 1; s <= n+5; s++ {
		if msg := recv(t, bob); msg.Seq != s {
			t.Fatalf("got seq %d, want the held %d", msg.Seq, s)
		}
	}
}

// A full queue with a newer message known must not make the timer loop
// spin: it waits at least the NACK interval.
func TestFullQueueDoesNotSpin(t *testing.T) {
	r := startRelay(t)
	bob := join(t, r, "bob", WithQueueSize(1)) // his own join fills the queue
	alice := join(t, r, "alice")
	if err := alice.Send(ctxT(t), "hi"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		return bob.in.lastSeq > bob.in.next
	}, "bob to learn of messages he has no room for")
	bob.mu.Lock()
	d := bob.mode.tick(time.Now())
	bob.mu.Unlock()
	if d < nackInterval/2 {
		t.Errorf("timer loop re-arms after %v with a full queue", d)
	}
}

// The relay sequences alice's chat but she never hears so and is expired;
// she rejoins the same relay with a new session and sends it again. Her
// origin (epoch, member seq) makes everyone take it once, and her Send
// still succeeds.
func TestNoDuplicateAfterExpiryRejoin(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")

	sent := expireWhileDeaf(t, r, alice, bob, "once")
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
	expect(t, bob, KindJoin, "alice", "")
	if err := alice.Send(ctxT(t), "twice?"); err != nil {
		t.Fatal(err)
	}
	for {
		msg := recv(t, bob)
		if msg.Text == "once" {
			t.Fatalf("bob received alice's message again at seq %d", msg.Seq)
		}
		if msg.Text == "twice?" {
			break
		}
	}
}

// After the relay expires a member and it rejoins the same relay, a repair
// of its own chat from the old session must not confirm the chat for the
// new session: the relay would wait for it forever, and every later Send
// would stall.
func TestOldSessionDeliverDoesNotConfirm(t *testing.T) {
	r := startRelay(t, WithHeartbeat(20*time.Millisecond), WithExpiry(150*time.Millisecond))
	px := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
	bob := join(t, r, "bob")
	alice := joinAt(t, px.Addr(), "alice")
	expect(t, bob, KindJoin, "bob", "")
	expect(t, bob, KindJoin, "alice", "")

	// Alice never hears her own chat delivered: STATUS confirms it, and
	// it stays in her outbox, not yet stable.
	px.setFilter(func(up bool, p *packet) bool {
		return !up && p.typ == tDeliver && p.kind == KindChat && string(p.name) == "alice"
	})
	if err := alice.Send(ctxT(t), "c1"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice", "c1")
	// Cut off until the relay expires her.
	px.setFilter(func(bool, *packet) bool { return true })
	expect(t, bob, KindLeave, "alice", "")
	// Back, but her chats towards the relay are lost for a while, while
	// her repairs (the old session's deliver of c1) reach her.
	px.setFilter(func(up bool, p *packet) bool { return up && p.typ == tChat })
	waitFor(t, func() bool {
		alice.mu.Lock()
		defer alice.mu.Unlock()
		return alice.state == stateJoined && alice.stats.Rejoins == 1 && alice.in.next > alice.in.lastSeq
	}, "alice to rejoin and catch up")
	px.setFilter(func(bool, *packet) bool { return false })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := alice.Send(ctx, "c2"); err != nil {
		t.Fatalf("Send after the rejoin on a healthy network: %v", err)
	}
	expect(t, bob, KindJoin, "alice", "")
	expect(t, bob, KindChat, "alice", "c2") // c1, sequenced again, is dropped as a copy
}

// A member that lags behind what the relay's history holds when the relay
// crashes: what senders no longer keep is reported as a GapError, never
// dropped silently, and what they keep arrives.
func TestRestartLaggardGetsGap(t *testing.T) {
	opts := []Option{WithHeartbeat(20 * time.Millisecond), WithExpiry(200 * time.Millisecond), WithHistory(128), WithRateLimit(0, 0)}
	rr := restartable{opts: opts}
	rr.startRelayAt(t, "127.0.0.1:0")
	alice := join(t, rr.relay, "alice")
	bob := join(t, rr.relay, "bob", WithQueueSize(8)) // does not Receive for now
	const count = 300
	for i := range count {
		if err := alice.Send(ctxT(t), strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		alice.mu.Lock()
		defer alice.mu.Unlock()
		return alice.out.prunable > 128 // she forgot chats bob lacks
	}, "the stable seq to pass the history")
	rr.stopRelay(true) // crash
	startRelay(t, append(opts, WithAddr(rr.addr))...)

	got := map[int]bool{}
	lost := 0
	for !got[count-1] {
		msg, err := bob.Receive(ctxT(t))
		var g *GapError
		switch {
		case errors.As(err, &g):
			lost += int(g.Last - g.First + 1)
			continue
		case err != nil:
			t.Fatalf("bob: %v after %d chats", err, len(got))
		}
		if msg.Kind == KindChat {
			n, _ := strconv.Atoi(msg.Text)
			if got[n] {
				t.Fatalf("bob got %d twice", n)
			}
			got[n] = true
		}
	}
	if len(got)+lost < count {
		t.Errorf("bob got %d chats and was told of %d lost: %d of %d missing without notice", len(got), lost, count-len(got)-lost, count)
	}
}

// A sender that stays silent while others are expired and rejoin is not
// forgotten by a member pruning its origins: its chat sequenced again
// after the rejoin is still taken once.
func TestOriginsPruneKeepsRecentSenders(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	carol := join(t, r, "carol")
	expect(t, bob, KindJoin, "bob", "")
	expect(t, bob, KindJoin, "carol", "")

	sent := expireWhileDeaf(t, r, alice, bob, "once")
	bob.mu.Lock()
	for i := len(bob.in.origins); i < maxOrigins; i++ {
		bob.in.origins["gone"+strconv.Itoa(i)] = origin{uint64(i + 1), 1, 1} // senders of long ago
	}
	bob.mu.Unlock()
	if err := carol.Send(ctxT(t), "a new name speaks"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "carol", "a new name speaks")
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
	expect(t, bob, KindJoin, "alice", "")
	if err := alice.Send(ctxT(t), "after"); err != nil {
		t.Fatal(err)
	}
	for {
		msg := recv(t, bob)
		if msg.Text == "once" {
			t.Fatalf("bob received alice's %q again at seq %d", msg.Text, msg.Seq)
		}
		if msg.Text == "after" {
			break
		}
	}
}

// An outage longer than the expiry under 20% loss: members are expired,
// rejoin the same relay with new sessions, and can all still send.
func TestLossyExpiryRejoin(t *testing.T) {
	r := startRelay(t, WithHeartbeat(50*time.Millisecond), WithExpiry(300*time.Millisecond), WithHistory(4096), WithRateLimit(0, 0))
	px := newLossyProxy(t, r.Addr(), 21, lossy, lossy)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ms []*Member
	for i := range 3 {
		m, err := Join(ctx, "m"+strconv.Itoa(i), WithAddr(px.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		ms = append(ms, m)
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		for k := range 100 {
			wg.Go(func() {
				if err := m.Send(ctx, strconv.Itoa(k)); err != nil {
					t.Errorf("%s Send %d: %v", m.Name(), k, err)
				}
			})
		}
	}
	waitFor(t, func() bool { return ms[0].Stats().Sent >= 30 }, "some chats to go through")
	px.blackout.Store(true)
	waitFor(t, func() bool { return r.Stats().Expired >= 3 }, "the relay to expire everyone")
	px.blackout.Store(false)
	wg.Wait()
	for _, m := range ms {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.Send(c, "after"); err != nil {
			t.Errorf("%s: Send after the outage: %v", m.Name(), err)
		}
		cancel()
	}
}

// expireWhileDeaf makes alice deaf to the relay (as if all it sends her were
// lost), has her send text, waits for bob to get it, and has the relay
// expire her. She does not know the relay sequenced her chat; her Send's
// answer comes on the channel once she has rejoined.
func expireWhileDeaf(t *testing.T, r *Relay, alice, bob *Member, text string) <-chan error {
	t.Helper()
	alice.mu.Lock()
	alice.mode.(*memberSession).rejoin(time.Now(), "test: deaf to the relay") // drops what the relay says until welcomed
	alice.mu.Unlock()
	sent := make(chan error, 1)
	go func() { sent <- alice.Send(ctxT(t), text) }()
	expect(t, bob, KindChat, alice.Name(), text)
	r.mu.Lock()
	r.stats.Expired++
	r.proto().remove(r.proto().sessions.byName[alice.Name()], time.Now())
	r.q.flush()
	r.mu.Unlock()
	expect(t, bob, KindLeave, alice.Name(), "")
	return sent
}
