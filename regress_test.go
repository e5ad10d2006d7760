package udpchat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sendSpoofed sends payload to the loopback address dst from 127.0.0.1 with
// a forged UDP source port, through a raw socket. It skips the test where
// raw sockets are not allowed.
func sendSpoofed(t testing.TB, srcPort int, dst *net.UDPAddr, payload []byte) {
	t.Helper()
	if !dst.IP.IsLoopback() {
		t.Fatal("spoofed datagrams go to loopback only")
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_UDP)
	if err != nil {
		t.Skipf("raw socket: %v", err)
	}
	defer syscall.Close(fd)
	pkt := make([]byte, 8+len(payload)) // UDP header; checksum 0 means none
	binary.BigEndian.PutUint16(pkt[0:], uint16(srcPort))
	binary.BigEndian.PutUint16(pkt[2:], uint16(dst.Port))
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)))
	copy(pkt[8:], payload)
	sa := &syscall.SockaddrInet4{}
	copy(sa.Addr[:], dst.IP.To4())
	if err := syscall.Sendto(fd, pkt, 0, sa); err != nil {
		t.Fatalf("raw sendto: %v", err)
	}
}

// A datagram from source port 0 cannot be answered; sendmmsg's error on
// the answer once made flush retry it forever with the relay's lock held.
func TestSourcePortZero(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice")
	sendSpoofed(t, 0, r.addr, appendHeartbeat(nil, 12345, 1))
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
		sendSpoofed(t, port, r.addr, appendHeartbeat(nil, uint64(1000+i), 1))
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
	r := startRelay(t, WithHistory(128))
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
	seq, oldest := r.seq, r.oldest()
	bob.mu.Lock()
	nack := appendU64Pair(nil, tNack, bob.session, oldest, oldest)
	bob.mu.Unlock()
	now := time.Now()
	r.handle(nack, r.byName["bob"].dst, now)
	r.handle(appendChat(nil, w.session, n+1, "short"), r.byName["raw"].dst, now)
	r.flush()
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
	from := func(i int) *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1 + i} }
	for i := range 3 {
		r.handle(appendJoin(nil, uint64(i+1), 0, uint64(i+1), 1, fmt.Sprint("m", i)), from(i), now)
		sess = append(sess, r.byName[fmt.Sprint("m", i)].session)
	}
	r.flush()
	for i := range 3 {
		for ms := uint64(2); ms <= sendWindow; ms++ {
			r.handle(appendChat(nil, sess[i], ms, "x"), from(i), now)
		}
	}
	r.flush()
	sent := r.stats.Sequenced
	for i := range 3 {
		r.handle(appendChat(nil, sess[i], 1, "x"), from(i), now) // releases 64 each
	}
	seen := map[uint64]bool{}
	for _, m := range r.out {
		var p packet
		if decode(m.Buffers[0], &p) == nil && p.typ == tDeliver {
			if seen[p.seq] {
				t.Fatalf("seq %d queued twice: an earlier queued datagram was overwritten", p.seq)
			}
			seen[p.seq] = true
		}
	}
	if r.stats.Sequenced-sent != 3*sendWindow {
		t.Errorf("sequenced %d, want %d", r.stats.Sequenced-sent, 3*sendWindow)
	}
	r.flush()
}

// GONE for a range the member partly holds: the gap ends before the first
// held message, and the held ones are delivered.
func TestGoneKeepsHeldMessages(t *testing.T) {
	r := startRelay(t)
	bob := join(t, r, "bob")
	expect(t, bob, KindJoin, "bob", "")
	bob.mu.Lock()
	inc, n := bob.inc, bob.next
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
		return bob.lastSeq > bob.next
	}, "bob to learn of messages he has no room for")
	bob.mu.Lock()
	d := bob.tick(time.Now())
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

	alice.mu.Lock()
	alice.rejoin(time.Now(), "test: deaf to the relay") // drops what the relay says until welcomed
	alice.mu.Unlock()
	sent := make(chan error, 1)
	go func() { sent <- alice.Send(ctxT(t), "once") }()
	expect(t, bob, KindChat, "alice", "once")
	r.mu.Lock()
	r.stats.Expired++
	r.remove(r.byName["alice"], time.Now())
	r.flush()
	r.mu.Unlock()
	expect(t, bob, KindLeave, "alice", "")
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
