package udpchat

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

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
	if !r.q.group.IsValid() && r.isSelf(from) {
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
		src = &plainSource{idx: len(r.dsts), buckets: r.limit.join(from.Addr(), "", now)}
		r.sources[from] = src
		r.dsts = append(r.dsts, from)
	}
	if !r.limit.take(&src.buckets, len(b), now) {
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
	_, buf := r.q.next()
	r.q.fanout(append(buf, b...), r.dsts)
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
	r.limit.leave(addr.Addr(), "", src.buckets)
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
