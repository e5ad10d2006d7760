//go:build linux

package main

import (
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/udpchat/udpchat"
	"golang.org/x/sys/unix"
)

// The rooms case: udpchat's relay alone, as in the unicast cases (the same
// drain, speakers and window), with the same members arranged two ways:
// all cfg.RoomsMembers in one room, and cfg.RoomsCount rooms of
// cfg.RoomsMembers/cfg.RoomsCount. The same cfg.RoomsCount members speak in
// both (one per room of the second; all in the one room of the first),
// and each room keeps at most speakWindow chats in flight, so that both
// hold the same deliveries in flight. Only the room each member names in
// its JOIN differs.

// roomsResult is the rooms case: the two arrangements and idle rooms.
type roomsResult struct {
	GOMAXPROCS int        `json:"gomaxprocs"` // while the rooms case ran
	Runs       []roomsRun `json:"runs"`
	Idle       idleRooms  `json:"idle_rooms"`
}

// A roomsRun is one arrangement of the members.
type roomsRun struct {
	result
	Rooms     int     `json:"rooms"`
	Size      int     `json:"room_size"`
	Speakers  int     `json:"speakers"`
	ChatsPerS float64 `json:"chats_per_s"` // chats delivered per second in the window: Rate / Size
	// Lost are the deliveries owed for what the relay sequenced that never
	// arrived (the kernel's drops included), warm-up and tail included.
	Lost uint64   `json:"lost"`
	CPU  cpuShare `json:"cpu"` // in the window
	// RelayNsPerDlv is CPU.Rest per delivered datagram: the relay's cost
	// whatever the load generator's.
	RelayNsPerDlv float64 `json:"relay_ns_per_delivery"`
	// JoinHeapPerMember is the relay's heap growth over the joins and
	// their join events, per member.
	JoinHeapPerMember float64 `json:"join_heap_bytes_per_member"`
}

// cpuShare is the CPU seconds per second of the window of the drain's
// thread, the speakers' thread and the rest of the process: the relay
// (one goroutine) and the Go runtime.
type cpuShare struct {
	Drain    float64 `json:"drain"`
	Speakers float64 `json:"speakers"`
	Rest     float64 `json:"relay_and_rest"`
}

// idleRooms is the relay's heap per room of one member that says nothing.
type idleRooms struct {
	Rooms     int      `json:"rooms"`
	HeapDelta int64    `json:"heap_delta_bytes"`
	PerRoom   float64  `json:"heap_bytes_per_room"`
	Notes     []string `json:"notes,omitempty"`
}

// roomsRounds is how many turns the arrangements take, one after the
// other, each a window of cfg.Dur/roomsRounds.
const roomsRounds = 2

// runRoomsCases sets up both arrangements, measures them in turns so that
// the machine's drift touches them alike, then the idle rooms, and returns
// them with their rows.
func runRoomsCases(cfg *config, progress io.Writer) (*roomsResult, []row, error) {
	// Two more Ps than CPUs, for the drain's and the speakers' locked
	// threads: with no more Ps than CPUs, the speakers' thread, busy in
	// sendto in many rooms, holds a P while the relay's goroutine waits
	// for one with chats queued at its socket (the machine partly idle).
	prev := runtime.GOMAXPROCS(0)
	res := &roomsResult{GOMAXPROCS: max(prev, runtime.NumCPU()+2)}
	runtime.GOMAXPROCS(res.GOMAXPROCS)
	defer runtime.GOMAXPROCS(prev)
	var sets []*roomsSetup
	closeAll := func() error {
		var first error
		for _, s := range sets {
			if cerr := s.g.close(); first == nil && cerr != nil {
				first = fmt.Errorf("%s: %w", s.run.Case, cerr)
			}
		}
		sets = nil
		return first
	}
	defer closeAll()
	for _, rooms := range []int{1, cfg.RoomsCount} {
		s, err := setupRooms(cfg, rooms)
		if err != nil {
			return nil, nil, fmt.Errorf("rooms %dx%d: %w", rooms, cfg.RoomsMembers/rooms, err)
		}
		sets = append(sets, s)
	}
	for range roomsRounds {
		for _, s := range sets {
			if err := s.round(cfg, cfg.Dur/roomsRounds); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", s.run.Case, err)
			}
		}
	}
	for _, s := range sets {
		r := s.finish()
		fmt.Fprintf(progress, "bench: %-22s N=%-5d %s, %s chats/s, relay %.0fns/delivery\n",
			r.Case, r.N, r.summary(), human(r.ChatsPerS), r.RelayNsPerDlv)
		res.Runs = append(res.Runs, r)
	}
	if err := closeAll(); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(progress, "bench: idle rooms (%d)\n", cfg.RoomsMembers)
	idle, err := runIdleRooms(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("idle rooms: %w", err)
	}
	res.Idle = idle
	return res, res.rows(), nil
}

