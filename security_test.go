package udpchat

import (
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

// A join forged with a victim's address gets the victim one cookie, smaller
// than the forged join, and nothing else: the relay keeps no state for it
// and sends the group's traffic nowhere.
func TestForgedJoinDoesNotAmplify(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice")
	expect(t, alice, KindJoin, "alice", "")
	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	forged := appendJoin(nil, 0, 99, 0, 5, 1, 0, &[cookieLen]byte{}, "mallory", "")
	sendSpoofed(t, victim.LocalAddr().(*net.UDPAddr).Port, r.addr, forged)
	// A guessed cookie does no better.
	sendSpoofed(t, victim.LocalAddr().(*net.UDPAddr).Port, r.addr, appendJoin(nil, 0, 99, 0, 5, 1, 0, &[cookieLen]byte{1}, "mallory", ""))
	for range 20 {
		if err := alice.Send(ctxT(t), strings.Repeat("x", 900)); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, alice, KindChat, "alice", strings.Repeat("x", 900)) // the relay has handled the forged joins
	got, n := 0, 0
	buf := make([]byte, 65536)
	for {
		victim.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		k, err := victim.Read(buf)
		if err != nil {
			break
		}
		var p packet
		if decode(buf[:k], &p) != nil || p.typ != tCookie {
			t.Errorf("the victim received a datagram of type %d", p.typ)
		}
		got += k
		n++
	}
	if got > 2*len(forged) || n != 2 {
		t.Errorf("two forged joins of %d bytes got the victim %d datagrams, %d bytes", len(forged), n, got)
	}
	if names(r.Members()) != "alice" {
		t.Errorf("members after forged joins: %s", names(r.Members()))
	}
}

// 10,000 random datagrams (many with a valid header) sprayed at the relay
// while two members chat: nothing bogus is delivered, the chat goes on, and
// the relay sends the sprayer no more bytes than it received.
func TestSprayRandomDatagrams(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	sprayer := dialRaw(t, r.Addr())
	rng := rand.New(rand.NewPCG(4, 2))
	sent := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10000 {
			b := make([]byte, 1+rng.IntN(200))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			if i%2 == 0 && len(b) >= headerLen { // a valid header, a random type and body
				copy(b, appendHeader(nil, byte(rng.IntN(16)), rng.Uint64()))
			}
			sprayer.c.Write(b)
			sent += len(b)
		}
	}()
	for i := range 50 {
		if err := alice.Send(ctxT(t), strings.Repeat("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if err := alice.Send(ctxT(t), "last"); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		expect(t, bob, KindChat, "alice", strings.Repeat("a", i))
	}
	expect(t, bob, KindChat, "alice", "last")
	got := 0
	for b := sprayer.read(100 * time.Millisecond); b != nil; b = sprayer.read(100 * time.Millisecond) {
		got += len(b)
	}
	if got > sent {
		t.Errorf("the relay sent the sprayer %d bytes for %d", got, sent)
	}
	st := r.Stats()
	t.Logf("sprayed %d bytes, got %d back; relay %+v", sent, got, st)
	if st.Members != 2 || names(r.Members()) != "alice,bob" {
		t.Errorf("the spray changed the group: %s", names(r.Members()))
	}
}

// A client flooding 10,000 chats a second is cut to its rate limit, while
// another member's messages all get through. The flooder speaks the
// protocol correctly (joined, its own session, in-order member seqs) but
// never slows down or resends.
func TestFloodIsCutToRate(t *testing.T) {
	const rate = 100
	r := startRelay(t, WithRateLimit(rate, 0))
	alice := join(t, r, "alice")
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	flooder := dialRaw(t, r.Addr())
	w := flooder.joinRaw("flood")
	expect(t, bob, KindJoin, "flood", "")

	start := time.Now()
	done := make(chan int)
	go func() {
		mseq := uint64(1)
		for range 200 { // 2 seconds of 100 datagrams every 10ms
			for range 100 {
				flooder.c.Write(appendChat(nil, w.session, mseq, seqAt{}, "", "spam"))
				mseq++
			}
			time.Sleep(10 * time.Millisecond) // pacing the flood, not synchronising
		}
		done <- int(mseq - 1)
	}()
	for i := range 50 {
		if err := alice.Send(ctxT(t), strings.Repeat("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	sent := <-done
	elapsed := time.Since(start)
	if err := alice.Send(ctxT(t), "last"); err != nil {
		t.Fatal(err)
	}
	spam, mine := 0, 0
	for mine < 51 {
		msg := recv(t, bob)
		switch msg.From {
		case "flood":
			spam++
		case "alice":
			mine++
		}
	}
	// The bucket holds two seconds' worth and refills at the rate.
	limit := int(2*rate + elapsed.Seconds()*rate)
	t.Logf("flooder sent %d chats in %v; %d delivered (limit %d); relay %+v", sent, elapsed.Round(time.Millisecond), spam, limit, r.Stats())
	if spam > limit {
		t.Errorf("%d of the flooder's chats were delivered, more than its rate allows (%d)", spam, limit)
	}
	if r.Stats().DroppedRateLimited == 0 {
		t.Error("no chat was counted as rate-limited")
	}
}

func TestNameRule(t *testing.T) {
	r := startRelay(t, WithNameRule(func(name string) error {
		if strings.HasPrefix(strings.ToLower(name), "admin") {
			return errors.New("reserved")
		}
		return nil
	}))
	if _, err := Join(ctxT(t), "Administrator", WithAddr(r.Addr().String())); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Join with a name the rule refuses: %v, want ErrInvalidName", err)
	}
	join(t, r, "alice")
}

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
	port := alice.conn.LocalAddr().(*net.UDPAddr).Port
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
