package udpchat

// A readRole says who reads the member's unicast socket: its read loop,
// or a Receive call. A Receive that reads is woken by the network poller
// itself, as a program reading its own socket is; a read loop that hands
// each message on costs a goroutine wake (and, with an idle processor,
// waking a thread) per message, tens of microseconds on a virtual
// machine. Whoever holds the role owns the socket's read buffers.
//
// The loop reads while the member needs its socket read for its own sake:
// while joining, while Sends wait for their answers, in broadcast mode
// (whose messages come on the group's socket). Otherwise a Receive that
// finds nothing to return asks for the role, and the loop gives it up
// once the socket is drained. Between Receive calls, while nothing waits
// in the queue, the role is leased:
// the next Receive reads on, unless the loop takes it back first, as it
// does when a Send needs its answer read and at each of the member's
// timer ticks (heartbeats, resends, NACKs: their answers are read even if
// no Receive comes). A timer per lease would cost more than the hand-off
// it saves: arming one wakes a thread.
//
// The member's m.mu guards it.
type readRole struct {
	owner readOwner
	want  bool // a Receive asked for the role since the loop took it
	// blocked: the Receive that holds the role is in (or about to be in)
	// a read that waits; interrupted: a read deadline in the past is set
	// to end it.
	blocked, interrupted bool

	loopWake chan struct{} // the loop holds the role again
	handoff  chan struct{} // the role is free: a waiting Receive may take it
}

type readOwner uint8

const (
	ownerLoop    readOwner = iota // the read loop reads
	ownerReceive                  // a Receive reads
	ownerNone                     // leased: the next Receive reads on
)

func newReadRole() readRole {
	return readRole{loopWake: make(chan struct{}, 1), handoff: make(chan struct{}, 1)}
}

// take gives a Receive the role if it is free, and reports whether it
// did. If the loop holds it, the loop gives it up once the socket is
// drained (see yield).
func (r *readRole) take() bool {
	switch r.owner {
	case ownerNone:
		r.owner = ownerReceive
		return true
	case ownerLoop:
		r.want = true
	}
	return false
}

// yield is the loop's, after a read that would have waited returned
// instead (the role's holder reads on until the read call is over): it
// gives the role up if a Receive asked for it and the member does not
// need the loop (needed), and reports whether it did.
func (r *readRole) yield(needed bool) bool {
	if r.owner != ownerLoop || !r.want || needed {
		return false
	}
	r.owner, r.want = ownerNone, false
	signal(r.handoff)
	return true
}

// release is the Receive's when it returns: the role is leased to the
// next Receive, or back with the loop if the member needs it (needed).
func (r *readRole) release(needed bool) {
	r.blocked = false
	if needed {
		r.owner = ownerLoop
		signal(r.loopWake)
		return
	}
	r.owner = ownerNone
	signal(r.handoff) // a Receive waiting beside this one
}

// reclaim gives a leased role back to the loop: a Send needs its answer
// read, the member closes, or the member's timer ticks.
func (r *readRole) reclaim() {
	if r.owner == ownerNone {
		r.owner, r.want = ownerLoop, false
		signal(r.loopWake)
	}
}

// mustEnd reports whether the read of the Receive that holds the role is
// to be ended: it waits, and something else needs the Receive's caller
// (a message queued by another goroutine, a failure, ctx done). The
// caller sets a read deadline in the past and calls interrupt.
func (r *readRole) mustEnd() bool {
	return r.owner == ownerReceive && r.blocked && !r.interrupted
}

func (r *readRole) interrupt() { r.interrupted = true }

// cleared reports whether a read that ended with a timeout was
// interrupted, and forgets it: the caller clears the deadline.
func (r *readRole) cleared() bool {
	i := r.interrupted
	r.interrupted = false
	return i
}
