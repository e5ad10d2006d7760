package udpchat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The send queue, without sockets: a fake writer records what each flush
// sends, copied at the moment it is sent.

type sent struct {
	b  []byte
	to udpPath
}

type fakeWriter struct {
	sent    []sent
	flushes int
	fail    func(i int) error // error for the i-th datagram ever written; nil: none
	n       int
}

func (w *fakeWriter) write(out []outMsg) (int, error) {
	w.flushes++
	for i, o := range out {
		if w.fail != nil {
			if err := w.fail(w.n); err != nil {
				w.n++
				return i, err
			}
		}
		w.n++
		w.sent = append(w.sent, sent{bytes.Clone(o.b), o.to})
	}
	return len(out), nil
}

func testQueue(w datagramWriter, history int, s *sealer) (*sendQueue, *history, *RelayStats) {
	var st RelayStats
	return newSendQueue(w, 256, s, &st, slog.New(slog.DiscardHandler)), newHistory(history, 256), &st
}

func addrs(n int) []udpPath {
	a := make([]udpPath, n)
	for i := range a {
		a[i] = udpPath{remote: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(10000+i))}
	}
	return a
}

// seqMsg builds a datagram that names its seq, in the slot next gave.
func seqMsg(q *sendQueue, h *history) []byte {
	seq, buf := q.next(h, 8)
	return binary.BigEndian.AppendUint64(buf, seq)
}

// Every member gets every message's bytes as they were built, even when
// more messages are sequenced than history holds before a flush: the
// queue flushes before a queued slot is reused.
func TestSendQueueNeverOverwritesQueued(t *testing.T) {
	for _, tt := range []struct{ history, members, msgs int }{
		{8, 1, 20},    // wraps history many times within one batch
		{8, 3, 50},    // several members
		{128, 300, 5}, // a fan-out larger than a batch
	} {
		t.Run(fmt.Sprintf("history %d members %d msgs %d", tt.history, tt.members, tt.msgs), func(t *testing.T) {
			w := &fakeWriter{}
			q, h, st := testQueue(w, tt.history, nil)
			dsts := addrs(tt.members)
			for range tt.msgs {
				q.fanout(h, seqMsg(q, h), dsts, udpPath{})
			}
			q.flush()
			if len(w.sent) != tt.members*tt.msgs {
				t.Fatalf("sent %d datagrams, want %d", len(w.sent), tt.members*tt.msgs)
			}
			for i, s := range w.sent {
				want := uint64(i/tt.members + 1)
				if got := binary.BigEndian.Uint64(s.b); got != want || s.to != dsts[i%tt.members] {
					t.Fatalf("datagram %d: seq %d to %v, want seq %d to %v", i, got, s.to, want, dsts[i%tt.members])
				}
			}
			if st.Sequenced != uint64(tt.msgs) || st.Delivered != uint64(tt.members*tt.msgs) {
				t.Fatalf("stats: sequenced %d delivered %d", st.Sequenced, st.Delivered)
			}
		})
	}
}

// A repair of an old seq pins its slot too.
func TestSendQueueResendPinsSlot(t *testing.T) {
	w := &fakeWriter{}
	q, h, _ := testQueue(w, 8, nil)
	for range 8 {
		q.fanout(h, seqMsg(q, h), nil, udpPath{})
	}
	if got := h.oldest(); got != 1 {
		t.Fatalf("oldest = %d, want 1", got)
	}
	to := addrs(1)[0]
	q.resend(h, 1, h.slot(1).b, to)
	q.fanout(h, seqMsg(q, h), nil, udpPath{}) // seq 9 reuses seq 1's slot
	if h.oldest() != 2 {
		t.Fatalf("oldest = %d, want 2", h.oldest())
	}
	q.flush()
	if len(w.sent) != 1 || binary.BigEndian.Uint64(w.sent[0].b) != 1 {
		t.Fatalf("the repair of seq 1 sent %v", w.sent)
	}
}

// In broadcast mode each message goes once, to the group.
func TestSendQueueGroup(t *testing.T) {
	w := &fakeWriter{}
	q, h, st := testQueue(w, 8, nil)
	group := udpPath{remote: netip.MustParseAddrPort("127.255.255.255:2411")}
	for range 3 {
		q.fanout(h, seqMsg(q, h), addrs(5), group)
	}
	q.flush()
	if len(w.sent) != 3 || st.Delivered != 3 {
		t.Fatalf("sent %d, delivered %d; want 3 each", len(w.sent), st.Delivered)
	}
	for _, s := range w.sent {
		if s.to != group {
			t.Fatalf("sent to %v, not the group", s.to)
		}
	}
}

// A datagram the kernel refuses is counted and skipped; the rest go. A
// closed socket ends the flush, and the queue is empty after it.
func TestSendQueueErrors(t *testing.T) {
	w := &fakeWriter{fail: func(i int) error {
		if i == 1 {
			return syscall.EPERM
		}
		return nil
	}}
	q, h, st := testQueue(w, 8, nil)
	q.fanout(h, seqMsg(q, h), addrs(4), udpPath{})
	q.flush()
	if len(w.sent) != 3 || st.DroppedSendErrors != 1 {
		t.Fatalf("sent %d, send errors %d; want 3 and 1", len(w.sent), st.DroppedSendErrors)
	}
	if w.sent[1].to != addrs(4)[2] {
		t.Fatalf("after the refused one went %v, want the next member", w.sent[1].to)
	}

	closed := &fakeWriter{fail: func(int) error { return fmt.Errorf("write: %w", net.ErrClosed) }}
	q, h, st = testQueue(closed, 8, nil)
	q.fanout(h, seqMsg(q, h), addrs(4), udpPath{})
	q.flush()
	if closed.flushes != 1 || st.DroppedSendErrors != 0 || len(q.out) != 0 {
		t.Fatalf("closed socket: %d writes, %d errors, %d still queued", closed.flushes, st.DroppedSendErrors, len(q.out))
	}
}