// A roomSpeaker is a member sending chats.
type roomSpeaker struct {
	fd  int
	msg []byte // its CHAT, the member seq and time set per chat
	seq uint64
}

// A roomLoad is one room's speakers and its window: a chat is done when
// its copy reaches the room's watch socket, its first member.
type roomLoad struct {
	watch    int
	speakers []*roomSpeaker // in turn
	next     int
	start    uint64 // the watch's count when the load began
	drops0   uint64 // and its kernel drops
	sent     uint64 // this round
	extra    uint64 // chats counted done without a copy
	dropped  uint64 // the watch's drops already counted in extra
	seen     uint64 // the watch's count when it last moved
	moved    time.Time
}

// A roomsSetup is one arrangement, its members joined, between rounds;
// run accumulates the rounds, with their CPU times in cpu.
type roomsSetup struct {
	run         roomsRun
	g           *group
	loads       []*roomLoad
	cpu         [3]time.Duration // drain, speakers, process
	owed        uint64           // deliveries of what the speakers sent
	before      uint64           // deliveries counted before the first round
	total, size int
}

// setupRooms starts a relay and joins cfg.RoomsMembers members to it in
// rooms rooms of the same size.
func setupRooms(cfg *config, rooms int) (*roomsSetup, error) {
	total, speakers := cfg.RoomsMembers, cfg.RoomsCount
	size, stride := total/rooms, total/speakers
	s := &roomsSetup{total: total, size: size}
	r := &s.run
	*r = roomsRun{result: result{Case: fmt.Sprintf("rooms %dx%d", rooms, size), N: total},
		Rooms: rooms, Size: size, Speakers: speakers}
	relay, err := startRelay(total, udpchat.WithMaxRooms(speakers)) // the same relay both ways
	if err != nil {
		return nil, err
	}
	// The speakers join first, socket k*stride for speaker k (in the
	// second arrangement, the first member of room k), speaker 0 alone:
	// each room's first speaker comes first in its fan-out.
	order := make([]int, 0, total) // sockets in join order
	for k := range speakers {
		order = append(order, k*stride)
	}
	for i := range total {
		if i%stride != 0 {
			order = append(order, i)
		}
	}
	names := make([]string, total)
	for i, sock := range order {
		names[i] = fmt.Sprintf("m%d", sock)
	}
	j := newJoiner(relay.ap, names, joinWindow)
	d, err := newDrain(total, 0, 0, j.handle)
	if err != nil {
		relay.close()
		return nil, err
	}
	s.g = &group{relay: relay, addr: relay.ap, d: d, speaker: &j.reqs[0]}
	_, fds, _, err := d.receivers(total, 0)
	if err != nil {
		s.g.close()
		return nil, err
	}
	for i, sock := range order {
		j.reqs[i].fd = fds[sock]
		j.reqs[i].room = fmt.Sprintf("r%03d", sock/size)
	}
	h0 := heapAlloc()
	err = j.join(0, 1, 1, cfg.Timeout)
	if err == nil {
		err = j.join(1, speakers, joinWindow, cfg.Timeout)
	}
	if err == nil {
		err = j.join(speakers, total, joinWindow, cfg.Timeout)
	}
	if err != nil {
		s.g.close()
		return nil, err
	}
	// The k-th member to join a room gets the join events of the k-th and
	// later ones.
	if want := uint64(rooms) * uint64(size) * uint64(size+1) / 2; !d.waitSum(0, total, want, cfg.Timeout) {
		r.notef("only %d of %d join events arrived", d.sum(0, total), want)
	}
	r.JoinHeapPerMember = float64(int64(heapAlloc())-int64(h0)) / float64(total)
	if got := len(relay.Rooms()); got != rooms {
		r.notef("relay has %d rooms, want %d", got, rooms)
	}
	s.loads = make([]*roomLoad, rooms)
	for k := range speakers {
		sock := k * stride
		rl := s.loads[sock/size]
		if rl == nil {
			rl = &roomLoad{watch: sock}
			s.loads[sock/size] = rl
			d.watched[sock].Store(true)
		}
		req := &j.reqs[k]
		rl.speakers = append(rl.speakers, &roomSpeaker{fd: req.fd, msg: appendChat(nil, req.session, req.name)})
	}
	s.before = d.sum(0, total)
	return s, nil
}

