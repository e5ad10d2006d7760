package udpchat

// Tests of the plain-text mode (WithPlainText): udpchat's relay and members
// speaking "name: text" datagrams among themselves, to raw sockets, to a
// fake relay, and to nc and socat. The classic Python programs and the
// shared-port broadcast setup are in plain_linux_test.go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// quiet is how long a test listens to show that nothing arrives. It is
// used only after an event that would already have produced the datagram
// (the relay fans a line out to every known address at once, so once one
// of them has it, the others have theirs or never will).
const quiet = 100 * time.Millisecond

// startPlainRelay runs a plain-text relay on a free loopback port.
func startPlainRelay(t testing.TB, opts ...Option) *Relay {
	t.Helper()
	return startRelay(t, append([]Option{WithPlainText()}, opts...)...)
}

// plainJoin joins the plain-text relay at addr as name.
func plainJoin(t testing.TB, addr, name string, opts ...Option) *Member {
	t.Helper()
	return joinAt(t, addr, name, append([]Option{WithPlainText()}, opts...)...)
}

// sortedNames lists the names of ms, sorted, comma-separated.
func sortedNames(ms []MemberInfo) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// memberAddr returns the address the relay lists for name, or nil.
func memberAddr(ms []MemberInfo, name string) net.Addr {
	for _, m := range ms {
		if m.Name == name {
			return m.Addr
		}
	}
	return nil
}

// recvChats receives n messages and checks that each is a chat, numbered
// by the member 1, 2, 3… after the seq it saw last, stamped with its
// arrival time (not before since); it returns them as "from: text" in
// arrival order.
func recvChats(t testing.TB, m *Member, lastSeq uint64, n int, since time.Time) []string {
	t.Helper()
	var got []string
	for i := range n {
		msg := recv(t, m)
		if msg.Kind != KindChat {
			t.Fatalf("%s: message %d is %v from %q: %q, want a chat", m.Name(), i, msg.Kind, msg.From, msg.Text)
		}
		if want := lastSeq + uint64(i) + 1; msg.Seq != want {
			t.Errorf("%s: %q from %q has Seq %d, want %d (counted by the member)", m.Name(), msg.Text, msg.From, msg.Seq, want)
		}
		// Time is when the line arrived: after it was sent, before
		// Receive returned it.
		if msg.Time.Before(since) || msg.Time.After(time.Now()) {
			t.Errorf("%s: %q has Time %v, want the moment it arrived", m.Name(), msg.Text, msg.Time)
		}
		got = append(got, msg.From+": "+msg.Text)
	}
	return got
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// noMore checks that m has nothing more to Receive for a moment.
func noMore(t testing.TB, m *Member) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), quiet)
	defer cancel()
	if msg, err := m.Receive(ctx); err == nil {
		t.Errorf("%s received %v from %q: %q (Seq %d), want nothing", m.Name(), msg.Kind, msg.From, msg.Text, msg.Seq)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s: Receive: %v, want the context's deadline", m.Name(), err)
	}
}

// rawExpect reads the next datagram of rc and checks it byte for byte.
func rawExpect(t testing.TB, rc *rawClient, want string) {
	t.Helper()
	got := rc.read(testTimeout)
	if got == nil {
		t.Fatalf("raw socket %v: nothing within %v, want %q", rc.c.LocalAddr(), testTimeout, want)
	}
	if string(got) != want {
		t.Fatalf("raw socket %v received %q, want %q byte for byte", rc.c.LocalAddr(), got, want)
	}
}

// rawSilent checks that nothing reaches rc for a moment.
func rawSilent(t testing.TB, rc *rawClient, why string) {
	t.Helper()
	if got := rc.read(quiet); got != nil {
		t.Errorf("raw socket %v received %q; want nothing (%s)", rc.c.LocalAddr(), got, why)
	}
}

