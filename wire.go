package udpchat

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// The wire protocol, version 2. Every datagram starts with a 12-byte header:
//
//	magic "UC" | version 2 | type | id (uint64)
//
// id is the member's session for datagrams to the relay (in a join, the
// session it held with its previous relay, 0 if none) and
// the incarnation of the member's room for datagrams from the relay (of
// the relay itself for those it sends before there is a session). Integers are big-endian.
// The bodies, by type, are in the table below and in doc.go.
const (
	wireVersion = 2
	headerLen   = 12
	joinMinLen  = headerLen + 40 + cookieLen + 2 // the shortest JOIN, 70 bytes: longer than any answer to it but the WELCOME, which needs the cookie
)

const (
	tJoin      byte = 1  // m→r (id: the session held with the previous incarnation, 0 if none) nonce u64, previous incarnation u64 (0 if none), epoch u64, first member seq u64, next seq it lacked from the previous incarnation u64 (0 if none), cookie [16] (zero if none), name len u8, name, room len u8, room
	tWelcome   byte = 2  // r→m nonce u64, session u64, join seq u64, heartbeat ms u32, expiry ms u32, history u32, max datagram u16, group IPv6 [16] (IPv4 mapped), group port u16, group source IPv6 [16]
	tChat      byte = 3  // m→r member seq u64, incarnation u64 and seq u64 it was sequenced at before (0, 0 if none), recipient len u8, recipient (none: to the room), text
	tDeliver   byte = 4  // r→m seq u64, unix ns i64, epoch u64, member seq u64, kind u8, name len u8, name, (private: recipient len u8, recipient), text
	tHeartbeat byte = 5  // m→r next expected seq u64, stable seq the member knows u64
	tStatus    byte = 6  // r→m last seq u64, last member seq sequenced u64, stable seq u64, prunable seq u64
	tNack      byte = 7  // m→r 1 to 8 ranges of first u64, last u64
	tGone      byte = 8  // r→m first u64, last u64: no longer in history
	tLeave     byte = 9  // m→r (no body)
	tBye       byte = 10 // r→m session u64: the relay holds no such session (closing, left, expired, unknown)
	tError     byte = 11 // r→m code u8, ref u64 (join nonce or member seq)
	tRosterReq byte = 12 // m→r name len u8, name: list members whose names sort after it
	tRoster    byte = 13 // r→m seq u64, more u8, name len u8, after (the request's name), entries of name len u8, name
	tCookie    byte = 14 // r→m nonce u64, cookie [16]: join again with it
	tChallenge byte = 15 // r→m token u64: a session's datagram came from a new address; answer from it
	tResponse  byte = 16 // m→r token u64: the answer, which moves the session to the address it comes from
	tSkip      byte = 17 // r→m seq u64, session u64 (the recipient's): a message not for this member took this seq (selection.gets)
	tStable    byte = 18 // r→m, to the group: last seq u64, stable seq u64, prunable seq u64 (a STATUS for every member)
)

// Error codes carried by tError.
const (
	codeNameTaken    byte = 1
	codeFull         byte = 2
	codeBadName      byte = 3
	codeTooLarge     byte = 4
	codeInvalidText  byte = 5
	codeNoSuchMember byte = 6
	codeRoomsFull    byte = 7
	codeRoomFull     byte = 8
)

const (
	welcomeLen    = headerLen + 8 + 8 + 8 + 4 + 4 + 4 + 2 + 16 + 2 + 16
	tokenLen      = headerLen + 8 // challenge, response
	skipLen       = headerLen + 16
	byeLen        = headerLen + 8
	cookieLen     = 16
	cookieMsgLen  = headerLen + 8 + cookieLen
	deliverHdrLen = headerLen + 8 + 8 + 8 + 8 + 1 + 1
	chatHdrLen    = headerLen + 8 + 16 + 1
	maxNackRanges = 8

	// joinBack, in the member seq of a KindJoin deliver, says that the
	// member came back from the incarnation this one replaced.
	joinBack = 1

	// sendWindow is how many chats a member has in flight: the relay
	// holds at most this many past the first one it lacks.
	sendWindow = 64
)

var (
	errShort    = errors.New("datagram too short")
	errMagic    = errors.New("not a udpchat datagram")
	errVersion  = errors.New("unsupported protocol version")
	errType     = errors.New("unknown datagram type")
	errLength   = errors.New("wrong length for its type")
	errField    = errors.New("invalid field")
	errNameWire = errors.New("invalid name length")
)

