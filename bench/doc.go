// Command bench measures, in one run on one machine, how many datagrams per
// second the udpchat relay delivers, and compares each figure with a
// baseline measured in the same run: the raw sendmmsg limit, a naive
// one-write-per-member relay, and raw broadcast. It also measures one-way
// latency, the relay's heap per member and its join rate.
//
//	go run ./bench                  # 1, 10, 100 and 1000 members, 2s per case
//	go run ./bench -quick           # a tiny run
//	go run ./bench -members 100 -dur 5s -json
//
// Everything stays on loopback: receivers are bound to 127.0.0.1 (or, for
// broadcast, to 0.0.0.0 on a port of their own, reached through
// 127.255.255.255), and every load loop stops by itself after its window.
//
// The baselines. raw sends the payload with sendmmsg from a socket the Go
// runtime never polls (a socket in Go's netpoller is woken each time a sent
// loopback datagram frees send-buffer space), to the N receivers in turn,
// or once to 127.255.255.255 with the N receivers sharing a port. It runs
// twice, open-loop and windowed (at most 32 rounds, a round being one
// datagram to each receiver, ahead of receiver #0, as the speaker below
// keeps its chats), and the faster counts as the limit: open-loop, a fast
// sender overflows the receivers and the drain then works on cold, full
// queues. naive is a relay on a net.UDPConn that reads a datagram and
// writes it to each member with WriteToUDP.
//
// How it measures. Every case drains its N receivers the same way: N
// non-blocking sockets, made with unix.Socket so the Go runtime never polls
// them, read by one goroutine locked to its OS thread with epoll_wait and
// recvmmsg. A case's figure is the datagrams that arrived at the N
// receivers during its window, divided by the window. Every delivered
// datagram is 100 bytes and ends with its send time (16 hex digits), which
// the drain reads when it measures latency.
//
// How members join. The benchmark speaks the documented wire protocol
// itself (the package's codec is unexported): from each member's socket it
// sends JOIN, answers the relay's COOKIE by sending JOIN again with the
// cookie, and takes the session from the WELCOME; many joins are in flight
// at once. In unicast mode a member's socket is also its receiver; in
// broadcast mode each member joins from a unicast socket of its own, and
// receives delivers on a socket bound to the group port the WELCOME
// announces, as a real member does. The join events are drained before any
// window starts. One member, the speaker, sends the chats: it is receiver
// #0, and it keeps at most 32 chats outstanding, a chat being done when its
// own copy arrives, so the relay's input never overflows.
//
// Figures drift 15-25% from run to run on a shared machine; only the ratios
// within one run mean much. The program exits 1 when a case cannot be set
// up, never because a target is missed. It needs Linux.
package main
