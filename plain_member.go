package udpchat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// A plainMember is the member side of plain text (WithPlainText): it
// sends lines and hands every line it receives to Receive. There is no
// handshake: the member is in as soon as it listens. m.mu guards what it
// keeps.
type plainMember struct {
	*Member
	peer  netip.AddrPort        // with WithLocalAddr: where lines go from an unconnected socket; invalid: connected
	heard map[string]*heardName // the names heard from, for Members
	seq   uint64                // numbers received lines
}

// maxHeard bounds the names a plain member remembers for Members.
const maxHeard = DefaultMaxMembers

// heardName is a name a plain member has received a line from.
type heardName struct {
	name string // the map's key, shared by the messages
	at   time.Time
}

func newPlainMember(m *Member) (*plainMember, error) {
	m.state = stateJoined
	m.heartbeat, m.expiry, m.maxDatagram = m.cfg.heartbeat, m.cfg.expiry, m.cfg.bufferSize
	if m.cfg.broadcast != nil {
		if err := m.listenGroup(addrPortOf(m.cfg.broadcast)); err != nil {
			return nil, fmt.Errorf("listening for the relay's broadcast at %s: %w", m.cfg.broadcast, err)
		}
	}
	pm := &plainMember{Member: m, heard: make(map[string]*heardName)}
	if m.cfg.localAddr != nil {
		pm.peer = addrPortOf(m.cfg.addr)
	}
	return pm, nil
}

// join has nothing to wait for.
func (m *plainMember) join(context.Context) error { return nil }

// received: Receive's room changes nothing, plain text has no repairs.
func (m *plainMember) received(time.Time) {}

// leaving: a plain relay has nothing to be told.
func (m *plainMember) leaving() []byte { return nil }

// handle takes one received line.
func (m *plainMember) handle(b []byte, now time.Time) {
	name, text, ok := parsePlain(b)
	if !ok || m.state != stateJoined {
		m.stats.Dropped++
		return
	}
	if len(text) == 0 {
		return // a keepalive, which a relay that forwards everything passes on
	}
	if m.in.full() {
		m.stats.Dropped++ // nothing can repair it: plain text has no history
		return
	}
	h := m.heard[string(name)]
	if h == nil {
		h = &heardName{name: string(name)}
		if len(m.heard) < maxHeard {
			m.heard[h.name] = h
		}
	}
	h.at = now
	m.seq++
	m.in.push(rxItem{msg: Message{Seq: m.seq, Kind: KindChat, From: h.name, Text: string(text), Time: now}})
}

// send sends "name: text\n": with the newline, as nc sends lines, tools
// that print what arrives show one line each.
func (m *plainMember) send(ctx context.Context, to, text string) error {
	if to != "" {
		return fmt.Errorf("udpchat: private message to %q: %w in plain text", to, errors.ErrUnsupported)
	}
	if text == "" {
		return fmt.Errorf("%w: an empty line only tells a plain relay that the member listens", ErrInvalidText)
	}
	if size := len(m.name) + 3 + len(text); size > m.cfg.bufferSize {
		return fmt.Errorf("%w: %d bytes with the name, limit %d", ErrMessageTooLarge, size, m.cfg.bufferSize)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == stateClosed {
		return ErrClosed
	}
	line := make([]byte, 0, len(m.name)+3+len(text))
	line = append(append(append(line, m.name...), ": "...), text...)
	line = append(line, '\n')
	if err := m.write(line); err != nil {
		return fmt.Errorf("udpchat: send: %w", err)
	}
	m.stats.Sent++
	return nil
}

// tick sends "name:" every heartbeat, so that the relay keeps forwarding
// to this member, and returns how long until the next.
func (m *plainMember) tick(now time.Time) time.Duration {
	if m.state != stateJoined {
		return time.Hour
	}
	if now.Sub(m.lastBeat) >= m.heartbeat {
		if !m.peer.IsValid() { // a peer needs no keepalive, and would print it
			m.writeLocked(append([]byte(m.name), ':'))
		}
		m.lastBeat = now
		for name, h := range m.heard {
			if now.Sub(h.at) > m.expiry {
				delete(m.heard, name)
			}
		}
	}
	return max(m.lastBeat.Add(m.heartbeat).Sub(now), time.Millisecond)
}

// members lists the names heard within the expiry span.
func (m *plainMember) members() []MemberInfo {
	now := time.Now()
	out := make([]MemberInfo, 0, len(m.heard))
	for name, h := range m.heard {
		if now.Sub(h.at) <= m.expiry {
			out = append(out, MemberInfo{Name: name})
		}
	}
	slices.SortFunc(out, func(a, b MemberInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// write sends one line: on the connected socket, or to the peer.
func (m *plainMember) write(b []byte) error {
	var err error
	if m.peer.IsValid() {
		_, err = m.conn.WriteToUDPAddrPort(b, m.peer)
	} else {
		_, err = m.conn.Write(b)
	}
	return err
}
