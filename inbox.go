package udpchat

import "time"

// An inbox puts what the relay delivers into its order for Receive: it
// holds messages that arrive early, drops duplicates and chats sequenced
// twice, reports what is lost as gaps, and says which missing seqs to ask
// for (NACK) and when. The member's m.mu guards it.
type inbox struct {
	next    uint64              // seq Receive gets next
	lastSeq uint64              // highest seq known to exist
	ackFrom uint64              // our own delivers at or after this seq are of this session
	early   map[uint64]earlyMsg // arrived ahead of next
	origins map[string]origin   // per sender, the newest chat taken
	forget  uint64              // a sender silent for this many seqs may be forgotten
	skipped uint64              // seqs passed since the last message queued that were not for us
	queue   ring                // for Receive
	ready   chan struct{}       // a message was queued for Receive
	pending []rxItem            // link events and a restart's losses, queued as soon as there is room

	nackAt   time.Time // when missing seqs may be asked for again
	nackHigh uint64    // highest seq asked for so far
}

// earlyMsg is a message that arrived ahead of its turn, with its origin.
type earlyMsg struct {
	msg         Message
	epoch, mseq uint64
}

// origin identifies a sender's chat across sessions and relays; seq is
// where it was taken, to forget senders long silent.
type origin struct{ epoch, mseq, seq uint64 }

func newInbox(queueSize int) inbox {
	return inbox{
		early:   make(map[uint64]earlyMsg),
		origins: make(map[string]origin),
		queue:   ring{buf: make([]rxItem, queueSize)},
		ready:   make(chan struct{}, 1),
	}
}

// newRelay drops what arrived early from a relay that is gone: a new one
// numbers anew, and what the old one took with it comes back from its
// senders, who keep their chats until every member has them. Senders keep
// them only until then, by the old relay's count, stable: if the inbox was
// further behind (history had dropped what it lacked), those are lost. It
// returns how many.
func (in *inbox) newRelay(stable uint64) (lost uint64) {
	clear(in.early)
	return in.lost(stable)
}

// start has the inbox take the stream from seq on (a first join, or a new
// relay that numbers anew).
func (in *inbox) start(seq uint64) {
	in.next, in.lastSeq, in.nackHigh, in.skipped = seq, seq-1, seq-1, 0
}

// lost records that the seqs from next through last are gone for good (a
// relay restart lost them); Receive gets a gap for them in their place. It
// returns how many were lost.
func (in *inbox) lost(last uint64) uint64 {
	if in.next > last {
		return 0
	}
	in.note(rxItem{err: &GapError{First: in.next, Last: last}})
	return last - in.next + 1
}

// maxPending bounds what waits for room in the Receive queue besides
// messages: a few items per relay restart, each a round trip apart.
const maxPending = 1024

// note queues it for Receive after everything queued so far and before
// any message taken from now on. It reports false if too many wait.
func (in *inbox) note(it rxItem) bool {
	if len(in.pending) >= maxPending {
		return false
	}
	in.pending = append(in.pending, it)
	in.flush()
	return true
}

// flush moves what waits in pending into the queue while it has room, and
// reports whether nothing waits any more.
func (in *inbox) flush() bool {
	n := 0
	for n < len(in.pending) && in.queue.n < in.queue.cap() {
		in.push(in.pending[n])
		n++
	}
	if n > 0 {
		clear(in.pending[:n])
		in.pending = in.pending[n:]
		if len(in.pending) == 0 {
			in.pending = nil
		}
	}
	return len(in.pending) == 0
}

// saw records that seq exists.
func (in *inbox) saw(seq uint64) { in.lastSeq = max(in.lastSeq, seq) }

// missing reports whether a seq Receive is waiting for has not arrived.
func (in *inbox) missing() bool { return in.lastSeq >= in.next }

// offer takes a delivered seq. It reports whether it is a duplicate, and
// whether to hold it (with hold): one too far ahead for the queue's room
// is neither, and is asked for again when there is room.
func (in *inbox) offer(seq uint64) (dup, keep bool) {
	in.saw(seq)
	if _, held := in.early[seq]; held || seq < in.next {
		return true, false
	}
	return false, seq-in.next < uint64(in.queue.cap())
}

// skip takes the relay's word that seq is a private message between other
// members: its turn passes with nothing to receive. It reports whether
// seq is a duplicate (taken, or held, already).
func (in *inbox) skip(seq uint64) (dup bool) {
	dup, keep := in.offer(seq)
	if keep {
		in.early[seq] = earlyMsg{msg: Message{Seq: seq}}
	}
	return dup
}

