package udpchat

import "net/netip"

const (
	readBatchSize  = 64 // datagrams per recvmmsg
	writeBatchSize = 64 // datagrams per sendmmsg
)

// A udpPath is where a datagram came from or goes to: the remote address,
// and our own address at this end. local is set only on a socket bound to
// a wildcard address (0.0.0.0 or ::), which the kernel tells the address
// each datagram came to (IP_PKTINFO, IPV6_PKTINFO) and which names it
// again as the source of the answer: a member's connected socket takes
// datagrams only from the address it dialled. Elsewhere local is the zero
// Addr, and the socket's own address is the source.
type udpPath struct {
	remote netip.AddrPort
	local  netip.Addr
}

// outMsg is one datagram queued for sending: its bytes (shared, for a
// deliver, by every member it goes to) and its path.
type outMsg struct {
	b  []byte
	to udpPath
}

// inMsg is one datagram read into a batchConn's buffer i: its length and
// its path.
type inMsg struct {
	n    int
	from udpPath
}

// inDatagram is a datagram read outside Serve's batches.
type inDatagram struct {
	b    []byte
	from udpPath
}

// batchFlags say what a batchConn asks of its socket.
type batchFlags uint8

const (
	// batchOverflow reports the datagrams the kernel dropped because the
	// socket's receive buffer was full, where the platform tells (Linux:
	// SO_RXQ_OVFL).
	batchOverflow batchFlags = 1 << iota
	// batchLocal reads the address each datagram came to and sends from
	// the address each outMsg names: for sockets bound to a wildcard
	// address.
	batchLocal
)

// A batchConn reads and writes datagrams of a UDP socket, IPv4 or IPv6,
// many at a time. On Linux it calls recvmmsg and sendmmsg itself, through
// the socket's RawConn, so that neither the addresses it reads nor the
// destinations and sources it writes cost an allocation; elsewhere it
// reads and writes one datagram per call through the standard library.
// Reads honour the socket's read deadline. A read and a write may run at
// once (the relay's Close flushes while Serve reads), as each keeps its
// own state; two reads, or two writes, may not. Addresses are read
// unmapped: an IPv4 peer of a dual-stack socket is an IPv4 address.
//
// newBatchConn(c, bufs, flags) reads into bufs (one datagram each).
// read(in) fills in[:n] for bufs[:n]; write(out) sends out[:n] and reports
// n, with an error for out[n] if n < len(out); drops() returns the kernel's
// drop count so far, 0 where it is unknown.
