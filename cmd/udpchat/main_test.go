package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// bin is the udpchat binary the tests run, built once by TestMain with
// buildFlags.
var (
	bin        string
	buildFlags []string
)

// deadline bounds every wait for a program to print something.
const deadline = 10 * time.Second

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "udpchat-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "udpchat")
	if out, err := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", bin, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// proc is a running udpchat with its standard input and output on pipes.
type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // standard output, line by line
	stderr *syncBuffer
	done   chan struct{} // closed when the output has ended
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// start runs udpchat with args; env adds to the environment. Cleanup kills
// it (by its PID) if it is still running.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, lines: make(chan string, 1000), stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		defer close(p.lines)
		for sc := bufio.NewScanner(stdout); sc.Scan(); {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("udpchat %s: stderr:\n%s", strings.Join(args, " "), p.stderr)
		}
	})
	return p
}

// waitLine reads output lines until one equals want, within deadline, and
// returns the lines before it.
func (p *proc) waitLine(t *testing.T, want string) []string {
	t.Helper()
	return p.waitFunc(t, fmt.Sprintf("%q", want), func(l string) bool { return l == want })
}

func (p *proc) waitFunc(t *testing.T, what string, ok func(string) bool) []string {
	t.Helper()
	var seen []string
	timeout := time.After(deadline)
	for {
		select {
		case line, open := <-p.lines:
			if !open {
				t.Fatalf("udpchat %s ended without printing %s; printed %q", strings.Join(p.cmd.Args[1:], " "), what, seen)
			}
			if ok(line) {
				return seen
			}
			seen = append(seen, line)
		case <-timeout:
			t.Fatalf("udpchat %s did not print %s within %v; printed %q", strings.Join(p.cmd.Args[1:], " "), what, deadline, seen)
		}
	}
}

// output returns the rest of the output, until the program closes it.
func (p *proc) output(t *testing.T) []string {
	t.Helper()
	var lines []string
	timeout := time.After(deadline)
	for {
		select {
		case line, open := <-p.lines:
			if !open {
				return lines
			}
			lines = append(lines, line)
		case <-timeout:
			t.Fatalf("udpchat %s did not end its output", strings.Join(p.cmd.Args[1:], " "))
		}
	}
}

// wait waits for the program to exit and returns its exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(deadline):
		t.Fatalf("udpchat %s did not exit", strings.Join(p.cmd.Args[1:], " "))
	}
	p.cmd.Wait()
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) send(t *testing.T, text string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, text); err != nil {
		t.Fatal(err)
	}
}

// startRelay runs "udpchat relay" on a port of loopback it picks and
// returns it and its address.
func startRelay(t *testing.T, env []string, args ...string) (*proc, string) {
	t.Helper()
	r := start(t, env, append([]string{"relay", "-addr", "127.0.0.1:0", "-log-level", "warn"}, args...)...)
	var addr string
	r.waitFunc(t, "its address", func(l string) bool {
		rest, ok := strings.CutPrefix(l, "udpchat relay listening on ")
		addr, _, _ = strings.Cut(rest, " ")
		return ok
	})
	return r, addr
}

// stopRelay stops the relay with SIGINT (the process's Interrupt, which
// Windows cannot send: there, Kill) and checks that it exits cleanly.
func stopRelay(t *testing.T, r *proc) {
	t.Helper()
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 0 {
		t.Errorf("relay exited with %d; stderr:\n%s", code, r.stderr)
	}
}

// joinLine starts a chat in line mode as name and waits until it has joined.
func joinLine(t *testing.T, env []string, addr, name string, args ...string) *proc {
	t.Helper()
	c := start(t, env, append([]string{"chat", "-addr", addr, "-name", name}, args...)...)
	c.waitLine(t, "* "+name+" joined")
	return c
}

// freePort returns a TCP port on loopback that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