// hold keeps e until its turn.
func (in *inbox) hold(e earlyMsg) { in.early[e.msg.Seq] = e }

// advance moves messages that are next in order into the queue while it
// has room, and tells r of the join and leave events among them. It returns
// how many chats it dropped as copies sequenced twice.
func (in *inbox) advance(r *roster) (dups uint64) {
	if !in.flush() {
		return 0
	}
	for in.queue.n < in.queue.cap() {
		e, ok := in.early[in.next]
		if !ok {
			break
		}
		delete(in.early, in.next)
		in.next++
		switch {
		case e.msg.Kind == 0: // a SKIP: not a message for us
			in.skipped++
			continue
		case e.msg.Kind != KindChat && e.msg.Kind != KindPrivate:
			back := e.msg.Kind == KindJoin && e.mseq == joinBack && r.carries(e.msg.From)
			r.setPresent(e.msg.From, e.msg.Kind == KindJoin, e.msg.Seq)
			if back {
				// Listed since before the relay restarted: no news.
				in.skipped++
				continue
			}
		case !in.firstCopy(e):
			dups++
			in.skipped++
			continue
		}
		e.msg.Skipped, in.skipped = in.skipped, 0
		in.push(rxItem{msg: e.msg})
	}
	return dups
}

// firstCopy reports whether e is a sender's chat not taken before. A
// sender's chats are sequenced in its own order, so an older member seq
// from the same epoch is a copy sequenced again.
func (in *inbox) firstCopy(e earlyMsg) bool {
	o, ok := in.origins[e.msg.From]
	if ok && o.epoch == e.epoch && e.mseq <= o.mseq {
		return false
	}
	if !ok && len(in.origins) >= maxOrigins {
		// Forget senders not heard from in a long while: no relay or
		// sender still holds their chats to send them again.
		for name, o := range in.origins {
			if o.seq+in.forget < e.msg.Seq {
				delete(in.origins, name)
			}
		}
	}
	in.origins[e.msg.From] = origin{e.epoch, e.mseq, e.msg.Seq}
	return true
}

// nack fills ranges with the missing seqs between next and lastSeq, as far
// as the queue has room for them, and returns how many it filled. Seqs
// never asked for are asked for at once; with all set, it asks again for
// every missing seq, which the member does every nackInterval until they
// arrive.
func (in *inbox) nack(now time.Time, all bool, ranges [][2]uint64) int {
	room := uint64(in.queue.cap() - in.queue.n)
	if room == 0 {
		// Receive makes room and asks again; tick need not spin meanwhile.
		in.nackAt = now.Add(nackInterval)
		return 0
	}
	start, end := in.next, min(in.lastSeq, in.next+room-1)
	if !all {
		start = max(start, in.nackHigh+1)
	}
	n := 0
	for s := start; s <= end && n < len(ranges); s++ {
		if _, ok := in.early[s]; ok {
			continue
		}
		first := s
		for s+1 <= end {
			if _, ok := in.early[s+1]; ok {
				break
			}
			s++
		}
		ranges[n] = [2]uint64{first, s}
		in.nackHigh = max(in.nackHigh, s)
		n++
	}
	if n > 0 && (all || in.nackAt.Before(now)) {
		in.nackAt = now.Add(nackInterval)
	}
	return n
}

// gone takes the relay's word that the seqs first through last are gone.
// The gap ends before the first message the inbox holds: those arrived. It
// returns how many seqs were lost (zero when the gap is not next, or the
// queue has no room for it yet).
func (in *inbox) gone(first, last uint64) (lost uint64) {
	if in.next < first || in.next > last || in.queue.n == in.queue.cap() {
		return 0
	}
	end := in.next
	for end < last {
		if _, held := in.early[end+1]; held {
			break
		}
		end++
	}
	in.push(rxItem{err: &GapError{First: in.next, Last: end}})
	lost = end - in.next + 1
	in.next = end + 1
	in.nackHigh = max(in.nackHigh, end)
	return lost
}

// full reports whether the Receive queue has no room.
func (in *inbox) full() bool { return in.queue.n == in.queue.cap() }

func (in *inbox) push(it rxItem) {
	in.queue.push(it)
	signal(in.ready)
}

// pop takes the next item for Receive, if there is one.
func (in *inbox) pop() (it rxItem, ok bool) {
	if in.queue.n == 0 {
		return rxItem{}, false
	}
	it = in.queue.pop()
	if in.queue.n > 0 {
		signal(in.ready)
	}
	return it, true
}
