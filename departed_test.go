package udpchat

import "testing"

func TestDepartedOrigins(t *testing.T) {
	var d departedOrigins
	if _, ok := d.rejoin(1, 100); ok {
		t.Fatal("the zero value remembers a session")
	}
	d.leave(1, departure{epoch: 100, nextMseq: 10}) // session 1 of epoch 100
	d.leave(2, departure{epoch: 200, nextMseq: 20})
	d.leave(3, departure{epoch: 100, nextMseq: 12}) // epoch 100 came back as session 3 and left again
	for _, tc := range []struct {
		session, epoch uint64
		want           uint64
		ok             bool
	}{
		{3, 200, 0, false}, // someone who knows the session but not the epoch
		{4, 100, 0, false}, // someone who knows the epoch, from delivers, but not the session
		{3, 100, 12, true},
		{3, 100, 0, false}, // taken: the member has a session again
		{2, 200, 20, true},
	} {
		if dep, ok := d.rejoin(tc.session, tc.epoch); dep.nextMseq != tc.want || ok != tc.ok {
			t.Fatalf("rejoin(%d, %d) = %d, %v; want %d, %v", tc.session, tc.epoch, dep.nextMseq, ok, tc.want, tc.ok)
		}
	}
}

// Past the bound the oldest departure gives way, but not a record made
// again since its ring slot was written.
func TestDepartedOriginsBound(t *testing.T) {
	var d departedOrigins
	d.leave(1, departure{epoch: 1, nextMseq: 5}) // departure 1, the oldest
	d.leave(2, departure{epoch: 2, nextMseq: 6}) // departure 2
	for s := range uint64(maxDeparted - 2) {
		d.leave(1000+s, departure{epoch: 1000 + s, nextMseq: 1})
	}
	d.leave(2, departure{epoch: 2, nextMseq: 7}) // session 2 again: its ring slot from departure 2 is stale
	if d.len() != maxDeparted-1 {
		t.Fatalf("%d remembered, want %d", d.len(), maxDeparted-1)
	}
	if _, ok := d.rejoin(1, 1); ok {
		t.Fatal("the oldest departure did not give way")
	}
	d.leave(3000000, departure{epoch: 3000000, nextMseq: 1}) // overwrites departure 2's slot: session 2 stays
	if dep, ok := d.rejoin(2, 2); !ok || dep.nextMseq != 7 {
		t.Fatalf("rejoin(2) = %d, %v; want 7", dep.nextMseq, ok)
	}
	if d.len() > maxDeparted {
		t.Fatalf("%d remembered, bound %d", d.len(), maxDeparted)
	}
}
