package udpchat

// Multi-host tests: a relay and members on different hosts of a LAN built
// of network namespaces (netns_linux_test.go has the harness). They need
// root and iproute2 (ip, and bridge for the loss tests), and skip without.
//
//	TestLANUnicast        unicast fan-out across hosts: one order for all
//	TestLANBroadcast      fan-out to the subnet's broadcast address: one copy per host
//	TestLANMulticast      fan-out to a multicast group, joined on each member's eth0
//	TestLANFanOutLoss     fan-out copies lost on one host: NACK repair, exactly once, in order
//	TestLANMultiHomed     hosts with two interfaces: how the interface for multicast is chosen,
//	                      and a relay bound to 0.0.0.0 answering from the address dialled
//	TestLANWithInterface  the same with WithInterface naming the interface

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// lanHeartbeat is short so that members learn quickly what they missed.
const lanHeartbeat = 100 * time.Millisecond

// joinSeq waits until every member has received name's join, checks that
// they agree on its seq, and returns it.
func joinSeq(t *testing.T, ms []*lanProc, name string) uint64 {
	t.Helper()
	var seq uint64
	for _, m := range ms {
		var got uint64
		m.waitFor(name+"'s join", func(evs []lanEvent) bool {
			for _, e := range evs {
				if e.Ev == "msg" && e.Kind == KindJoin && e.From == name {
					got = e.Seq
					return true
				}
			}
			return false
		})
		if seq != 0 && got != seq {
			t.Fatalf("%s got %s's join as #%d, others as #%d", m.label, name, got, seq)
		}
		seq = got
	}
	return seq
}

