package udpchat

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A plain Member sends lines and hands every line it receives to
// Receive. m.mu guards what it keeps.

// maxHeard bounds the names a plain member remembers for Members.
const maxHeard = DefaultMaxMembers

// heardName is a name a plain member has received a line from.
type heardName struct {
	name string // the map's key, shared by the messages
	at   time.Time
}

// handlePlain takes one received line. m.mu is held.
func (m *Member) handlePlain(b []byte) {
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
	now := time.Now()
	h := m.heard[string(name)]
	if h == nil {
		h = &heardName{name: string(name)}
		if len(m.heard) < maxHeard {
			m.heard[h.name] = h
		}
	}
	h.at = now
	m.plainSeq++
	m.in.push(rxItem{msg: Message{Seq: m.plainSeq, Kind: KindChat, From: h.name, Text: string(text), Time: now}})
}

// sendPlain sends "name: text".
func (m *Member) sendPlain(ctx context.Context, text string) error {
	if text == "" {
		return fmt.Errorf("%w: an empty line only tells a plain relay that the member listens", ErrInvalidText)
	}
	if size := len(m.name) + 2 + len(text); size > m.cfg.bufferSize {
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
	line := make([]byte, 0, len(m.name)+2+len(text))
	line = append(append(append(line, m.name...), ": "...), text...)
	if _, err := m.pc.WriteTo(line, nil, nil); err != nil {
		return fmt.Errorf("udpchat: send: %w", err)
	}
	m.stats.Sent++
	return nil
}

// tickPlain sends "name:" every heartbeat, so that the relay keeps
// forwarding to this member, and returns how long until the next.
func (m *Member) tickPlain(now time.Time) time.Duration {
	if m.state != stateJoined {
		return time.Hour
	}
	if now.Sub(m.lastBeat) >= m.heartbeat {
		m.writeLocked(append([]byte(m.name), ':'))
		m.lastBeat = now
		for name, h := range m.heard {
			if now.Sub(h.at) > m.expiry {
				delete(m.heard, name)
			}
		}
	}
	return max(m.lastBeat.Add(m.heartbeat).Sub(now), time.Millisecond)
}

// plainMembers lists the names heard within the expiry span. m.mu is
// held.
func (m *Member) plainMembers() []MemberInfo {
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
