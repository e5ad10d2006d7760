package udpchat

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// A plainRelay is the relay in plain-text mode (WithPlainText): it
// forwards every valid line, unchanged, to every address it has heard a
// line from within the expiry span, or once to the group. It keeps no
// protocol state: only those addresses, and the names seen, for Members.
type plainRelay struct {
	cfg      *config
	addr     *net.UDPAddr // the relay's own
	q        *sendQueue
	hist     *history // where each line waits for the flush
	group    udpPath  // WithBroadcast's target; remote invalid without
	stats    *RelayStats
	limit    *rateLimiter
	sources  map[netip.AddrPort]*plainSource
	dsts     []udpPath // the sources' paths, for the fan-out loop
	names    map[string]*plainName
	localIPs []netip.Addr // of this host, for a relay bound to a wildcard address
}

func newPlainRelay(cfg *config, addr *net.UDPAddr, q *sendQueue, stats *RelayStats, limit *rateLimiter, group udpPath) *plainRelay {
	r := &plainRelay{
		cfg:     cfg,
		addr:    addr,
		q:       q,
		hist:    newHistory(cfg.history, cfg.bufferSize),
		group:   group,
		stats:   stats,
		limit:   limit,
		sources: make(map[netip.AddrPort]*plainSource),
		names:   make(map[string]*plainName),
	}
	if addr.IP.IsUnspecified() {
		r.localIPs = localIPs()
	}
	return r
}

// sharesPort reports whether the relay shares its port: the classic
// programs share one port between the relay (bound to 127.0.0.1) and their
// clients (bound to 0.0.0.0), all with SO_REUSEPORT, so a plain relay that
// broadcasts stands in for theirs that way. It has no fan-out twin.
func (c *config) sharesPort() bool {
	return c.plainText && c.side == sideRelay && c.broadcast != nil
}

func (r *plainRelay) count() int { return len(r.names) }

// batchDone has nothing to work out: lines go out as they come.
func (r *plainRelay) batchDone(time.Time) {}

// close has no one to tell: plain text has no goodbye.
func (r *plainRelay) close() {}

// plainSource is an address the relay has heard a line from: it gets
// every line until it has been silent for the expiry span.
type plainSource struct {
	idx       int // in plainRelay.dsts
	lastHeard time.Time
	buckets
}

// plainName is a name the relay has seen on a line, for Members.
type plainName struct {
	addr      netip.AddrPort
	lastHeard time.Time
}

// handle forwards one line, unchanged, to every known address or to the
// group. It has been counted, and is no larger than the buffer.
func (r *plainRelay) handle(b []byte, path udpPath, now time.Time) {
	from := path.remote
	name, text, ok := parsePlain(b)
	if !ok || from.Port() == 0 {
		r.stats.DroppedMalformed++
		debugDrop(r.cfg.logger, "not a plain-text line", from)
		return
	}
	if r.cfg.nameRule != nil && r.cfg.nameRule(string(name)) != nil {
		r.stats.DroppedRejected++
		debugDrop(r.cfg.logger, "name refused by the name rule", from)
		return
	}
	if !r.group.remote.IsValid() && r.isSelf(from) {
		// Forged: were the relay to send to itself, each line would come
		// back to be forwarded again. (In broadcast mode the classic
		// clients share the relay's port and send from its address.)
		r.stats.DroppedMalformed++
		debugDrop(r.cfg.logger, "from the relay's own address", from)
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
		r.dsts = append(r.dsts, path)
	}
	if !r.limit.take(&src.buckets, len(b), now) {
		r.stats.DroppedRateLimited++
		return
	}
	src.lastHeard = now
	if n := r.names[string(name)]; n != nil {
		n.addr, n.lastHeard = from, now
	} else {
		if len(r.names) >= r.cfg.maxMembers {
			r.dropQuietestName()
		}
		r.names[string(name)] = &plainName{from, now}
	}
	if len(text) == 0 {
		return // "name:" says only that its sender listens
	}
	_, buf := r.q.next(r.hist, len(b))
	r.q.fanout(r.hist, append(buf, b...), r.dsts, r.group)
}

// isSelf reports whether addr is the relay's own.
func (r *plainRelay) isSelf(addr netip.AddrPort) bool {
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
func (r *plainRelay) quietestSource() netip.AddrPort {
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
func (r *plainRelay) dropQuietestName() {
	var quiet string
	var at time.Time
	for name, n := range r.names {
		if quiet == "" || n.lastHeard.Before(at) {
			quiet, at = name, n.lastHeard
		}
	}
	delete(r.names, quiet)
}

// dropSource stops forwarding to addr.
func (r *plainRelay) dropSource(addr netip.AddrPort) {
	src := r.sources[addr]
	if src == nil {
		return
	}
	end := len(r.dsts) - 1
	moved := r.dsts[end]
	r.dsts[src.idx] = moved
	r.sources[moved.remote].idx = src.idx
	r.dsts = r.dsts[:end]
	delete(r.sources, addr)
	r.limit.leave(addr.Addr(), "", src.buckets)
}

// sweep forgets addresses and names silent for the expiry span.
func (r *plainRelay) sweep(now time.Time) {
	for addr, src := range r.sources {
		if now.Sub(src.lastHeard) > r.cfg.expiry {
			r.dropSource(addr)
		}
	}
	for name, n := range r.names {
		if now.Sub(n.lastHeard) > r.cfg.expiry {
			delete(r.names, name)
		}
	}
}

// rooms lists the one room plain text has, if anyone is in it.
func (r *plainRelay) rooms() []RoomInfo {
	if len(r.names) == 0 {
		return nil
	}
	return []RoomInfo{{Members: len(r.names)}}
}

// members lists the names heard within the expiry span.
func (r *plainRelay) members() []MemberInfo {
	out := make([]MemberInfo, 0, len(r.names))
	for name, n := range r.names {
		out = append(out, MemberInfo{Name: name, Addr: net.UDPAddrFromAddrPort(n.addr)})
	}
	slices.SortFunc(out, func(a, b MemberInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}
