package udpchat

// IPv6 and NAT tests on the LAN of network namespaces (netns_linux_test.go
// has the harness, lan_linux_test.go the helpers). Like those, they need
// root and iproute2; the NAT test needs nftables and conntrack too.
//
//	TestLANIPv6          a LAN with IPv6 addresses (fd00:7:231::/64): unicast fan-out,
//	                     multicast to a site-scope and to a link-scope group, and a
//	                     dual-stack relay on [::] with members dialling its IPv4 and its
//	                     IPv6 address
//	TestLANNATRebinding  a member behind a NAT whose mapping is flushed mid-chat: the
//	                     relay moves its session to the new port; no rejoin, nothing lost

import (
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// addIPv6 gives each host of addrs (host -> address) that address, /64, on
// its interface dev, and permanent neighbour entries for the others, as
// settle does for IPv4. nodad makes the addresses usable at once (there is
// no one else on a LAN the test built), and with the neighbour entries no
// neighbour solicitation crosses the LAN. No link-local address is needed:
// multicast leaves from the global address the socket is bound to.
func (l *lan) addIPv6(dev string, addrs map[string]string) {
	l.t.Helper()
	for h, ip := range addrs {
		l.ip("-n", l.ns(h), "-6", "addr", "add", ip+"/64", "dev", dev, "nodad")
	}
	for a := range addrs {
		for b, ip := range addrs {
			if a != b {
				l.ip("-n", l.ns(a), "-6", "neigh", "replace", ip, "lladdr", l.link(b, dev).mac, "dev", dev, "nud", "permanent")
			}
		}
	}
}

// countGroup counts, with an nftables rule in host's namespace, the
// datagrams to group ("[ff05::77:7]:24401") with a hop limit of 1 that
// reach the host, and returns a function that reads the count. Not
// Ip6InMcastPkts of /proc/net/snmp6: the kernel counts a multicast packet
// there before it checks that the host has joined its group, so the MLD
// reports of the other hosts' joins, which may go out up to a second
// later, count too (16 copies of 15 in one trial run).
func (l *lan) countGroup(host, group string) func() uint64 {
	l.t.Helper()
	ga, err := netip.ParseAddrPort(group)
	if err != nil {
		l.t.Fatal(err)
	}
	nft := func(args ...string) string { return l.in(host, append([]string{"nft"}, args...)...) }
	nft("add", "table", "ip6", "udpchat")
	nft("add", "chain", "ip6", "udpchat", "in", "{ type filter hook prerouting priority 0 ; }")
	nft("flush", "chain", "ip6", "udpchat", "in")
	nft("add", "rule", "ip6", "udpchat", "in", "ip6", "daddr", ga.Addr().String(), "ip6", "hoplimit", "1", "udp", "dport", strconv.Itoa(int(ga.Port())), "counter")
	return func() uint64 {
		l.t.Helper()
		out := nft("list", "chain", "ip6", "udpchat", "in")
		_, after, _ := strings.Cut(out, "counter packets ")
		n, err := strconv.ParseUint(strings.Fields(after + " ?")[0], 10, 64)
		if err != nil {
			l.t.Fatalf("no count in nft's listing of %s:\n%s", host, out)
		}
		return n
	}
}

// groups6 lists the IPv6 multicast groups host has joined on dev.
func (l *lan) groups6(host, dev string) []string {
	l.t.Helper()
	var gs []string
	for _, line := range strings.Split(l.ip("-n", l.ns(host), "-6", "maddr", "show", "dev", dev), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "inet6" {
			gs = append(gs, f[1])
		}
	}
	return gs
}

// TestLANIPv6 runs the relay and its members over IPv6: h1, h2 and h3
// have fd00:7:231::1, 2 and 3 on eth0 beside their IPv4 addresses. In each
// subtest every member gets every message, in one order.
func TestLANIPv6(t *testing.T) {
	l := newStdLAN(t, 3)
	l.addIPv6("eth0", map[string]string{"h1": "fd00:7:231::1", "h2": "fd00:7:231::2", "h3": "fd00:7:231::3"})

	t.Run("unicast", func(t *testing.T) { testLAN6FanOut(t, l.on(t), "") })
	t.Run("multicast site scope", func(t *testing.T) { testLAN6FanOut(t, l.on(t), "[ff05::77:7]:24401") })
	// A link-scope group is an interface's: the relay, bound to eth0's
	// address, knows which; each member joins on the interface holding
	// its address towards the relay.
	t.Run("multicast link scope", func(t *testing.T) { testLAN6FanOut(t, l.on(t), "[ff02::77:7]:24402") })

	// A relay bound to [::] takes IPv4 too (as mapped addresses), and
	// answers each member from the address it dialled, over IPv4 to alice
	// and IPv6 to bob: their connected sockets would drop anything else.
	t.Run("dual stack", func(t *testing.T) {
		l := l.on(t)
		relay, addr := l.startRelay("h1", lanRole{Addr: "[::]:0", Heartbeat: lanHeartbeat})
		_, port, _ := strings.Cut(addr, "]:")
		alice := l.join("h2", "alice", "10.231.7.1:"+port, lanRole{})
		bob := l.join("h3", "bob", "[fd00:7:231::1]:"+port, lanRole{})
		ms := []*lanProc{alice, bob}
		from := joinSeq(t, ms, "bob")
		chatCheck(t, l, ms, from)
		for _, m := range ms {
			if st := m.memberStats(); st.Dropped != 0 || st.Rejoins != 0 {
				t.Errorf("%s: %+v, want no datagram dropped and no rejoin", m.label, st)
			}
		}
		t.Logf("relay: %+v", relay.relayStats())
	})
}

// testLAN6FanOut: a relay on h1 bound to fd00:7:231::1, fanning out to
// group (unicast if ""); alice and bob on h2, carol on h3; everyone sends
// five messages at once.
func testLAN6FanOut(t *testing.T, l *lan, group string) {
	if _, err := exec.LookPath("nft"); err != nil && group != "" {
		lanSkip(t, "counting multicast copies needs nftables' nft: %v", err)
	}
	start := time.Now()
	relay, addr := l.startRelay("h1", lanRole{Addr: "[fd00:7:231::1]:0", Broadcast: group, Heartbeat: lanHeartbeat})
	alice := l.join("h2", "alice", addr, lanRole{})
	bob := l.join("h2", "bob", addr, lanRole{})
	carol := l.join("h3", "carol", addr, lanRole{})
	ms := []*lanProc{alice, bob, carol}
	from := joinSeq(t, ms, "carol")

	var counts []func() uint64
	if group != "" {
		gip := netip.MustParseAddrPort(group).Addr().String()
		for _, h := range []string{"h2", "h3"} {
			if gs := l.groups6(h, "eth0"); !slices.Contains(gs, gip) {
				t.Errorf("%s's eth0 has joined %q, want %s among them", h, gs, gip)
			}
			counts = append(counts, l.countGroup(h, group))
		}
	}
	rs := relay.relayStats()

	want := sendAll(t, ms, 5, "")
	n := total(want)
	waitChats(ms, from, n)
	checkStreams(t, ms, from, want)

	rs2 := relay.relayStats()
	if got := rs2.Sequenced - rs.Sequenced; got != uint64(n) {
		t.Errorf("relay sequenced %d messages, want %d", got, n)
	}
	wantDelivered := uint64(n * len(ms))
	if group != "" {
		wantDelivered = uint64(n) // one copy to the group per message
	}
	if got := rs2.Delivered - rs.Delivered; got != wantDelivered {
		t.Errorf("relay delivered %d datagrams for %d messages to %d members, want %d", got, n, len(ms), wantDelivered)
	}
	// One copy of each message reached each host: the copies, not
	// repairs, carried the chat. (A few repairs may still be asked for,
	// when a STATUS overtakes a copy on its way into a member.)
	for i, count := range counts {
		if got := count(); got != uint64(n) {
			t.Errorf("h%d received %d datagrams to %s, want %d (one per message, hop limit 1)", i+2, got, group, n)
		}
	}
	for _, m := range ms {
		st := m.memberStats()
		if st.Dropped != 0 {
			t.Errorf("%s dropped %d datagrams (not from the relay's address?): %+v", m.label, st.Dropped, st)
		}
		t.Logf("%s: %+v", m.label, st)
	}
	t.Logf("%d messages to %d members on 2 hosts in %v; relay: %+v", n, len(ms), time.Since(start).Round(time.Millisecond), rs2)
}

// TestLANNATRebinding puts alice (h2, 192.168.77.2 on br1) behind gw, a
// NAT to br0 (10.231.7.254) that gives each mapping a random port. The
// relay (h1) and bob (h3) are on br0. Mid-chat gw forgets its mappings
// (conntrack -F), as a home router does on a reboot or a timeout: alice's
// next datagram leaves from a new port. The relay must challenge that
// address and move her session there once she answers: every message
// before and after reaches both in one order, alice does not rejoin, and
// bob sees her neither leave nor join.
func TestLANNATRebinding(t *testing.T) {
	requireLAN(t)
	for _, tool := range []string{"nft", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			lanSkip(t, "the NAT test needs %s: %v", tool, err)
		}
	}
	l := newLAN(t, "h1", "h2", "h3", "gw")
	l.addBridge("br1", true)
	l.connect("h1", "eth0", "br0", "10.231.7.1/24")
	l.connect("h3", "eth0", "br0", "10.231.7.3/24")
	l.connect("gw", "eth0", "br0", "10.231.7.254/24")
	l.connect("gw", "eth1", "br1", "192.168.77.1/24")
	l.connect("h2", "eth0", "br1", "192.168.77.2/24")
	l.settle()
	l.ip("-n", l.ns("h2"), "route", "add", "default", "via", "192.168.77.1")
	l.in("gw", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	l.in("gw", "nft", "add", "table", "ip", "nat")
	l.in("gw", "nft", "add", "chain", "ip", "nat", "post", "{ type nat hook postrouting priority 100 ; }")
	// random: a port drawn at random for each new mapping, not alice's
	// own, so that the mapping after the flush differs from the one
	// before.
	l.in("gw", "nft", "add", "rule", "ip", "nat", "post", "oifname", "eth0", "masquerade", "random")

	t.Run("no key", func(t *testing.T) { testNATRebinding(t, l.on(t), "") })
	// With a key, the relay must also take the sealed answer from the new
	// address (its replay window moves with the session).
	t.Run("key", func(t *testing.T) {
		testNATRebinding(t, l.on(t), "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	})
}

func testNATRebinding(t *testing.T, l *lan, key string) {
	relay, addr := l.startRelay("h1", lanRole{Addr: "10.231.7.1:0", Heartbeat: lanHeartbeat, Key: key})
	_, port, _ := strings.Cut(addr, ":")
	alice := l.join("h2", "alice", addr, lanRole{Key: key})
	bob := l.join("h3", "bob", addr, lanRole{Key: key})
	ms := []*lanProc{alice, bob}
	from := joinSeq(t, ms, "bob")

	want := sendAll(t, ms, 5, "before")
	waitChats(ms, from, total(want))
	// Two flushes. After the first, alice and bob chat at once: alice's
	// chats find the new mapping, and bob's, if fanned out to her old one
	// meanwhile, are lost to her and repaired. After the second only bob
	// speaks: alice finds the new mapping with her next heartbeat, and
	// until her session has moved, she hears nothing.
	for i, senders := range [][]*lanProc{ms, {bob}} {
		mapped := natPort(l, port)
		rs := relay.relayStats()
		l.in("gw", "conntrack", "-F")
		flushed := time.Now()
		round := sendAll(t, senders, 5, fmt.Sprintf("after%d", i+1))
		merge(want, round)
		waitChats(ms, from, total(want))
		took := time.Since(flushed)

		if rs2 := relay.relayStats(); rs2.Migrated-rs.Migrated < 1 {
			t.Errorf("flush %d: the relay moved no session after alice's mapping changed: %+v", i+1, rs2)
		}
		remapped := natPort(l, port)
		if remapped == mapped {
			t.Errorf("flush %d: alice's mapping kept port %s: nothing was tested", i+1, mapped)
		}
		t.Logf("flush %d: alice mapped to 10.231.7.254:%s, then :%s; the %d messages sent after it all delivered %v after it",
			i+1, mapped, remapped, total(round), took.Round(time.Microsecond))
	}
	checkStreams(t, ms, from, want)

	st := alice.memberStats()
	if st.Rejoins != 0 {
		t.Errorf("alice rejoined: %+v", st)
	}
	// The session moved, so nothing about alice's presence is news: no
	// leave or join of hers after the first, and no KindLost or
	// KindRejoined (Seq 0) for either member.
	for _, m := range ms {
		for _, e := range m.messages() {
			if (e.From == "alice" && e.Seq >= from && (e.Kind == KindJoin || e.Kind == KindLeave)) || e.Kind == KindLost || e.Kind == KindRejoined {
				t.Errorf("%s received %v", m.label, e)
			}
		}
	}
	t.Logf("relay: %+v", relay.relayStats())
	t.Logf("alice: %+v", st)
	t.Logf("bob: %+v", bob.memberStats())
}

// natPort returns the port gw maps alice's socket towards the relay's
// port to, from its conntrack table: the destination port of the reply
// direction.
func natPort(l *lan, relayPort string) string {
	l.t.Helper()
	out := l.in("gw", "conntrack", "-L", "-p", "udp", "-s", "192.168.77.2", "--dport", relayPort)
	var ports []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "udp") {
			continue // conntrack's summary line
		}
		var last string
		for _, f := range strings.Fields(line) {
			if p, ok := strings.CutPrefix(f, "dport="); ok {
				last = p
			}
		}
		ports = append(ports, last)
	}
	if len(ports) != 1 {
		l.t.Fatalf("gw maps alice to the relay %d times, want once:\n%s", len(ports), out)
	}
	return ports[0]
}