// TestPlainLoopback: a plain relay and three plain members on loopback.
// Every member receives every line, its own included, with its sender and
// text; the relay lists the three; its counters say what happened.
func TestPlainLoopback(t *testing.T) {
	r := startPlainRelay(t)
	addr := r.Addr().String()
	before := time.Now()
	alice := plainJoin(t, addr, "alice")
	bob := plainJoin(t, addr, "bob")
	carol := plainJoin(t, addr, "carol")
	if d := time.Since(before); d > time.Second {
		t.Errorf("three plain Joins took %v: there is no handshake to wait for", d)
	}
	ms := []*Member{alice, bob, carol}
	// Join only sent a keepalive: wait until the relay has taken all three.
	waitFor(t, func() bool { return sortedNames(r.Members()) == "alice,bob,carol" }, "the relay to list alice, bob and carol")
	rm := r.Members()
	seen := map[string]bool{}
	for _, m := range rm {
		a, ok := m.Addr.(*net.UDPAddr)
		if !ok || !a.IP.IsLoopback() || a.Port == 0 {
			t.Errorf("relay lists %s at %v, want the member's loopback address", m.Name, m.Addr)
			continue
		}
		if seen[a.String()] {
			t.Errorf("relay lists %s at %v, the address of another member", m.Name, a)
		}
		seen[a.String()] = true
	}
	if st := r.Stats(); st.Sequenced != 0 || st.Delivered != 0 {
		t.Errorf("after three keepalives the relay stats are %+v: want nothing sequenced or delivered (keepalives are not forwarded)", st)
	}

	// Texts with a colon, spaces at the ends, and non-ASCII text.
	lines := map[*Member]string{
		alice: "hello from alice",
		bob:   "bob says: a colon in the text, ünïcödé ✓",
		carol: "  spaces at both ends  ",
	}
	var want []string
	ctx := ctxT(t)
	sent := time.Now()
	for _, m := range ms {
		if err := m.Send(ctx, lines[m]); err != nil {
			t.Fatalf("%s: Send: %v", m.Name(), err)
		}
		want = append(want, m.Name()+": "+lines[m])
	}
	for _, m := range ms {
		if got := recvChats(t, m, 0, 3, sent); !sameSet(got, want) {
			t.Errorf("%s received %q, want %q in any order", m.Name(), got, want)
		}
	}
	for _, m := range ms {
		if got := sortedNames(m.Members()); got != "alice,bob,carol" {
			t.Errorf("%s.Members() = %s, want alice,bob,carol (the names it heard from)", m.Name(), got)
		}
	}
	st := r.Stats()
	if st.Sequenced != 3 || st.Delivered != 9 || st.Received < 6 {
		t.Errorf("relay stats %+v: want 3 lines forwarded (Sequenced), 9 datagrams sent (Delivered), at least 6 received (3 keepalives, 3 lines)", st)
	}
	if st.DroppedMalformed+st.DroppedOversized+st.DroppedRateLimited != 0 {
		t.Errorf("relay stats %+v: dropped something on a clean run", st)
	}
	for _, m := range ms {
		noMore(t, m)
	}
}

