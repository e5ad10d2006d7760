package udpchat

import (
	"sync"
	"testing"
	"time"
)

// A blockingWriter holds the relay's first write until release is closed.
type blockingWriter struct {
	entered, release chan struct{}
	once             sync.Once
}

func (w *blockingWriter) write(out []outMsg) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return len(out), nil
}

// Stats does not wait for the relay's mutex, which Serve holds through a
// datagram's fan-out (at N = 1000, 1,000 sends), and what a write is
// about to send is counted before it goes.
func TestStatsDuringFanout(t *testing.T) {
	r, err := NewRelay(WithAddr("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.mu.Lock()
	r.q.w = &fakeWriter{}
	r.handleAt(cookieJoin(r, pathHome, 1, aliceEpoch, "alice"), pathHome, time.Now())
	r.q.flush()
	alice := r.proto().main().byName["alice"]
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	r.q.w = w
	r.mu.Unlock()
	var release sync.Once
	defer release.Do(func() { close(w.release) }) // before Close's goodbyes are written
	if alice == nil {
		t.Fatal("alice did not join")
	}
	before := r.Stats()
	if before.Members != 1 {
		t.Fatalf("Stats after the join: %+v, want 1 member", before)
	}

	chat := appendChat(nil, alice.session, 1, seqAt{}, "", "hello")
	n := copy(r.bufs[0], chat)
	done := make(chan struct{})
	go func() {
		defer close(done)
		next := time.Now().Add(time.Hour)
		r.take([]inMsg{{n: n, from: udpPath{remote: pathHome}}}, time.Now(), &next)
	}()
	deadline := time.After(10 * time.Second)
	select {
	case <-w.entered:
	case <-deadline:
		t.Fatal("the relay never wrote the chat's fan-out")
	}
	got := make(chan RelayStats, 1)
	go func() { got <- r.Stats() }()
	select {
	case s := <-got:
		if s.Received != before.Received+1 || s.Sequenced != before.Sequenced+1 || s.Delivered != before.Delivered+1 || s.Members != 1 {
			t.Errorf("Stats while the chat's fan-out is written: %+v, before it %+v; want one more received, sequenced and delivered", s, before)
		}
	case <-deadline:
		t.Error("Stats waited for the relay's write")
	}
	release.Do(func() { close(w.release) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the batch never finished")
	}
	if s := r.Stats(); s.Sequenced != before.Sequenced+1 {
		t.Errorf("Stats after the batch: %+v", s)
	}
}
