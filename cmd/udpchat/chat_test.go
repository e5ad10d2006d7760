package main

import (
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
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
		{[]string{"relay", "-h"}, 0, "-max-rooms"},
		{[]string{"relay", "-h"}, 0, "-max-room-members"},
		{[]string{"help", "chat"}, 0, "-room room"},
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
		{udpchat.Message{Kind: udpchat.KindPrivate, From: "bob", To: "al\u202eice", Text: "psst\x1b[2J"}, `[private] bob -> al\u202eice: psst^[[2J`},
		{udpchat.Message{Kind: udpchat.KindLost, Text: "the relay went \u202esilent"}, `* relay lost (the relay went \u202esilent); rejoining, and what you type waits`},
		{udpchat.Message{Kind: udpchat.KindRejoined, Text: "same relay"}, "* relay back"},
		{udpchat.Message{Kind: udpchat.KindRejoined, Text: "new relay"}, "* relay back (it restarted)"},
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
	if got := render(udpchat.Message{Kind: udpchat.KindPrivate, From: "bob", To: "alice", Text: "hi"}, true); !strings.HasPrefix(got, "[private] \x1b[") || strings.Count(got, resetColour) != 2 || !strings.HasSuffix(got, resetColour+": hi") {
		t.Errorf("coloured private: %q", got)
	}
}

// TestHost: "chat -host" runs the relay in its own process, and others
// join it.
func TestHost(t *testing.T) {
	alice := start(t, nil, "chat", "-host", "-addr", "127.0.0.1:0", "-name", "alice")
	alice.waitLine(t, "* alice joined")
	addr := hostAddr(t, alice)
	bob := joinLine(t, nil, addr, "bob")
	alice.waitLine(t, "* bob joined")
	bob.send(t, "hi host\n")
	alice.waitLine(t, "bob: hi host")
	alice.stdin.Close()
	if code := alice.wait(t); code != 0 {
		t.Errorf("alice exited with %d", code)
	}
	// The host's relay went with her: bob is told, as after any relay stop.
	bob.waitLine(t, "* relay lost (the relay said goodbye); rejoining, and what you type waits")
	bob.stdin.Close()
	bob.wait(t)
}

// TestHostTakesRelayFlags: the hosted relay takes the relay's flags, and
// they need -host.
func TestHostTakesRelayFlags(t *testing.T) {
	alice := start(t, nil, "chat", "-host", "-addr", "127.0.0.1:0", "-name", "alice", "-max-members", "1")
	alice.waitLine(t, "* alice joined")
	addr := hostAddr(t, alice)
	bob := start(t, nil, "chat", "-addr", addr, "-name", "bob")
	if code := bob.wait(t); code != 1 || !strings.Contains(bob.stderr.String(), "member limit") {
		t.Errorf("bob joined a full hosted relay: exit %d, %q", code, bob.stderr)
	}
	alice.stdin.Close()
	alice.wait(t)
	lone := start(t, nil, "chat", "-addr", addr, "-name", "carol", "-history", "500")
	if code := lone.wait(t); code != 2 || !strings.Contains(lone.stderr.String(), "need -host") {
		t.Errorf("-history without -host: exit %d, %q", code, lone.stderr)
	}
}

// hostAddr reads where a "chat -host" process's relay listens.
func hostAddr(t *testing.T, p *proc) string {
	t.Helper()
	for end := time.Now().Add(deadline); ; time.Sleep(10 * time.Millisecond) {
		for l := range strings.Lines(p.stderr.String()) {
			if rest, ok := strings.CutPrefix(l, "udpchat relay listening on "); ok {
				return strings.TrimSpace(rest)
			}
		}
		if time.Now().After(end) {
			t.Fatalf("chat -host did not say where its relay listens: %q", p.stderr)
		}
	}
}