// TestPlainMalformed sends a raw socket's junk to a plain relay: each
// datagram is dropped and counted, nothing reaches the members, and the
// junk's sender is not registered. Then the same socket speaks properly:
// its lines are forwarded byte for byte (trailing newline included), a
// line of exactly the buffer size fits, several names share its address,
// and keepalives register without being forwarded.
func TestPlainMalformed(t *testing.T) {
	const bufSize = 256
	r := startPlainRelay(t, WithBufferSize(bufSize))
	addr := r.Addr().String()
	alice := plainJoin(t, addr, "alice", WithBufferSize(bufSize))
	bob := plainJoin(t, addr, "bob", WithBufferSize(bufSize))
	waitFor(t, func() bool { return sortedNames(r.Members()) == "alice,bob" }, "the relay to list alice and bob")
	ctx := ctxT(t)

	raw := dialRaw(t, r.Addr())
	malformed := []string{
		"",                                // empty datagram
		"\n",                              // an empty line
		"no colon at all",                 // not name: text
		"mallory: \xff\xfe",               // text not UTF-8
		"\xffmallory: hi",                 // name not UTF-8
		": no name",                       // empty name
		" mallory: leading space in name", // name rules
		"mallory : trailing space in name",
		"mal\tlory: control character in name",
		"mal\x07lory: bell in name",
		strings.Repeat("n", maxNameLen+1) + ": name too long",
	}
	oversized := "mallory: " + strings.Repeat("x", bufSize+1-len("mallory: "))
	for _, b := range malformed {
		raw.send([]byte(b))
	}
	raw.send([]byte(oversized))

	// The relay reads its socket in order: once alice's next line is
	// forwarded, the junk before it has been dealt with.
	if err := alice.Send(ctx, "after the noise"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Member{alice, bob} {
		expect(t, m, KindChat, "alice", "after the noise")
	}
	st := r.Stats()
	if st.DroppedMalformed != uint64(len(malformed)) {
		t.Errorf("DroppedMalformed = %d, want %d (one per malformed datagram); stats %+v", st.DroppedMalformed, len(malformed), st)
	}
	if st.DroppedOversized != 1 {
		t.Errorf("DroppedOversized = %d, want 1; stats %+v", st.DroppedOversized, st)
	}
	if st.Sequenced != 1 || st.Delivered != 2 {
		t.Errorf("relay stats %+v: want 1 line forwarded to 2 members", st)
	}
	if got := sortedNames(r.Members()); got != "alice,bob" {
		t.Errorf("relay.Members() = %s after junk, want alice,bob", got)
	}
	rawSilent(t, raw, "junk must not register its sender")

	// Now the raw socket speaks properly: it is registered by its first
	// line and gets that line back, unchanged, like everyone.
	exact := "dave: " + strings.Repeat("é", (bufSize-len("dave: "))/2) // exactly bufSize bytes
	if len(exact) != bufSize {
		t.Fatalf("test bug: %d bytes", len(exact))
	}
	raw.send([]byte(exact))
	rawExpect(t, raw, exact)
	for _, m := range []*Member{alice, bob} {
		expect(t, m, KindChat, "dave", exact[len("dave: "):])
	}
	for _, tc := range []struct{ sent, name, text string }{
		{"dave: with a newline\n", "dave", "with a newline"},
		{"dave: with CRLF\r\n", "dave", "with CRLF"},
		{"erin: another name from the same socket", "erin", "another name from the same socket"},
	} {
		raw.send([]byte(tc.sent))
		rawExpect(t, raw, tc.sent) // byte for byte: the newline stays on the wire
		for _, m := range []*Member{alice, bob} {
			expect(t, m, KindChat, tc.name, tc.text)
		}
	}
	// Keepalives: registered, not forwarded.
	for _, k := range []string{"frank:", "frank: ", "frank:\n", "frank: \r\n"} {
		raw.send([]byte(k))
	}
	if err := bob.Send(ctx, "marker"); err != nil {
		t.Fatal(err)
	}
	rawExpect(t, raw, "bob: marker\n")
	for _, m := range []*Member{alice, bob} {
		expect(t, m, KindChat, "bob", "marker")
	}
	rm := r.Members()
	if got := sortedNames(rm); got != "alice,bob,dave,erin,frank" {
		t.Errorf("relay.Members() = %s, want alice,bob,dave,erin,frank", got)
	}
	rawAddr := raw.c.LocalAddr().String()
	for _, n := range []string{"dave", "erin", "frank"} {
		if a := memberAddr(rm, n); a == nil || a.String() != rawAddr {
			t.Errorf("relay lists %s at %v, want %s (the one socket that sent its lines)", n, a, rawAddr)
		}
	}
	st2 := r.Stats()
	if st2.Sequenced != 6 {
		t.Errorf("Sequenced = %d, want 6 (keepalives are not forwarded); stats %+v", st2.Sequenced, st2)
	}
	// 1 line to 2 members, then 4 lines and a marker to 3 addresses.
	if st2.Delivered != 2+5*3 {
		t.Errorf("Delivered = %d, want %d; stats %+v", st2.Delivered, 2+5*3, st2)
	}
	if st2.DroppedMalformed != st.DroppedMalformed || st2.DroppedOversized != st.DroppedOversized {
		t.Errorf("good lines were counted as dropped: stats %+v", st2)
	}
	if st2.Received < st.Received+8 {
		t.Errorf("Received = %d, want at least %d", st2.Received, st.Received+8)
	}
	noMore(t, alice)
	noMore(t, bob)
}

// TestPlainRateLimit: a source that floods a plain relay is cut to its
// rate and counted; another source's lines still get through.
func TestPlainRateLimit(t *testing.T) {
	const rate, flood = 5, 40 // a burst holds two seconds' worth: 10
	r := startPlainRelay(t, WithRateLimit(rate, 0))
	bystander := dialRaw(t, r.Addr())
	bystander.send([]byte("bob:"))
	waitFor(t, func() bool { return sortedNames(r.Members()) == "bob" }, "bob's keepalive")
	flooder := dialRaw(t, r.Addr())
	start := time.Now()
	for i := range flood {
		flooder.send(fmt.Appendf(nil, "mallory: flood %d", i))
	}
	waitFor(t, func() bool { return r.Stats().Received >= flood+1 }, "the relay to read the flood")
	st := r.Stats()
	// At most the burst plus what refilled while the flood was read.
	allowed := 2*rate + int(time.Since(start).Seconds()*rate) + 1
	if st.DroppedRateLimited == 0 || st.Sequenced+st.DroppedRateLimited != flood || int(st.Sequenced) > allowed {
		t.Errorf("relay stats %+v after %d lines: want at most %d forwarded and the rest counted in DroppedRateLimited", st, flood, allowed)
	}
	// The bystander got the forwarded part of the flood, then its own line.
	bystander.send([]byte("bob: still here"))
	for i := 0; ; i++ {
		b := bystander.read(testTimeout)
		if b == nil || i > flood {
			t.Fatalf("bob's line did not come back; last read %q", b)
		}
		if string(b) == "bob: still here" {
			break
		}
		if !bytes.HasPrefix(b, []byte("mallory: flood ")) {
			t.Fatalf("bystander received %q", b)
		}
	}
	if got := r.Stats().DroppedRateLimited; got != st.DroppedRateLimited {
		t.Errorf("bob's one line was rate limited: DroppedRateLimited %d -> %d", st.DroppedRateLimited, got)
	}
}

// TestPlainExpiry: a source that went silent stops being forwarded to
// after the expiry span, while a member that sends keepalives stays; the
// silent one comes back by sending again.
func TestPlainExpiry(t *testing.T) {
	const hb, expiry = 20 * time.Millisecond, 100 * time.Millisecond
	r := startPlainRelay(t, WithHeartbeat(hb), WithExpiry(expiry))
	addr := r.Addr().String()
	alice := plainJoin(t, addr, "alice", WithHeartbeat(hb))
	waitFor(t, func() bool { return sortedNames(r.Members()) == "alice" }, "alice's keepalive")

	raw := dialRaw(t, r.Addr())
	raw.send([]byte("dave: hello"))
	sent := time.Now()
	rawExpect(t, raw, "dave: hello")
	expect(t, alice, KindChat, "dave", "hello")
	if got := sortedNames(r.Members()); got != "alice,dave" {
		t.Errorf("relay.Members() = %s, want alice,dave", got)
	}
	waitFor(t, func() bool { return sortedNames(r.Members()) == "alice" }, "dave to expire")
	if d := time.Since(sent); d < expiry {
		t.Errorf("dave expired %v after his last line, before the expiry span %v", d, expiry)
	}
	// alice has outlived several expiry spans on her keepalives alone.
	ctx := ctxT(t)
	if err := alice.Send(ctx, "after dave left"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, KindChat, "alice", "after dave left")
	rawSilent(t, raw, "dave's registration expired")

	raw.send([]byte("dave: back"))
	rawExpect(t, raw, "dave: back")
	expect(t, alice, KindChat, "dave", "back")
	if got := sortedNames(r.Members()); got != "alice,dave" {
		t.Errorf("relay.Members() = %s after dave came back, want alice,dave", got)
	}
	if st := r.Stats(); st.Sequenced != 3 {
		t.Errorf("relay stats %+v: want 3 lines forwarded", st)
	}
}

// TestPlainRelayCloseSilent: closing a plain relay sends nothing to the
// addresses it knows (there is no protocol to say goodbye in).
func TestPlainRelayCloseSilent(t *testing.T) {
	r, err := NewRelay(WithPlainText(), WithAddr("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(context.Background()) }()
	raw := dialRaw(t, r.Addr())
	raw.send([]byte("dave: hi"))
	rawExpect(t, raw, "dave: hi")
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve returned %v after Close, want nil", err)
	}
	rawSilent(t, raw, "a closing plain relay tells no one")
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// fakeRelay is a bare UDP socket in the relay's place, to see exactly what
// a plain member sends and to feed it what a relay (or anything else)
// might send.
type fakeRelay struct {
	t      testing.TB
	c      *net.UDPConn
	member *net.UDPAddr // where the member's datagrams came from
}

func newFakeRelay(t testing.TB) *fakeRelay {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &fakeRelay{t: t, c: c}
}

func (f *fakeRelay) addr() string { return f.c.LocalAddr().String() }

// read returns the next datagram from the member, or nil after d.
func (f *fakeRelay) read(d time.Duration) []byte {
	buf := make([]byte, 65536)
	f.c.SetReadDeadline(time.Now().Add(d))
	n, from, err := f.c.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	if f.member == nil {
		f.member = from
	} else if from.String() != f.member.String() {
		f.t.Errorf("member sent from %v, and before from %v: want one socket", from, f.member)
	}
	return buf[:n]
}

// expectLine reads the member's datagrams, skipping its keepalives
// (exactly keepalive), until one that is not; it must be want.
func (f *fakeRelay) expectLine(keepalive, want string) {
	f.t.Helper()
	for range 100 {
		b := f.read(testTimeout)
		if b == nil {
			f.t.Fatalf("fake relay: nothing from the member within %v, want %q", testTimeout, want)
		}
		if string(b) == keepalive {
			continue
		}
		if string(b) != want {
			f.t.Fatalf("fake relay received %q, want %q", b, want)
		}
		return
	}
	f.t.Fatalf("fake relay: only keepalives, want %q", want)
}

func (f *fakeRelay) send(b string) {
	f.t.Helper()
	if _, err := f.c.WriteToUDP([]byte(b), f.member); err != nil {
		f.t.Fatal(err)
	}
}

// TestPlainMemberWire checks a plain member against a fake relay: the
// keepalive at Join, the exact bytes Send puts on the wire and what it
// refuses, how Receive parses lines, numbers them and drops junk, Members,
// and a Close that sends nothing.
func TestPlainMemberWire(t *testing.T) {
	const bufSize = 200
	f := newFakeRelay(t)
	ctx := ctxT(t)
	start := time.Now()
	m, err := Join(ctx, "alice", WithPlainText(), WithAddr(f.addr()), WithBufferSize(bufSize))
	if err != nil {
		t.Fatalf("Join: %v (no handshake: it cannot know whether a relay listens)", err)
	}
	t.Cleanup(func() { m.Close() })
	if d := time.Since(start); d > time.Second {
		t.Errorf("Join took %v although nothing answered: there is no handshake", d)
	}
	if b := f.read(testTimeout); string(b) != "alice:" {
		t.Fatalf("the member's first datagram is %q, want the keepalive %q", b, "alice:")
	}

	// Send: "name: text\n", as nc sends lines; refusals put nothing on the wire.
	if err := m.Send(ctx, "hi there"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	f.expectLine("alice:", "alice: hi there\n")
	fits := strings.Repeat("x", bufSize-len("alice: \n"))
	if err := m.Send(ctx, fits+"y"); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("Send of %d bytes of text with a %d-byte buffer: %v, want ErrMessageTooLarge", len(fits)+1, bufSize, err)
	}
	if err := m.Send(ctx, "bad \xff text"); !errors.Is(err, ErrInvalidText) {
		t.Errorf("Send of invalid UTF-8: %v, want ErrInvalidText", err)
	}
	if err := m.Send(ctx, fits); err != nil {
		t.Errorf("Send of a line of exactly the buffer size: %v", err)
	}
	f.expectLine("alice:", "alice: "+fits+"\n")
	if err := m.Send(ctx, ""); err != nil {
		t.Logf("Send(\"\"): %v", err) // unspecified; only logged
	} else if b := f.read(quiet); b != nil && string(b) != "alice:" && string(b) != "alice: " {
		t.Errorf("Send(\"\") put %q on the wire", b)
	}

	// Receive: lines parsed, one trailing newline taken off, numbered by
	// the member; junk dropped and counted.
	lines := []struct{ sent, want string }{
		{"carol: one\n", "carol: one"},
		{"carol: two\r\n", "carol: two"},
		{"dave: three: with a colon", "dave: three: with a colon"},
		{"erin:   ünïcödé ✓  ", "erin:   ünïcödé ✓  "}, // "erin: " then the text "  ünïcödé ✓  "
	}
	junk := []string{
		"",
		"no colon",
		"\xff: not UTF-8",
		"carol: \xff",
		" carol: bad name",
		": no name",
		strings.Repeat("n", maxNameLen+1) + ": long name",
		"carol: " + strings.Repeat("x", bufSize+1-len("carol: ")), // oversized
	}
	before := time.Now()
	f.send(lines[0].sent)
	f.send(lines[1].sent)
	for _, j := range junk {
		f.send(j)
	}
	f.send(lines[2].sent)
	f.send(lines[3].sent)
	var got []string
	for i := range lines {
		msg := recv(t, m)
		if msg.Kind != KindChat || msg.Seq != uint64(i+1) {
			t.Errorf("message %d: %v Seq %d, want chat Seq %d", i, msg.Kind, msg.Seq, i+1)
		}
		if msg.Time.Before(before) || msg.Time.After(time.Now()) {
			t.Errorf("message %d: Time %v, want its arrival (after %v)", i, msg.Time, before)
		}
		got = append(got, msg.From+": "+msg.Text)
	}
	var want []string
	for _, l := range lines {
		want = append(want, l.want)
	}
	// "No order" is promised, but a fake relay on loopback sends in order.
	if !sameSet(got, want) {
		t.Errorf("received %q, want %q", got, want)
	}
	st := m.Stats()
	if st.Dropped != uint64(len(junk)) {
		t.Errorf("MemberStats.Dropped = %d, want %d; stats %+v", st.Dropped, len(junk), st)
	}
	if st.Received != uint64(len(lines)) {
		t.Errorf("MemberStats.Received = %d, want %d (messages handed to Receive); stats %+v", st.Received, len(lines), st)
	}
	if got := sortedNames(m.Members()); got != "carol,dave,erin" {
		t.Errorf("Members() = %s, want carol,dave,erin (the names it heard from)", got)
	}

	// A stranger cannot reach the member's socket, which is connected to
	// the relay.
	stranger := dialRaw(t, f.member)
	stranger.send([]byte("mallory: not from the relay"))
	f.send("carol: marker")
	if msg := recv(t, m); msg.From != "carol" || msg.Text != "marker" || msg.Seq != uint64(len(lines)+1) {
		t.Errorf("after a stranger's line: %q from %q (Seq %d), want the relay's marker", msg.Text, msg.From, msg.Seq)
	}
	noMore(t, m)

	// Close: nothing on the wire, goroutines gone (goleak checks at the end).
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range 10 {
		b := f.read(quiet)
		if b == nil {
			break
		}
		if string(b) != "alice:" { // a keepalive may have crossed Close
			t.Errorf("after Close the member sent %q, want nothing", b)
		}
	}
	if err := m.Send(ctx, "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if _, err := m.Receive(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Receive after Close: %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestPlainMemberHeartbeat: a plain member repeats its keepalive every
// heartbeat (WithHeartbeat on the member, which it needs in plain mode:
// there is no handshake to learn it in).
func TestPlainMemberHeartbeat(t *testing.T) {
	const hb = 20 * time.Millisecond
	f := newFakeRelay(t)
	m, err := Join(ctxT(t), "alice", WithPlainText(), WithAddr(f.addr()), WithHeartbeat(hb))
	if err != nil {
		t.Fatalf("Join with WithPlainText and WithHeartbeat(%v): %v", hb, err)
	}
	t.Cleanup(func() { m.Close() })
	start := time.Now()
	const n = 5
	for i := range n {
		if b := f.read(testTimeout); string(b) != "alice:" {
			t.Fatalf("datagram %d is %q, want the keepalive %q", i, b, "alice:")
		}
	}
	// n keepalives: the one at Join and n-1 heartbeats.
	if d := time.Since(start); d < (n-2)*hb {
		t.Errorf("%d keepalives in %v: more often than every %v", n, d, hb)
	}
}

// TestPlainMemberExpiry: a plain member's Members lists the names heard
// from in the last expiry span, and forgets the silent ones.
func TestPlainMemberExpiry(t *testing.T) {
	const hb, expiry = 20 * time.Millisecond, 100 * time.Millisecond
	f := newFakeRelay(t)
	m, err := Join(ctxT(t), "alice", WithPlainText(), WithAddr(f.addr()), WithHeartbeat(hb), WithExpiry(expiry))
	if err != nil {
		t.Fatalf("Join with WithPlainText, WithHeartbeat(%v) and WithExpiry(%v): %v", hb, expiry, err)
	}
	t.Cleanup(func() { m.Close() })
	f.read(testTimeout)
	f.send("carol: hi")
	expect(t, m, KindChat, "carol", "hi")
	heard := time.Now()
	if got := sortedNames(m.Members()); got != "carol" {
		t.Errorf("Members() = %s, want carol", got)
	}
	waitFor(t, func() bool { return len(m.Members()) == 0 }, "carol to be forgotten")
	if d := time.Since(heard); d < expiry-10*time.Millisecond {
		t.Errorf("carol forgotten %v after she spoke, before the expiry span %v", d, expiry)
	}
}

// TestPlainJoinBeforeRelay: a plain member joins before any relay listens
// (its keepalive is refused by the kernel), and carries on when one
// starts.
func TestPlainJoinBeforeRelay(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := plainJoin(t, addr, "alice")
	// The refused keepalive comes back as ECONNREFUSED on the member's
	// connected socket; a Send before the relay exists may see it too.
	r := startPlainRelay(t, WithAddr(addr))
	ctx := ctxT(t)
	if err := m.Send(ctx, "is anyone there?"); err != nil {
		// One retry: the first Send may collect the earlier refusal.
		if err2 := m.Send(ctx, "is anyone there?"); err2 != nil {
			t.Fatalf("Send after the relay started: %v, then %v", err, err2)
		}
		t.Logf("first Send after the relay started: %v", err)
	}
	expect(t, m, KindChat, "alice", "is anyone there?")
	if got := sortedNames(r.Members()); got != "alice" {
		t.Errorf("relay.Members() = %s, want alice", got)
	}
}

// TestPlainOptions: the option combinations plain mode forbids.
func TestPlainOptions(t *testing.T) {
	key := make([]byte, 16)
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	bcast := fmt.Sprintf("127.255.255.255:%d", freePort(t))
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"plain then key", []Option{WithPlainText(), WithKey(key)}},
		{"key then plain", []Option{WithKey(key), WithPlainText()}},
	} {
		t.Run("relay/"+tc.name, func(t *testing.T) {
			r, err := NewRelay(append([]Option{WithAddr("127.0.0.1:0")}, tc.opts...)...)
			if err == nil {
				r.Close()
			}
			if !errors.Is(err, ErrInvalidOption) {
				t.Errorf("NewRelay: %v, want ErrInvalidOption", err)
			}
		})
	}
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		opts []Option
		want error
	}{
		{"plain then key", []Option{WithPlainText(), WithKey(key)}, ErrInvalidOption},
		{"key then plain", []Option{WithKey(key), WithPlainText()}, ErrInvalidOption},
		{"broadcast without plain", []Option{WithBroadcast(bcast)}, ErrInvalidOption},
		{"plain broadcast to 255.255.255.255", []Option{WithPlainText(), WithBroadcast("255.255.255.255:2410")}, ErrInvalidOption},
		{"plain broadcast without port", []Option{WithPlainText(), WithBroadcast("127.255.255.255:0")}, ErrInvalidOption},
		{"plain with a bad name", nil, ErrInvalidName},
		{"heartbeat without plain", []Option{WithHeartbeat(20 * time.Millisecond)}, ErrInvalidOption},
		{"heartbeat then plain", []Option{WithHeartbeat(20 * time.Millisecond), WithPlainText()}, nil},
		{"plain then heartbeat", []Option{WithPlainText(), WithHeartbeat(20 * time.Millisecond)}, nil},
	} {
		t.Run("member/"+tc.name, func(t *testing.T) {
			name := "alice"
			if tc.want == ErrInvalidName {
				name = "a:b"
				tc.opts = []Option{WithPlainText()}
			}
			m, err := Join(ctx, name, append([]Option{WithAddr(dead)}, tc.opts...)...)
			if err == nil {
				m.Close()
			}
			if !errors.Is(err, tc.want) { // errors.Is(nil, nil) holds
				t.Errorf("Join: %v, want %v", err, tc.want)
			}
		})
	}
	// What stays allowed: a plain relay with a broadcast target.
	r, err := NewRelay(WithAddr("127.0.0.1:0"), WithPlainText(), WithBroadcast(bcast))
	if err != nil {
		t.Errorf("NewRelay(WithPlainText, WithBroadcast): %v", err)
	} else {
		r.Close()
	}
}

// lockedOutput collects a child process's output, and wakes a waiter on
// every write.
type lockedOutput struct {
	mu   sync.Mutex
	b    []byte
	more chan struct{}
}

func newLockedOutput() *lockedOutput { return &lockedOutput{more: make(chan struct{}, 1)} }

func (o *lockedOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	o.b = append(o.b, p...)
	o.mu.Unlock()
	select {
	case o.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (o *lockedOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.b)
}

// child is a process a test started, with its stdin on a pipe and its
// output collected. Cleanup closes its stdin, kills it by its PID if it
// still runs, and reaps it.
type child struct {
	name     string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	out, err *lockedOutput
	done     chan struct{} // closed when it has exited
	exitErr  error         // valid after done
}

func startChild(t testing.TB, name, path string, args ...string) *child {
	t.Helper()
	c := &child{name: name, cmd: exec.Command(path, args...), out: newLockedOutput(), err: newLockedOutput(), done: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.err
	c.cmd.WaitDelay = time.Second // no grandchild holds its output open for longer
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		c.exitErr = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.stdin.Close()
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill() // only this child, by its PID
		}
		select {
		case <-c.done:
		case <-time.After(testTimeout):
			t.Errorf("%s (pid %d) did not exit after kill", c.name, c.cmd.Process.Pid)
		}
	})
	return c
}

func (c *child) write(t testing.TB, s string) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, s); err != nil {
		t.Fatalf("write to %s: %v", c.name, err)
	}
}

