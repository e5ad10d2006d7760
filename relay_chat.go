package udpchat

// A member's chats and private messages, repairs and roster requests, on
// the relay.

import (
	"encoding/binary"
	"time"
	"unicode/utf8"
)

// handleChat sequences a member's chats in the member's order. A chat that
// arrives ahead of a lost one waits in the member's reorder buffer, which
// holds no more than the member's send window.
func (r *protoRelay) handleChat(m *relayMember, p *packet, now time.Time) {
	if !r.limit.take(&m.buckets, len(p.text)+chatHdrLen, now) {
		r.stats.DroppedRateLimited++
		return
	}
	switch {
	case p.mseq < m.nextMseq:
		// A retransmission: the confirmation was lost. Confirm again.
		r.stats.DroppedDuplicate++
		if p.mseq == m.refused {
			r.refuse(m, p.mseq, m.refusedAs)
			return
		}
		r.sendStatus(m)
		return
	case p.mseq-m.nextMseq >= sendWindow:
		r.stats.DroppedMalformed++ // more in flight than any member sends
		r.sendStatus(m)
		return
	case p.mseq > m.nextMseq:
		if _, dup := m.ahead[p.mseq]; dup {
			r.stats.DroppedDuplicate++
		} else {
			if m.ahead == nil {
				m.ahead = make(map[uint64][]byte)
			}
			// Kept as it came: where it was sequenced before, the
			// recipient's name, then the text.
			m.ahead[p.mseq] = append(appendName(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, p.was.inc), p.was.seq), string(p.to)), p.text...)
			r.stats.Reordered++
		}
		// Telling the member where the relay stands lets it resend the
		// missing one at once.
		r.sendStatus(m)
		return
	}
	if !r.acceptChat(m, p.mseq, p.was, p.to, p.text, now) {
		return
	}
	for len(m.ahead) > 0 {
		b, ok := m.ahead[m.nextMseq]
		if !ok {
			break
		}
		was := seqAt{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
		to, text, _ := splitName(b[16:])
		if !r.acceptChat(m, m.nextMseq, was, to, text, now) {
			break
		}
		delete(m.ahead, m.nextMseq-1)
	}
}

// acceptChat sequences the member's next chat (to the room, or to the
// member called to) or refuses it; either way the member seq is used up.
// A chat that another incarnation of the room sequenced (was) reaches only
// the members who lacked it there (selection.gets). It reports false for
// a chat that must wait: a private message resent after a restart whose
// recipient has not come back yet, while members of the old relay still
// may (the room's first expiry span). The member resends it.
func (r *protoRelay) acceptChat(m *relayMember, mseq uint64, was seqAt, to, text []byte, now time.Time) bool {
	resent := was.inc != 0 && was.inc != m.room.inc
	var dst *relayMember
	if len(to) > 0 {
		if dst = m.room.members.byName[string(to)]; dst == nil {
			if resent && now.Sub(m.room.opened) < r.cfg.expiry {
				return false
			}
			m.nextMseq++
			r.refuse(m, mseq, codeNoSuchMember)
			return true
		}
	}
	m.nextMseq++
	switch {
	case !utf8.Valid(text):
		r.refuse(m, mseq, codeInvalidText)
	case deliverLen(m.name, string(to), len(text))+r.cfg.sealOverhead() > r.cfg.bufferSize:
		r.refuse(m, mseq, codeTooLarge)
	default:
		var sel selection
		if resent {
			sel.resent = was
			// It may get a SKIP of its own chat: the batch's STATUS
			// confirms it.
			r.owe(m)
		}
		r.sequenceFor(KindChat, m, dst, mseq, text, sel, now)
	}
	return true
}

// owe has the end of the batch send m a STATUS.
func (r *protoRelay) owe(m *relayMember) {
	if !m.owed {
		m.owed = true
		r.owed = append(r.owed, m)
	}
}

func (r *protoRelay) refuse(m *relayMember, mseq uint64, code byte) {
	r.stats.DroppedRejected++
	m.refused, m.refusedAs = mseq, code
	r.q.reply(m.path, appendError(r.q.replyBuf(headerLen+9), m.room.inc, code, mseq))
}

func (r *protoRelay) sendStatus(m *relayMember) {
	rm := m.room
	r.q.reply(m.path, appendStatus(r.q.replyBuf(headerLen+32), rm.inc, rm.hist.seq, m.nextMseq-1, rm.stable, rm.prunable))
}

func (r *protoRelay) handleNack(m *relayMember, p *packet, now time.Time) {
	budget := r.limit.repairs(&m.buckets, maxRepairPerNak, now)
	start := budget
	defer func() { r.limit.spendRepairs(&m.buckets, start-budget) }()
	rm := m.room
	h := rm.hist
	oldest := h.oldest()
	for _, rg := range p.ranges[:p.nranges] {
		first, last := rg[0], min(rg[1], h.seq)
		if first < oldest {
			// Everything before oldest is gone, not just what was asked
			// for: the member skips the whole loss at once.
			r.q.reply(m.path, appendU64Pair(r.q.replyBuf(headerLen+16), tGone, rm.inc, first, oldest-1))
			first = oldest
		}
		for s := first; s <= last && budget > 0; s++ {
			if h.gets(s, m) {
				r.q.resend(h, s, h.slot(s).b, m.path)
			} else {
				r.q.skip(rm.inc, s, m)
			}
			r.stats.Retransmitted++
			budget--
		}
	}
}

func (r *protoRelay) handleRosterReq(m *relayMember, after []byte) {
	rm := m.room
	names := rm.members.namesAfter(string(after))
	// A page holds as many names as fit the buffer.
	b := r.q.replyBuf(r.cfg.bufferSize)
	b = appendRosterHeader(b, rm.inc, rm.hist.seq, false, after)
	moreAt := len(b) - 2 - len(after)
	i := 0
	for ; i < len(names) && len(b)+1+len(names[i])+r.cfg.sealOverhead() <= r.cfg.bufferSize; i++ {
		b = appendName(b, names[i])
	}
	if i < len(names) {
		b[moreAt] = 1
	}
	r.q.reply(m.path, b)
}
