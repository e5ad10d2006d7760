package udpchat

import "time"

// An outbox holds a member's own chats from Send until every member has
// them: it numbers them with member seqs, resends the unconfirmed ones on a
// schedule, takes the relay's confirmations and refusals, and bounds how
// many Sends are in flight. The member's m.mu guards it.
//
// Chats carry an origin: this member's random epoch and a member seq that
// is never reused, so that a chat sequenced twice (resent to a new relay,
// or after a lost confirmation) is taken once.
type outbox struct {
	epoch    uint64
	mseq     uint64         // last member seq assigned
	chats    []*pendingChat // by mseq: unconfirmed chats, then confirmed ones kept until stable
	stable   uint64         // every member has every seq up to this, says the relay
	prunable uint64         // every member knows of stable up to this: our copies may go
	history  int            // the relay's history size, which bounds the outbox
	inc      uint64         // the incarnation of the relay (the room) that confirms chats now
	free     []*pendingChat // pruned chats, to be used again: a Send allocates none

	// The round trip from a chat's first send to its confirmation, as
	// TCP estimates it (RFC 6298, from chats sent once): with many members
	// a confirmation waits behind the fan-out of the chats before it, and
	// a fixed timeout would resend what the relay already has.
	srtt, rttvar  time.Duration
	lastChallenge time.Time // the last challenge that had chats resent

	// Timeouts since the last round trip measured, and when the newest
	// was: each doubles the first timeout of new chats (RFC 6298, 5.5;
	// Karn). Without it a round trip past rtoMin, as a fan-out to many
	// members takes, has every chat resent, and, resent, none measured.
	backoff   uint
	backedOff time.Time
	// The newest resend: a chat sent before it may have been held at the
	// relay behind the chat resent, so its round trip is not measured.
	lastResend time.Time

	window chan struct{} // one token per chat in flight, taken by Send
	room   chan struct{} // the outbox shrank: a Send waiting for room may go on
}

// A pendingChat is a chat in the outbox. Until the relay confirms it, it is
// resent; after that it is kept until every member has it (stable), so
// that it can be resent to a new relay if this one dies first.
type pendingChat struct {
	mseq      uint64
	to        string // the recipient of a private message; "" for the room
	text      string
	ch        chan error // the chat's own answer channel, buffered, kept across reuse
	done      chan error // ch while a Send waits for the answer; nil once answered
	confirmed bool       // sequenced or refused by the relay
	seqBound  uint64     // once confirmed: its seq is at most this
	was       seqAt      // where it was last sequenced, at most: kept across a restart, for the new relay
	next      time.Time  // when to (re)send
	rto       time.Duration
	sentAt    time.Time
	early     bool // due at once, not timed out: its loss is known, or a new relay or address needs it
}

func newOutbox() outbox {
	return outbox{
		epoch:  randomID(),
		window: make(chan struct{}, sendWindow),
		room:   make(chan struct{}, 1),
	}
}

// cap bounds the outbox. The relay's stable seq trails its newest by at
// most its history, plus the time until members report progress; twice the
// history leaves room for that.
func (o *outbox) cap() int { return 2*o.history + sendWindow }

// full reports whether a new chat must wait for room: the outbox keeps
// what not every member has yet, for a relay restart, and may not outgrow
// what the relay's history holds.
func (o *outbox) full() bool { return len(o.chats) >= o.cap() }

// nearlyFull reports whether the outbox is three quarters full.
func (o *outbox) nearlyFull() bool { return 4*len(o.chats) >= 3*o.cap() }

// newChat returns a chat for text (to the member called to, if set), ready
// for add: a pruned one if there is one, so that a busy sender allocates
// none.
func (o *outbox) newChat(to, text string) *pendingChat {
	var c *pendingChat
	if n := len(o.free); n > 0 {
		c, o.free[n-1] = o.free[n-1], nil
		o.free = o.free[:n-1]
		ch := c.ch
		if len(ch) > 0 {
			// An answer not yet taken: its Send may not have run since
			// (a refused chat is pruned at once). That channel is its.
			ch = nil
		}
		*c = pendingChat{ch: ch}
	} else {
		c = &pendingChat{}
	}
	if c.ch == nil {
		c.ch = make(chan error, 1)
	}
	c.to, c.text, c.done, c.rto = to, text, c.ch, o.rto()
	return c
}