// waitOut waits until cond holds for the child's output so far.
func (c *child) waitOut(t testing.TB, what string, cond func(out string) bool) {
	t.Helper()
	timeout := time.NewTimer(testTimeout)
	defer timeout.Stop()
	for {
		if cond(c.out.String()) {
			return
		}
		select {
		case <-c.out.more:
		case <-c.done:
			if cond(c.out.String()) {
				return
			}
			t.Fatalf("%s exited (%v) before %s; stdout %q, stderr %q", c.name, c.exitErr, what, c.out, c.err)
		case <-timeout.C:
			t.Fatalf("%s: no %s within %v; stdout %q, stderr %q", c.name, what, testTimeout, c.out, c.err)
		}
	}
}

// waitContains waits until the child's output contains want.
func (c *child) waitContains(t testing.TB, want string) {
	t.Helper()
	c.waitOut(t, fmt.Sprintf("%q in its output", want), func(out string) bool { return strings.Contains(out, want) })
}

// TestPlainNetcat chats between a plain udpchat member and nc -u or socat
// through a plain relay: nc registers by sending its first line, the
// member gets that line without its newline, and nc prints the member's
// line as it came, "alice: hi nc".
//
// CI installs Debian's netcat-openbsd and socat; without them the
// variants are skipped. (nc -C is not used: netcat-openbsd sends the CRLF
// it adds as a datagram of its own; socat's crlf option covers CRLF.)
func TestPlainNetcat(t *testing.T) {
	for _, tc := range []struct {
		name string
		bin  string
		args func(port int) []string
		// The line end the tool prints for the relay's copy of its own
		// line: socat's crlf sends "\r\n" and turns it back into "\n" on
		// the way in.
		nl string
	}{
		{"nc", "nc", func(port int) []string { return []string{"-u", "-n", "127.0.0.1", fmt.Sprint(port)} }, "\n"},
		{"socat", "socat", func(port int) []string { return []string{"-", fmt.Sprintf("UDP4:127.0.0.1:%d", port)} }, "\n"},
		{"socat crlf", "socat", func(port int) []string { return []string{"-", fmt.Sprintf("UDP4:127.0.0.1:%d,crlf", port)} }, "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, err := exec.LookPath(tc.bin)
			if err != nil {
				t.Skipf("%s not found (Debian: apt-get install netcat-openbsd socat): %v", tc.bin, err)
			}
			r := startPlainRelay(t)
			port := r.Addr().(*net.UDPAddr).Port
			alice := plainJoin(t, r.Addr().String(), "alice")
			waitFor(t, func() bool { return sortedNames(r.Members()) == "alice" }, "alice's keepalive")

			nc := startChild(t, tc.name, path, tc.args(port)...)
			nc.write(t, "carol: hello from nc\n")
			expect(t, alice, KindChat, "carol", "hello from nc")
			// The relay sends the line back to nc too, byte for byte.
			nc.waitContains(t, "carol: hello from nc"+tc.nl)
			rm := r.Members()
			if got := sortedNames(rm); got != "alice,carol" {
				t.Errorf("relay.Members() = %s, want alice,carol", got)
			}
			if a, ok := memberAddr(rm, "carol").(*net.UDPAddr); !ok || !a.IP.IsLoopback() {
				t.Errorf("relay lists carol at %v, want nc's loopback address", memberAddr(rm, "carol"))
			}

			if err := alice.Send(ctxT(t), "hi nc"); err != nil {
				t.Fatal(err)
			}
			expect(t, alice, KindChat, "alice", "hi nc")
			nc.waitContains(t, "alice: hi nc")
			// A plain member's line ends with a newline, as nc's do.
			if out := nc.out.String(); out != "carol: hello from nc"+tc.nl+"alice: hi nc\n" {
				t.Errorf("%s printed %q, want exactly the two lines as sent", tc.name, out)
			}
			if st := r.Stats(); st.Sequenced != 2 || st.Delivered != 4 || st.DroppedMalformed != 0 {
				t.Errorf("relay stats %+v: want 2 lines forwarded to 2 addresses, nothing malformed", st)
			}
		})
	}
}

