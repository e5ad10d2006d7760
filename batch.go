package udpchat

import "net/netip"

const (
	readBatchSize  = 64  // datagrams per recvmmsg
	writeBatchSize = 256 // datagrams per sendmmsg
)

// outMsg is one datagram queued for sending: its bytes (shared, for a
// deliver, by every member it goes to) and its destination.
type outMsg struct {
	b  []byte
	to netip.AddrPort
}

// inMsg is one datagram read into a batchConn's buffer i: its length and
// its source.
type inMsg struct {
	n    int
	from netip.AddrPort
}

// inDatagram is a datagram read outside Serve's batches.
type inDatagram struct {
	b    []byte
	from netip.AddrPort
}

// A batchConn reads and writes datagrams of an ipv4.PacketConn many at a
// time. On Linux it calls recvmmsg and sendmmsg itself, through the
// socket's RawConn, so that neither the source addresses it reads nor the
// destinations it writes cost an allocation; elsewhere it uses the
// PacketConn's ReadBatch and WriteBatch. Reads honour the PacketConn's read
// deadline. A read and a write may run at once (the relay's Close flushes
// while Serve reads), as each keeps its own state; two reads, or two
// writes, may not.
//
// newBatchConn(pc, bufs, overflow) reads into bufs (one datagram each);
// overflow asks it to report the datagrams the kernel dropped because the
// socket's receive buffer was full, where the platform tells (Linux:
// SO_RXQ_OVFL).
//
// read(in) fills in[:n] for bufs[:n]; write(out) sends out[:n] and reports
// n, with an error for out[n] if n < len(out); drops() returns the kernel's
// drop count so far, 0 where it is unknown.