// rto is the first resend timeout of a chat: the round trip plus four
// times its variation, doubled for each timeout since the last round trip
// measured, from rtoMin to rtoMax.
func (o *outbox) rto() time.Duration {
	rto := rtoMin
	if o.srtt != 0 {
		rto = max(o.srtt+4*o.rttvar, rtoMin)
	}
	return min(min(rto, rtoMax)<<o.backoff, rtoMax) // clamped first: a shift may not overflow
}

// maxBackoff is where doubling rtoMin has passed rtoMax.
const maxBackoff = 5

// The build fails if maxBackoff doublings of rtoMin stop reaching rtoMax.
const _ = uint(rtoMin<<maxBackoff - rtoMax)

// timedOut takes a timeout of c, about to be resent at now, into the
// backoff. Chats sent before the last timeout counted went out with a
// shorter timeout: theirs are not counted again, or a window of chats
// timing out together would reach the ceiling at once.
func (o *outbox) timedOut(c *pendingChat, now time.Time) {
	if c.sentAt.Before(o.backedOff) {
		return
	}
	o.backoff, o.backedOff = min(o.backoff+1, maxBackoff), now
}

// sample takes one round trip into the estimate, which replaces the
// backoff.
func (o *outbox) sample(rtt time.Duration) {
	o.backoff = 0
	if o.srtt == 0 {
		o.srtt, o.rttvar = rtt, rtt/2
		return
	}
	o.rttvar += (max(o.srtt-rtt, rtt-o.srtt) - o.rttvar) / 4
	o.srtt += (rtt - o.srtt) / 8
}

// add gives c the next member seq and queues it. It reports whether c may
// go out at once: member seqs in the outbox are consecutive, so if the chat
// sendWindow places back is confirmed, the relay has taken everything up to
// it and c is within the relay's window. Otherwise the resend schedule
// sends it in its turn.
func (o *outbox) add(c *pendingChat) bool {
	o.mseq++
	c.mseq = o.mseq
	o.chats = append(o.chats, c)
	back := len(o.chats) - 1 - sendWindow
	return back < 0 || o.chats[back].confirmed
}

// first is the first member seq a relay is offered at a join: the oldest
// chat kept, or the next one to be assigned.
func (o *outbox) first() uint64 {
	if len(o.chats) > 0 {
		return o.chats[0].mseq
	}
	return o.mseq + 1
}

// sent records that c went out at now and backs off its next resend. It
// reports whether c had gone out before. A chat's first timeout is the
// one of when it first goes out: one queued behind the window may have
// waited out a round of timeouts that backed them off.
func (o *outbox) sent(c *pendingChat, now time.Time) (again bool) {
	again = !c.sentAt.IsZero()
	if again {
		o.lastResend = now
	} else {
		c.rto = o.rto()
	}
	c.sentAt, c.next, c.early = now, now.Add(c.rto), false
	c.rto = min(2*c.rto, rtoMax)
	return again
}

// due calls send for each chat to (re)send at now and returns when the
// next one is due (zero if none is). The relay holds at most sendWindow
// member seqs past the first unconfirmed one.
func (o *outbox) due(now time.Time, send func(*pendingChat)) time.Time {
	var due time.Time
	var limit uint64
	for _, c := range o.chats {
		if c.confirmed {
			continue
		}
		if limit == 0 {
			limit = c.mseq + sendWindow
		}
		if c.mseq >= limit {
			break
		}
		if !now.Before(c.next) {
			if !c.sentAt.IsZero() && !c.early {
				o.timedOut(c, now)
			}
			send(c)
		}
		if due.IsZero() || c.next.Before(due) {
			due = c.next
		}
	}
	return due
}

// ack confirms every chat up to mseq: the relay has sequenced them all,
// each at a seq no higher than bound. It returns how many waiting Sends it
// answered, and whether the head (the first chat still unconfirmed) became
// due at once.
//
// It measures one round trip, the chat mseq's, and none if that chat went
// out before the newest resend (Karn): it may be that resend itself, or
// held at the relay behind the chat resent, its wait the repair's, not
// the path's.
func (o *outbox) ack(mseq, bound uint64, now time.Time) (answered int, resend bool) {
	var head, newest *pendingChat
	progress := false
	for _, c := range o.chats {
		if c.confirmed {
			continue
		}
		if c.mseq > mseq {
			if head == nil {
				head = c
			}
			if progress {
				// The relay is answering: what is left need not wait out
				// a long backoff earned while it was not.
				c.rto = o.rto()
				if !c.sentAt.IsZero() && c.next.After(c.sentAt.Add(c.rto)) {
					c.next = c.sentAt.Add(c.rto)
				}
			}
			continue
		}
		if c.mseq == mseq {
			newest = c
		}
		c.confirmed, c.seqBound, c.was, progress = true, bound, seqAt{o.inc, bound}, true
		if c.done != nil {
			answered++
			o.answer(c, nil)
		}
	}
	if newest != nil && newest.sentAt.After(o.lastResend) {
		o.sample(now.Sub(newest.sentAt))
	}
	o.prune()
	// The relay has everything before the head but not the head: if its
	// confirmation is overdue by the round trip, it was lost, so resend it
	// now rather than after its timeout.
	if head != nil && head.mseq == mseq+1 && !head.sentAt.IsZero() && now.Sub(head.sentAt) > max(rtoMin/5, o.srtt+2*o.rttvar) {
		head.next, head.early = now, true
		return answered, true
	}
	return answered, false
}

