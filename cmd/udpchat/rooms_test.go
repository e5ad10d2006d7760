package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/udpchat/udpchat"
)

// TestRoomsLineMode: -room puts a chat in a room, /join moves it to
// another and back to the main room, and each room hears only its own
// members: their joins, leaves and chats.
func TestRoomsLineMode(t *testing.T) {
	relay, addr := startRelay(t, nil)
	dave := joinLine(t, nil, addr, "dave") // stays in the main room
	alice := joinLine(t, nil, addr, "alice")
	dave.waitLine(t, "* alice joined")

	bob := start(t, nil, "chat", "-addr", addr, "-name", "bob", "-room", "ops")
	bob.waitLine(t, "* now in room ops")
	bob.waitLine(t, "* members of room ops (1): bob")
	bob.waitLine(t, "* bob joined")
	carol := joinLine(t, nil, addr, "carol", "-room", "ops")
	bob.waitLine(t, "* carol joined")

	// alice moves to ops: the main room sees her leave, ops sees her come.
	alice.send(t, "/join ops\n")
	alice.waitLine(t, "* now in room ops")
	alice.waitLine(t, "* members of room ops (3): alice, bob, carol")
	bob.waitLine(t, "* alice joined")
	carol.waitLine(t, "* alice joined")
	dave.waitLine(t, "* alice left")
	alice.send(t, "/who\n/join ops\n")
	alice.waitLine(t, "* members of room ops (3): alice, bob, carol")
	alice.waitLine(t, "* already in room ops")

	// Lines typed right after a /join go to the new room, in order.
	alice.send(t, "/join\nback in main\n/join ops\nin ops\n")
	alice.waitLine(t, "* now in the main room")
	alice.waitLine(t, "alice: back in main")
	alice.waitLine(t, "* now in room ops")
	alice.waitLine(t, "alice: in ops")
	dave.waitLine(t, "* alice joined")
	dave.waitLine(t, "alice: back in main")
	dave.waitLine(t, "* alice left")
	for _, p := range []*proc{bob, carol} {
		got := p.waitLine(t, "alice: in ops")
		if slices.Contains(got, "alice: back in main") {
			t.Errorf("ops heard the main room: %q", got)
		}
	}

	// A chat in ops and one in the main room, each heard in its own room only.
	carol.send(t, "ops only\n")
	dave.send(t, "main only\n")
	for _, p := range []*proc{alice, bob} {
		if got := p.waitLine(t, "carol: ops only"); slices.Contains(got, "dave: main only") {
			t.Errorf("ops heard the main room: %q", got)
		}
	}
	got := dave.waitLine(t, "dave: main only")
	for _, l := range got {
		if strings.Contains(l, "ops only") || strings.Contains(l, "carol") || strings.Contains(l, "bob") {
			t.Errorf("the main room heard ops: %q", got)
		}
	}

	for _, p := range []*proc{alice, bob, carol, dave} {
		p.send(t, "/quit\n")
		if code := p.wait(t); code != 0 {
			t.Errorf("%s exited with %d", p.cmd.Args[len(p.cmd.Args)-1], code)
		}
	}
	stopRelay(t, relay)
}

// TestJoinThenEnd: what is typed after a /join, before the input ends,
// goes to the new room before the chat leaves it.
func TestJoinThenEnd(t *testing.T) {
	relay, addr := startRelay(t, nil)
	bob := joinLine(t, nil, addr, "bob", "-room", "ops")
	alice := joinLine(t, nil, addr, "alice")
	alice.send(t, "/join ops\nbye from ops\n")
	alice.stdin.Close()
	bob.waitLine(t, "* alice joined")
	bob.waitLine(t, "alice: bye from ops")
	bob.waitLine(t, "* alice left")
	if code := alice.wait(t); code != 0 {
		t.Errorf("alice exited with %d", code)
	}
	bob.stdin.Close()
	bob.wait(t)
	stopRelay(t, relay)
}

