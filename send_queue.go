package udpchat

import (
	"errors"
	"log/slog"
	"net"
)

// A sendQueue holds the relay's outgoing datagrams until the next
// sendmmsg. Deliver datagrams are built once, in a room's history, and the
// same bytes are queued for every member; replies are built in a slab that
// lives until the flush. Nothing is copied and nothing allocates in steady
// state.
//
// Queued deliver datagrams point into their history, so a history slot may
// not be reused while one is queued: next flushes first.
type sendQueue struct {
	w      datagramWriter
	out    []outMsg   // queued for the next flush
	pinned []*history // histories whose slots out refers to
	slab   []byte     // replies queued in out live here until the flush
	sealer *sealer    // nil without a key
	stats  *RelayStats
	logger *slog.Logger
	// beforeWrite, if set, is called before a flush writes: the relay
	// shows its counters, so that whoever has a datagram finds it counted.
	beforeWrite func()
}

// A datagramWriter sends a batch: a batchConn, or a test's fake.
type datagramWriter interface {
	// write sends out[:n] and reports n, with an error for out[n] if
	// n < len(out).
	write(out []outMsg) (int, error)
}

func newSendQueue(w datagramWriter, bufferSize int, s *sealer, stats *RelayStats, logger *slog.Logger) *sendQueue {
	return &sendQueue{
		w:      w,
		out:    make([]outMsg, 0, writeBatchSize),
		slab:   make([]byte, 0, 64*bufferSize),
		sealer: s,
		stats:  stats,
		logger: logger,
	}
}

// next assigns h's next seq and returns it with an empty buffer in its
// slot, with room for n bytes and the seal, after room for the seal's
// header. The caller builds the datagram there and passes it to fanout.
func (q *sendQueue) next(h *history, n int) (seq uint64, buf []byte) {
	seq = h.next()
	q.stats.Sequenced++
	if h.queued != 0 && seq >= h.queued+uint64(len(h.slots)) {
		q.flush() // the slot about to be reused is still queued
	}
	p := sealPrefix(q.sealer)
	over := 0
	if q.sealer != nil {
		over = sealOverhead
	}
	return seq, h.buf(seq, n+over)[p:p]
}

// pin records that out refers to h's slot of seq.
func (q *sendQueue) pin(h *history, seq uint64) {
	if h.queued == 0 {
		q.pinned = append(q.pinned, h)
		h.queued = seq
	}
	h.queued = min(h.queued, seq)
}

// fanout seals b, built in h's newest slot by next, keeps it there and
// queues it for every address in dsts, or once for group if it is valid.
func (q *sendQueue) fanout(h *history, b []byte, dsts []udpPath, group udpPath) {
	s := h.slot(h.seq)
	s.b = q.sealAt(s.b, b)
	if group.remote.IsValid() {
		q.resend(h, h.seq, s.b, group)
		q.stats.Delivered++
		return
	}
	q.queueAll(s.b, dsts)
	q.pin(h, h.seq) // after the queueing, which may have flushed
	q.stats.Delivered += uint64(len(dsts))
}

// fanoutSelected seals b, built in h's newest slot by next, keeps it there
// with sel, and queues it for the members sel picks; each of the others is
// sent a SKIP of its own. members and dsts are a room's, side by side; inc
// is the room's incarnation.
func (q *sendQueue) fanoutSelected(h *history, inc uint64, b []byte, members []*relayMember, dsts []udpPath, sel selection) {
	s := h.slot(h.seq)
	s.b, s.sel = q.sealAt(s.b, b), sel
	for i, m := range members {
		if s.sel.gets(m) {
			q.queue(s.b, dsts[i])
		} else {
			q.skip(inc, h.seq, m)
		}
	}
	q.pin(h, h.seq) // after the queueing, which may have flushed
	q.stats.Delivered += uint64(len(dsts))
}

// skip queues m's SKIP of seq, in the room of incarnation inc.
func (q *sendQueue) skip(inc, seq uint64, m *relayMember) {
	q.reply(m.path, appendSkip(q.replyBuf(skipLen), inc, seq, m.session))
}

// sealAt seals b, which lies in slot buffer buf after sealPrefix bytes,
// and returns it as it goes out.
func (q *sendQueue) sealAt(buf, b []byte) []byte {
	if q.sealer == nil {
		return b
	}
	return q.sealer.sealInPlace(buf[:0], len(b))
}

// queueAll queues b for every address in dsts, a batch at a time.
func (q *sendQueue) queueAll(b []byte, dsts []udpPath) {
	for len(dsts) > 0 {
		if len(q.out) == cap(q.out) {
			q.flush()
		}
		k := min(len(dsts), cap(q.out)-len(q.out))
		for _, to := range dsts[:k] {
			q.out = append(q.out, outMsg{b, to})
		}
		dsts = dsts[k:]
	}
}

// resend queues b, which h's slot of seq holds, for dst.
func (q *sendQueue) resend(h *history, seq uint64, b []byte, dst udpPath) {
	q.queue(b, dst)
	q.pin(h, seq)
}

// replyBuf returns an empty buffer with room for n bytes in the slab,
// after room for the seal's header. It flushes first when the slab or the
// batch is full, so that the reply that follows never has to.
func (q *sendQueue) replyBuf(n int) []byte {
	over := 0
	if q.sealer != nil {
		over = sealOverhead
	}
	if cap(q.slab)-len(q.slab) < n+over || len(q.out) == cap(q.out) {
		q.flush()
	}
	start := len(q.slab) + sealPrefix(q.sealer)
	return q.slab[start:start:cap(q.slab)]
}

// reply seals b, which the last replyBuf returned, where it lies, and
// queues it for dst.
func (q *sendQueue) reply(dst udpPath, b []byte) {
	if q.sealer != nil {
		b = q.sealer.sealInPlace(q.slab[len(q.slab):len(q.slab):cap(q.slab)], len(b))
	}
	q.slab = q.slab[:len(q.slab)+len(b)]
	q.queue(b, dst)
}

// queue adds one datagram to the batch, flushing when it is full.
func (q *sendQueue) queue(b []byte, dst udpPath) {
	if len(q.out) == cap(q.out) {
		q.flush()
	}
	q.out = append(q.out, outMsg{b, dst})
}

// flush sends every queued datagram. A datagram the kernel refuses is
// counted and skipped; the rest still go.
func (q *sendQueue) flush() {
	ms := q.out
	if len(ms) > 0 && q.beforeWrite != nil {
		q.beforeWrite()
	}
	for len(ms) > 0 {
		n, err := q.w.write(ms)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			// sendmmsg fails only on the first datagram of the batch (n is 0
			// or -1 then): count it and go on with the rest.
			q.stats.DroppedSendErrors++
			q.logger.Debug("udpchat relay write", "err", err)
			n = min(max(n, 0)+1, len(ms))
		}
		ms = ms[n:]
	}
	clear(q.out)
	q.out = q.out[:0]
	q.slab = q.slab[:0]
	for i, h := range q.pinned {
		h.queued, q.pinned[i] = 0, nil
	}
	q.pinned = q.pinned[:0]
}
