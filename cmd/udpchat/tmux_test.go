package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// tmuxServer is a tmux server of the test's own, on its own socket; the
// test's cleanup kills it.
type tmuxServer struct {
	t    *testing.T
	sock string // the -L name
	path string // the socket file, which kill-server leaves behind
}

// newTmux starts nothing yet; it skips the test when tmux is missing,
// unless $UDPCHAT_REQUIRE_TMUX is set (as in CI), which makes it fail.
func newTmux(t *testing.T) *tmuxServer {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("UDPCHAT_REQUIRE_TMUX") != "" {
			t.Fatalf("tmux is required (UDPCHAT_REQUIRE_TMUX is set) but missing: %v", err)
		}
		t.Skip("tmux is not installed; the terminal tests need it (apt-get install tmux)")
	}
	x := &tmuxServer{t: t, sock: fmt.Sprintf("udpchat-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	t.Cleanup(func() {
		exec.Command("tmux", "-L", x.sock, "kill-server").Run()
		if x.path != "" {
			os.Remove(x.path)
		}
	})
	return x
}

func (x *tmuxServer) run(args ...string) string {
	x.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", x.sock, "-f", os.DevNull}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// session runs argv in a new 100x30 window called name; when it exits, the
// shell prints "[exited STATUS]" (tmux's own #{pane_dead_status} is
// sometimes never set), and the pane stays, to be looked at.
func (x *tmuxServer) session(name string, argv ...string) {
	x.t.Helper()
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	x.run("new-session", "-d", "-x", "100", "-y", "30", "-s", name, strings.Join(quoted, " ")+`; echo "[exited $?]"`,
		";", "set-option", "-g", "remain-on-exit", "on")
	x.path = strings.TrimSpace(x.run("display", "-p", "#{socket_path}"))
}

func (x *tmuxServer) pane(name string) string { return x.run("capture-pane", "-p", "-t", name) }

func (x *tmuxServer) keys(name string, keys ...string) {
	x.t.Helper()
	x.run(append([]string{"send-keys", "-t", name}, keys...)...)
}

// waitPane polls the pane until ok holds for its contents, within deadline.
func (x *tmuxServer) waitPane(name, what string, ok func(pane string) bool) string {
	x.t.Helper()
	end := time.Now().Add(deadline)
	for {
		p := x.pane(name)
		if ok(p) {
			return p
		}
		if time.Now().After(end) {
			x.t.Fatalf("pane %s: no %s within %v:\n%s", name, what, deadline, strings.TrimSpace(p))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// screenLines returns the pane's lines without the empty ones at the end.
func screenLines(pane string) []string {
	lines := strings.Split(strings.TrimRight(pane, "\n "), "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	return lines
}

func hasLine(line string) func(string) bool {
	return func(p string) bool { return slices.Contains(screenLines(p), line) }
}

func lastLine(p string) string { l := screenLines(p); return l[len(l)-1] }

// ourSGR matches the colours this program writes (tmux rewrites a reset
// as 39m), and no others.
var ourSGR = regexp.MustCompile(`^\x1b\[(3[1-6]|9[1-6]|39|0)?m$`)

// TestTerminal runs a chat under tmux: messages print above the line being
// typed, the entered line is shown once (the relay's copy), history, /who,
// a peer's escape sequences stay text, and Ctrl-C leaves at once.
func TestTerminal(t *testing.T) {
	x := newTmux(t)
	relay, addr := startRelay(t, nil)
	bob := joinLine(t, nil, addr, "bob")
	x.session("alice", bin, "chat", "-addr", addr, "-name", "alice")
	x.waitPane("alice", "join", hasLine("* alice joined"))
	bob.waitLine(t, "* alice joined")

	// Typing, then a message arrives: it goes above, the typing stays.
	x.keys("alice", "-l", "I am typing")
	x.waitPane("alice", "typed line", func(p string) bool { return lastLine(p) == "> I am typing" })
	bob.send(t, "hello alice\n")
	p := x.waitPane("alice", "bob's message", hasLine("bob: hello alice"))
	if l := screenLines(p); l[len(l)-1] != "> I am typing" || l[len(l)-2] != "bob: hello alice" {
		t.Errorf("after bob's message, the screen ends %q; want bob's line, then the prompt with the typing", l[max(0, len(l)-3):])
	}

	// Enter: the line is sent and shown once, as the relay's copy.
	x.keys("alice", "C-u")
	x.keys("alice", "-l", "hi bob")
	x.keys("alice", "Enter")
	bob.waitLine(t, "alice: hi bob")
	p = x.waitPane("alice", "her own message", hasLine("alice: hi bob"))
	if n := strings.Count(p, "hi bob"); n != 1 {
		t.Errorf("alice's screen shows her line %d times:\n%s", n, p)
	}
	// Up recalls it.
	x.keys("alice", "Up")
	x.waitPane("alice", "history", func(p string) bool { return lastLine(p) == "> hi bob" })
	x.keys("alice", "C-u")

	x.keys("alice", "-l", "/who")
	x.keys("alice", "Enter")
	x.waitPane("alice", "/who", hasLine("* members (2): alice, bob"))

	// A peer's OSC title and CSI colours, a C1 CSI and a bidi override.
	bob.send(t, "\x1b]0;pwned\x07 \x1b[4;45mRED\x1b[0m \u009b45m \u202eevil\n")
	want := `bob: ^[]0;pwned^G ^[[4;45mRED^[[0m \u009b45m \u202eevil`
	x.waitPane("alice", "bob's escapes, visible", hasLine(want))
	if title := strings.TrimSpace(x.run("display", "-p", "-t", "alice", "#{pane_title}")); title == "pwned" {
		t.Errorf("a peer set the pane's title to %q", title)
	}
	coloured := x.run("capture-pane", "-p", "-e", "-t", "alice")
	for _, sgr := range regexp.MustCompile(`\x1b\[[0-9;:]*[A-Za-z]`).FindAllString(coloured, -1) {
		if !ourSGR.MatchString(sgr) {
			t.Errorf("the pane shows an escape sequence %q that is not ours:\n%q", sgr, coloured)
		}
	}

	// Ctrl-C leaves at once; bob sees it.
	x.keys("alice", "-l", "half a line")
	start := time.Now()
	x.keys("alice", "C-c")
	bob.waitLine(t, "* alice left")
	if d := time.Since(start); d > time.Second {
		t.Errorf("alice took %v to leave after Ctrl-C", d)
	}
	x.waitPane("alice", "exit status 0", hasLine("[exited 0]"))

	bob.stdin.Close()
	bob.wait(t)
	stopRelay(t, relay)
}

// TestTerminalHost: two people, two commands: alice hosts on a terminal,
// bob joins her; when she quits, bob is told the relay is lost.
func TestTerminalHost(t *testing.T) {
	x := newTmux(t)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	x.session("alice", bin, "chat", "-host", "-addr", addr, "-name", "alice")
	x.waitPane("alice", "join", hasLine("* alice joined"))
	bob := joinLine(t, nil, addr, "bob")
	x.waitPane("alice", "bob's join", hasLine("* bob joined"))
	bob.send(t, "hello host\n")
	x.waitPane("alice", "bob's message", hasLine("bob: hello host"))
	x.keys("alice", "-l", "welcome")
	x.keys("alice", "Enter")
	bob.waitLine(t, "alice: welcome")
	x.keys("alice", "-l", "/quit")
	x.keys("alice", "Enter")
	x.waitPane("alice", "exit status 0", hasLine("[exited 0]"))
	bob.waitLine(t, "* relay lost (the relay said goodbye); rejoining, and what you type waits")
	bob.stdin.Close()
	bob.wait(t)
}

// TestTerminalRooms: three people on terminals. alice /joins bob and
// carol's room (her prompt shows it), swaps private messages with bob, and
// carol, in the same room, never sees any of them; /join alone takes alice
// back to the main room.
func TestTerminalRooms(t *testing.T) {
	x := newTmux(t)
	relay, addr := startRelay(t, nil)
	x.session("bob", bin, "chat", "-addr", addr, "-name", "bob", "-room", "ops")
	x.waitPane("bob", "join", hasLine("* bob joined"))
	x.waitPane("bob", "his room, and in the prompt", func(p string) bool {
		return slices.Contains(screenLines(p), "* now in room ops") && lastLine(p) == "ops>"
	})
	x.session("carol", bin, "chat", "-addr", addr, "-name", "carol", "-room", "ops")
	x.waitPane("carol", "join", hasLine("* carol joined"))
	x.waitPane("bob", "carol's join", hasLine("* carol joined"))
	x.session("alice", bin, "chat", "-addr", addr, "-name", "alice")
	x.waitPane("alice", "join", hasLine("* alice joined"))

	enter := func(who, line string) {
		t.Helper()
		x.keys(who, "-l", line)
		x.keys(who, "Enter")
	}
	enter("alice", "/join ops")
	p := x.waitPane("alice", "the room", hasLine("* members of room ops (3): alice, bob, carol"))
	if !slices.Contains(screenLines(p), "* now in room ops") {
		t.Errorf("alice's screen does not say she is in ops:\n%s", p)
	}
	x.waitPane("alice", "the room in the prompt", func(p string) bool { return lastLine(p) == "ops>" })
	x.waitPane("bob", "alice's join", hasLine("* alice joined"))
	x.waitPane("carol", "alice's join", hasLine("* alice joined"))

	enter("alice", "/msg bob the password is swordfish")
	const toBob = "[private] alice -> bob: the password is swordfish"
	x.waitPane("bob", "alice's private message", hasLine(toBob))
	p = x.waitPane("alice", "her copy", hasLine(toBob))
	if n := strings.Count(p, "swordfish"); n != 1 {
		t.Errorf("alice's screen shows her private line %d times:\n%s", n, p)
	}
	enter("bob", "/msg alice got it")
	x.waitPane("alice", "bob's answer", hasLine("[private] bob -> alice: got it"))
	x.waitPane("bob", "his copy", hasLine("[private] bob -> alice: got it"))

	// The relay orders this after both private messages: once carol shows
	// it, she would have shown them.
	enter("alice", "all done")
	p = x.waitPane("carol", "alice's public line", hasLine("alice: all done"))
	for _, s := range []string{"swordfish", "got it", "[private]"} {
		if strings.Contains(p, s) {
			t.Errorf("carol's screen shows %q:\n%s", s, p)
		}
	}

	enter("alice", "/msg nobody hi")
	x.waitPane("alice", "the refusal", hasLine("udpchat: not sent to nobody: no such member in the room"))

	enter("alice", "/join")
	x.waitPane("alice", "the main room", hasLine("* now in the main room"))
	x.waitPane("alice", "the main room's prompt", func(p string) bool { return lastLine(p) == ">" })
	x.waitPane("bob", "alice's leave", hasLine("* alice left"))

	for _, who := range []string{"alice", "bob", "carol"} {
		enter(who, "/quit")
		x.waitPane(who, "exit status 0", hasLine("[exited 0]"))
	}
	stopRelay(t, relay)
}
