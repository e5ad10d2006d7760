package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/udpchat/udpchat"
)

// joinFunc joins room with the chat's name and options.
type joinFunc func(ctx context.Context, room string) (*udpchat.Member, error)

// session is one chat: the member of the room it is in (none after a
// /join that failed), the goroutine that prints what that room says, and
// the one that sends what is typed, in the order it was typed.
type session struct {
	ctx    context.Context // the chat's; cancelled when it ends
	out    output
	colour bool
	plain  bool     // plain text: no rooms, no private messages
	join   joinFunc // for /join

	m        *udpchat.Member    // nil while in no room
	stopRecv context.CancelFunc // stops m's receive goroutine, once it has printed what m holds
	recvd    chan struct{}      // closed when m's receive goroutine has ended
	sends    chan sendItem      // to the send goroutine

	lines   <-chan string // the input; nil once it has ended
	pending []string      // lines read while a /join was under way, not yet acted on
}

// sendItem is a line for the send goroutine: a chat (to == "") or a
// private message for m's room; or, with mark set, a marker that the
// goroutine closes when the items before it are done.
type sendItem struct {
	m        *udpchat.Member
	to, text string
	mark     chan struct{}
}

// sendLoop sends the items until sends is closed. Errors are printed,
// unless ctx (the chat) has ended.
func (s *session) sendLoop(ctx context.Context, sent chan<- struct{}) {
	defer close(sent)
	for it := range s.sends {
		if it.mark != nil {
			close(it.mark)
			continue
		}
		c, cancel := context.WithTimeout(ctx, sendTimeout)
		var err error
		if it.to == "" {
			err = it.m.Send(c, it.text)
		} else {
			err = it.m.SendTo(c, it.to, it.text)
		}
		cancel()
		if err == nil || ctx.Err() != nil {
			continue
		}
		switch {
		case it.to == "":
			err = fmt.Errorf("not sent: %w", err)
		case errors.Is(err, errors.ErrUnsupported):
			err = errors.New("not sent: plain text has no private messages")
		default:
			err = fmt.Errorf("not sent to %s: %w", visible(it.to), err)
		}
		s.out.errorln(errText(err))
	}
}

// enter makes m the session's member: it says which room this is (unless
// quiet and the main room), who is in it, and prints what it says from now
// on.
func (s *session) enter(m *udpchat.Member, quiet bool) {
	s.m = m
	s.out.setRoom(m.Room())
	if !quiet || m.Room() != "" {
		s.out.println("* now in " + roomName(m.Room()))
	}
	s.out.println(whoLine(m, s.colour))
	ctx, stop := context.WithCancel(s.ctx)
	recvd := make(chan struct{})
	go func() {
		defer close(recvd)
		receive(ctx, m, s.out, s.colour)
	}()
	s.stopRecv, s.recvd = stop, recvd
}

// leave takes the session out of its room, if it is in one: it prints
// what the member has received, then closes it.
func (s *session) leave() error {
	if s.m == nil {
		return nil
	}
	err := closeMember(s.m, s.stopRecv, s.recvd)
	s.m = nil
	return err
}

// closeMember stops m's receive goroutine, which prints what m has
// received before it ends (such as the copy of a line just sent), waits
// for it and closes m.
func closeMember(m *udpchat.Member, stopRecv context.CancelFunc, recvd <-chan struct{}) error {
	stopRecv()
	<-recvd
	return ignoreClosed(m.Close())
}

// roomNameError is the library's refusal of a room's name (WithRoom), in
// the chat's words: `invalid room name "a:b": ...`.
type roomNameError struct{ err error }

func (e roomNameError) Error() string {
	msg := e.err.Error()
	if _, why, ok := strings.Cut(msg, "invalid name "); ok {
		return "udpchat: invalid room name " + why
	}
	return msg
}

func (e roomNameError) Unwrap() error { return e.err }

// roomName names a room in what the chat prints.
func roomName(room string) string {
	if room == "" {
		return "the main room"
	}
	return "room " + visible(room)
}

