package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/term"
)

// prompt is the editor's prompt in the main room; another room's name goes
// before it (see setRoom).
const prompt = "> "

// screen is the chat on a terminal: a line editor (golang.org/x/term's
// Terminal, in raw mode) that keeps the line being typed at the bottom while
// messages print above it, with input history (up and down arrows).
//
// A line the user enters is not left on the screen: the relay's copy of the
// message shows it, once. To erase it without erasing a message printed in
// between, mu is taken as soon as the Enter key is read (in Read, before the
// Terminal handles it) and released once the line is erased; messages print
// under mu.
type screen struct {
	t       *term.Terminal
	inFd    int
	outFd   int
	old     *term.State
	mu      sync.Mutex
	held    bool       // whether the reading goroutine holds mu since an Enter
	prompt  string     // the prompt shown, under mu
	wmu     sync.Mutex // taken by every write of the Terminal's, after mu if both
	done    bool       // under wmu: restored; the Terminal writes no more
	width   int
	noColor bool
}

func newScreen() (*screen, error) {
	s := &screen{inFd: int(os.Stdin.Fd()), outFd: int(os.Stdout.Fd())}
	old, err := term.MakeRaw(s.inFd)
	if err != nil {
		return nil, err
	}
	s.old = old
	s.prompt = prompt
	s.t = term.NewTerminal(screenConn{s}, prompt)
	s.resize()
	_, s.noColor = os.LookupEnv("NO_COLOR")
	return s, nil
}

// restore puts the terminal back as it was, on a fresh line. The
// Terminal may be drawing its prompt again meanwhile (ReadLine writes
// without mu): from now on its writes are dropped, so the prompt does not
// stay on the last line.
func (s *screen) restore() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.done = true
	os.Stdout.WriteString("\r\x1b[2K")
	term.Restore(s.inFd, s.old)
}

// resize tells the Terminal the window's width, which it wraps by. It is
// called with mu held (or before the goroutines start).
func (s *screen) resize() {
	w, h, err := term.GetSize(s.outFd)
	if err == nil && w > 0 && w != s.width {
		s.width = w
		s.t.SetSize(w, h)
	}
}

func (s *screen) println(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resize()
	s.t.Write([]byte(line + "\n"))
}

func (s *screen) errorln(line string) { s.println(line) }

func (s *screen) colour() bool { return !s.noColor }

// setRoom shows the room in the prompt: "ops> ", "> " in the main room,
// "(no room)> " in none. The Terminal draws it anew with the next line
// printed, which the chat prints right after.
func (s *screen) setRoom(room string) {
	p := prompt
	switch room {
	case "":
	case noRoom:
		p = "(no room)" + prompt
	default:
		p = visible(room) + prompt
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prompt = p
	s.t.SetPrompt(p)
}

// readLines reads lines with the editor and closes the channel when the
// user leaves: Ctrl-C, or Ctrl-D on an empty line (both EOF to ReadLine).
func (s *screen) readLines() <-chan string {
	lines := make(chan string)
	go func() {
		defer close(lines)
		for {
			s.mu.Lock()
			s.resize() // the window may have changed while the last line was typed
			s.mu.Unlock()
			line, err := s.t.ReadLine()
			if s.held {
				if err == nil {
					s.erase(line)
				}
				s.held = false
				s.mu.Unlock()
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.println(errText(err))
				}
				return
			}
			lines <- line
		}
	}()
	return lines
}

// erase removes the entered line from the screen. The cursor is at the
// start of the row below it, where the Terminal put it.
func (s *screen) erase(line string) {
	width := max(s.width, 1)
	rows := (utf8.RuneCountInString(s.prompt)+utf8.RuneCountInString(line))/width + 1
	screenConn{s}.Write([]byte(strings.Repeat("\x1b[A\x1b[2K", rows) + "\r"))
}

// screenConn is the Terminal's connection: standard input and output.
type screenConn struct{ s *screen }

func (c screenConn) Read(p []byte) (int, error) {
	n, err := os.Stdin.Read(p)
	if n > 0 && !c.s.held && bytes.ContainsAny(p[:n], "\r\n") {
		c.s.mu.Lock() // released by readLines once the line is erased
		c.s.held = true
	}
	return n, err
}

func (c screenConn) Write(p []byte) (int, error) {
	c.s.wmu.Lock()
	defer c.s.wmu.Unlock()
	if c.s.done {
		return len(p), nil
	}
	return os.Stdout.Write(p)
}
