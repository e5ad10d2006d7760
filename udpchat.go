package udpchat

import (
	"errors"
	"fmt"
	"net"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind says what a Message is: KindChat, KindJoin, KindLeave or
// KindPrivate, numbered by the relay in the room's order; or KindLost or
// KindRejoined, the member's own news about its link to the relay, with
// Seq 0.
type Kind uint8

// The kinds of Message a member receives.
const (
	// KindChat is a member's message: From said Text.
	KindChat Kind = 1
	// KindJoin is a member joining the group (From); Text is empty.
	KindJoin Kind = 2
	// KindLeave is a member leaving the group, or expired by the relay
	// after missing its heartbeats (From); Text is empty. After a relay
	// restart, a member that was in the group and has not come back
	// within the expiry span is reported as left with Seq 0.
	KindLeave Kind = 3
	// KindPrivate is a private message (see Member.SendTo): From said Text
	// to To alone. Only the two of them receive it; it takes its Seq in
	// the room's order, which the others' Receive skips (see doc.go).
	KindPrivate Kind = 4
	// KindLost says the member lost its relay: it went silent for the
	// expiry span, or said it holds no session for the member (it
	// restarted, expired the member, or closed). Text says which. The
	// member is joining again meanwhile; Send waits for it. Seq is 0.
	KindLost Kind = 5
	// KindRejoined says the member is in the group again, after KindLost.
	// Text is "same relay", or "new relay" when the relay restarted (or
	// the member's room had emptied and began anew): then Seq starts
	// anew, and the members who were in the group and come back produce
	// no KindJoin (see doc.go). Seq is 0.
	KindRejoined Kind = 6
)

// String returns "chat", "join", "leave", "private", "lost", "rejoined"
// or "kind(N)".
func (k Kind) String() string {
	switch k {
	case KindChat:
		return "chat"
	case KindJoin:
		return "join"
	case KindLeave:
		return "leave"
	case KindPrivate:
		return "private"
	case KindLost:
		return "lost"
	case KindRejoined:
		return "rejoined"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Message is one entry of a room's conversation, as sequenced by the relay.
type Message struct {
	Seq  uint64    // position in the room's order, within one incarnation of the room (see Skipped); 0 for KindLost and KindRejoined
	Kind Kind      // chat, join, leave, private, or news about the member's own link
	From string    // the member's name, stamped by the relay
	To   string    // for KindPrivate: the recipient; empty otherwise
	Text string    // the chat text; empty for join and leave
	Time time.Time // when the relay sequenced the message (relay clock); for Seq 0, when the member noticed (its clock)

	// Skipped counts the seqs since the member's previous numbered message
	// of this incarnation that were not messages for it: others' private
	// messages, and after a restart, copies of messages it had and joins
	// of members back with it (see doc.go). So Seq is always the previous
	// message's Seq + Skipped + 1, plus the seqs of any GapError between
	// them: no seq goes unexplained.
	Skipped uint64
}

// MemberInfo describes one member of a room.
type MemberInfo struct {
	Name string   // the member's name, unique in its room
	Addr net.Addr // the member's address as the relay sees it
	Room string   // the member's room; "" is the main room
}

// RoomInfo describes one room of a relay.
type RoomInfo struct {
	Name    string // "" is the main room
	Members int
}

// RelayStats are a relay's counters since NewRelay. Dropped* count
// datagrams that were discarded, by reason.
type RelayStats struct {
	Received      uint64 // datagrams read from the socket
	Sequenced     uint64 // messages (chat, join, leave) given a sequence number
	Delivered     uint64 // deliver datagrams sent (one per member, or one per message in broadcast mode)
	Retransmitted uint64 // deliver datagrams resent to answer a member's NACK
	Reordered     uint64 // chats that arrived ahead of a lost one and waited for it
	Members       int    // current number of members

	DroppedMalformed       uint64 // not a udpchat datagram, bad version, bad length or field
	DroppedOversized       uint64 // larger than the buffer size
	DroppedUnknown         uint64 // from an unknown session
	DroppedUnvalidated     uint64 // a member's, from an address it has not shown to be its own (challenged there; see SECURITY.md)
	DroppedDuplicate       uint64 // chat retransmissions that were already sequenced
	DroppedRejected        uint64 // joins and chats refused with an error (name taken, too large, ...)
	DroppedRateLimited     uint64 // chats beyond the member's rate limit (a Member resends them later)
	DroppedUnauthenticated uint64 // with a key: not sealed, or not with a key of the group
	DroppedReplayed        uint64 // with a key: a member's control datagram seen before, or sealed by another sender
	DroppedSendErrors      uint64 // datagrams the kernel refused to send
	DroppedKernel          uint64 // datagrams the kernel dropped because the socket's receive buffer was full (Linux only; see WithSocketBuffers)
	Expired                uint64 // members removed after missing heartbeats
	Migrated               uint64 // sessions moved to a member's new address, once it answered a challenge from there
}

// MemberStats are a member's counters since Join.
type MemberStats struct {
	Sent          uint64 // chat messages confirmed by the relay (plain text: lines sent)
	Retransmitted uint64 // chat datagrams sent again for lack of confirmation
	Received      uint64 // messages handed to Receive
	Duplicates    uint64 // deliver datagrams already seen
	NACKs         uint64 // repair requests sent to the relay
	Missed        uint64 // messages lost for good (reported through a GapError)
	Dropped       uint64 // datagrams discarded: malformed, oversized or not from the relay
	DroppedKernel uint64 // datagrams the kernel dropped because the member's receive buffers were full (Linux only)
	Rejoins       uint64 // times the member joined again after losing the relay
}

// Errors returned by the package. Test for them with errors.Is.
var (
	ErrClosed           = errors.New("udpchat: closed")
	ErrMessageTooLarge  = errors.New("udpchat: message too large for the buffer size")
	ErrNameTaken        = errors.New("udpchat: name already taken in the group")
	ErrInvalidName      = errors.New("udpchat: invalid name")
	ErrInvalidText      = errors.New("udpchat: invalid text")
	ErrRelayUnreachable = errors.New("udpchat: relay unreachable")
	ErrRelayFull        = errors.New("udpchat: relay full")
	ErrNoSuchMember     = errors.New("udpchat: no such member in the room")
	ErrGap              = errors.New("udpchat: messages lost")
	ErrInvalidOption    = errors.New("udpchat: invalid option")
)

// GapError reports messages a member will never receive: they were sequenced
// while the member was unreachable or too slow, and the relay no longer
// holds them. Receive returns it once, in order, in place of the missing
// messages; the next Receive carries on with the message after the gap. It
// matches ErrGap with errors.Is.
type GapError struct {
	First, Last uint64 // the missing range of Seq, inclusive, as numbered by the relay that sequenced them
}

// Error says which messages were lost.
func (e *GapError) Error() string {
	return fmt.Sprintf("udpchat: messages %d to %d lost", e.First, e.Last)
}

// Is makes errors.Is(err, ErrGap) true for a *GapError.
func (e *GapError) Is(target error) bool { return target == ErrGap }

// maxNameLen bounds a member name in bytes; it keeps roster entries and
// deliver headers small.
const maxNameLen = 32

// checkName enforces the name rules: 1 to 32 bytes of valid UTF-8, no
// control or bidi characters, no ':' (the plain-text form is "name: text") and no
// leading or trailing space.
func checkName(name string) error {
	var why string
	switch {
	case name == "":
		why = "empty"
	case len(name) > maxNameLen:
		why = fmt.Sprintf("%d bytes", len(name))
	case !utf8.ValidString(name):
		why = "not valid UTF-8"
	default:
		for i, r := range name {
			switch {
			case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r):
				why = fmt.Sprintf("control character %U", r)
			case r == ':':
				why = "':'"
			case i == 0 && unicode.IsSpace(r):
				why = "space at the start"
			case i+utf8.RuneLen(r) == len(name) && unicode.IsSpace(r):
				why = "space at the end"
			default:
				continue
			}
			break
		}
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("%w %q: %s; %s", ErrInvalidName, name, why, nameRules)
}

// nameRules says what a name may be, for the errors that refuse one.
const nameRules = "a name is 1 to 32 bytes of UTF-8, with no control characters (bidi controls included), no ':' and no space at either end"

// checkRoom enforces the room name rules: "" (the main room), or what
// checkName allows.
func checkRoom(room string) error {
	if room == "" {
		return nil
	}
	if err := checkName(room); err != nil {
		return fmt.Errorf("room: %w", err)
	}
	return nil
}