// next returns the next input line to act on: one read during a /join
// first. It reports false when the input has ended or ctx is done.
func (s *session) next() (string, bool) {
	if len(s.pending) > 0 {
		l := s.pending[0]
		s.pending = s.pending[1:]
		return l, true
	}
	if s.lines == nil {
		return "", false
	}
	select {
	case <-s.ctx.Done():
		return "", false
	case l, ok := <-s.lines:
		if !ok {
			s.lines = nil
			return "", false
		}
		return l, true
	}
}

// switchRoom is /join: it lets what was typed for the room it is in be
// sent, leaves that room, and joins room. The lines typed meanwhile are
// kept, to act on after it in order; if the input ends with none typed
// (Ctrl-C, Ctrl-D), the join is abandoned: the chat is ending. If the join
// fails, the session is in no room until the next /join.
func (s *session) switchRoom(room string) {
	if s.m != nil && s.m.Room() == room {
		s.out.println("* already in " + roomName(room))
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	var mark chan struct{}
	if s.m != nil {
		mark = make(chan struct{})
		s.sends <- sendItem{mark: mark}
	}
	old, stopRecv, oldRecvd := s.m, s.stopRecv, s.recvd
	s.m = nil
	type result struct {
		m   *udpchat.Member
		err error
	}
	done := make(chan result, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if old != nil {
			select {
			case <-mark:
			case <-ctx.Done():
			}
			if err := closeMember(old, stopRecv, oldRecvd); err != nil {
				s.out.errorln(errText(fmt.Errorf("leaving %s: %w", roomName(old.Room()), err)))
			}
		}
		m, err := s.join(ctx, room)
		done <- result{m, err}
	})
	for {
		select {
		case r := <-done:
			switch {
			case r.err == nil:
				s.enter(r.m, false)
			case s.ctx.Err() == nil && (s.lines != nil || len(s.pending) > 0):
				s.out.setRoom(noRoom)
				err := r.err
				if !errors.As(err, new(roomNameError)) {
					err = fmt.Errorf("cannot join %s: %w", roomName(room), err)
				}
				s.out.errorln(errText(err))
				s.out.errorln("* in no room now: " + noRoomHint)
			}
			return
		case l, ok := <-s.lines:
			if ok {
				s.pending = append(s.pending, l)
				break
			}
			s.lines = nil
			if len(s.pending) == 0 {
				cancel() // the chat is ending
			}
		}
	}
}

// noRoom is what setRoom is told while the session is in no room: not a
// valid room name.
const noRoom = ":none"

// noRoomHint says what one can do in no room.
const noRoomHint = "/join ROOM (/join alone: the main room), or /quit"

// privateMessage is /msg: it sends text to one member of the room. arg is
// "NAME TEXT"; a name with spaces in it is taken whole when the room has a
// member of that name.
func (s *session) privateMessage(arg string) {
	switch {
	case s.plain:
		s.out.errorln("udpchat: /msg: plain text has no private messages")
		return
	case s.m == nil:
		s.out.errorln("udpchat: not sent: in no room; " + noRoomHint)
		return
	}
	name, text, ok := splitMsg(arg, s.m.Members())
	if !ok {
		s.out.errorln("usage: /msg NAME TEXT")
		return
	}
	s.sends <- sendItem{m: s.m, to: name, text: text}
}

// splitMsg splits "NAME TEXT": NAME is the longest name of members
// followed by a space, or else the first word.
func splitMsg(arg string, members []udpchat.MemberInfo) (name, text string, ok bool) {
	arg = strings.TrimLeft(arg, " ")
	for _, mi := range members {
		if len(mi.Name) > len(name) && strings.HasPrefix(arg, mi.Name+" ") {
			name = mi.Name
		}
	}
	if name != "" {
		text = arg[len(name)+1:]
	} else {
		name, text, _ = strings.Cut(arg, " ")
	}
	if name == "" || strings.TrimSpace(text) == "" {
		return "", "", false
	}
	return name, text, true
}

// say sends a chat line to the room.
func (s *session) say(text string) {
	if s.m == nil {
		s.out.errorln("udpchat: not sent: in no room; " + noRoomHint)
		return
	}
	s.sends <- sendItem{m: s.m, text: text}
}
