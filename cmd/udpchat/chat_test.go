package main

import (
	"strings"
	"testing"
	"time"

	"github.com/udpchat/udpchat"
)

// TestLineMode chats between two programs on pipes: every non-empty line is
// sent once, blank ones are not, each message is one line, commands work,
// and the end of input leaves.
func TestLineMode(t *testing.T) {
	relay, addr := startRelay(t, nil)
	bob := joinLine(t, nil, addr, "bob")
	alice := joinLine(t, nil, addr, "alice")
	bob.waitLine(t, "* alice joined")

	alice.send(t, "hello\n\n   \n\t\r\nsecond\n/me waves\n//slash\n")
	bob.waitLine(t, "alice: hello")
	if got := bob.waitLine(t, "alice: second"); len(got) != 0 {
		t.Errorf("bob got %q between alice's two lines: blank lines were sent", got)
	}
	bob.waitLine(t, "* alice waves")
	bob.waitLine(t, "alice: /slash")
	alice.waitLine(t, "alice: hello") // her own message, once, as the relay ordered it
	if got := alice.waitLine(t, "alice: second"); len(got) != 0 {
		t.Errorf("alice printed %q between her two lines", got)
	}
	alice.waitLine(t, "alice: /slash")
	alice.send(t, "/who\n/nonsense\n")
	alice.waitLine(t, "* members (2): alice, bob")

	alice.stdin.Close() // end of input: alice leaves
	if code := alice.wait(t); code != 0 {
		t.Errorf("alice exited with %d", code)
	}
	bob.waitLine(t, "* alice left")
	bob.send(t, "/quit\n")
	if code := bob.wait(t); code != 0 {
		t.Errorf("bob exited with %d", code)
	}
	stopRelay(t, relay)
}

// TestLineModeEndWaitsForSends: lines written just before the end of input
// are sent before the program leaves.
func TestLineModeEndWaitsForSends(t *testing.T) {
	relay, addr := startRelay(t, nil)
	bob := joinLine(t, nil, addr, "bob")
	alice := start(t, nil, "chat", "-addr", addr, "-name", "alice")
	var b strings.Builder
	for i := range 20 {
		b.WriteString("line " + string(rune('a'+i)) + "\n")
	}
	alice.send(t, b.String())
	alice.stdin.Close()
	for i := range 20 {
		bob.waitLine(t, "alice: line "+string(rune('a'+i)))
	}
	bob.waitLine(t, "* alice left")
	if code := alice.wait(t); code != 0 {
		t.Errorf("alice exited with %d", code)
	}
	bob.stdin.Close()
	bob.wait(t)
	stopRelay(t, relay)
}

// TestChatErrors: a relay that is not there, and a taken name, are
// reported with one "udpchat:" prefix and exit status 1.
func TestChatErrors(t *testing.T) {
	relay, addr := startRelay(t, nil)
	bob := joinLine(t, nil, addr, "bob")

	taken := start(t, nil, "chat", "-addr", addr, "-name", "bob")
	if code := taken.wait(t); code != 1 {
		t.Errorf("a second bob exited with %d, want 1", code)
	}
	if got := taken.stderr.String(); !strings.Contains(got, "name already taken") || strings.Count(got, "udpchat:") != 1 {
		t.Errorf("a second bob said %q", got)
	}

	bob.stdin.Close()
	bob.wait(t)
	stopRelay(t, relay)

	start := time.Now()
	gone := startNoRelay(t, addr)
	if code := gone.wait(t); code != 1 {
		t.Errorf("a chat without a relay exited with %d, want 1", code)
	}
	if got := gone.stderr.String(); !strings.Contains(got, "udpchat: relay unreachable") || !strings.Contains(got, addr) || strings.Count(got, "udpchat:") != 1 {
		t.Errorf("a chat without a relay said %q", got)
	}
	t.Logf("gave up after %v", time.Since(start).Round(time.Millisecond))
}

func startNoRelay(t *testing.T, addr string) *proc {
	return start(t, nil, "chat", "-addr", addr, "-name", "carol", "-timeout", "500ms")
}

