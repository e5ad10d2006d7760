package udpchat

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Plain-text mode (WithPlainText): datagrams are lines "name: text", as
// the classic programs and nc -u send them. The relay forwards them; it
// keeps no protocol state, only the addresses it forwards to.

// parsePlain splits a plain line into its name and text, taking one
// space after the colon and one trailing newline off. It reports false
// for anything that is not valid UTF-8 with a valid name.
func parsePlain(b []byte) (name, text []byte, ok bool) {
	i := bytes.IndexByte(b, ':')
	if i < 0 || !utf8.Valid(b) {
		return nil, nil, false
	}
	name, text = b[:i], b[i+1:]
	text, _ = bytes.CutPrefix(text, []byte(" "))
	if t, nl := bytes.CutSuffix(text, []byte("\n")); nl {
		text, _ = bytes.CutSuffix(t, []byte("\r"))
	}
	return name, text, checkName(string(name)) == nil
}

// plainSource is an address the relay has heard a line from: it gets
// every line until it has been silent for the expiry span.
type plainSource struct {
	idx       int // in Relay.dsts
	lastHeard time.Time
	buckets
}

// plainName is a name the relay has seen on a line, for Members.
type plainName struct {
	addr      netip.AddrPort
	lastHeard time.Time
}

// handlePlain forwards one line, unchanged, to every known address or to
// the group. r.mu is held; handle has counted b and checked its size.
func (r *Relay) handlePlain(b []byte, from netip.AddrPort, now time.Time) {
	name, text, ok := parsePlain(b)
	if !ok || from.Port() == 0 {
		r.stats.DroppedMalformed++
		r.debugDrop("not a plain-text line", from)
		return
	}
	if r.cfg.nameRule != nil && r.cfg.nameRule(string(name)) != nil {
		r.stats.DroppedRejected++
		r.debugDrop("name refused by the name rule", from)
		return
	}
	if !r.group.IsValid() && r.isSelf(from) {
		// Forged: were the relay to send to itself, each line would come
		// back to be forwarded again. (In broadcast mode the classic
		// clients share the relay's port and send from its address.)
		r.stats.DroppedMalformed++
		r.debugDrop("from the relay's own address", from)
		return
	}
	src := r.sources[from]
	if src == nil {
		if len(r.dsts) >= r.cfg.maxMembers {
			// Full: the longest silent gives way, so that forged sources
			// cannot keep real ones out for longer than they outtalk them.
			quiet := r.quietestSource()
			r.dropSource(quiet)
			r.cfg.logger.Debug("udpchat relay: too many addresses; dropped the quietest", "addr", quiet, "for", from)
		}
		src = &plainSource{idx: len(r.dsts), buckets: r.bucketsFor(from.Addr(), "", now)}
		r.sources[from] = src
		r.dsts = append(r.dsts, from)
	}
	if !r.take(&src.buckets, len(b), now) {
		r.stats.DroppedRateLimited++
		return
	}
	src.lastHeard = now
	if n := r.plainNames[string(name)]; n != nil {
		n.addr, n.lastHeard = from, now
	} else {
		if len(r.plainNames) >= r.cfg.maxMembers {
			r.dropQuietestName()
		}
		r.plainNames[string(name)] = &plainName{from, now}
	}
	if len(text) == 0 {
		return // "name:" says only that its sender listens
	}
	r.fanout(append(r.nextSlot(), b...))
}

// isSelf reports whether addr is the relay's own.
func (r *Relay) isSelf(addr netip.AddrPort) bool {
	if int(addr.Port()) != r.addr.Port {
		return false
	}
	if !r.addr.IP.IsUnspecified() {
		return addr == addrPortOf(r.addr)
	}
	ip := addr.Addr()
	return ip.IsLoopback() || slices.Contains(r.localIPs, ip)
}

// localIPs returns this host's IPv4 addresses.
func localIPs() []netip.Addr {
	as, _ := net.InterfaceAddrs()
	var ips []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP.To4()); ok {
				ips = append(ips, ip)
			}
		}
	}
	return ips
}

// quietestSource returns the source heard from longest ago.
func (r *Relay) quietestSource() netip.AddrPort {
	var quiet netip.AddrPort
	var at time.Time
	for addr, src := range r.sources {
		if !quiet.IsValid() || src.lastHeard.Before(at) {
			quiet, at = addr, src.lastHeard
		}
	}
	return quiet
}

// dropQuietestName forgets the name heard from longest ago.
func (r *Relay) dropQuietestName() {
	var quiet string
	var at time.Time
	for name, n := range r.plainNames {
		if quiet == "" || n.lastHeard.Before(at) {
			quiet, at = name, n.lastHeard
		}
	}
	delete(r.plainNames, quiet)
}

// dropSource stops forwarding to addr.
func (r *Relay) dropSource(addr netip.AddrPort) {
	src := r.sources[addr]
	if src == nil {
		return
	}
	end := len(r.dsts) - 1
	moved := r.dsts[end]
	r.dsts[src.idx] = moved
	r.sources[moved].idx = src.idx
	r.dsts = r.dsts[:end]
	delete(r.sources, addr)
	r.leftBuckets[leftKey{addr.Addr(), ""}] = src.buckets
}

// sweepPlain forgets addresses and names silent for the expiry span.
func (r *Relay) sweepPlain(now time.Time) {
	for addr, src := range r.sources {
		if now.Sub(src.lastHeard) > r.cfg.expiry {
			r.dropSource(addr)
		}
	}
	for name, n := range r.plainNames {
		if now.Sub(n.lastHeard) > r.cfg.expiry {
			delete(r.plainNames, name)
		}
	}
}

// plainMembers lists the names heard within the expiry span. r.mu is
// held.
func (r *Relay) plainMembers() []MemberInfo {
	out := make([]MemberInfo, 0, len(r.plainNames))
	for name, n := range r.plainNames {
		out = append(out, MemberInfo{Name: name, Addr: net.UDPAddrFromAddrPort(n.addr)})
	}
	slices.SortFunc(out, func(a, b MemberInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

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
	if m.queue.n == m.queue.cap() {
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
	m.push(rxItem{msg: Message{Seq: m.plainSeq, Kind: KindChat, From: h.name, Text: string(text), Time: now}})
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