// TestRelayRestartNotices: when the relay restarts, a chat says the relay
// was lost and is back, and prints no join for those who were there.
func TestRelayRestartNotices(t *testing.T) {
	relay, addr := startRelay(t, nil, "-heartbeat", "50ms", "-expiry", "300ms")
	bob := joinLine(t, nil, addr, "bob")
	alice := joinLine(t, nil, addr, "alice")
	bob.waitLine(t, "* alice joined")
	stopRelay(t, relay)
	bob.waitLine(t, "* relay lost (the relay said goodbye); rejoining, and what you type waits")
	relay = start(t, nil, "relay", "-addr", addr, "-log-level", "warn", "-heartbeat", "50ms", "-expiry", "300ms")
	if got := bob.waitLine(t, "* relay back (it restarted)"); len(got) != 0 {
		t.Errorf("bob printed %q before the relay was back", got)
	}
	alice.send(t, "still here\n")
	if got := bob.waitLine(t, "alice: still here"); len(got) != 0 {
		t.Errorf("bob printed %q after the restart: alice was there before it", got)
	}
	alice.stdin.Close()
	alice.wait(t)
	bob.stdin.Close()
	bob.wait(t)
	stopRelay(t, relay)
}

// TestPlainPeers: two chats in plain text talk peer to peer, with no relay
// (-listen), and one talks to the classic two-person program.
func TestPlainPeers(t *testing.T) {
	pa, pb := freePort(t), freePort(t)
	at := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	alice := start(t, nil, "chat", "-plain", "-name", "alice", "-listen", at(pa), "-addr", at(pb))
	bob := start(t, nil, "chat", "-plain", "-name", "bob", "-listen", at(pb), "-addr", at(pa))
	alice.waitLine(t, "* members (0): ")
	bob.waitLine(t, "* members (0): ")
	alice.send(t, "hi bob\n")
	bob.waitLine(t, "alice: hi bob")
	bob.send(t, "hi alice\n")
	alice.waitLine(t, "bob: hi alice")
	alice.stdin.Close()
	alice.wait(t)
	bob.stdin.Close()
	bob.wait(t)

	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf("python3 not found: %v", err)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "testdata", "classic_peer.py"))
	if err != nil {
		t.Fatal(err)
	}
	pc, pm := freePort(t), freePort(t)
	carol := exec.Command(py, script, "carol", fmt.Sprint(pc), fmt.Sprint(pm))
	carolIn, err := carol.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	carolOut := &syncBuffer{}
	carol.Stdout = carolOut
	if err := carol.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { carol.Process.Kill(); carol.Wait() })
	waitFor(t, "the classic peer to bind", func() bool { return strings.Contains(carolOut.String(), "* ready carol") })
	dave := start(t, nil, "chat", "-plain", "-name", "dave", "-listen", at(pm), "-addr", at(pc))
	dave.waitLine(t, "* members (0): ")
	io.WriteString(carolIn, "hello dave\n")
	dave.waitLine(t, "carol: hello dave")
	dave.send(t, "hi carol\n")
	waitFor(t, "carol to print dave's line", func() bool { return strings.Contains(carolOut.String(), "dave: hi carol\n") })
	io.WriteString(carolIn, "bye\n")
	dave.waitLine(t, "carol: bye")
	if err := carol.Wait(); err != nil {
		t.Errorf("the classic peer: %v", err)
	}
	dave.stdin.Close()
	dave.wait(t)
}

// waitFor polls cond until it holds, failing after the deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(deadline); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
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

// TestRelayJSONLog: JSON logs carry addresses as strings.
func TestRelayJSONLog(t *testing.T) {
	relay, addr := startRelay(t, nil, "-log-format", "json", "-log-level", "info")
	bob := joinLine(t, nil, addr, "bob")
	waitFor(t, "the join in the log", func() bool { return strings.Contains(relay.stderr.String(), `"msg":"udpchat member joined"`) })
	if log := relay.stderr.String(); !strings.Contains(log, `"addr":"`+addr+`"`) || strings.Contains(log, `"IP"`) {
		t.Errorf("JSON log:\n%s", log)
	}
	bob.stdin.Close()
	bob.wait(t)
	stopRelay(t, relay)
}