// packet is a decoded datagram. Byte slices alias the datagram's buffer.
type packet struct {
	typ  byte
	id   uint64
	name []byte // join, deliver, roster request, roster (after)
	room []byte // join
	to   []byte // chat, deliver: the recipient of a private message

	nonce    uint64          // join, welcome
	prevInc  uint64          // join: the incarnation the member was in before, or 0
	prevNext uint64          // join: the first seq of prevInc the member lacks
	was      seqAt           // chat: where it was sequenced before, if it was
	epoch    uint64          // join, deliver: the member's lifetime id
	cookie   [cookieLen]byte // join, cookie
	stable   uint64          // heartbeat (as known), status: every member has every seq up to this
	prunable uint64          // status: every member knows that stable passed this
	session  uint64          // welcome, bye, skip
	seq      uint64          // welcome (join seq), deliver, heartbeat (next), status (last), roster, skip
	mseq     uint64          // join (first), chat, deliver, status (last sequenced)
	unixNano int64           // deliver
	kind     Kind            // deliver
	text     []byte          // chat, deliver

	heartbeat, expiry time.Duration  // welcome
	history           int            // welcome
	maxDatagram       int            // welcome
	group             netip.AddrPort // welcome; invalid when the relay fans out by unicast
	groupSrc          netip.Addr     // welcome: where the group's copies come from; invalid if from the relay's address
	token             uint64         // challenge, response

	ranges  [maxNackRanges][2]uint64 // nack, gone (one range)
	nranges int

	code byte   // error
	ref  uint64 // error

	more    bool   // roster
	entries []byte // roster: the raw entries, walked with nextRosterEntry
}

func appendHeader(b []byte, typ byte, id uint64) []byte {
	b = append(b, 'U', 'C', wireVersion, typ)
	return binary.BigEndian.AppendUint64(b, id)
}

func appendName(b []byte, name string) []byte {
	b = append(b, byte(len(name)))
	return append(b, name...)
}

// appendJoin builds a JOIN. prevSession is the session the member held
// with the relay of prevInc: a relay of that incarnation trusts what it
// remembers of the member only from the one who held the session.
// prevNext is the first seq of prevInc the member lacks.
func appendJoin(b []byte, prevSession, nonce, prevInc, epoch, firstMseq, prevNext uint64, cookie *[cookieLen]byte, name, room string) []byte {
	b = appendHeader(b, tJoin, prevSession)
	b = binary.BigEndian.AppendUint64(b, nonce)
	b = binary.BigEndian.AppendUint64(b, prevInc)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint64(b, firstMseq)
	b = binary.BigEndian.AppendUint64(b, prevNext)
	b = append(b, cookie[:]...)
	b = appendName(b, name)
	return appendName(b, room)
}

func appendWelcome(b []byte, inc, nonce, session, joinSeq uint64, heartbeat, expiry time.Duration, history, maxDatagram int, group netip.AddrPort, groupSrc netip.Addr) []byte {
	b = appendHeader(b, tWelcome, inc)
	b = binary.BigEndian.AppendUint64(b, nonce)
	b = binary.BigEndian.AppendUint64(b, session)
	b = binary.BigEndian.AppendUint64(b, joinSeq)
	b = binary.BigEndian.AppendUint32(b, uint32(heartbeat.Milliseconds()))
	b = binary.BigEndian.AppendUint32(b, uint32(expiry.Milliseconds()))
	b = binary.BigEndian.AppendUint32(b, uint32(history))
	b = binary.BigEndian.AppendUint16(b, uint16(maxDatagram))
	b = appendAddr16(b, group.Addr())
	b = binary.BigEndian.AppendUint16(b, group.Port())
	return appendAddr16(b, groupSrc)
}

// appendAddr16 appends ip as 16 bytes, an IPv4 address mapped, the zero
// Addr as zeros. A zone stays behind: it means nothing to the other end.
func appendAddr16(b []byte, ip netip.Addr) []byte {
	var a [16]byte
	if ip.IsValid() && !ip.IsUnspecified() {
		a = ip.As16()
	}
	return append(b, a[:]...)
}

func appendToken(b []byte, typ byte, id, token uint64) []byte {
	b = appendHeader(b, typ, id)
	return binary.BigEndian.AppendUint64(b, token)
}

