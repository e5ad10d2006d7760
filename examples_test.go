package udpchat

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExamplePrograms builds the example server and client and chats
// through them as a user would: clients on pipes; blank lines are not sent;
// a peer's escape sequences are not printed raw; the end of input leaves,
// and so does Ctrl-C (SIGINT), at once; the server stops on SIGINT and
// its members are told.
func TestExamplePrograms(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the examples")
	}
	dir := t.TempDir()
	for _, p := range []string{"server", "client"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, p), "./examples/"+p).CombinedOutput()
		if err != nil {
			t.Fatalf("go build ./examples/%s: %v\n%s", p, err, out)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	server := startProgram(t, filepath.Join(dir, "server"), "-addr", addr)
	server.waitLine(t, "udpchat relay listening on "+addr)

	bob := startProgram(t, filepath.Join(dir, "client"), "-addr", addr, "-name", "bob")
	bob.waitLine(t, "* join bob")
	alice := startProgram(t, filepath.Join(dir, "client"), "-addr", addr, "-name", "alice")
	alice.waitLine(t, "* join alice")
	bob.waitLine(t, "* join alice")

	io.WriteString(alice.stdin, "hello from alice\n\n   \n\x1b]0;pwned\x07 \u202eevil\n")
	bob.waitLine(t, `alice: "hello from alice"`)
	alice.waitLine(t, `alice: "hello from alice"`)
	// The blank lines were not sent: the next line is the escapes, quoted.
	bob.nextLine(t, `alice: "\x1b]0;pwned\a \u202eevil"`)
	alice.stdin.Close() // end of input: alice leaves and exits 0
	alice.wait(t)
	bob.waitLine(t, "* leave alice")

	carol := startProgram(t, filepath.Join(dir, "client"), "-addr", addr, "-name", "carol")
	carol.waitLine(t, "* join carol")
	bob.waitLine(t, "* join carol")
	start := time.Now()
	carol.cmd.Process.Signal(syscall.SIGINT) // Ctrl-C, with no input pending
	bob.waitLine(t, "* leave carol")
	carol.wait(t)
	if d := time.Since(start); d > time.Second {
		t.Errorf("the client took %v to leave after Ctrl-C", d)
	}

	server.cmd.Process.Signal(syscall.SIGINT)
	server.wait(t)
	bob.waitLine(t, "* lost the relay said goodbye")
	bob.stdin.Close()
	bob.wait(t)
}

type program struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startProgram(t *testing.T, path string, args ...string) *program {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &program{cmd: cmd, stdin: stdin, lines: make(chan string, 100)}
	go func() {
		defer close(p.lines)
		for sc := bufio.NewScanner(stdout); sc.Scan(); {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		// Only the process this test started, by its PID.
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// waitLine reads output lines until one equals want.
func (p *program) waitLine(t *testing.T, want string) {
	t.Helper()
	var seen []string
	timeout := time.After(testTimeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("%s ended without printing %q; printed %q", p.cmd.Path, want, seen)
			}
			if line == want {
				return
			}
			seen = append(seen, line)
		case <-timeout:
			t.Fatalf("%s did not print %q within %v; printed %q", p.cmd.Path, want, testTimeout, seen)
		}
	}
}

// nextLine reads the next output line and checks that it is want.
func (p *program) nextLine(t *testing.T, want string) {
	t.Helper()
	select {
	case line := <-p.lines:
		if line != want {
			t.Fatalf("%s printed %q, want %q", p.cmd.Path, line, want)
		}
	case <-time.After(testTimeout):
		t.Fatalf("%s did not print %q within %v", p.cmd.Path, want, testTimeout)
	}
}

func (p *program) wait(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for range p.lines {
		}
		done <- p.cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s %s: %v", filepath.Base(p.cmd.Path), strings.Join(p.cmd.Args[1:], " "), err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("%s did not exit", p.cmd.Path)
	}
}