// TestUsage: help, -h and mistakes.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"help"}, 0, "udpchat relay [flags]"},
		{[]string{"-h"}, 0, "udpchat chat -name NAME"},
		{[]string{"relay", "-h"}, 0, "-rate-bytes"},
		{[]string{"help", "chat"}, 0, "-key-file"},
		{[]string{"nonsense"}, 2, ""},
		{[]string{"chat"}, 2, ""},
		{[]string{"relay", "-log-format", "xml"}, 2, ""},
	} {
		p := start(t, nil, tc.args...)
		out := strings.Join(p.output(t), "\n")
		if code := p.wait(t); code != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("udpchat %s: exit %d, output %q; want exit %d, output containing %q",
				strings.Join(tc.args, " "), code, out, tc.code, tc.out)
		}
	}
}

// TestRender: the kinds, and a kind this program does not know.
func TestRender(t *testing.T) {
	for _, tc := range []struct {
		msg  udpchat.Message
		want string
	}{
		{udpchat.Message{Kind: udpchat.KindChat, From: "bob", Text: "hi\x1b[2J"}, "bob: hi^[[2J"},
		{udpchat.Message{Kind: udpchat.KindChat, From: "bob", Text: "/me waves"}, "* bob waves"},
		{udpchat.Message{Kind: udpchat.KindJoin, From: "bob"}, "* bob joined"},
		{udpchat.Message{Kind: udpchat.KindLeave, From: "bob"}, "* bob left"},
		{udpchat.Message{Kind: udpchat.Kind(99), Text: "relay went \u202esilent"}, `* kind(99): relay went \u202esilent`},
		{udpchat.Message{Kind: udpchat.Kind(98), From: "bob", Text: "x"}, "* kind(98) bob: x"},
	} {
		if got := render(tc.msg, false); got != tc.want {
			t.Errorf("render(%+v) = %q, want %q", tc.msg, got, tc.want)
		}
	}
	if got := render(udpchat.Message{Kind: udpchat.KindChat, From: "bob", Text: "hi"}, true); !strings.HasPrefix(got, "\x1b[") || !strings.HasSuffix(got, resetColour+": hi") {
		t.Errorf("coloured: %q", got)
	}
}

// TestHost: "chat -host" runs the relay in its own process, and others
// join it.
func TestHost(t *testing.T) {
	alice := start(t, nil, "chat", "-host", "-addr", "127.0.0.1:0", "-name", "alice")
	alice.waitLine(t, "* alice joined")
	var addr string
	for end := time.Now().Add(deadline); addr == ""; time.Sleep(10 * time.Millisecond) {
		for l := range strings.Lines(alice.stderr.String()) {
			if rest, ok := strings.CutPrefix(l, "udpchat relay listening on "); ok {
				addr = strings.TrimSpace(rest)
			}
		}
		if time.Now().After(end) {
			t.Fatalf("chat -host did not say where its relay listens: %q", alice.stderr)
		}
	}
	bob := joinLine(t, nil, addr, "bob")
	alice.waitLine(t, "* bob joined")
	bob.send(t, "hi host\n")
	alice.waitLine(t, "bob: hi host")
	alice.stdin.Close()
	if code := alice.wait(t); code != 0 {
		t.Errorf("alice exited with %d", code)
	}
	bob.stdin.Close()
	bob.wait(t)
}

// TestPlain chats in plain text, through a plain relay.
func TestPlain(t *testing.T) {
	relay, addr := startRelay(t, nil, "-plain")
	bob := start(t, nil, "chat", "-plain", "-addr", addr, "-name", "bob")
	bob.send(t, "bob here\n")
	bob.waitLine(t, "bob: bob here") // the relay forwards to bob from now on
	alice := start(t, nil, "chat", "-plain", "-addr", addr, "-name", "alice")
	alice.send(t, "plain \x1b[2J hello\n")
	alice.waitLine(t, "alice: plain ^[[2J hello")
	bob.waitLine(t, "alice: plain ^[[2J hello")
	alice.stdin.Close()
	alice.wait(t)
	bob.stdin.Close()
	bob.wait(t)
	stopRelay(t, relay)
}