// A seqAt says where a chat was sequenced: the incarnation and the seq, at
// most (the zero seqAt: nowhere known).
type seqAt struct{ inc, seq uint64 }

// appendChat builds a CHAT: to the room, or with to set, a private
// message to that member. was says where it was sequenced before, for a
// chat resent to a new relay.
func appendChat(b []byte, session, mseq uint64, was seqAt, to, text string) []byte {
	b = appendHeader(b, tChat, session)
	b = binary.BigEndian.AppendUint64(b, mseq)
	b = binary.BigEndian.AppendUint64(b, was.inc)
	b = binary.BigEndian.AppendUint64(b, was.seq)
	b = appendName(b, to)
	return append(b, text...)
}

// appendDeliver builds a DELIVER; to is the recipient of a KindPrivate
// message, and must be empty for any other kind.
func appendDeliver(b []byte, inc, seq uint64, unixNano int64, epoch, mseq uint64, kind Kind, name, to string, text []byte) []byte {
	b = appendHeader(b, tDeliver, inc)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano))
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint64(b, mseq)
	b = append(b, byte(kind))
	b = appendName(b, name)
	if kind == KindPrivate {
		b = appendName(b, to)
	}
	return append(b, text...)
}

// deliverLen is the length of a DELIVER of text from a member called name
// (to the member called to, for a private message), unsealed.
func deliverLen(name, to string, text int) int {
	n := deliverHdrLen + len(name) + text
	if to != "" {
		n += 1 + len(to)
	}
	return n
}

func appendU64Pair(b []byte, typ byte, id, x, y uint64) []byte {
	b = appendHeader(b, typ, id)
	b = binary.BigEndian.AppendUint64(b, x)
	return binary.BigEndian.AppendUint64(b, y)
}

func appendCookie(b []byte, inc, nonce uint64, cookie *[cookieLen]byte) []byte {
	b = appendHeader(b, tCookie, inc)
	b = binary.BigEndian.AppendUint64(b, nonce)
	return append(b, cookie[:]...)
}

// appendSkip builds the SKIP of seq for the member of session: naming it,
// the SKIP cannot be replayed to another member, for whom the message may
// be meant.
func appendSkip(b []byte, inc, seq, session uint64) []byte {
	return appendU64Pair(b, tSkip, inc, seq, session)
}

func appendBye(b []byte, inc, session uint64) []byte {
	b = appendHeader(b, tBye, inc)
	return binary.BigEndian.AppendUint64(b, session)
}

func appendHeartbeat(b []byte, session, next, stable uint64) []byte {
	return appendU64Pair(b, tHeartbeat, session, next, stable)
}

func appendStatus(b []byte, inc, last, lastMseq, stable, prunable uint64) []byte {
	b = appendU64Pair(b, tStatus, inc, last, lastMseq)
	b = binary.BigEndian.AppendUint64(b, stable)
	return binary.BigEndian.AppendUint64(b, prunable)
}

func appendStable(b []byte, inc, last, stable, prunable uint64) []byte {
	b = appendU64Pair(b, tStable, inc, last, stable)
	return binary.BigEndian.AppendUint64(b, prunable)
}

func appendError(b []byte, inc uint64, code byte, ref uint64) []byte {
	b = appendHeader(b, tError, inc)
	b = append(b, code)
	return binary.BigEndian.AppendUint64(b, ref)
}

func appendRosterReq(b []byte, session uint64, after string) []byte {
	return appendName(appendHeader(b, tRosterReq, session), after)
}

func appendRosterHeader(b []byte, inc, seq uint64, more bool, after []byte) []byte {
	b = appendHeader(b, tRoster, inc)
	b = binary.BigEndian.AppendUint64(b, seq)
	if more {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = append(b, byte(len(after)))
	return append(b, after...)
}

// nextRosterEntry splits the first name off a roster's raw entries; ok is
// false at the end. decode has checked that the entries are well formed.
func nextRosterEntry(b []byte) (name, rest []byte, ok bool) {
	if len(b) == 0 {
		return nil, nil, false
	}
	n := int(b[0])
	return b[1 : 1+n], b[1+n:], true
}

// randomID returns a random non-zero id: an incarnation, a session, a
// nonce or an epoch. Zero means "none" on the wire.
func randomID() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}