// round loads the relay for cfg.Warm and a window of dur, then waits until
// the relay has sequenced what was sent.
func (s *roomsSetup) round(cfg *config, dur time.Duration) error {
	d, r := s.g.d, &s.run
	var tid atomic.Int32
	to := sockaddr(s.g.addr)
	sent, err := underLoad(func(stop <-chan struct{}) (uint64, error) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid.Store(int32(unix.Gettid()))
		return speakRooms(stop, time.Now().Add(cfg.Warm+dur+slack), cfg.limit(), d, s.loads, &to)
	}, func() {
		time.Sleep(cfg.Warm)
		u0 := s.cpuNow(tid.Load())
		c0, x0, t0 := d.sum(0, s.total), d.drops(0, s.total), time.Now()
		time.Sleep(dur)
		c1, x1, t1 := d.sum(0, s.total), d.drops(0, s.total), time.Now()
		u1 := s.cpuNow(tid.Load())
		r.Delivered, r.Drops, r.Window = r.Delivered+c1-c0, r.Drops+x1-x0, r.Window+t1.Sub(t0).Seconds()
		for i := range u0 {
			s.cpu[i] += u1[i] - u0[i]
		}
	})
	r.Sent += sent
	for _, rl := range s.loads {
		s.owed += rl.sent * uint64(s.size)
	}
	if err != nil {
		return err
	}
	s.g.settle(s.total, r.Sent, &r.result)
	return nil
}

// cpuNow reads the CPU times of the drain's thread, the speakers' thread
// tid and the process.
func (s *roomsSetup) cpuNow(tid int32) [3]time.Duration {
	return [3]time.Duration{threadCPU(s.g.d.tid.Load()), threadCPU(tid), processCPU()}
}

// finish waits for the deliveries still owed and works out the figures.
func (s *roomsSetup) finish() roomsRun {
	r, d := &s.run, s.g.d
	d.waitSum(0, s.total, s.before+s.owed, slack)
	if got := d.sum(0, s.total) - s.before; got < s.owed {
		r.Lost = s.owed - got
	}
	if r.Window > 0 {
		r.Rate = float64(r.Delivered) / r.Window
		r.ChatsPerS = r.Rate / float64(s.size)
		drain, speakers := s.cpu[0], s.cpu[1]
		rest := s.cpu[2] - drain - speakers
		r.CPU = cpuShare{Drain: drain.Seconds() / r.Window, Speakers: speakers.Seconds() / r.Window, Rest: rest.Seconds() / r.Window}
		if r.Delivered > 0 {
			r.RelayNsPerDlv = float64(rest.Nanoseconds()) / float64(r.Delivered)
		}
	}
	return *r
}

