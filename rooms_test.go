package udpchat

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// wireTap records what a proxy carries down to the members behind it,
// opened with the group's keys if it has them.
type wireTap struct {
	mu      sync.Mutex
	raw     [][]byte
	packets []packet // decoded, bytes copied
	keys    *keyring
}

func tapProxy(px *lossyProxy, keys *keyring) *wireTap {
	w := &wireTap{keys: keys}
	px.tap.Store(ptr(func(up bool, b []byte) {
		if up {
			return
		}
		b = bytes.Clone(b)
		plain := b
		if keys != nil {
			var err error
			if plain, _, _, err = keys.open(make([]byte, len(b)), b); err != nil {
				return
			}
		}
		var p packet
		if decode(plain, &p) != nil {
			return
		}
		w.mu.Lock()
		w.raw = append(w.raw, b)
		w.packets = append(w.packets, p)
		w.mu.Unlock()
	}))
	return w
}

func (w *wireTap) snapshot() ([][]byte, []packet) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.raw), slices.Clone(w.packets)
}

// receiveN receives n messages, failing on any error (a GapError too).
func receiveN(t testing.TB, m *Member, n int) []Message {
	t.Helper()
	out := make([]Message, 0, n)
	for range n {
		out = append(out, recv(t, m))
	}
	return out
}

// render gives a conversation as one comparable line per message.
func render(ms []Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%d:%v:%s>%s:%s", m.Seq, m.Kind, m.From, m.To, m.Text))
	}
	return out
}

// consecutive fails unless the seqs of ms run one by one from ms[0], but
// for those each message says it skipped.
func consecutive(t testing.TB, who string, ms []Message) {
	t.Helper()
	for i := 1; i < len(ms); i++ {
		if ms[i].Seq != ms[i-1].Seq+1+ms[i].Skipped {
			t.Fatalf("%s: seq %d after %d:\n%s", who, ms[i].Seq, ms[i-1].Seq, strings.Join(render(ms), "\n"))
		}
	}
}

