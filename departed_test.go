package udpchat

import "testing"

func TestDepartedOrigins(t *testing.T) {
	var d departedOrigins
	if _, ok := d.rejoin(1); ok {
		t.Fatal("the zero value remembers an epoch")
	}
	d.leave(1, 10)
	d.leave(2, 20)
	d.leave(1, 12) // epoch 1 came back and left again
	if n, ok := d.rejoin(1); !ok || n != 12 {
		t.Fatalf("rejoin(1) = %d, %v; want its latest departure, 12", n, ok)
	}
	if _, ok := d.rejoin(1); ok {
		t.Fatal("a rejoined epoch is still remembered")
	}
	if n, ok := d.rejoin(2); !ok || n != 20 {
		t.Fatalf("rejoin(2) = %d, %v", n, ok)
	}
}

// Past the bound the oldest departure gives way, but not an epoch that
// left again since its oldest departure.
func TestDepartedOriginsBound(t *testing.T) {
	var d departedOrigins
	d.leave(1, 5) // departure 1, the oldest
	d.leave(2, 6) // departure 2
	for e := range uint64(maxDeparted - 2) {
		d.leave(1000+e, 1)
	}
	d.leave(2, 7) // epoch 2 again: its ring slot from departure 2 is stale
	if d.len() != maxDeparted-1 {
		t.Fatalf("%d remembered, want %d", d.len(), maxDeparted-1)
	}
	if _, ok := d.rejoin(1); ok {
		t.Fatal("the oldest departure did not give way")
	}
	d.leave(3000000, 1) // overwrites departure 2's slot: epoch 2 stays
	if n, ok := d.rejoin(2); !ok || n != 7 {
		t.Fatalf("rejoin(2) = %d, %v; want 7", n, ok)
	}
	if d.len() > maxDeparted {
		t.Fatalf("%d remembered, bound %d", d.len(), maxDeparted)
	}
}
