package udpchat

import (
	"errors"
	"log/slog"
	"net"
)

// A sendQueue holds the relay's outgoing datagrams until the next
// sendmmsg, and the history ring of deliver datagrams: the relay numbers
// each message (seq), builds its datagram once in the message's history
// slot, and queues the same bytes for every member. Replies are built in
// a slab that lives until the flush.
//
// Queued datagrams point into history, so a slot may not be reused while
// one is queued: next flushes first. Nothing is copied and nothing
// allocates in steady state.
type sendQueue struct {
	w       datagramWriter
	out     []outMsg // queued for the next flush
	oldest  uint64   // the oldest seq whose history slot out refers to; 0: none
	slab    []byte   // replies queued in out live here until the flush
	history [][]byte // deliver datagrams by seq % len, each with capacity bufferSize
	seq     uint64   // the last seq assigned
	group   udpPath  // broadcast or multicast target; remote invalid in unicast mode
	sealer  *sealer  // nil without a key
	stats   *RelayStats
	logger  *slog.Logger
}

// A datagramWriter sends a batch: a batchConn, or a test's fake.
type datagramWriter interface {
	// write sends out[:n] and reports n, with an error for out[n] if
	// n < len(out).
	write(out []outMsg) (int, error)
}

func newSendQueue(w datagramWriter, history, bufferSize int, s *sealer, stats *RelayStats, logger *slog.Logger) *sendQueue {
	q := &sendQueue{
		w:       w,
		out:     make([]outMsg, 0, writeBatchSize),
		slab:    make([]byte, 0, 64*bufferSize),
		history: make([][]byte, history),
		sealer:  s,
		stats:   stats,
		logger:  logger,
	}
	hist := make([]byte, history*bufferSize)
	for i := range q.history {
		q.history[i] = hist[i*bufferSize : i*bufferSize : (i+1)*bufferSize]
	}
	return q
}

// next assigns the next seq and returns it with an empty buffer in its
// history slot, after room for the seal's header. The caller builds the
// datagram there and passes it to fanout.
func (q *sendQueue) next() (seq uint64, buf []byte) {
	q.seq++
	q.stats.Sequenced++
	if h := uint64(len(q.history)); q.oldest != 0 && q.seq >= q.oldest+h {
		q.flush() // the slot about to be reused is still queued
	}
	p := sealPrefix(q.sealer)
	return q.seq, q.history[q.slot(q.seq)][p:p]
}

func (q *sendQueue) slot(seq uint64) uint64 { return seq % uint64(len(q.history)) }

// oldestSeq returns the oldest seq still in history.
func (q *sendQueue) oldestSeq() uint64 {
	if h := uint64(len(q.history)); q.seq > h {
		return q.seq - h + 1
	}
	return 1
}

// fanout seals b, built in the newest seq's slot by next, keeps it in
// history and queues it for every address in dsts, or once for the group.
func (q *sendQueue) fanout(b []byte, dsts []udpPath) {
	i := q.slot(q.seq)
	if q.sealer != nil {
		// Sealed once: the fan-out and every repair send the same bytes.
		b = q.sealer.sealInPlace(q.history[i][:0], len(b))
	}
	q.history[i] = b
	if q.group.remote.IsValid() {
		q.resend(q.seq, q.group)
		q.stats.Delivered++
		return
	}
	if q.oldest == 0 {
		q.oldest = q.seq
	}
	// The same bytes to every member, a batch at a time.
	n := uint64(len(dsts))
	for len(dsts) > 0 {
		if len(q.out) == cap(q.out) {
			q.flush()
			q.oldest = q.seq
		}
		k := min(len(dsts), cap(q.out)-len(q.out))
		for _, to := range dsts[:k] {
			q.out = append(q.out, outMsg{b, to})
		}
		dsts = dsts[k:]
	}
	q.stats.Delivered += n
}

// resend queues the deliver datagram of seq, which history holds, for dst.
func (q *sendQueue) resend(seq uint64, dst udpPath) {
	if len(q.out) == cap(q.out) {
		q.flush()
	}
	if q.oldest == 0 || seq < q.oldest {
		q.oldest = seq
	}
	q.queue(q.history[q.slot(seq)], dst)
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
	q.oldest = 0
}
