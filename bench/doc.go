// Command bench measures, in one run on one machine, how many datagrams per
// second the udpchat relay delivers, and compares each figure with a
// baseline measured in the same run: the raw sendmmsg limit, a raw relay,
// a naive one-write-per-member relay, and raw broadcast. It also measures
// one-way latency, the relay's heap per member and its join rate, the
// relay with its members in one room against the same members in many
// rooms, the heap of an idle room, and, end to end, what an application
// gets through udpchat.Member against naive clients of a naive relay.
//
//	go run ./bench                  # 1, 10, 100 and 1000 members, 2s per case, rooms, then end to end
//	go run ./bench -quick           # a tiny run
//	go run ./bench -members 100 -dur 5s -json
//	go run ./bench -members 100 -no-e2e -no-rooms -cpuprofile cpu.prof
//	go run ./bench -members 100 -no-e2e -no-rooms -pin=false   # the fed relays unpinned; -in-process: in this process
//	go run ./bench -e2e             # only the end-to-end cases, at 10, 100 and 1000 members
//	go run ./bench -no-e2e          # all but them
//	go run ./bench -rooms           # only the rooms case: 1 room of 1000 members against 100 rooms of 10
//	go run ./bench -rooms -rooms-members 2000 -rooms-count 200 -json
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
// queues. raw relay is the limit for a relay: no protocol, one goroutine
// locked to its thread on a socket the Go runtime never polls, reading the
// speaker's datagrams in batches with recvmmsg and writing each with
// sendmmsg (256 datagrams a call) to the N receivers, or once to
// 127.255.255.255. naive is a relay on a net.UDPConn that reads a datagram
// and writes it to each member with WriteToUDP, or once to
// 127.255.255.255 (naive broadcast). The raw relay, the naive relay and
// udpchat's relay are fed alike, by the speaker below; in broadcast mode
// the speaker sends from a unicast socket of its own and its chats are
// done when they reach receiver #0. Each of the three runs in a process of
// its own (this program, started again with -serve-relay, told which relay
// to serve on its stdin), as relays are deployed, so that none shares the
// Go scheduler with the drain and the speaker; -in-process serves them in
// this one, where udpchat's relay goroutine waited for a P that a locked
// thread in a system call held (0.7x-0.8x of the raw relay at 100
// members, about 1.0x in a process of its own; BENCHMARKS.md). With -pin
// (the default, on two CPUs or more) each relay's process runs on a CPU of
// its own, and so with one P, as the Go runtime sizes GOMAXPROCS by the
// CPUs it may use; this process, the drain and the speaker, runs on
// another, keeping its GOMAXPROCS. So a load generator is kept off the CPU
// of the system it measures, and where the kernel put the relay's threads
// and the drain's, the larger part of a figure's drift from one window to
// the next, is the same for every relay. Each relay's process tells its
// CPU time, context switches (getrusage) and GOMAXPROCS, and the runs
// table gives the first two per chat for the window: what the relay
// spent, as against what it delivered, as rates over the span between the
// two moments the relay's process took them (a busy relay may answer
// late). Beside them, busy: the share of its CPU the relay used, and the
// share of its own this process (the load) used. The one near 1 sets the
// rate: in unicast the relay, in broadcast the drain, whose N copies of
// each chat cost more than the relay's one write. The latency cases' naive and
// udpchat relays stay in this process: at 1,000 messages a second nothing
// waits for a P, and their baseline, the direct case, has no relay and so
// no wake-up across processes.
//
// How it measures. Every case drains its N receivers the same way: N
// non-blocking sockets, made with unix.Socket so the Go runtime never polls
// them, read by one goroutine locked to its OS thread with epoll_wait and
// recvmmsg. A case's figure is the datagrams that arrived at the N
// receivers during its window, divided by the window. Every delivered
// datagram is 100 bytes and ends with its send time (16 hex digits), which
// the drain reads when it measures latency. The relays the speaker feeds
// (raw relay, naive, udpchat) run in rounds (-rounds, 3 by default), in a
// turning order within each round; a ratio compares their median rounds,
// and the table lists each round's own ratio beside it.
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
// Rooms. The relay alone, as in the unicast cases (rate limits off, the
// same drain, the speakers' closed loop), with -rooms-members members
// (1000) in one room, and in -rooms-count rooms (100) of 10, each
// arrangement on a relay of its own with WithMaxMembers(1000) and
// WithMaxRooms(100) either way. Nothing differs between the two but the
// room each member names in its JOIN: the same receiver sockets and names,
// and the same 100 members speak, member 10k (in the 100 rooms the first
// to join room k, in the one room 100 of its members, taking turns), each
// room keeping at most 32 chats in flight, a chat being done when its copy
// reaches the room's first member. Why this load: what is held equal is
// the deliveries in flight (32 chats to 1000 members, or 3200 chats to 10
// each: 32,000 datagrams), enough for the relay to run flat out both ways
// and no more than the receivers hold; the relay then shows what it does
// with 100 times the chats for the same deliveries, which is what rooms
// ask of it. The same number of messages both ways would give the 100
// rooms a hundredth of the deliveries, a window too short to measure; 100
// speakers in the one room rather than one keep the relay's input the same
// 100 sessions, so that nothing but the rooms differs. The two take
// turns, twice, a window of -dur/2 each. The figures: deliveries per
// second at the 1000 receivers (compare these, not messages: a chat is
// 1000 deliveries in the one room and 10 in the others), chats per second
// (deliveries over the room size), lost (deliveries owed for what the
// relay sequenced that never arrived, the kernel's drops included), the
// receivers' drops in the windows, and the CPU time in the windows of the
// drain's thread, the speakers' thread (both locked; their thread CPU
// clocks) and the rest of the process, the relay's goroutine and the Go
// runtime. On two cores the speakers' thread, which sends 100 times the
// chats in the 100 rooms, takes CPU from the relay, so the relay's CPU per
// delivery is the steadier comparison; from the two the report works out
// a cost per delivery and a cost per chat (relay CPU per delivery = a +
// b/room size), and whatever a room costs beyond its fan-out is in b. The
// case runs with GOMAXPROCS raised to the CPUs plus 2: with no more Ps than
// CPUs, the speakers' thread, in sendto most of the time, holds a P while
// the relay's goroutine waits for one with thousands of chats queued at
// its socket and the machine a third idle (measured, at 0.62-0.86 times
// the one room's deliveries). So its figures compare its two arrangements
// with each other, not with the unicast cases' (other Ps, other speakers).
// Idle rooms: -rooms-members members, each in a room of its own, join a
// relay after one more (from 16 sockets, names being unique per room);
// the relay's heap growth after GC per room is a room, its member and its
// history of one join event (under 2 KiB, issue 15; the join heap per
// member of the one room is there to compare).
//
// End to end. Here udpchat is what an application gets: a Relay (no rate
// limits, the default history of 1024, heartbeat and expiry) served in a
// process of its own, as relays are deployed (this program, started again
// with -serve-relay; -in-process serves both relays in this one),
// and N members joined with udpchat.Join, each with a goroutine calling
// Receive in a loop and counting the chats of member #0, which sends with
// Send from 64 goroutines (Send returns once the relay has sequenced the
// message, so at most 64 are outstanding). Against it: a naive relay, in
// a process of its own too (ReadFromUDP, then WriteToUDP to every address
// it has heard from; clients register by sending a hello, whose fan-out
// drains before the run) and N naive clients on net.UDPConns (WriteToUDP "c0: text",
// ReadFromUDP in a loop, split at ": "), client #0 sending from one
// goroutine as fast as WriteToUDP goes. All sockets of both sides have 4
// MiB buffers, udpchat's default. Each text carries the message's number
// and its send time; each receiver marks the numbers it got. The cases:
// burst (-burst messages, -burst-large at 1000 members or more, as fast as
// the sender goes, bounded by a 20s deadline), sustained (up to 50,000
// messages, none started after 10s, and 5s more for the copies), both at
// each -e2e-members count, and latency (10 members, 1,000 messages a
// second, Send called to Receive returned, per copy; in four rounds of 1s,
// udpchat and the naive clients in turn, the rounds' samples pooled and
// each round's ratio listed). A run's rate
// is the chats counted at the N receivers (the sender among them) over the
// time from the first send to the last receipt, or to the deadline when it
// hit (the report marks it); lost are the sent messages some receiver
// never got. A run waits for every copy until its deadline, and the naive
// one also stops once its relay and receivers have been idle for 500ms,
// since nothing lost comes back. Nothing works around a slow sender: a
// Send still waiting at the deadline fails, and the report says how many
// messages went, when Send #2000 returned (below the outbox bound of twice
// the history plus 64) and the longest time no Send returned. For udpchat
// it also gives the control datagrams per delivered chat: the relay's
// Received minus its Sequenced, DroppedDuplicate (chats resent and taken
// before), DroppedRateLimited and DroppedRejected over the run, which
// leaves what members sent that is not a chat (progress reports,
// heartbeats, NACKs), divided by the chats delivered at the receivers;
// and the members' NACKs and the sender's resent chats (MemberStats).
//
// Figures drift 15-25% from run to run on a shared machine; only the ratios
// within one run mean much. The program exits 1 when a case cannot be set
// up, never because a target is missed. It needs Linux.
package main