// Each room is a group of its own: its order, its presence, names unique
// within it (alice is in two rooms), and not a datagram of one room's
// messages reaches a member of another.
func TestRoomsAreSeparate(t *testing.T) {
	r := startRelay(t)
	px := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
	tap := tapProxy(px, nil)
	ops := WithRoom("ops")
	alice := join(t, r, "alice", ops)
	bob := join(t, r, "bob", ops)
	carol := joinAt(t, px.Addr(), "carol") // the main room, behind the proxy
	alice2 := join(t, r, "alice")          // alice again, in the main room
	if alice.Room() != "ops" || carol.Room() != "" {
		t.Fatalf("rooms %q and %q", alice.Room(), carol.Room())
	}
	ctx := ctxT(t)
	for i := range 3 {
		if err := alice.Send(ctx, fmt.Sprint("ops-", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice2.Send(ctx, "main-0"); err != nil {
		t.Fatal(err)
	}
	wantOps := []string{"1:join:alice>:", "2:join:bob>:", "3:chat:alice>:ops-0", "4:chat:alice>:ops-1", "5:chat:alice>:ops-2"}
	if got := render(receiveN(t, alice, len(wantOps))); !slices.Equal(got, wantOps) {
		t.Errorf("alice in ops: %v, want %v", got, wantOps)
	}
	if got := render(receiveN(t, bob, len(wantOps)-1)); !slices.Equal(got, wantOps[1:]) { // from his join on
		t.Errorf("bob in ops: %v, want %v", got, wantOps[1:])
	}
	wantMain := []string{"1:join:carol>:", "2:join:alice>:", "3:chat:alice>:main-0"}
	if got := render(receiveN(t, carol, 3)); !slices.Equal(got, wantMain) {
		t.Errorf("carol in the main room: %v, want %v", got, wantMain)
	}
	if got := fmt.Sprint(r.Rooms()); got != "[{ 2} {ops 2}]" {
		t.Errorf("Rooms() = %s", got)
	}
	var rel []string
	for _, mi := range r.Members() {
		rel = append(rel, mi.Room+"/"+mi.Name)
	}
	if got := strings.Join(rel, ","); got != "/alice,/carol,ops/alice,ops/bob" {
		t.Errorf("relay's Members() = %s", got)
	}
	if ms := bob.Members(); len(ms) != 2 || ms[0].Room != "ops" || names(ms) != "alice,bob" {
		t.Errorf("bob's Members() = %+v", ms)
	}
	// What reached carol's socket: the main room's delivers only.
	raw, pks := tap.snapshot()
	for i, b := range raw {
		if bytes.Contains(b, []byte("ops-")) || pks[i].typ == tSkip {
			t.Fatalf("carol was sent %q", b)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.proto().check(); err != nil {
		t.Fatal(err)
	}
}

// A private message reaches the one member named, exactly once, in its
// place in the room's order, and its sender's copy once; the others'
// Receive skips its seq, and not one byte of it reaches them: a member
// behind a proxy is sent a SKIP of fixed size per private message and
// nothing else of it. With a key, and through a lossy network.
func TestPrivateMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
		loss impairment
	}{
		{"plain", nil, impairment{}},
		{"key", key1, impairment{}},
		{"lossy", nil, impairment{drop: 0.2, dup: 0.1, maxDelay: 2 * time.Millisecond}},
		{"lossy key", key1, impairment{drop: 0.2, dup: 0.1, maxDelay: 2 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []Option
			var keys *keyring
			if tc.key != nil {
				opts = append(opts, WithKey(tc.key))
				keys, _ = newKeyring([][]byte{tc.key})
			}
			r := startRelay(t, append(opts, WithRateLimit(0, 0))...)
			bobPx := newLossyProxy(t, r.Addr(), 2, tc.loss, tc.loss)
			carolPx := newLossyProxy(t, r.Addr(), 3, tc.loss, tc.loss)
			tap := tapProxy(carolPx, keys)
			ops := append(opts, WithRoom("ops"))
			alice := join(t, r, "alice", ops...)
			bob := joinAt(t, bobPx.Addr(), "bob", ops...)
			carol := joinAt(t, carolPx.Addr(), "carol", ops...)
			for _, m := range []*Member{alice, alice, bob} {
				recv(t, m) // the joins before carol's
			}
			const rounds = 20
			ctx := ctxT(t)
			for i := range rounds {
				if err := alice.Send(ctx, fmt.Sprint("pub-", i)); err != nil {
					t.Fatal(err)
				}
				if err := alice.SendTo(ctx, "bob", fmt.Sprint("psst-", i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := bob.SendTo(ctx, "alice", "back"); err != nil {
				t.Fatal(err)
			}
			if err := bob.Send(ctx, "end"); err != nil {
				t.Fatal(err)
			}
			// alice and bob: carol's join, then everything, in one order.
			n := 1 + 2*rounds + 2
			got := map[*Member][]Message{}
			for _, m := range []*Member{alice, bob} {
				got[m] = receiveN(t, m, n)
				consecutive(t, m.Name(), got[m])
			}
			if a, b := render(got[alice]), render(got[bob]); !slices.Equal(a, b) {
				t.Fatalf("alice and bob hold different conversations:\n%s\n--\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
			}
			for i, m := range got[bob][1 : 1+2*rounds] {
				want := fmt.Sprintf("%v:alice>:pub-%d", KindChat, i/2)
				if i%2 == 1 {
					want = fmt.Sprintf("%v:alice>bob:psst-%d", KindPrivate, i/2)
				}
				if have := strings.SplitN(render([]Message{m})[0], ":", 2)[1]; have != want {
					t.Fatalf("bob's message %d: %s, want %s", i, have, want)
				}
			}
			// carol: the public ones, with the private seqs skipped, no gap.
			pub := receiveN(t, carol, 1+rounds+1)
			var want []Message
			for _, m := range got[alice] {
				if m.Kind != KindPrivate {
					want = append(want, m)
				}
			}
			if a, b := render(pub), render(want); !slices.Equal(a, b) {
				t.Fatalf("carol received:\n%s\nwant:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
			}
			if st := carol.Stats(); st.Missed != 0 {
				t.Errorf("carol missed %d", st.Missed)
			}
			// What the relay sent carol: no byte of a private message.
			private := map[uint64]bool{}
			for _, m := range got[alice] {
				if m.Kind == KindPrivate {
					private[m.Seq] = true
				}
			}
			raw, pks := tap.snapshot()
			skipSize := skipLen
			if keys != nil {
				skipSize += sealOverhead
			}
			skips := map[uint64]bool{}
			for i, p := range pks {
				switch {
				case bytes.Contains(raw[i], []byte("psst")) || bytes.Contains(raw[i], []byte("back")):
					t.Fatalf("carol was sent %q", raw[i])
				case p.typ == tDeliver && (p.kind == KindPrivate || private[p.seq]):
					t.Fatalf("carol was sent the private message of seq %d", p.seq)
				case p.typ == tSkip:
					if !private[p.seq] || len(raw[i]) != skipSize {
						t.Fatalf("a SKIP of seq %d, %d bytes", p.seq, len(raw[i]))
					}
					skips[p.seq] = true
				}
			}
			if len(skips) != len(private) {
				t.Errorf("carol was told of %d private seqs, there were %d", len(skips), len(private))
			}
		})
	}
}

// A private message to a name not in the room is refused with
// ErrNoSuchMember, and takes no seq: the room's order goes on unbroken.
func TestSendToNoSuchMember(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice", WithRoom("ops"))
	join(t, r, "bob") // the main room
	ctx := ctxT(t)
	for _, name := range []string{"nobody", "bob", "bad:name"} {
		if err := alice.SendTo(ctx, name, "hi"); !errors.Is(err, ErrNoSuchMember) {
			t.Errorf("SendTo(%q) = %v, want ErrNoSuchMember", name, err)
		}
	}
	if err := alice.Send(ctx, "still here"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, KindJoin, "alice", "")
	if m := expect(t, alice, KindChat, "alice", "still here"); m.Seq != 2 {
		t.Errorf("the chat after refused private messages has seq %d, want 2", m.Seq)
	}
}

// The relay's limits: WithMaxRooms, WithMaxMembers across every room,
// WithMaxRoomMembers, room names checked like names, and plain text has no
// rooms.
func TestRoomLimits(t *testing.T) {
	r := startRelay(t, WithMaxRooms(2), WithMaxMembers(3))
	join(t, r, "a", WithRoom("one"))
	join(t, r, "b", WithRoom("two"))
	_, err := Join(ctxT(t), "c", WithAddr(r.Addr().String()), WithRoom("three"))
	if !errors.Is(err, ErrRelayFull) || !strings.Contains(err.Error(), "room limit") {
		t.Errorf("a third room with WithMaxRooms(2): %v, want ErrRelayFull for the room limit", err)
	}
	join(t, r, "c", WithRoom("one"))
	_, err = Join(ctxT(t), "d", WithAddr(r.Addr().String()), WithRoom("two"))
	if !errors.Is(err, ErrRelayFull) || !strings.Contains(err.Error(), "member limit") {
		t.Errorf("a fourth member with WithMaxMembers(3): %v, want ErrRelayFull for the member limit", err)
	}
	big, err := NewRelay(WithAddr("127.0.0.1:0"), WithMaxMembers(5000))
	if err != nil {
		t.Fatal(err)
	}
	if big.cfg.roomSize != 5000 {
		t.Errorf("WithMaxMembers(5000) leaves a room %d members", big.cfg.roomSize)
	}
	big.Close()
	small := startRelay(t, WithMaxRoomMembers(1))
	join(t, small, "a", WithRoom("one"))
	join(t, small, "b", WithRoom("two"))
	_, err = Join(ctxT(t), "c", WithAddr(small.Addr().String()), WithRoom("one"))
	if !errors.Is(err, ErrRelayFull) || !strings.Contains(err.Error(), `room "one" has its limit`) {
		t.Errorf("a second member of a room with WithMaxRoomMembers(1): %v, want ErrRelayFull for the room", err)
	}
	for _, room := range []string{"a:b", " lead", strings.Repeat("x", 33), "\x1b[2J"} {
		if _, err := Join(ctxT(t), "e", WithAddr(r.Addr().String()), WithRoom(room)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithRoom(%q): %v, want ErrInvalidOption", room, err)
		}
	}
	if _, err := Join(ctxT(t), "e", WithPlainText(), WithRoom("x")); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("WithRoom with WithPlainText: %v, want ErrInvalidOption", err)
	}
	if _, err := NewRelay(WithRoom("x")); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("NewRelay(WithRoom): %v, want ErrInvalidOption", err)
	}
	for _, o := range []Option{WithMaxRooms(0), WithMaxRooms(maxMaxRooms + 1), WithMaxRoomMembers(0)} {
		if _, err := NewRelay(o); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("NewRelay with a limit out of range: %v, want ErrInvalidOption", err)
		}
	}
	if _, err := Join(ctxT(t), "e", WithMaxRooms(2)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("Join(WithMaxRooms): %v, want ErrInvalidOption", err)
	}
	pr := startRelay(t, WithPlainText())
	pm := join(t, pr, "pat", WithPlainText())
	if err := pm.SendTo(ctxT(t), "bob", "x"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("plain SendTo: %v, want errors.ErrUnsupported", err)
	}
}

// A relay's JOIN with a room name that breaks the rules is refused.
func TestJoinBadRoomRefused(t *testing.T) {
	r := startRelay(t)
	rc := dialRaw(t, r.Addr())
	rc.send(appendJoin(nil, 0, 9, 0, 4242, 1, 0, &[cookieLen]byte{}, "x", "a:b"))
	c := rc.readType(tCookie)
	rc.send(appendJoin(nil, 0, 9, 0, 4242, 1, 0, &c.cookie, "x", "a:b"))
	if p := rc.readType(tError); p.code != codeBadName {
		t.Fatalf("error code %d, want %d", p.code, codeBadName)
	}
	if len(r.Rooms()) != 0 {
		t.Fatalf("rooms %v", r.Rooms())
	}
}

// A room that empties is gone; the next member to join opens it anew,
// numbered from 1.
func TestEmptyRoomDisappears(t *testing.T) {
	r := startRelay(t)
	alice := join(t, r, "alice", WithRoom("ops"))
	for i := range 3 {
		if err := alice.Send(ctxT(t), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	alice.Close()
	waitFor(t, func() bool { return len(r.Rooms()) == 0 }, "the empty room to go")
	bob := join(t, r, "bob", WithRoom("ops"))
	if m := expect(t, bob, KindJoin, "bob", ""); m.Seq != 1 {
		t.Errorf("the reopened room's first seq is %d, want 1", m.Seq)
	}
}

// roomJoin returns a join to room from `from` with the cookie the relay
// gives it at now, the time the join is handed to it. r.mu is held.
func roomJoin(r *Relay, from netip.AddrPort, nonce uint64, name, room string, now time.Time) []byte {
	_, c := r.proto().cookies.check(&[cookieLen]byte{}, from, nonce, now)
	return appendJoin(nil, 0, nonce, 0, nonce, 1, 0, &c, name, room)
}

// An idle room, one member in it, costs the relay under 2 KiB: what the
// relay holds for n members in n rooms, per room. Beside it, what a room
// adds to a member (n rooms of one against one room of n).
func TestIdleRoomMemory(t *testing.T) {
	const n = 1000
	heap := func(rooms int) float64 {
		r, err := NewRelay(WithAddr("127.0.0.1:0"), WithMaxRooms(n), WithMaxMembers(n))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r.mu.Lock()
		now := time.Now()
		for i := range n {
			from := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(20000+i))
			r.handleAt(roomJoin(r, from, uint64(i+1), fmt.Sprint("m", i), fmt.Sprint("room", i%rooms), now), from, now)
			r.q.flush() // to closed ports: dropped by loopback
		}
		r.mu.Unlock()
		if got := len(r.Rooms()); got != rooms {
			t.Fatalf("%d rooms, want %d", got, rooms)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(r)
		return float64(after.HeapAlloc-before.HeapAlloc) / n
	}
	perRoom, perMember := heap(n), heap(1)
	t.Logf("a room with one member: %.0f bytes; a member in a shared room: %.0f bytes; the room's own share: %.0f bytes", perRoom, perMember, perRoom-perMember)
	if perRoom >= 2048 {
		t.Errorf("an idle room with one member costs %.0f bytes, want under 2 KiB", perRoom)
	}
}

// A relay restart is survived room by room: each member rejoins its own
// room, and what was sent during the outage reaches that room only.
func TestRoomsSurviveRestart(t *testing.T) {
	opts := []Option{WithHeartbeat(20 * time.Millisecond), WithExpiry(200 * time.Millisecond)}
	rr := restartable{opts: opts}
	rr.startRelayAt(t, "127.0.0.1:0")
	alice := join(t, rr.relay, "alice", WithRoom("ops"))
	bob := join(t, rr.relay, "bob", WithRoom("ops"))
	carol := join(t, rr.relay, "carol")
	expect(t, bob, KindJoin, "bob", "")
	expect(t, carol, KindJoin, "carol", "")
	rr.stopRelay(true)
	sent := make(chan error, 1)
	go func() { sent <- alice.Send(ctxT(t), "during") }()
	r2 := startRelay(t, append(opts, WithAddr(rr.addr))...)
	if err := <-sent; err != nil {
		t.Fatalf("Send across the restart: %v", err)
	}
	if err := carol.Send(ctxT(t), "main after"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Member{bob, carol} {
		for {
			msg := recv(t, m)
			if msg.Kind != KindChat {
				continue
			}
			want := map[*Member]string{bob: "during", carol: "main after"}[m]
			if msg.Text != want {
				t.Fatalf("%s got %q first, want %q", m.Name(), msg.Text, want)
			}
			break
		}
	}
	waitFor(t, func() bool { return fmt.Sprint(r2.Rooms()) == "[{ 1} {ops 2}]" }, "both rooms on the new relay")
}

// idleRelay returns a relay that does not serve, held locked until the
// test ends, whose datagrams a fake writer takes: tests hand it datagrams
// with handleAt.
func idleRelay(t *testing.T, opts ...Option) (*Relay, *fakeWriter) {
	t.Helper()
	r, err := NewRelay(append([]Option{WithAddr("127.0.0.1:0")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	r.mu.Lock()
	t.Cleanup(r.mu.Unlock)
	w := &fakeWriter{}
	r.q.w = w
	return r, w
}

// A new Member on the address of the only member of a room (a program
// restarted on a fixed port) takes its place: the old one leaves, which
// empties the room, and the new one opens it again.
func TestRoomReplacedByNewMemberOnSameAddress(t *testing.T) {
	r, w := idleRelay(t)
	from := netip.MustParseAddrPort("127.0.0.1:40009")
	welcomeOf(t, r, w, from, 1, 0, 0, 100, 0, "alice", "ops", time.Now())
	welcomeOf(t, r, w, from, 2, 0, 0, 101, 0, "alice", "ops", time.Now())
	if err := r.proto().check(); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.mode.rooms()); got != "[{ops 1}]" {
		t.Fatalf("rooms %s, want ops with alice", got)
	}
	if m := r.proto().byRoom["ops"].members.byName["alice"]; m == nil || m.epoch != 101 {
		t.Fatalf("ops holds %+v, want the new alice", m)
	}
}

// A replay of an old Member's JOIN, from the address a new Member of that
// name now speaks from, does not put out the new one.
func TestReplayedJoinDoesNotReplaceMember(t *testing.T) {
	r, w := idleRelay(t)
	from := netip.MustParseAddrPort("127.0.0.1:40021")
	_, c := r.proto().cookies.check(&[cookieLen]byte{}, from, 1, time.Now())
	first := appendJoin(nil, 0, 1, 0, 100, 1, 0, &c, "alice", "")
	r.handleAt(first, from, time.Now())
	welcomeOf(t, r, w, from, 2, 0, 0, 101, 0, "alice", "", time.Now())
	r.handleAt(first, from, time.Now()) // the first Member's, replayed
	r.q.flush()
	if m := r.proto().main().byName["alice"]; m == nil || m.epoch != 101 {
		t.Fatalf("alice is %+v, want the second Member (epoch 101)", m)
	}
	if r.stats.DroppedReplayed != 1 {
		t.Errorf("DroppedReplayed %d, want 1", r.stats.DroppedReplayed)
	}
}