// TestPrivateLineMode: /msg reaches the one member named, and the sender's
// own copy; the third member of the room never prints it; unknown names
// and a missing text are told.
func TestPrivateLineMode(t *testing.T) {
	relay, addr := startRelay(t, nil)
	alice := joinLine(t, nil, addr, "alice", "-room", "ops")
	bob := joinLine(t, nil, addr, "bob", "-room", "ops")
	carol := joinLine(t, nil, addr, "carol", "-room", "ops")
	alice.waitLine(t, "* carol joined")
	bob.waitLine(t, "* carol joined")

	alice.send(t, "/msg bob psst \x1b[2J secret\n")
	const private = "[private] alice -> bob: psst ^[[2J secret"
	bob.waitLine(t, private)
	alice.waitLine(t, private) // her own copy
	bob.send(t, "/msg alice got it\n")
	alice.waitLine(t, "[private] bob -> alice: got it")
	bob.waitLine(t, "[private] bob -> alice: got it")

	// carol gets the public message sequenced after both, and nothing
	// private before it.
	alice.send(t, "public now\n")
	for _, l := range carol.waitLine(t, "alice: public now") {
		if strings.Contains(l, "private") || strings.Contains(l, "secret") || strings.Contains(l, "got it") {
			t.Errorf("carol printed %q", l)
		}
	}

	alice.send(t, "/msg nobody hello\n/msg bob\n/msg   \n")
	waitFor(t, "the unknown name refused", func() bool {
		return strings.Contains(alice.stderr.String(), "udpchat: not sent to nobody: no such member in the room")
	})
	waitFor(t, "the usage", func() bool { return strings.Count(alice.stderr.String(), "usage: /msg NAME TEXT\n") == 2 })

	// /help lists the new commands.
	alice.send(t, "/help\n")
	alice.waitFunc(t, "/msg in /help", func(l string) bool { return strings.HasPrefix(l, "  /msg NAME TEXT ") })
	alice.waitFunc(t, "/join in /help", func(l string) bool { return strings.HasPrefix(l, "  /join ROOM ") })

	for _, p := range []*proc{alice, bob, carol} {
		p.stdin.Close()
		if code := p.wait(t); code != 0 {
			t.Errorf("%s exited with %d", p.cmd.Args[len(p.cmd.Args)-1], code)
		}
	}
	if s := carol.stderr.String(); s != "" {
		t.Errorf("carol's stderr: %q", s)
	}
	stopRelay(t, relay)
}

// TestJoinRefused: a /join the relay refuses (its room limit) leaves the
// chat in no room, says so, sends nothing, and a later /join works.
func TestJoinRefused(t *testing.T) {
	relay, addr := startRelay(t, nil, "-max-rooms", "1")
	bob := joinLine(t, nil, addr, "bob")
	alice := joinLine(t, nil, addr, "alice")
	bob.waitLine(t, "* alice joined")

	alice.send(t, "/join ops\n")
	bob.waitLine(t, "* alice left")
	waitFor(t, "the refusal", func() bool {
		s := alice.stderr.String()
		return strings.Contains(s, "udpchat: cannot join room ops: relay full: room limit") &&
			strings.Contains(s, "* in no room now: /join ROOM")
	})
	alice.send(t, "lost words\n/who\n")
	alice.waitLine(t, "* in no room: /join ROOM (/join alone: the main room), or /quit")
	waitFor(t, "text refused", func() bool { return strings.Contains(alice.stderr.String(), "udpchat: not sent: in no room") })

	alice.send(t, "/join bad:room\n")
	waitFor(t, "the bad name", func() bool {
		return strings.Contains(alice.stderr.String(), `udpchat: invalid room name "bad:room": ':'`)
	})

	alice.send(t, "/join\nback\n")
	alice.waitLine(t, "* now in the main room")
	alice.waitLine(t, "* members (2): alice, bob")
	bob.waitLine(t, "* alice joined")
	if got := bob.waitLine(t, "alice: back"); slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "lost words") }) {
		t.Errorf("bob got text typed in no room: %q", got)
	}
	alice.stdin.Close()
	alice.wait(t)
	bob.stdin.Close()
	bob.wait(t)
	stopRelay(t, relay)
}