// FuzzPlainRelay feeds a run of datagrams (the input split at 0xff, a byte
// no plain line may hold) from a few sources in turn to a plain relay that
// starts afresh for each run, so that what the fuzzer learns of an input
// is the same each time it runs it: nothing panics, a line is taken only
// with a valid name and UTF-8 text, and the relay's tables stay in step.
func FuzzPlainRelay(f *testing.F) {
	for _, s := range []string{"alice: hi", "bob:", "carol: x\r\n", ": none", "a\x00b: c", "dave: \xff", "", "eve:: colon",
		"a: 1\xffb: 2\xffc: 3\xffd: 4\xffe: 5\xffa: 6"} {
		f.Add([]byte(s), uint8(0))
	}
	r, err := NewRelay(WithPlainText(), WithAddr("127.0.0.1:0"), WithMaxMembers(4), WithRateLimit(0, 0))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	// The sources are sockets of this test that absorb what the relay sends.
	var from []netip.AddrPort
	for range 6 {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { c.Close() })
		from = append(from, addrPortOf(c.LocalAddr()))
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, in []byte, src uint8) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.mode = newPlainRelay(r.cfg, r.addr, r.q, &r.stats, r.limit, r.group)
		pr := r.plainMode()
		for i, b := range bytes.Split(in, []byte{0xff}) {
			if name, text, ok := parsePlain(b); ok && (checkName(string(name)) != nil || !utf8.Valid(text)) {
				t.Fatalf("parsePlain(%q) took name %q, text %q", b, name, text)
			}
			r.handleAt(b, from[(int(src)+i)%len(from)], now)
			r.q.flush()
			if len(pr.dsts) != len(pr.sources) || len(pr.dsts) > 4 || len(pr.names) > 4 {
				t.Fatalf("%d destinations, %d sources, %d names", len(pr.dsts), len(pr.sources), len(pr.names))
			}
			for i, d := range pr.dsts {
				if s := pr.sources[d.remote]; s == nil || s.idx != i {
					t.Fatalf("destination %d (%v) out of step with its source", i, d)
				}
			}
		}
	})
}

