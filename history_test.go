package udpchat

import (
	"encoding/binary"
	"testing"
)

// The history, without sockets: its ring grows with the traffic and keeps
// every seq it still holds in its place, through growth and wrapping, up
// to its size (here not a power of two).
func TestHistoryGrows(t *testing.T) {
	h := newHistory(100, 512)
	for seq := uint64(1); seq <= 1000; seq++ {
		if got := h.next(); got != seq {
			t.Fatalf("next = %d, want %d", got, seq)
		}
		h.slot(seq).b = binary.BigEndian.AppendUint64(h.buf(seq, 8), seq)
		if seq <= 100 && len(h.slots) < int(seq) {
			t.Fatalf("seq %d: %d slots: the ring wrapped before it reached its size", seq, len(h.slots))
		}
		if len(h.slots) > 100 {
			t.Fatalf("%d slots, more than the history's 100", len(h.slots))
		}
		for s := h.oldest(); s <= seq; s++ {
			if got := binary.BigEndian.Uint64(h.slot(s).b); got != s {
				t.Fatalf("after seq %d: slot of %d holds %d", seq, s, got)
			}
		}
	}
	if h.oldest() != 901 {
		t.Fatalf("oldest = %d, want 901", h.oldest())
	}
}

// A slot's buffer is sized to its first datagram, grows to the full size
// the first time a datagram outgrows it, and is reused from then on.
func TestHistorySlotBuffers(t *testing.T) {
	h := newHistory(4, 1000)
	seq := h.next()
	if b := h.buf(seq, 10); cap(b) != minSlotBuf {
		t.Fatalf("first buffer of %d bytes, want %d", cap(b), minSlotBuf)
	}
	if b := h.buf(seq, 200); cap(b) != 1000 {
		t.Fatalf("outgrown buffer of %d bytes, want the full 1000", cap(b))
	}
	before := &h.buf(seq, 1)[:1][0]
	if allocs := testing.AllocsPerRun(100, func() { h.buf(seq, 999) }); allocs != 0 {
		t.Fatalf("a full slot allocates %v times", allocs)
	}
	if &h.buf(seq, 500)[:1][0] != before {
		t.Fatal("a full slot's buffer was replaced")
	}
}