// TestRoomFlags: -room with -host puts the host in the room; -room with
// -plain, a bad room name and -max-rooms without -host are refused; plain
// text refuses /join and /msg.
func TestRoomFlags(t *testing.T) {
	alice := start(t, nil, "chat", "-host", "-addr", "127.0.0.1:0", "-name", "alice", "-room", "ops", "-max-rooms", "2")
	alice.waitLine(t, "* now in room ops")
	alice.waitLine(t, "* alice joined")
	addr := hostAddr(t, alice)
	bob := joinLine(t, nil, addr, "bob", "-room", "ops")
	alice.waitLine(t, "* bob joined")
	bob.send(t, "/who\n")
	bob.waitLine(t, "* members of room ops (2): alice, bob")
	carol := joinLine(t, nil, addr, "carol") // the second room: the main one
	dave := start(t, nil, "chat", "-addr", addr, "-name", "dave", "-room", "third")
	if code := dave.wait(t); code != 1 || !strings.Contains(dave.stderr.String(), "udpchat: relay full: room limit") {
		t.Errorf("a third room past -max-rooms 2: exit %d, %q", code, dave.stderr)
	}
	for _, p := range []*proc{carol, bob, alice} {
		p.stdin.Close()
		p.wait(t)
	}

	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"-plain", "-room", "ops"}, 2, "udpchat chat: -room and -plain: plain text has no rooms"},
		{[]string{"-room", "a:b"}, 1, `udpchat: invalid room name "a:b": ':'`},
		{[]string{"-max-rooms", "3"}, 2, "need -host"},
	} {
		p := start(t, nil, append([]string{"chat", "-addr", addr, "-name", "erin", "-timeout", "500ms"}, tc.args...)...)
		if code := p.wait(t); code != tc.code || !strings.Contains(p.stderr.String(), tc.err) || strings.Count(p.stderr.String(), "udpchat") != 1 {
			t.Errorf("chat %s: exit %d, %q; want exit %d and %q", strings.Join(tc.args, " "), code, p.stderr, tc.code, tc.err)
		}
	}

	relay, paddr := startRelay(t, nil, "-plain")
	plain := start(t, nil, "chat", "-plain", "-addr", paddr, "-name", "frank")
	plain.waitLine(t, "* members (0): ")
	plain.send(t, "/join ops\n/msg bob hi\n")
	waitFor(t, "plain text's refusals", func() bool {
		s := plain.stderr.String()
		return strings.Contains(s, "udpchat: /join: plain text has no rooms") &&
			strings.Contains(s, "udpchat: /msg: plain text has no private messages")
	})
	plain.stdin.Close()
	plain.wait(t)
	stopRelay(t, relay)
}

// TestSplitMsg: /msg's NAME is a member's whole name when it has spaces.
func TestSplitMsg(t *testing.T) {
	members := []udpchat.MemberInfo{{Name: "bob"}, {Name: "bob smith"}, {Name: "carol"}}
	for _, tc := range []struct{ arg, name, text string }{
		{"bob hi there", "bob", "hi there"},
		{"bob smith hi", "bob smith", "hi"},
		{"  carol  spaced", "carol", " spaced"},
		{"nobody hi", "nobody", "hi"},
		{"bob", "", ""},
		{"bob  ", "", ""},
		{"", "", ""},
	} {
		name, text, ok := splitMsg(tc.arg, members)
		if name != tc.name || text != tc.text || ok != (tc.name != "") {
			t.Errorf("splitMsg(%q) = %q, %q, %v; want %q, %q", tc.arg, name, text, ok, tc.name, tc.text)
		}
	}
}
