package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/udpchat/udpchat"
	"golang.org/x/term"
)

const chatHelp = `commands:
  /who             list the members of the room
  /me ACTION       say what you do ("* alice waves")
  /msg NAME TEXT   send TEXT to NAME alone, a member of the room
  /join ROOM       leave this room for ROOM (/join alone: the main room)
  /quit            leave (also Ctrl-C, or Ctrl-D on an empty line)
  /help            this
  //TEXT           send "/TEXT"`

// sendTimeout bounds one Send; the library resends, across a relay restart
// too, until then.
const sendTimeout = 30 * time.Second

// output is where a chat prints: a terminal screen, or plain lines.
type output interface {
	println(line string) // a line of the conversation, already made visible
	errorln(line string) // an error or notice
	colour() bool        // whether names may be coloured
	setRoom(room string) // the room the chat is in now, or noRoom, for a status line
}

// runChat joins a group and chats: with a line editor when standard input
// and output are a terminal, else one line per message (line mode).
func runChat(ctx context.Context, args []string) error {
	fs := newFlagSet("chat", "-name NAME [flags]")
	name := fs.String("name", "", "your `name` in the group (required)")
	addr := fs.String("addr", udpchat.DefaultAddr, "the relay's `address` (with -host: the address to listen on)")
	host := fs.Bool("host", false, "run the relay in this process too, for a chat with others who join it")
	plain := fs.Bool("plain", false, "speak plain-text \"name: text\" datagrams, as nc -u does")
	bcast := fs.String("broadcast", "", "with -plain: also listen for the relay's broadcasts to this `address`")
	listen := fs.String("listen", "", "the `address` your own socket binds; with -plain, a chat with a peer and no relay: lines are taken from any source, as the classic two-person program sends them")
	buffer := fs.Int("buffer", udpchat.DefaultBufferSize, "largest datagram in `bytes`")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to try to reach the relay")
	room := fs.String("room", "", "the `room` to join (default: the main room); /join changes it")
	keyFile := keyFlag(fs)
	rf := addRelayFlags(fs, " (with -host)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *name == "" {
		fmt.Fprintln(os.Stderr, "udpchat chat: -name is required")
		fs.Usage()
		return errUsage
	}
	if *plain && *room != "" {
		fmt.Fprintln(os.Stderr, "udpchat chat: -room and -plain: plain text has no rooms")
		return errUsage
	}
	if rf.given() && !*host {
		fmt.Fprintln(os.Stderr, "udpchat chat: the relay's flags need -host")
		return errUsage
	}
	keys, err := loadKeys(*keyFile)
	if err != nil {
		return err
	}
	var opts []udpchat.Option // both sides'
	if isSet(fs, "buffer") {
		opts = append(opts, udpchat.WithBufferSize(*buffer))
	}
	if *plain {
		opts = append(opts, udpchat.WithPlainText())
	}
	if len(keys) > 0 {
		opts = append(opts, udpchat.WithKey(keys[0], keys[1:]...))
	}
	mopts := []udpchat.Option{udpchat.WithAddr(*addr)}
	if *bcast != "" && (*plain || !*host) {
		mopts = append(mopts, udpchat.WithBroadcast(*bcast))
	}
	if *listen != "" {
		mopts = append(mopts, udpchat.WithLocalAddr(*listen))
	}

	if *host {
		ropts := append([]udpchat.Option{udpchat.WithAddr(*addr)}, opts...)
		if *bcast != "" {
			ropts = append(ropts, udpchat.WithBroadcast(*bcast))
		}
		r, err := udpchat.NewRelay(append(ropts, rf.options()...)...)
		if err != nil {
			return err
		}
		defer r.Close()
		go r.Serve(context.Background()) // until r.Close
		*addr = r.Addr().String()
		mopts[0] = udpchat.WithAddr(*addr)
		fmt.Fprintf(os.Stderr, "udpchat relay listening on %s%s\n", *addr, modeNote(*plain, len(keys) > 0))
	}

	opts = append(mopts, opts...)
	join := func(ctx context.Context, room string) (*udpchat.Member, error) {
		jopts := opts
		if room != "" {
			jopts = append(slices.Clip(opts), udpchat.WithRoom(room))
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		m, err := udpchat.Join(ctx, *name, jopts...)
		if room != "" && errors.Is(err, udpchat.ErrInvalidOption) && errors.Is(err, udpchat.ErrInvalidName) {
			return nil, roomNameError{err}
		}
		if errors.Is(err, udpchat.ErrRelayUnreachable) {
			hint := "is a relay running there?"
			if len(keys) > 0 {
				hint = "is a relay running there, with the same key?"
			}
			return nil, fmt.Errorf("%w; %s", err, hint)
		}
		return m, err
	}
	m, err := join(ctx, *room)
	if err != nil {
		return err
	}

	var out output
	var lines <-chan string
	if term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd())) {
		s, err := newScreen()
		if err != nil {
			m.Close()
			return err
		}
		defer s.restore()
		out, lines = s, s.readLines()
	} else {
		out, lines = &lineOutput{}, readLines()
	}
	return chat(ctx, m, out, lines, out.colour(), *plain, join)
}

