package udpchat

import "testing"

// Who gets a message and who a SKIP, without sockets.
func TestSelectionGets(t *testing.T) {
	const old, other = 100, 200 // incarnations
	alice := &relayMember{name: "alice", epoch: 1, prevInc: old, prevNext: 10}
	bob := &relayMember{name: "bob", epoch: 2, prevInc: old, prevNext: 6}
	dave := &relayMember{name: "dave", epoch: 4}                              // joined this incarnation
	erin := &relayMember{name: "erin", epoch: 5, prevInc: other, prevNext: 3} // back from another one
	mallory := &relayMember{name: "bob", epoch: 9}                            // bob's name, not his epoch
	for _, tc := range []struct {
		name string
		sel  selection
		want map[*relayMember]bool
	}{
		{"everyone", selection{}, map[*relayMember]bool{alice: true, bob: true, dave: true, erin: true, mallory: true}},
		{"private alice to bob", selection{private: true, from: party{"alice", 1}, to: party{"bob", 2}},
			map[*relayMember]bool{alice: true, bob: true, dave: false, erin: false, mallory: false}},
		{"resent seq 8 of old", selection{resent: seqAt{old, 8}},
			// alice had up to 9; bob lacked 6 on; dave came after; erin may lack it
			map[*relayMember]bool{alice: false, bob: true, dave: false, erin: true, mallory: false}},
		{"resent seq 5 of old", selection{resent: seqAt{old, 5}},
			map[*relayMember]bool{alice: false, bob: false, dave: false, erin: true}},
		{"private resent", selection{private: true, from: party{"alice", 1}, to: party{"bob", 2}, resent: seqAt{old, 8}},
			map[*relayMember]bool{alice: false, bob: true, dave: false, erin: false}},
	} {
		for m, want := range tc.want {
			if got := tc.sel.gets(m); got != want {
				t.Errorf("%s: %s (epoch %d) gets = %v, want %v", tc.name, m.name, m.epoch, got, want)
			}
		}
	}
}