// WithNameRule holds in plain text too: a line from a name the rule
// refuses is dropped and counted, and registers no one.
func TestPlainNameRule(t *testing.T) {
	r := startPlainRelay(t, WithNameRule(func(name string) error {
		if name == "mallory" {
			return errors.New("not here")
		}
		return nil
	}))
	rc := dialRaw(t, r.Addr())
	rc.send([]byte("mallory: hi"))
	rc.send([]byte("carol: hi"))
	if got := rc.read(testTimeout); string(got) != "carol: hi" {
		t.Fatalf("got %q, want carol's line only", got)
	}
	if st, ms := r.Stats(), r.Members(); st.DroppedRejected != 1 || st.Sequenced != 1 || sortedNames(ms) != "carol" {
		t.Errorf("stats %+v, members %v: want mallory's line refused", st, ms)
	}
}

// Two plain members talk peer to peer, no relay: each binds its own
// address (WithLocalAddr) and sends to the other's.
func TestPlainPeers(t *testing.T) {
	pa, pb := freePort(t), freePort(t)
	at := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	alice := joinAt(t, at(pb), "alice", WithPlainText(), WithLocalAddr(at(pa)))
	bob := joinAt(t, at(pa), "bob", WithPlainText(), WithLocalAddr(at(pb)))
	ctx := ctxT(t)
	if err := alice.Send(ctx, "hi bob"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice", "hi bob")
	if err := bob.Send(ctx, "hi alice"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, KindChat, "bob", "hi alice")
	if got := names(alice.Members()); got != "bob" {
		t.Errorf("alice lists %q", got)
	}
}

// With the protocol, WithLocalAddr fixes the port the relay sees.
func TestLocalAddr(t *testing.T) {
	r := startRelay(t)
	port := freePort(t)
	join(t, r, "alice", WithLocalAddr(fmt.Sprintf("127.0.0.1:%d", port)))
	ms := r.Members()
	if len(ms) != 1 || ms[0].Addr.(*net.UDPAddr).Port != port {
		t.Fatalf("the relay lists %v, want alice at port %d", ms, port)
	}
	if _, err := NewRelay(WithLocalAddr("127.0.0.1:0")); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("NewRelay(WithLocalAddr) = %v, want ErrInvalidOption", err)
	}
	if _, err := Join(ctxT(t), "bob", WithAddr(r.Addr().String()), WithLocalAddr("127.0.0.1:x")); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("Join(WithLocalAddr(bad port)) = %v, want ErrInvalidOption", err)
	}
}