// sequenced records that the chat mseq, confirmed, was sequenced at seq:
// its own deliver says so exactly.
func (o *outbox) sequenced(mseq, seq uint64) {
	if len(o.chats) == 0 || mseq < o.chats[0].mseq {
		return
	}
	if i := mseq - o.chats[0].mseq; i < uint64(len(o.chats)) {
		if c := o.chats[i]; c.confirmed && c.seqBound != 0 {
			c.seqBound, c.was = min(c.seqBound, seq), seqAt{o.inc, min(c.was.seq, seq)}
		}
	}
}

// refuse answers the unconfirmed chat mseq with err and reports whether
// there was one. The relay used up its member seq: the chat stays in the
// outbox, so a new relay is offered an unbroken run of member seqs.
func (o *outbox) refuse(mseq uint64, err error) bool {
	for _, c := range o.chats {
		if c.mseq != mseq || c.confirmed {
			continue
		}
		o.answer(c, err)
		c.confirmed, c.seqBound, c.was = true, 0, seqAt{}
		o.prune()
		return true
	}
	return false
}

// heard takes the stable and prunable seqs of a relay's status.
func (o *outbox) heard(stable, prunable uint64) {
	o.stable = max(o.stable, stable)
	o.prunable = max(o.prunable, min(prunable, stable))
}

// prune drops confirmed chats from the front of the outbox once every
// member has them.
func (o *outbox) prune() {
	n := 0
	for n < len(o.chats) && o.chats[n].confirmed && o.chats[n].seqBound <= o.prunable {
		n++
	}
	if n > 0 {
		for _, c := range o.chats[:n] {
			if len(o.free) < o.cap() { // what the outbox may hold anyway
				o.free = append(o.free, c)
			}
		}
		clear(o.chats[:n])
		o.chats = o.chats[n:]
		signal(o.room)
	}
}

// challenged has every unconfirmed chat that went out sent again at
// once, and reports whether there were any. The relay challenged our new
// address: it dropped what came from there unread, and the answer to the
// challenge, which goes first, moves our session there before they
// arrive. The relay challenges an address at most once per challengeGap,
// and so much is taken here: a forged challenge buys no more.
func (o *outbox) challenged(now time.Time) bool {
	if !o.lastChallenge.IsZero() && now.Sub(o.lastChallenge) < challengeGap {
		return false
	}
	o.lastChallenge = now
	any := false
	for _, c := range o.chats {
		if !c.confirmed && !c.sentAt.IsZero() {
			c.next, c.early, any = now, true, true
		}
	}
	return any
}

// newRelay forgets the stable seqs of a relay that is gone: a new one
// counts anew.
func (o *outbox) newRelay() { o.stable, o.prunable = 0, 0 }

// newSession has every chat sent again at once: a new session takes the
// outbox from its first chat on. Its timeouts follow the round trip
// measured (the relay's address is the same); the backoff was earned by
// the session that ended, whose relay went away or forgot the member.
func (o *outbox) newSession(now time.Time) {
	o.backoff = 0
	for _, c := range o.chats {
		c.confirmed, c.next, c.early, c.rto = false, now, true, o.rto()
	}
}

// closeAll answers every waiting Send with err and empties the outbox.
func (o *outbox) closeAll(err error) {
	for _, c := range o.chats {
		o.answer(c, err)
	}
	o.chats = nil
}

// answer tells a waiting Send how its chat fared and frees its place in
// the send window.
func (o *outbox) answer(c *pendingChat, err error) {
	if c.done == nil {
		return
	}
	c.done <- err
	c.done = nil
	<-o.window
}
