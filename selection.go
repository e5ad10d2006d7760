package udpchat

// A selection says which members of a room get a message; the others get
// a SKIP of its seq. The zero selection is everyone.
type selection struct {
	private  bool
	from, to party // a private message's parties
	resent   seqAt // a chat that the incarnation resent.inc sequenced, at seq resent.seq at most
}

// A party of a private message: a member's name and epoch. A repair of the
// message goes to the member who holds both, in any session.
type party struct {
	name  string
	epoch uint64
}

func (s *selection) everyone() bool { return *s == selection{} }

// gets reports whether m gets the message. A chat resent to a new relay
// goes to the members of the incarnation that sequenced it who lacked it
// then (they had not received up to its seq), not to those who joined
// since; a member back from another incarnation may lack it, and takes it
// once by its origin.
func (s *selection) gets(m *relayMember) bool {
	if s.private && s.from != (party{m.name, m.epoch}) && s.to != (party{m.name, m.epoch}) {
		return false
	}
	if s.resent.inc != 0 {
		switch m.prevInc {
		case 0:
			return false // joined after the chat was sequenced
		case s.resent.inc:
			return s.resent.seq >= m.prevNext
		}
	}
	return true
}