// Replies share the slab until the flush; a full slab or batch flushes
// before the reply is built, never after.
func TestSendQueueReplies(t *testing.T) {
	w := &fakeWriter{}
	q, _, _ := testQueue(w, 8, nil)
	to := addrs(1)[0]
	// Replies large enough that the slab fills at half a batch.
	size := cap(q.slab) / (writeBatchSize / 2)
	n := 0
	for cap(q.slab)-len(q.slab) >= size {
		b := append(q.replyBuf(size), bytes.Repeat([]byte{byte(n)}, size)...)
		q.reply(to, b)
		n++
	}
	if w.flushes != 0 {
		t.Fatal("flushed before the slab was full")
	}
	q.reply(to, append(q.replyBuf(size), bytes.Repeat([]byte{byte(n)}, size)...))
	n++
	if w.flushes != 1 {
		t.Fatalf("%d flushes when the slab filled, want 1", w.flushes)
	}
	q.flush()
	if len(w.sent) != n {
		t.Fatalf("sent %d replies, want %d", len(w.sent), n)
	}
	for i, s := range w.sent {
		if !bytes.Equal(s.b, bytes.Repeat([]byte{byte(i)}, size)) {
			t.Fatalf("reply %d was overwritten", i)
		}
	}
}

// With a key every datagram, fan-out and reply, is sealed once and opens
// with the group's key.
func TestSendQueueSeals(t *testing.T) {
	ring, err := newKeyring([][]byte{bytes.Repeat([]byte{1}, 16)})
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWriter{}
	q, h, _ := testQueue(w, 8, newSealer(ring))
	q.fanout(h, seqMsg(q, h), addrs(2), udpPath{})
	q.reply(addrs(1)[0], append(q.replyBuf(5), "hello"...))
	q.resend(h, 1, h.slot(1).b, addrs(1)[0])
	q.flush()
	if len(w.sent) != 4 {
		t.Fatalf("sent %d, want 4", len(w.sent))
	}
	want := [][]byte{binary.BigEndian.AppendUint64(nil, 1), binary.BigEndian.AppendUint64(nil, 1), []byte("hello"), binary.BigEndian.AppendUint64(nil, 1)}
	for i, s := range w.sent {
		plain, _, _, err := ring.open(make([]byte, 256), s.b)
		if err != nil || !bytes.Equal(plain, want[i]) {
			t.Fatalf("datagram %d: %q, %v; want %q", i, plain, err, want[i])
		}
	}
	if !bytes.Equal(w.sent[0].b, w.sent[3].b) {
		t.Fatal("a repair was sealed anew: it must send the fan-out's bytes")
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
		raw.send(appendChat(nil, w.session, uint64(i), seqAt{}, "", fmt.Sprintf("%03d%s", i, long)))
		for raw.readType(tDeliver).mseq != uint64(i) {
		}
	}
	for range n {
		recv(t, bob)
	}
	// The NACK and the chat in one batch, as Serve handles a ReadBatch.
	r.mu.Lock()
	h := r.proto().byRoom[""].hist
	seq, oldest := h.seq, h.oldest()
	bob.mu.Lock()
	nack := appendU64Pair(nil, tNack, bob.mode.(*memberSession).session, oldest, oldest)
	bob.mu.Unlock()
	now := time.Now()
	r.handleAt(nack, r.proto().main().byName["bob"].path.remote, now)
	r.handleAt(appendChat(nil, w.session, n+1, seqAt{}, "", "short"), r.proto().main().byName["raw"].path.remote, now)
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
		r.handleAt(cookieJoin(r, from(i), uint64(i+1), uint64(i+1), fmt.Sprint("m", i)), from(i), now)
		sess = append(sess, r.proto().main().byName[fmt.Sprint("m", i)].session)
	}
	r.q.flush()
	for i := range 3 {
		for ms := uint64(2); ms <= sendWindow; ms++ {
			r.handleAt(appendChat(nil, sess[i], ms, seqAt{}, "", "x"), from(i), now)
		}
	}
	r.q.flush()
	sent := r.stats.Sequenced
	for i := range 3 {
		r.handleAt(appendChat(nil, sess[i], 1, seqAt{}, "", "x"), from(i), now) // releases 64 each
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

// A fan-out that fills the batch flushes in the middle: the datagrams it
// queues after the flush must still hold their slot against reuse.
func TestSendQueuePinsAfterMidFanoutFlush(t *testing.T) {
	w := &fakeWriter{}
	q, h, _ := testQueue(w, 128, nil)
	all := addrs(writeBatchSize + 2)
	big, one := all[:writeBatchSize], all[writeBatchSize:writeBatchSize+1]
	q.fanout(h, seqMsg(q, h), big, udpPath{}) // the batch is full
	q.fanout(h, seqMsg(q, h), one, udpPath{}) // seq 2 flushes, then is queued
	for range 128 {
		q.fanout(h, seqMsg(q, h), one, udpPath{}) // seq 130 takes seq 2's slot
	}
	q.flush()
	for _, s := range w.sent {
		if s.to == one[0] {
			if got := binary.BigEndian.Uint64(s.b); got != 2 {
				t.Fatalf("the first datagram to the member names seq %d, want 2", got)
			}
			return
		}
	}
	t.Fatal("nothing sent to the member")
}
