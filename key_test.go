package udpchat

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	key1 = bytes.Repeat([]byte{1}, 32)
	key2 = bytes.Repeat([]byte{2}, 16)
)

// With a group key the conversation works as without, and neither the
// text nor the names ever appear on the wire.
func TestKeySealsEverything(t *testing.T) {
	r := startRelay(t, WithKey(key1))
	px := newLossyProxy(t, r.Addr(), 1, impairment{}, impairment{})
	var mu sync.Mutex
	var wire [][]byte
	px.tap.Store(ptr(func(up bool, b []byte) {
		mu.Lock()
		wire = append(wire, append([]byte(nil), b...))
		mu.Unlock()
	}))
	at := WithAddr(px.Addr())
	alice, err := Join(ctxT(t), "alice-secret-name", at, WithKey(key1))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := Join(ctxT(t), "bob", at, WithKey(key1))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	expect(t, bob, KindJoin, "bob", "")
	if err := alice.Send(ctxT(t), "the plaintext of a secret"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice-secret-name", "the plaintext of a secret")
	if got := names(bob.Members()); got != "alice-secret-name,bob" {
		t.Errorf("bob.Members() = %s", got)
	}
	alice.Close()
	expect(t, bob, KindLeave, "alice-secret-name", "")
	mu.Lock()
	defer mu.Unlock()
	for _, b := range wire {
		if bytes.Contains(b, []byte("plaintext")) || bytes.Contains(b, []byte("secret-name")) {
			t.Fatalf("plaintext on the wire: %q", b)
		}
		if b[3] != tSealed {
			t.Fatalf("an unsealed datagram on the wire: % x", b)
		}
	}
	if len(wire) < 10 {
		t.Fatalf("only %d datagrams seen", len(wire))
	}
}

func ptr[T any](v T) *T { return &v }

// Without the key, or with a wrong one, a member cannot join; the relay
// counts what it could not open.
func TestKeyMismatch(t *testing.T) {
	keyed := startRelay(t, WithKey(key1))
	open := startRelay(t)
	for _, tc := range []struct {
		name  string
		relay *Relay
		opts  []Option
	}{
		{"no key", keyed, nil},
		{"wrong key", keyed, []Option{WithKey(key2)}},
		{"relay without key", open, []Option{WithKey(key1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := Join(ctx, "mallory", append(tc.opts, WithAddr(tc.relay.Addr().String()))...)
			if !errors.Is(err, ErrRelayUnreachable) {
				t.Fatalf("Join = %v, want ErrRelayUnreachable", err)
			}
		})
	}
	if st := keyed.Stats(); st.DroppedUnauthenticated == 0 || st.Members != 0 {
		t.Errorf("keyed relay: %+v", st)
	}
}

// Changing keys without losing messages: the relay seals with the new key
// and opens both; a member that still seals with the old key and one that
// has only the new key chat with each other.
func TestKeyRotation(t *testing.T) {
	r := startRelay(t, WithKey(key2, key1))
	old := join(t, r, "old", WithKey(key1, key2))
	recent := join(t, r, "new", WithKey(key2))
	expect(t, old, KindJoin, "old", "")
	expect(t, old, KindJoin, "new", "")
	expect(t, recent, KindJoin, "new", "")
	if err := old.Send(ctxT(t), "from the old key"); err != nil {
		t.Fatal(err)
	}
	if err := recent.Send(ctxT(t), "from the new key"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Member{old, recent} {
		expect(t, m, KindChat, "old", "from the old key")
		expect(t, m, KindChat, "new", "from the new key")
	}
}

// Sealed datagrams captured and replayed from the member's own address are
// not taken again: control datagrams by their counters, chats by their
// member seqs.
func TestKeyReplay(t *testing.T) {
	r := startRelay(t, WithKey(key1))
	px, caps := capture(t, r)
	alice := joinAt(t, px.Addr(), "alice", WithKey(key1))
	bob := join(t, r, "bob", WithKey(key1))
	expect(t, bob, KindJoin, "bob", "")
	if err := alice.Send(ctxT(t), "once"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice", "once")

	// The relay knows alice by the proxy's upstream socket.
	port := upstreamPort(px)
	before := r.Stats()
	captured := caps()
	sp := newSpoofer(t)
	for _, b := range captured {
		sp.send(port, r.addr, b)
	}
	n := len(captured)
	if err := alice.Send(ctxT(t), "twice?"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, KindChat, "alice", "twice?") // nothing replayed came first
	after := r.Stats()
	if after.DroppedReplayed == before.DroppedReplayed || after.Sequenced != before.Sequenced+1 {
		t.Errorf("replayed %d datagrams: relay %+v", n, after)
	}
	if after.Members != 2 {
		t.Errorf("replays changed the group: %d members", after.Members)
	}
}

// The seal's 33 bytes count against the buffer size.
func TestKeyMessageSize(t *testing.T) {
	r := startRelay(t, WithKey(key1), WithBufferSize(256))
	m := join(t, r, "alice", WithKey(key1), WithBufferSize(256))
	room := 256 - deliverHdrLen - len("alice") - sealOverhead
	if err := m.Send(ctxT(t), strings.Repeat("x", room)); err != nil {
		t.Fatalf("Send of a text that fits exactly: %v", err)
	}
	if err := m.Send(ctxT(t), strings.Repeat("x", room+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("Send one byte over: %v, want ErrMessageTooLarge", err)
	}
	expect(t, m, KindJoin, "alice", "")
	expect(t, m, KindChat, "alice", strings.Repeat("x", room))
	for _, bad := range [][]byte{nil, make([]byte, 15), make([]byte, 33)} {
		if _, err := NewRelay(WithAddr("127.0.0.1:0"), WithKey(bad)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithKey of %d bytes: %v, want ErrInvalidOption", len(bad), err)
		}
	}
}
