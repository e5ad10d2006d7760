// Package udpchat is group chat over UDP: a Relay receives chat datagrams
// from Members and delivers every message to every member of their room,
// in one order, without losing any silently; a member may also send a
// private message to one other member of its room.
//
// A server runs a relay (here on the default address, 127.0.0.1:2410):
//
//	r, err := udpchat.NewRelay()
//	...
//	go r.Serve(ctx)
//	defer r.Close()
//
// Each person's program joins it, sends, and receives every message of the
// group in one order:
//
//	m, err := udpchat.Join(ctx, "alice")
//	...
//	defer m.Close()
//	err = m.Send(ctx, "hello")
//	msg, err := m.Receive(ctx) // msg.Seq, msg.Kind, msg.From, msg.Text
//
// Rooms and private messages:
//
//	m, err := udpchat.Join(ctx, "alice", udpchat.WithRoom("ops"))
//	err = m.SendTo(ctx, "bob", "psst") // KindPrivate, From alice, To bob
//
// ARCHITECTURE.md in the repository maps the code; SCALING.md says how far
// one relay goes and how rooms spread over several (RelayFor).
//
// # Model
//
// A relay (NewRelay, then Serve) owns one UDP socket and serves rooms. A
// member (Join) owns its own unicast socket, connected to the relay, and
// is in one room (WithRoom; "" is the main room); a program in several
// rooms holds one Member per room. Each room is a group of its own: what
// follows of "the group" holds per room, and nothing of one room reaches a
// member of another. A room exists while it has members (at most
// WithMaxRooms of them; WithMaxMembers counts every room's members); one
// that empties is forgotten, and the next member to join opens it anew,
// with a new incarnation: Seq starts again at 1, and a member that comes
// back to it meets it as it would a restarted relay.
//
// Joining is a handshake: the relay answers a JOIN with a WELCOME that
// gives the member a random session id, and the member then loads the
// member list. Names are unique in the room; every member receives join
// and leave events as messages of KindJoin and KindLeave, including its
// own join.
//
// The relay stamps every message with the room's next sequence number
// (Message.Seq) and its own clock, keeps it in the room's history ring, and
// sends the same encoded datagram to every member of the room: one unicast
// copy per member, or, with WithBroadcast, one copy to a broadcast address
// or multicast group (the main room's: other rooms are served by unicast,
// since every member of a host that listens on the group would hear
// them). Members hand messages to Receive strictly in sequence order, so
// all members see the same messages in the same order.
//
// A private message (SendTo) takes the room's next seq too, and travels
// like a chat to its two parties only, sender and recipient (by unicast
// even in broadcast mode); every other member of the room is sent a SKIP
// of that seq instead (28 bytes, 61 sealed, whatever the message, naming
// the recipient's session so that it is no one else's to take), so that
// its Receive goes on to the next seq with nothing lost and nothing to
// repair. Repairs follow the same rule: the relay resends the message to
// a member with the name and epoch of a party, the SKIP to anyone else.
// The recipient receives it once, in its place among the room's messages,
// and so does the sender's copy.
//
// # Delivery
//
// Send numbers each message of the member (its member seq, never reused in
// the Member's lifetime) and resends it until the relay confirms that it
// sequenced it: after a timeout that follows the measured round trip (at
// least 50ms) and doubles with each timeout, up to 1s. The relay takes a member's
// messages in member-seq order, holding those that arrive ahead of a lost
// one (at most 64), and sequences each once. A member that sees a gap in the
// sequence, or learns from a heartbeat answer that it missed the latest
// message, asks the relay to resend (NACK). What the history ring no longer
// holds is reported by Receive as a *GapError, in place, never skipped
// silently. Duplicates are dropped: a chat's origin (the sending Member's
// random epoch and member seq) makes a chat that was sequenced twice count
// once.
//
// Members send a heartbeat every heartbeat interval (WithHeartbeat, default
// 1s). The relay expires a member it has not heard from for the expiry span
// (WithExpiry, default three heartbeats plus one second) and announces that
// it left; a member that hears nothing from the relay for that span, or is
// told its session is unknown, joins again by itself under the same name.
// Each relay has a random incarnation id. A restarted relay answers a
// member's next heartbeat with BYE (with a group key the member waits for
// the old relay's silence instead: a BYE could be minted from a captured
// datagram); the member joins it, resends what was
// unconfirmed, and also what was confirmed but not yet stable: heartbeats
// tell the relay how far each member has received, the relay tells
// everyone up to which seq every member has everything (stable), and
// senders keep their messages until every member has heard that
// (prunable). A member reports (HEARTBEAT) every heartbeat interval, and
// also each time it has taken an eighth of the relay's history or heard of
// a stable seq that far on, so that stable and prunable, and with them a
// sender's outbox (at most twice the history), move with the traffic: a
// sender's pace is bounded by the relay and the network, not by the
// heartbeat. The relay works them out once per batch of datagrams it
// reads, and tells a member that takes nothing (its application stopped
// calling Receive) where stable stands, as history drops what it lacks
// (in broadcast, all such members with one STABLE to the group).
// So a crash loses nothing that a surviving sender
// sent; a message the dead relay had not yet delivered everywhere reaches
// the members that lacked it, and only them, at its place in the new
// relay's order. A sender resends each kept chat with the incarnation and
// seq it was sequenced at, and each rejoining member's JOIN says the first
// seq of the old relay it lacked: the new relay sends the chat to the
// members of that incarnation who lacked it, and a SKIP to those who had
// it and to those who joined the new relay, who never had it coming (a
// resent private message whose recipient is not back yet waits for it
// for the new relay's first expiry span). A
// member that was further behind than the relay's history (whose missing
// messages senders no longer keep) gets a GapError for them, in the old
// relay's numbering. After a restart Seq starts anew.
//
// Receive tells a member of its own link in order, with Seq 0: KindLost
// when the relay went silent or said goodbye, KindRejoined when the member
// is back ("same relay", or "new relay" after a restart, or when its room
// had emptied and began anew). The join of a member back from the old
// relay is marked: a member that still lists it from before takes it as
// no news (counted in the next message's Skipped), while one that does not
// (it joined the new relay first, or had already seen the member reported
// as left) receives the KindJoin. An expiry span after it rejoined, a
// member loads the new relay's member list, and each member of the old relay that has not come
// back is reported as left (KindLeave, Seq 0).
//
// A member that the relay expired (its link was down for the expiry span)
// joins again with a new session and resends the chats it keeps. The relay
// remembers how far it sequenced the chats of each member that left (the
// newest 65,536 departures, found by the departed session, which the JOIN
// names; only a rejoin to the same incarnation of the room), so it
// confirms those it sequenced before instead of sequencing them again.
//
// So within an incarnation every seq reaches every member: as a message,
// as a SKIP (a private message between others; after a restart, a chat
// resent that it had or that came before it joined), as a join it takes as
// no news (a member back with it from the old relay), or in a *GapError
// when history no longer holds it. A member also drops a copy of a chat it
// has already taken (by its origin), which a relay sequences twice only in
// two rare cases: after a
// restart, a chat its sender never learned was sequenced, resent; and a
// chat resent after more than 65,536 other members left while its sender
// was away. Receive returns nothing for these, and says how many
// it passed in the next message's Skipped: each message's Seq is the
// previous one's plus Skipped plus one, plus any GapError between them.
//
// # Sockets
//
// The relay reads and writes in batches (recvmmsg and sendmmsg on Linux,
// called through each socket's RawConn so that no datagram costs an
// allocation), builds each deliver datagram once and sends the same bytes
// to every member, and allocates nothing per message. On Linux a relay
// bound to a specific address sends through a second socket on that
// address which the Go runtime does not poll: every datagram sent frees
// send-buffer space, and on a polled socket each one would wake a thread
// parked in epoll_wait for nothing. The twin is connected to the relay's
// own address, so it receives nothing, and neither socket keeps
// SO_REUSEPORT, so the address stays the relay's alone (a plain-text relay
// in broadcast mode has no twin and shares its port, as the classic
// programs do). WithSocketBuffers
// sizes SO_RCVBUF and SO_SNDBUF; what the kernel drops for want of room is
// counted in RelayStats.DroppedKernel and MemberStats.DroppedKernel
// (Linux). BENCHMARKS.md has the figures.
//
// # Plain text
//
// With WithPlainText the relay and members speak none of the protocol
// below: each datagram is a UTF-8 line "name: text" (one trailing newline
// or CRLF allowed), as the classic classroom programs, nc -u and socat send
// them.
// The relay forwards each line unchanged to every address it has heard a
// line from within the expiry span, or once to the WithBroadcast address;
// "name:" with no text only keeps its sender on that list. There is no
// handshake, order, recovery, name ownership, room, private message or
// key: WithRoom with WithPlainText is an invalid option, and SendTo
// returns an error matching errors.ErrUnsupported.
//
// # Untrusted input
//
// Every datagram is decoded strictly: a wrong magic, version, type, length
// or field drops it, and the relay counts it in RelayStats. A datagram
// larger than the buffer size (WithBufferSize) is detected by reading into
// a buffer one byte larger, and dropped. A member's datagrams count only
// from its session's address, and a BYE only for the session it names, so
// a stranger cannot speak for a member or end its session. A member whose
// address changes (a NAT's new mapping) keeps its session: the relay
// challenges the new address with a token (an HMAC, under the cookie
// secrets, of the time, the session and that address, so the relay keeps
// none), sending it no more bytes than it received from there, and moves
// the session when the token comes back from it within two seconds
// (QUIC's path validation). A join is a two-step exchange: the relay answers the first
// JOIN with a COOKIE, an HMAC-SHA256 over the joiner's address, the join's
// nonce and a 30-second slot, keyed with a random secret that changes every
// slot; only a JOIN that echoes a cookie of the current or the previous
// slot creates a session. So the relay keeps no state for an address, and
// sends it nothing of the group's, until the address has shown that it
// receives; and it never answers a datagram from an unknown address or
// session with more bytes than that datagram (a JOIN is at least 70
// bytes).
//
// # Wire protocol, version 2
//
// Every datagram starts with a 12-byte header; integers are big-endian:
//
//	"UC" | version (2) | type | id (uint64)
//
// id is the member's session in datagrams to the relay (in a JOIN, the
// session it held with its previous relay, or 0) and the incarnation of the
// member's room in datagrams from it (of the relay itself in COOKIE, in
// ERROR answering a JOIN, and in BYE to an unknown session). Names and room
// names are a u8 length and the bytes. The bodies by type:
//
//	1  JOIN       m→r  nonce u64, previous incarnation u64, epoch u64, first member seq u64,
//	                   the first seq of the previous incarnation it lacks u64 (0 with none),
//	                   cookie [16] (zero at first), name, room ("" the main room)
//	2  WELCOME    r→m  nonce u64, session u64, first seq u64, heartbeat ms u32, expiry ms u32,
//	                   history u32, buffer size u16, group address [16] + port u16 (zero in unicast
//	                   mode), the group copies' source address [16] (zero: the relay's own);
//	                   IPv4 addresses as IPv4-mapped IPv6
//	3  CHAT       m→r  member seq u64, incarnation u64 and seq u64 it was sequenced at before (0, 0 if
//	                   none; the seq may be a bound), recipient (empty: to the room), text (UTF-8, to the end)
//	4  DELIVER    r→m  seq u64, time unix ns i64, epoch u64, member seq u64, kind u8, name,
//	                   recipient (kind 4, private, only), text
//	5  HEARTBEAT  m→r  next seq expected u64, stable seq known u64
//	6  STATUS     r→m  last seq u64, last member seq sequenced u64, stable seq u64, prunable seq u64
//	                   (answers HEARTBEAT, and CHAT that is resent or ahead of a lost one;
//	                   sent unasked to a member whose reports lag what history holds, but in broadcast)
//	7  NACK       m→r  1 to 8 ranges of first u64, last u64
//	8  GONE       r→m  first u64, last u64: no longer in history
//	9  LEAVE      m→r  -
//	10 BYE        r→m  session u64: the relay holds no such session (closing, left, expired, unknown)
//	11 ERROR      r→m  code u8 (1 name taken, 2 full, 3 bad name or room, 4 too large, 5 bad text,
//	                   6 no such member, 7 no room for another room, 8 the room is full),
//	                   ref u64 (nonce or member seq)
//	12 ROSTERREQ  m→r  name: list the members whose names sort after it
//	13 ROSTER     r→m  seq u64, more u8, the request's name, then names
//	14 COOKIE     r→m  nonce u64, cookie [16]: join again with it
//	15 CHALLENGE  r→m  token u64: a datagram of this session came from this new address
//	16 RESPONSE   m→r  token u64: the answer, from the new address, which moves the session there
//	17 SKIP       r→m  seq u64, session u64: a message not for the member of that session took this seq
//	18 STABLE     r→m  last seq u64, stable seq u64, prunable seq u64: to the group in broadcast, in place of
//	                   the STATUS each member whose reports lag would be sent
//
// With a group key (WithKey) each of these datagrams travels sealed with
// AES-GCM, as "UC" | version | 0x80 | key id | nonce [12] | ciphertext |
// tag [16]; SECURITY.md has the details.
//
// A deliver datagram takes 46 bytes plus the sender's name plus the text
// (a private one 1 more, plus the recipient's name), so with the default
// 1024-byte buffer a member named "alice" can send 973 bytes of text.
// Names are at most 32 bytes.
package udpchat
