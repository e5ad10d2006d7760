package udpchat

// The Receive queue: a fixed-size ring of messages and gaps.

// rxItem is one entry of the Receive queue: a message or a gap.
type rxItem struct {
	msg Message
	err error
}

// ring is a fixed-size FIFO of rxItems.
type ring struct {
	buf     []rxItem
	head, n int
}

func (r *ring) cap() int { return len(r.buf) }

func (r *ring) push(it rxItem) {
	r.buf[(r.head+r.n)%len(r.buf)] = it
	r.n++
}

func (r *ring) pop() rxItem {
	it := r.buf[r.head]
	r.buf[r.head] = rxItem{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return it
}