// sendAll has every member of senders send n messages, "name-tag-1" to
// "name-tag-n" (or "name-1" ...), one after the other, all members at
// once. It waits until every Send has returned, fails the test if one
// failed, and returns the texts by sender.
func sendAll(t *testing.T, senders []*lanProc, n int, tag string) map[string][]string {
	t.Helper()
	sent := make([]int, len(senders))
	want := make(map[string][]string)
	for i, m := range senders {
		sent[i] = count(m.events(), "sent")
		prefix := m.name
		if tag != "" {
			prefix += "-" + tag
		}
		for j := 1; j <= n; j++ {
			want[m.name] = append(want[m.name], fmt.Sprintf("%s-%d", prefix, j))
		}
		m.command(fmt.Sprintf("sendn %d %s", n, prefix))
	}
	for i, m := range senders {
		evs := m.waitFor(fmt.Sprintf("%d Sends to return", n), func(evs []lanEvent) bool { return count(evs, "sent") >= sent[i]+n })
		k := 0
		for _, e := range evs {
			if e.Ev != "sent" {
				continue
			}
			if k >= sent[i] {
				if e.Err != "" {
					t.Errorf("%s: Send(%q): %s", m.label, e.Text, e.Err)
				} else if w := want[m.name][k-sent[i]]; e.Text != w {
					t.Errorf("%s: Send returned for %q, want %q", m.label, e.Text, w)
				}
			}
			k++
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return want
}

// waitTexts waits until m has received every text of want.
func waitTexts(m *lanProc, want map[string][]string) {
	m.t.Helper()
	m.waitFor("this round's messages", func(evs []lanEvent) bool {
		got := make(map[string]bool)
		for _, e := range evs {
			if e.Ev == "msg" && e.Kind == KindChat {
				got[e.From+"\x00"+e.Text] = true
			}
		}
		for from, texts := range want {
			for _, text := range texts {
				if !got[from+"\x00"+text] {
					return false
				}
			}
		}
		return true
	})
}

// waitChats waits until every member has received n chats from seq from on.
func waitChats(ms []*lanProc, from uint64, n int) {
	for _, m := range ms {
		m.t.Helper()
		m.waitFor(fmt.Sprintf("%d chats from #%d on", n, from), func(evs []lanEvent) bool {
			k := 0
			for _, e := range evs {
				if e.Ev == "msg" && e.Kind == KindChat && e.Seq >= from {
					k++
				}
			}
			return k >= n
		})
	}
}

// checkStreams checks what the members received from seq from on: the
// same messages in the same order, with consecutive seqs, no Receive
// errors, and as chats exactly want: each sender's texts once each, in the
// order it sent them.
func checkStreams(t *testing.T, ms []*lanProc, from uint64, want map[string][]string) {
	t.Helper()
	var first []lanEvent
	for i, m := range ms {
		var got []lanEvent
		for _, e := range m.events() {
			switch {
			case e.Ev == "recverr":
				t.Errorf("%s: Receive: %s", m.label, e.Err)
			case e.Ev == "msg" && e.Seq >= from:
				got = append(got, e)
			}
		}
		for j, e := range got {
			if e.Seq != from+uint64(j) {
				t.Fatalf("%s: message %d after #%d is #%d, want #%d\n%s", m.label, j, from, e.Seq, from+uint64(j), m.dump())
			}
		}
		chats := make(map[string][]string)
		for _, e := range got {
			if e.Kind == KindChat {
				chats[e.From] = append(chats[e.From], e.Text)
			}
		}
		for from, texts := range want {
			if !slices.Equal(chats[from], texts) {
				t.Errorf("%s received from %s:\n  %q\nwant\n  %q", m.label, from, chats[from], texts)
			}
		}
		for from, texts := range chats {
			if _, ok := want[from]; !ok {
				t.Errorf("%s received unexpected chats from %s: %q", m.label, from, texts)
			}
		}
		if i == 0 {
			first = got
			continue
		}
		if !slices.Equal(got, first) {
			t.Errorf("%s and %s received different streams from #%d on:\n%s\n%s", ms[0].label, m.label, from, ms[0].dump(), m.dump())
		}
	}
}

func merge(into, from map[string][]string) {
	for k, v := range from {
		into[k] = append(into[k], v...)
	}
}

func total(want map[string][]string) int {
	n := 0
	for _, v := range want {
		n += len(v)
	}
	return n
}

// TestLANUnicast: a relay on h1 bound to its eth0 address, alice and bob on
// h2, carol on h3. Everyone receives the joins and every chat, in one
// order, and the relay sends one deliver datagram per member per message.
func TestLANUnicast(t *testing.T) { testLANFanOut(t, "") }

// TestLANBroadcast: the same, with fan-out to the subnet's broadcast
// address. alice and bob share the broadcast port on h2. The relay sends
// one datagram per message, and h2 and h3 each receive exactly one copy of
// each (their IP counters of broadcasts received), which gets to both
// members on h2.
func TestLANBroadcast(t *testing.T) { testLANFanOut(t, "10.231.7.255:24100") }

// TestLANMulticast: the same, with fan-out to a multicast group, which the
// members join on the interface holding their address (eth0).
func TestLANMulticast(t *testing.T) { testLANFanOut(t, "239.77.7.7:24100") }

func testLANFanOut(t *testing.T, group string) {
	start := time.Now()
	l := newStdLAN(t, 3)
	relay, addr := l.startRelay("h1", lanRole{Addr: "10.231.7.1:0", Broadcast: group, Heartbeat: lanHeartbeat})
	alice := l.join("h2", "alice", addr, lanRole{})
	bob := l.join("h2", "bob", addr, lanRole{})
	carol := l.join("h3", "carol", addr, lanRole{})
	ms := []*lanProc{alice, bob, carol}
	from := joinSeq(t, ms, "carol")
	var joins []string
	for _, e := range alice.messages() {
		joins = append(joins, fmt.Sprintf("%v %s", e.Kind, e.From))
	}
	if w := []string{"join alice", "join bob", "join carol"}; !slices.Equal(joins, w) {
		t.Errorf("alice received %q, want %q", joins, w)
	}

	multicast := strings.HasPrefix(group, "239.")
	if multicast {
		for _, h := range []string{"h2", "h3"} {
			if gs := l.groups(h, "eth0"); !slices.Contains(gs, "239.77.7.7") {
				t.Errorf("%s's eth0 has joined %q, want 239.77.7.7 among them", h, gs)
			}
		}
	}
	in, out := "IpExt.InBcastPkts", "IpExt.OutBcastPkts"
	if multicast {
		in, out = "IpExt.InMcastPkts", "IpExt.OutMcastPkts"
	}
	c1, c2, c3 := l.ipCounters("h1"), l.ipCounters("h2"), l.ipCounters("h3")
	rs := relay.relayStats()

	want := sendAll(t, ms, 5, "")
	n := total(want)
	waitChats(ms, from, n)
	checkStreams(t, ms, from, want)

	rs2 := relay.relayStats()
	d1, d2, d3 := l.ipCounters("h1"), l.ipCounters("h2"), l.ipCounters("h3")
	if got := rs2.Sequenced - rs.Sequenced; got != uint64(n) {
		t.Errorf("relay sequenced %d messages, want %d", got, n)
	}
	wantDelivered := uint64(n) // one datagram per message for the LAN
	if group == "" {
		wantDelivered = uint64(n * len(ms)) // one per member
	}
	if got := rs2.Delivered - rs.Delivered; got != wantDelivered {
		t.Errorf("relay delivered %d datagrams for %d messages to %d members, want %d", got, n, len(ms), wantDelivered)
	}
	wantCopies := uint64(n)
	if group == "" {
		wantCopies = 0
	}
	if got := d1[out] - c1[out]; got != wantCopies {
		t.Errorf("h1 sent %d datagrams as %s, want %d", got, out, wantCopies)
	}
	for _, h := range []struct {
		name   string
		before map[string]uint64
		after  map[string]uint64
	}{{"h2", c2, d2}, {"h3", c3, d3}} {
		if got := h.after[in] - h.before[in]; got != wantCopies {
			t.Errorf("%s received %d datagrams as %s, want %d (one per message)", h.name, got, in, wantCopies)
		}
	}
	t.Logf("%d messages to %d members on 2 hosts in %v; relay: %+v", n, len(ms), time.Since(start).Round(time.Millisecond), rs2)
	for _, m := range ms {
		t.Logf("%s: %+v", m.label, m.memberStats())
	}
}

// TestLANFanOutLoss loses the relay's fan-out copies to h2, where alice
// and bob are, in five rounds of eight by switching off the flooding of
// broadcast and multicast frames to h2's port of the bridge; unicast
// (heartbeats, NACKs and their repairs) still passes. In each round alice
// (on the lossy host) and carol (on h3) send three messages each at once.
// Every Send returns without error, every member receives every message
// exactly once and in the same order, h2 counts no copy of the lost rounds
// (so the messages reached it by repair), and alice and bob have sent NACKs.
//
// (netem or a random-drop firewall rule would lose single datagrams at
// random; this kernel has no sch_netem and the machine no nft or iptables.
// The flood switch needs nothing but iproute2, and which messages are lost
// is known exactly.)
func TestLANFanOutLoss(t *testing.T) {
	requireLAN(t)
	if _, err := exec.LookPath("bridge"); err != nil {
		lanSkip(t, "needs iproute2's bridge: %v", err)
	}
	for _, tc := range []struct{ name, group, in string }{
		{"broadcast", "10.231.7.255:24100", "IpExt.InBcastPkts"},
		{"multicast", "239.77.7.7:24100", "IpExt.InMcastPkts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			l := newStdLAN(t, 3)
			relay, addr := l.startRelay("h1", lanRole{Addr: "10.231.7.1:0", Broadcast: tc.group, Heartbeat: lanHeartbeat})
			alice := l.join("h2", "alice", addr, lanRole{})
			bob := l.join("h2", "bob", addr, lanRole{})
			carol := l.join("h3", "carol", addr, lanRole{})
			ms := []*lanProc{alice, bob, carol}
			from := joinSeq(t, ms, "carol")
			c2, c3 := l.ipCounters("h2"), l.ipCounters("h3")
			rs := relay.relayStats()

			const perRound = 3
			lossy := []bool{true, false, true, true, false, true, true, false}
			want := make(map[string][]string)
			lost := 0
			for r, lose := range lossy {
				if lose {
					l.setFlood("h2", "eth0", false)
				}
				round := sendAll(t, []*lanProc{alice, carol}, perRound, fmt.Sprintf("r%d", r))
				// Once carol has them, the bridge has passed every copy
				// of the round (or not) to h2 too.
				waitTexts(carol, round)
				if lose {
					l.setFlood("h2", "eth0", true)
					lost += total(round)
				}
				merge(want, round)
			}
			n := total(want)
			waitChats(ms, from, n)
			checkStreams(t, ms, from, want)

			d2, d3 := l.ipCounters("h2"), l.ipCounters("h3")
			if got := d2[tc.in] - c2[tc.in]; got != uint64(n-lost) {
				t.Errorf("h2 received %d fan-out copies, want %d: the %d messages of the other rounds were to be lost", got, n-lost, lost)
			}
			if got := d3[tc.in] - c3[tc.in]; got != uint64(n) {
				t.Errorf("h3 received %d fan-out copies, want %d", got, n)
			}
			for _, m := range []*lanProc{alice, bob} {
				if st := m.memberStats(); st.NACKs == 0 {
					t.Errorf("%s sent no NACK, yet received the %d messages lost on its host: %+v", m.label, lost, st)
				}
			}
			rs2 := relay.relayStats()
			if got := rs2.Retransmitted - rs.Retransmitted; got < uint64(2*lost) {
				t.Errorf("relay retransmitted %d delivers, want at least %d (each lost message to alice and to bob)", got, 2*lost)
			}
			t.Logf("%d messages, %d of them lost on h2, in %v; relay: %+v", n, lost, time.Since(start).Round(time.Millisecond), rs2)
			for _, m := range ms {
				t.Logf("%s: %+v", m.label, m.memberStats())
			}
		})
	}
}

// newTwoLAN builds two LANs: br0 (10.231.7.0/24) with h1, h2 and h3 on
// eth0, and br1 (10.232.7.0/24) with h1 and h2 on eth1. h2 routes
// multicast through eth1 (224.0.0.0/4 dev eth1), as a host whose default
// route is there would; h3 reaches h1's br1 address through h1.
func newTwoLAN(t *testing.T) *lan {
	t.Helper()
	l := newLAN(t, "h1", "h2", "h3")
	l.addBridge("br1", true)
	l.connect("h1", "eth0", "br0", "10.231.7.1/24")
	l.connect("h2", "eth0", "br0", "10.231.7.2/24")
	l.connect("h3", "eth0", "br0", "10.231.7.3/24")
	l.connect("h1", "eth1", "br1", "10.232.7.1/24")
	l.connect("h2", "eth1", "br1", "10.232.7.2/24")
	l.settle()
	l.ip("-n", l.ns("h2"), "route", "add", "224.0.0.0/4", "dev", "eth1")
	l.ip("-n", l.ns("h3"), "route", "add", "10.232.7.0/24", "via", "10.231.7.1", "dev", "eth0")
	return l
}

// chatCheck has every member of ms send three messages, checks that
// everyone got everything in one order, and returns how many multicast
// copies each host of hosts received meanwhile.
func chatCheck(t *testing.T, l *lan, ms []*lanProc, from uint64, hosts ...string) map[string]uint64 {
	t.Helper()
	before := make(map[string]map[string]uint64)
	for _, h := range hosts {
		before[h] = l.ipCounters(h)
	}
	want := sendAll(t, ms, 3, "")
	waitChats(ms, from, total(want))
	checkStreams(t, ms, from, want)
	copies := make(map[string]uint64)
	for _, h := range hosts {
		c := l.ipCounters(h)
		copies[h] = c["IpExt.InMcastPkts"] - before[h]["IpExt.InMcastPkts"]
	}
	return copies
}

// TestLANMultiHomed shows how the interface for multicast is chosen today:
// the relay's is the one holding the address it is bound to, and a
// member's the one holding its local address towards the relay.
func TestLANMultiHomed(t *testing.T) {
	l := newTwoLAN(t)

	// No address, no interface: NewRelay refuses rather than guessing on
	// a host with two.
	t.Run("relay on 0.0.0.0", func(t *testing.T) {
		p := startProc(t, l.ns("h1"), "relay@h1", lanRole{Role: "relay", Addr: "0.0.0.0:0", Broadcast: "239.77.7.7:24201"})
		_, e := p.waitEv(0, "relay", "relayerr")
		if e.Ev != "relayerr" {
			t.Fatalf("a relay bound to 0.0.0.0 on a host with eth0 and eth1 multicasts through an interface it did not say: want NewRelay to fail")
		}
		t.Logf("NewRelay: %s (matches ErrInvalidOption: %v)", e.Err, e.InvalidOption)
	})

	// h2 routes multicast through eth1, but the relay is on eth0's LAN:
	// alice joins the group on eth0, where the relay's copies arrive.
	t.Run("member with two interfaces", func(t *testing.T) {
		l := l.on(t)
		_, addr := l.startRelay("h1", lanRole{Addr: "10.231.7.1:0", Broadcast: "239.77.7.7:24202", Heartbeat: lanHeartbeat})
		alice := l.join("h2", "alice", addr, lanRole{})
		carol := l.join("h3", "carol", addr, lanRole{})
		ms := []*lanProc{alice, carol}
		from := joinSeq(t, ms, "carol")
		joinedOnEth0Only(t, l, "h2")
		wantCopies(t, chatCheck(t, l, ms, from, "h2", "h3"), 6)
	})

	// The relay bound to h1's eth1 address multicasts on eth1 only: carol
	// on h3, which reaches that address through h1's eth0, gets no copy and
	// every message by NACK repair, a heartbeat late. Nothing reports it.
	// To serve eth0's LAN from this address the relay needs to be told the
	// interface.
	t.Run("relay bound to its second address", func(t *testing.T) {
		l := l.on(t)
		relay, addr := l.startRelay("h1", lanRole{Addr: "10.232.7.1:0", Broadcast: "239.77.7.7:24203", Heartbeat: lanHeartbeat})
		alice := l.join("h2", "alice", addr, lanRole{})
		carol := l.join("h3", "carol", addr, lanRole{})
		ms := []*lanProc{alice, carol}
		from := joinSeq(t, ms, "carol")
		if g := l.groups("h2", "eth1"); !slices.Contains(g, "239.77.7.7") {
			t.Errorf("h2 has joined %q on eth1, want 239.77.7.7", g)
		}
		if g := l.groups("h3", "eth0"); !slices.Contains(g, "239.77.7.7") {
			t.Errorf("h3 has joined %q on eth0, want 239.77.7.7", g)
		}
		rs := relay.relayStats()
		copies := chatCheck(t, l, ms, from, "h2", "h3")
		if copies["h2"] != 6 || copies["h3"] != 0 {
			t.Errorf("fan-out copies received: %v, want 6 on h2 and none on h3", copies)
		}
		rs2 := relay.relayStats()
		st := carol.memberStats()
		if st.NACKs == 0 || rs2.Retransmitted-rs.Retransmitted < 6 {
			t.Errorf("carol got no fan-out copy, so the 6 chats must have been repaired: her NACKs %d, relay's retransmissions %d", st.NACKs, rs2.Retransmitted-rs.Retransmitted)
		}
		t.Logf("carol: %+v", st)
	})

	// A relay on 0.0.0.0 answers from the address each datagram came to
	// (IP_PKTINFO), not from its route's: carol reaches h1 at 10.232.7.1
	// through h1's eth0, where the route's address is 10.231.7.1, which
	// her connected socket would drop.
	t.Run("relay on 0.0.0.0 reached at its other address", func(t *testing.T) {
		l := l.on(t)
		_, addr := l.startRelay("h1", lanRole{Addr: "0.0.0.0:0", Heartbeat: lanHeartbeat})
		_, port, _ := strings.Cut(addr, ":")
		alice := l.join("h2", "alice", "10.231.7.1:"+port, lanRole{})
		role := lanRole{Role: "member", Name: "carol", Addr: "10.232.7.1:" + port, JoinWait: 2 * time.Second}
		carol := startProc(t, l.ns("h3"), "carol@h3", role)
		carol.name = "carol"
		if _, e := carol.waitEv(0, "joined", "joinerr"); e.Ev == "joinerr" {
			t.Fatalf("carol: Join through the relay's other address: %s", e.Err)
		}
		ms := []*lanProc{alice, carol}
		from := joinSeq(t, ms, "carol")
		chatCheck(t, l, ms, from)
	})

	// A relay on 0.0.0.0 broadcasting to eth0's LAN sends its copies from
	// eth0's address, and says so in WELCOME: bob, who dialled the relay at
	// its eth1 address (directly, on br1), takes them.
	t.Run("fan-out from a relay on 0.0.0.0 to a member that dialled its other address", func(t *testing.T) {
		l := l.on(t)
		_, addr := l.startRelay("h1", lanRole{Addr: "0.0.0.0:0", Broadcast: "10.231.7.255:24204", Heartbeat: lanHeartbeat})
		_, port, _ := strings.Cut(addr, ":")
		alice := l.join("h2", "alice", "10.231.7.1:"+port, lanRole{})
		bob := l.join("h2", "bob", "10.232.7.1:"+port, lanRole{})
		ms := []*lanProc{alice, bob}
		from := joinSeq(t, ms, "bob")
		before := l.ipCounters("h2")
		want := sendAll(t, ms, 3, "")
		waitChats(ms, from, total(want))
		checkStreams(t, ms, from, want)
		if got := l.ipCounters("h2")["IpExt.InBcastPkts"] - before["IpExt.InBcastPkts"]; got != 6 {
			t.Errorf("h2 received %d broadcast copies, want 6", got)
		}
		if st := bob.memberStats(); st.Dropped > 0 {
			t.Errorf("bob dropped %d fan-out copies from 10.231.7.1, having dialled 10.232.7.1: %+v", st.Dropped, st)
		}
	})

	// The same over IPv6 (IPV6_PKTINFO): a relay on [::] that carol reaches
	// at its eth1 address through its eth0 answers her from that address,
	// not from eth0's, which her connected socket would drop.
	t.Run("relay on [::] reached at its other address", func(t *testing.T) {
		l := l.on(t)
		l.addIPv6("eth0", map[string]string{"h1": "fd31::1", "h2": "fd31::2", "h3": "fd31::3"})
		l.addIPv6("eth1", map[string]string{"h1": "fd32::1", "h2": "fd32::2"})
		l.ip("-n", l.ns("h3"), "-6", "route", "add", "fd32::/64", "via", "fd31::1", "dev", "eth0")
		_, addr := l.startRelay("h1", lanRole{Addr: "[::]:0", Heartbeat: lanHeartbeat})
		_, port, _ := strings.Cut(strings.TrimPrefix(addr, "[::]"), ":")
		alice := l.join("h2", "alice", "[fd31::1]:"+port, lanRole{})
		role := lanRole{Role: "member", Name: "carol", Addr: "[fd32::1]:" + port, JoinWait: 2 * time.Second}
		carol := startProc(t, l.ns("h3"), "carol@h3", role)
		carol.name = "carol"
		if _, e := carol.waitEv(0, "joined", "joinerr"); e.Ev == "joinerr" {
			t.Fatalf("carol: Join through the relay's other IPv6 address: %s", e.Err)
		}
		ms := []*lanProc{alice, carol}
		from := joinSeq(t, ms, "carol")
		chatCheck(t, l, ms, from)
	})
}

// TestLANWithInterface is TestLANMultiHomed with WithInterface naming
// the interface: the relay's for its fan-out, the member's for joining the
// group.
func TestLANWithInterface(t *testing.T) {
	requireLAN(t)
	l := newTwoLAN(t)

	// A relay on 0.0.0.0 multicasts through the interface named. Its
	// copies leave with eth0's address, which is the one the members
	// dialled.
	t.Run("relay on 0.0.0.0", func(t *testing.T) {
		l := l.on(t)
		_, addr := l.startRelay("h1", lanRole{Addr: "0.0.0.0:0", Broadcast: "239.77.7.7:24301", Heartbeat: lanHeartbeat, Interface: "eth0"})
		_, port, _ := strings.Cut(addr, ":")
		addr = "10.231.7.1:" + port
		alice := l.join("h2", "alice", addr, lanRole{})
		carol := l.join("h3", "carol", addr, lanRole{})
		ms := []*lanProc{alice, carol}
		from := joinSeq(t, ms, "carol")
		wantCopies(t, chatCheck(t, l, ms, from, "h2", "h3"), 6)
	})

	// The relay is reached at h1's eth1 address but multicasts on eth0's
	// LAN; alice reaches it through h2's eth1 and joins on eth0, as told.
	// carol (on eth0's LAN only) now gets the copies too.
	t.Run("relay and member name eth0", func(t *testing.T) {
		l := l.on(t)
		// The copies reach h2's eth0 from 10.232.7.1, an address h2
		// routes through eth1: strict reverse-path filtering would drop
		// them.
		l.in("h2", "sh", "-c", "echo 0 >/proc/sys/net/ipv4/conf/all/rp_filter && echo 0 >/proc/sys/net/ipv4/conf/eth0/rp_filter")
		_, addr := l.startRelay("h1", lanRole{Addr: "10.232.7.1:0", Broadcast: "239.77.7.7:24302", Heartbeat: lanHeartbeat, Interface: "eth0"})
		alice := l.join("h2", "alice", addr, lanRole{Interface: "eth0"})
		carol := l.join("h3", "carol", addr, lanRole{})
		ms := []*lanProc{alice, carol}
		from := joinSeq(t, ms, "carol")
		joinedOnEth0Only(t, l, "h2")
		wantCopies(t, chatCheck(t, l, ms, from, "h2", "h3"), 6)
		if st := alice.memberStats(); st.Dropped != 0 {
			t.Errorf("alice dropped %d datagrams (fan-out copies not from the relay's address?): %+v", st.Dropped, st)
		}
	})

	// An interface that does not exist is an error, on either side.
	t.Run("no such interface", func(t *testing.T) {
		l := l.on(t)
		p := startProc(t, l.ns("h1"), "relay@h1", lanRole{Role: "relay", Addr: "10.231.7.1:0", Broadcast: "239.77.7.7:24303", Interface: "nosuch0"})
		if _, e := p.waitEv(0, "relay", "relayerr"); e.Ev != "relayerr" || !strings.Contains(e.Err, "nosuch0") {
			t.Errorf("NewRelay with WithInterface(\"nosuch0\"): %v; want an error naming nosuch0", e)
		}
		_, addr := l.startRelay("h1", lanRole{Addr: "10.231.7.1:0", Broadcast: "239.77.7.7:24303", Heartbeat: lanHeartbeat})
		m := startProc(t, l.ns("h2"), "alice@h2", lanRole{Role: "member", Name: "alice", Addr: addr, Interface: "nosuch0"})
		if _, e := m.waitEv(0, "joined", "joinerr"); e.Ev != "joinerr" || !strings.Contains(e.Err, "nosuch0") {
			t.Errorf("Join with WithInterface(\"nosuch0\"): %v; want an error naming nosuch0", e)
		}
	})
}

// joinedOnEth0Only checks that host has joined 239.77.7.7 on eth0 and not
// on eth1.
func joinedOnEth0Only(t *testing.T, l *lan, host string) {
	t.Helper()
	if g0, g1 := l.groups(host, "eth0"), l.groups(host, "eth1"); !slices.Contains(g0, "239.77.7.7") || slices.Contains(g1, "239.77.7.7") {
		t.Errorf("%s has joined %q on eth0 and %q on eth1, want 239.77.7.7 on eth0 only", host, g0, g1)
	}
}

// wantCopies checks that every host received n fan-out copies.
func wantCopies(t *testing.T, copies map[string]uint64, n uint64) {
	t.Helper()
	for _, c := range copies {
		if c != n {
			t.Errorf("fan-out copies received: %v, want %d each", copies, n)
			return
		}
	}
}
