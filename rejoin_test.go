package udpchat

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// Rejoins and one order: a member that comes back with a new session
// resends the chats it keeps, and no member may see them twice or see a
// Seq skipped.

// carol's chats reach everyone; she is cut off and expired; dave joins
// while she is away; she comes back to the same relay and resends what her
// outbox keeps. The relay confirms those instead of sequencing them again,
// so alice sees consecutive Seqs, dave never receives carol's old chats,
// and from dave's join on alice and dave hold the same conversation.
func TestExpiredRejoinKeepsOneOrder(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 16)
	for _, tc := range []struct {
		name string
		opts []Option
		link impairment
	}{
		{"protocol", nil, impairment{}},
		{"key", []Option{WithKey(key)}, impairment{}},
		{"lossy", nil, lossy},
		{"lossy key", []Option{WithKey(key)}, lossy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Two heartbeats or more pass before a sender may forget a
			// chat: carol is cut off well before that.
			r := startRelay(t, append([]Option{WithHeartbeat(100 * time.Millisecond), WithExpiry(300 * time.Millisecond), WithRateLimit(0, 0)}, tc.opts...)...)
			px := newLossyProxy(t, r.Addr(), 12, tc.link, tc.link)
			alice := join(t, r, "alice", tc.opts...)
			carol := joinAt(t, px.Addr(), "carol", tc.opts...)
			for i := range 3 {
				if err := carol.Send(ctxT(t), fmt.Sprint("carol-", i)); err != nil {
					t.Fatal(err)
				}
			}
			px.blackout.Store(true)
			waitFor(t, func() bool { return r.Stats().Expired >= 1 }, "the relay to expire carol")
			dave := join(t, r, "dave", tc.opts...)
			px.blackout.Store(false)
			waitFor(t, func() bool { return carol.Stats().Rejoins >= 1 }, "carol to rejoin")
			for _, m := range []*Member{carol, alice} {
				if err := m.Send(ctxT(t), m.Name()+"-after"); err != nil {
					t.Fatal(err)
				}
			}
			logs := map[string][]Message{}
			for _, m := range []*Member{alice, dave, carol} {
				logs[m.Name()] = receiveUntil(t, m, "carol-after", "alice-after")
			}
			for name, log := range logs {
				for i := 1; i < len(log); i++ {
					if log[i].Seq != log[i-1].Seq+1 {
						t.Errorf("%s: Seq %d follows %d\n%s", name, log[i].Seq, log[i-1].Seq, showLog(log))
					}
				}
			}
			for _, msg := range logs["dave"] {
				if msg.From == "carol" && msg.Kind == KindChat && msg.Text != "carol-after" {
					t.Errorf("dave, who joined later, received carol's %q at Seq %d", msg.Text, msg.Seq)
				}
			}
			sameConversation(t, logs["alice"], logs["dave"])
			if s := r.Stats(); s.DroppedDuplicate == 0 {
				t.Errorf("carol resent nothing to the relay (stats %+v): the test did not reach its case", s)
			}
		})
	}
}

// receiveUntil receives until every one of texts has arrived as a chat.
func receiveUntil(t *testing.T, m *Member, texts ...string) []Message {
	t.Helper()
	want := map[string]bool{}
	for _, s := range texts {
		want[s] = true
	}
	var log []Message
	for len(want) > 0 {
		msg, err := m.Receive(ctxT(t))
		if err != nil {
			t.Fatalf("%s: Receive: %v\n%s", m.Name(), err, showLog(log))
		}
		log = append(log, msg)
		if msg.Kind == KindChat {
			delete(want, msg.Text)
		}
	}
	return log
}

// sameConversation checks that two members hold the same message at every
// Seq both received.
func sameConversation(t *testing.T, a, b []Message) {
	t.Helper()
	at := map[uint64]Message{}
	for _, msg := range a {
		at[msg.Seq] = msg
	}
	for _, msg := range b {
		if o, ok := at[msg.Seq]; ok && (o.Kind != msg.Kind || o.From != msg.From || o.Text != msg.Text) {
			t.Errorf("Seq %d: %v %s %q against %v %s %q", msg.Seq, o.Kind, o.From, o.Text, msg.Kind, msg.From, msg.Text)
		}
	}
}

func showLog(log []Message) string {
	var b bytes.Buffer
	for _, msg := range log {
		fmt.Fprintf(&b, "  %d %v %s %q\n", msg.Seq, msg.Kind, msg.From, msg.Text)
	}
	return b.String()
}