// chat runs a session: it prints what the room says and sends or acts on
// each input line until the input ends, /quit, or ctx ends.
func chat(ctx context.Context, m *udpchat.Member, out output, lines <-chan string, colour, plain bool, join joinFunc) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &session{ctx: sctx, out: out, colour: colour, plain: plain, join: join,
		lines: lines, sends: make(chan sendItem, 64)}
	s.enter(m, true)

	// Sends go through one goroutine, in order, so that typing never waits
	// for the relay.
	sent := make(chan struct{})
	go s.sendLoop(sctx, sent)

	for {
		line, ok := s.next()
		if !ok || s.command(line) {
			break
		}
	}
	close(s.sends)
	if ctx.Err() == nil {
		<-sent // what was typed before the end is sent first
	}
	cancel()
	<-sent
	return s.leave()
}

func ignoreClosed(err error) error {
	if errors.Is(err, udpchat.ErrClosed) {
		return nil
	}
	return err
}

// command acts on one input line and reports whether it ends the chat.
func (s *session) command(line string) bool {
	line = strings.TrimSuffix(line, "\r")
	if strings.TrimSpace(line) == "" {
		return false // blank lines are not sent
	}
	if !strings.HasPrefix(line, "/") {
		s.say(line)
		return false
	}
	if strings.HasPrefix(line, "//") {
		s.say(line[1:])
		return false
	}
	cmd, arg, _ := strings.Cut(line, " ")
	switch cmd {
	case "/quit", "/exit":
		return true
	case "/who":
		if s.m == nil {
			s.out.println("* in no room: " + noRoomHint)
			break
		}
		s.out.println(whoLine(s.m, s.colour))
	case "/me":
		if strings.TrimSpace(arg) != "" {
			s.say("/me " + arg)
		}
	case "/msg":
		s.privateMessage(arg)
	case "/join":
		if s.plain {
			s.out.errorln("udpchat: /join: plain text has no rooms")
			break
		}
		s.switchRoom(strings.TrimSpace(arg))
	case "/help":
		for l := range strings.SplitSeq(chatHelp, "\n") {
			s.out.println(l)
		}
	default:
		s.out.errorln(fmt.Sprintf("unknown command %s; /help lists them", visible(cmd)))
	}
	return false
}

// whoLine lists the room's members on one line.
func whoLine(m *udpchat.Member, colour bool) string {
	ms := m.Members()
	names := make([]string, len(ms))
	for i, mi := range ms {
		names[i] = colourName(mi.Name, colour)
	}
	of := ""
	if m.Room() != "" {
		of = " of " + roomName(m.Room())
	}
	return fmt.Sprintf("* members%s (%d): %s", of, len(ms), strings.Join(names, ", "))
}

// receive prints every message until the member is closed, or ctx ends
// and it has printed those the member holds.
func receive(ctx context.Context, m *udpchat.Member, out output, colour bool) {
	for {
		msg, err := m.Receive(ctx)
		switch {
		case errors.Is(err, udpchat.ErrGap):
			out.println("* " + strings.TrimPrefix(err.Error(), "udpchat: "))
		case err != nil:
			if ctx.Err() == nil && !errors.Is(err, udpchat.ErrClosed) {
				out.errorln(errText(err))
			}
			return
		default:
			out.println(render(msg, colour))
		}
	}
}

// render returns how msg is shown. It is the one place where message kinds
// are rendered: a kind added to the library later shows generically until
// it gets a case here. Everything from the network goes through visible.
func render(msg udpchat.Message, colour bool) string {
	name := colourName(msg.From, colour)
	switch msg.Kind {
	case udpchat.KindChat:
		if action, ok := strings.CutPrefix(msg.Text, "/me "); ok {
			return "* " + name + " " + visible(action)
		}
		return name + ": " + visible(msg.Text)
	case udpchat.KindPrivate:
		return "[private] " + name + " -> " + colourName(msg.To, colour) + ": " + visible(msg.Text)
	case udpchat.KindJoin:
		return "* " + name + " joined"
	case udpchat.KindLeave:
		return "* " + name + " left"
	case udpchat.KindLost:
		return "* relay lost (" + visible(msg.Text) + "); rejoining, and what you type waits"
	case udpchat.KindRejoined:
		if msg.Text == "new relay" {
			return "* relay back (it restarted)"
		}
		return "* relay back"
	}
	s := "* " + visible(msg.Kind.String())
	if msg.From != "" {
		s += " " + name
	}
	if msg.Text != "" {
		s += ": " + visible(msg.Text)
	}
	return s
}

// lineOutput prints one line per message on standard output, errors on
// standard error.
type lineOutput struct{ mu sync.Mutex }

func (o *lineOutput) println(line string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Println(line)
}

func (o *lineOutput) errorln(line string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintln(os.Stderr, line)
}

func (o *lineOutput) colour() bool { return false }

func (o *lineOutput) setRoom(string) {} // each line that needs it names the room

// readLines sends each line of standard input and closes the channel at
// its end. The goroutine ends with the input (or the process).
func readLines() <-chan string {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines
}
