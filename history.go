package udpchat

// A history is one room's numbered deliver datagrams: the relay gives each
// message the room's next seq and builds its datagram once, in the seq's
// slot, where the fan-out and every repair send it from. It keeps the
// newest max of them.
//
// It grows with the room's traffic, so that a quiet room costs little: the
// ring starts with a few slots and doubles (before it first wraps) up to
// max, and a slot's buffer is sized to its first datagram, then to the
// full buffer size the first time a datagram outgrows it. From then on
// slots are reused: a busy room allocates nothing per message.
//
// The send queue may still hold a slot's bytes (queued, below); it flushes
// before next reuses a slot it holds.
type history struct {
	seq    uint64 // the last seq assigned
	slots  []slot // by seq % len(slots)
	max    int    // slots at most (WithHistory)
	full   int    // the largest buffer a slot needs
	queued uint64 // the oldest seq the send queue holds bytes of; 0: none
}

// A slot holds one message's datagram and, for a message that not every
// member of the room gets, who gets it: the others are sent a SKIP, made
// for each of them.
type slot struct {
	b   []byte    // the DELIVER, sealed with a key
	sel selection // who gets b
}

// minSlots and minSlotBuf are where a history's ring and a slot's buffer
// start.
const (
	minSlots   = 4
	minSlotBuf = 128
)

func newHistory(max, full int) *history { return &history{max: max, full: full} }

// next assigns the next seq, growing the ring while it has not wrapped.
func (h *history) next() uint64 {
	h.seq++
	if n := len(h.slots); h.seq > uint64(n) && n < h.max {
		// Seqs 1 to n fill the ring without wrapping; only seq n sits at
		// index 0, which in the larger ring is n.
		slots := make([]slot, min(max(2*n, minSlots), h.max))
		if n > 0 {
			copy(slots[1:n], h.slots[1:n])
			slots[n] = h.slots[0]
		}
		h.slots = slots
	}
	return h.seq
}

func (h *history) slot(seq uint64) *slot { return &h.slots[seq%uint64(len(h.slots))] }

// buf returns the empty buffer of seq's slot, with room for n bytes. The
// slot's earlier datagram is forgotten.
func (h *history) buf(seq uint64, n int) []byte {
	s := h.slot(seq)
	if cap(s.b) < n {
		size := max(n, minSlotBuf)
		if cap(s.b) > 0 {
			// It has outgrown its first size: grow once, for good.
			size = max(n, h.full)
		}
		s.b = make([]byte, 0, size)
	}
	*s = slot{b: s.b[:0]}
	return s.b
}

// oldest returns the oldest seq still held.
func (h *history) oldest() uint64 {
	if n := uint64(len(h.slots)); h.seq > n {
		return h.seq - n + 1
	}
	return 1
}

// gets reports whether m is to be sent the DELIVER of seq, rather than a
// SKIP.
func (h *history) gets(seq uint64, m *relayMember) bool { return h.slot(seq).sel.gets(m) }