// speakRooms sends the rooms' chats, each room keeping at most speakWindow
// in flight, its speakers in turn, until stop is closed, the deadline
// passes or max chats went. A room whose watch gets nothing for stallAfter
// while it has chats in flight counts as done the copies the kernel
// dropped there, or else one chat, as closedLoop does.
func speakRooms(stop <-chan struct{}, deadline time.Time, max uint64, d *drain, rooms []*roomLoad, to *unix.RawSockaddrInet4) (uint64, error) {
	now := time.Now()
	for _, rl := range rooms {
		rl.start, rl.drops0, rl.moved = d.count(rl.watch), d.drops(rl.watch, rl.watch+1), now
		rl.seen, rl.sent, rl.extra, rl.dropped = rl.start, 0, 0, 0
	}
	idle := time.NewTimer(stallAfter)
	defer idle.Stop()
	var sent uint64
	for sent < max && !stopped(stop) && now.Before(deadline) {
		progress := false
		for _, rl := range rooms {
			w, c := rl.watch, d.count(rl.watch)
			switch {
			case c != rl.seen:
				rl.seen, rl.moved = c, now
			case int64(rl.sent) > int64(c-rl.start+rl.extra) && now.Sub(rl.moved) >= stallAfter:
				if lost := d.drops(w, w+1) - rl.drops0; lost > rl.dropped {
					rl.extra += lost - rl.dropped
					rl.dropped = lost
				} else {
					rl.extra++
				}
				rl.moved = now
			}
			done := c - rl.start + rl.extra
			for int64(rl.sent)-int64(done) < speakWindow && sent < max {
				sp := rl.speakers[rl.next]
				setChat(sp.msg, sp.seq+1)
				if err := sendTo(sp.fd, sp.msg, to); err != nil {
					if !transient(err) {
						return sent, err
					}
					break // the socket is full for a moment
				}
				sp.seq++
				rl.next = (rl.next + 1) % len(rl.speakers)
				rl.sent++
				sent++
				progress = true
			}
		}
		if !progress {
			idle.Reset(stallAfter)
			select {
			case <-stop:
			case <-d.notify:
			case <-idle.C:
			}
		}
		now = time.Now()
	}
	return sent, nil
}

// threadCPU returns the CPU time of the process's thread tid (0: none
// yet), by its CPU clock (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)).
func threadCPU(tid int32) time.Duration {
	var ts unix.Timespec
	if tid == 0 || unix.ClockGettime(int32(^uint32(tid)<<3|6), &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func processCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// runIdleRooms joins cfg.RoomsMembers members, each in a room of its own,
// after one more, and takes the relay's heap growth per room: a member, a
// room and the room's history of one join event. They join from
// memSockets sockets (names are unique per room).
func runIdleRooms(cfg *config) (m idleRooms, err error) {
	k := cfg.RoomsMembers
	m.Rooms = k
	relay, err := startRelay(k+1, udpchat.WithMaxRooms(k+1))
	if err != nil {
		return m, err
	}
	names := make([]string, k+1)
	for i := range names {
		names[i] = fmt.Sprintf("m%d", i)
	}
	j, d, err := spreadJoiner(relay, names, 0)
	if err != nil {
		relay.close()
		return m, err
	}
	defer stopBoth(relay, d, &err)
	for x := range j.reqs {
		j.reqs[x].room = fmt.Sprintf("idle%05d", x)
	}
	if err := j.join(0, 1, 1, cfg.Timeout); err != nil {
		return m, err
	}
	// Each member gets its own join event and nothing else.
	d.waitSum(0, memSockets, 1, cfg.Timeout)
	h0 := heapAlloc()
	if err := j.join(1, k+1, joinWindow, cfg.Timeout); err != nil {
		return m, err
	}
	if !d.waitSum(0, memSockets, uint64(k+1), cfg.Timeout) {
		m.Notes = append(m.Notes, fmt.Sprintf("only %d of %d join events arrived", d.sum(0, memSockets), k+1))
	}
	m.HeapDelta = int64(heapAlloc()) - int64(h0)
	m.PerRoom = float64(m.HeapDelta) / float64(k)
	if got := len(relay.Rooms()); got != k+1 {
		m.Notes = append(m.Notes, fmt.Sprintf("relay has %d rooms, want %d", got, k+1))
	}
	return m, nil
}
