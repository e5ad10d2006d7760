package udpchat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Control message room, per datagram read: the drop counter
// (SO_RXQ_OVFL) and the address the datagram came to (in6_pktinfo, and
// in_pktinfo too for an IPv4 datagram on an IPv6 socket); per datagram
// written: its source.
var (
	overflowCmsgLen = unix.CmsgSpace(4)
	pktinfoCmsgLen  = unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	readCmsgLen     = overflowCmsgLen + pktinfoCmsgLen + unix.CmsgSpace(unix.SizeofInet4Pktinfo)
)

type batchConn struct {
	rc      syscall.RawConn
	v6      bool // an AF_INET6 socket: every address is a sockaddr_in6
	v4info  bool // an AF_INET6 socket told IP_PKTINFO too, for its IPv4 datagrams
	flags   batchFlags
	bufs    [][]byte
	rhdrs   []unix.Mmsghdr
	riovs   []unix.Iovec
	rnames  []unix.RawSockaddrInet6 // large enough for either family
	oob     []byte                  // readCmsgLen per read buffer; nil without control messages
	dropped uint32                  // the kernel's count, from the newest SO_RXQ_OVFL seen
	zones   map[uint32]string       // interface indexes as zones, made once each (Itoa allocates past 99)

	whdrs  []unix.Mmsghdr
	wiovs  []unix.Iovec
	wnames []unix.RawSockaddrInet6
	wctl   []byte // pktinfoCmsgLen per datagram written, with batchLocal

	// The calls RawConn makes, made once: a closure per call would be an
	// allocation per batch. A read and a write may run at once (the relay
	// flushes in Close while Serve reads), so each has its own.
	rcall, wcall mmsgCall
}

// mmsgCall is one recvmmsg or sendmmsg call for hs, with its answer.
type mmsgCall struct {
	trap  uintptr
	fn    func(fd uintptr) bool
	wait  func() bool // asked before the call waits for the socket; nil: it waits
	hs    []unix.Mmsghdr
	n     int
	errno syscall.Errno
	// nowait: the socket blocks (the relay's fan-out socket,
	// fanout_linux.go). The call is made first with MSG_DONTWAIT and
	// without the runtime's system-call bookkeeping. As a blocking system
	// call, a sendmmsg of a batch, which runs for hundreds of microseconds,
	// has the runtime take the goroutine's P from it and wake another
	// thread for the P: context switches that cost the relay up to a
	// quarter of its CPU time (BENCHMARKS.md). The call cannot sleep, so
	// it holds its P only while it runs; if the send buffer is full, it
	// sends nothing and the blocking call follows.
	nowait bool
}

// directReads: a member's Receive may read its socket itself (see
// readRole), which needs setReadWait.
const directReads = true

func newBatchConn(conn any, bufs [][]byte, flags batchFlags) (*batchConn, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("socket has no SyscallConn")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &batchConn{rc: rc, flags: flags}
	c.rcall.trap, c.rcall.fn = unix.SYS_RECVMMSG, c.rcall.do
	c.wcall.trap, c.wcall.fn = unix.SYS_SENDMMSG, c.wcall.do
	_, c.wcall.nowait = conn.(*fanoutConn)
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var domain int
		if domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); serr != nil {
			serr = fmt.Errorf("SO_DOMAIN: %w", serr)
			return
		}
		c.v6 = domain == unix.AF_INET6
		if flags&batchOverflow != 0 {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); serr != nil {
				serr = fmt.Errorf("SO_RXQ_OVFL: %w", serr)
				return
			}
		}
		if flags&batchLocal != 0 {
			// An IPv6 socket is told IPV6_PKTINFO for IPv4 datagrams too,
			// with the address mapped.
			if c.v6 {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
				// IP_PKTINFO as well, where the kernel takes it on an IPv6
				// socket: for a broadcast its spec_dst is the interface's
				// address, where IPV6_PKTINFO has only the broadcast one.
				c.v4info = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1) == nil
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			}
			if serr != nil {
				serr = fmt.Errorf("PKTINFO: %w", serr)
			}
		}
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	c.setBufs(bufs)
	return c, nil
}

// setBufs has reads go into bufs from now on. It may not run during a read.
func (c *batchConn) setBufs(bufs [][]byte) {
	c.bufs = bufs
	if len(c.rhdrs) != len(bufs) {
		c.rhdrs = make([]unix.Mmsghdr, len(bufs))
		c.riovs = make([]unix.Iovec, len(bufs))
		c.rnames = make([]unix.RawSockaddrInet6, len(bufs))
		if c.flags != 0 {
			c.oob = make([]byte, readCmsgLen*len(bufs))
		}
	}
	for i := range bufs {
		c.riovs[i].Base = &bufs[i][0]
		c.riovs[i].SetLen(len(bufs[i]))
		h := &c.rhdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&c.rnames[i]))
		h.Iov = &c.riovs[i]
		h.Iovlen = 1
	}
}

// setReadWait has read ask wait each time it would wait for a datagram,
// and return EAGAIN at once when wait says no.
func (c *batchConn) setReadWait(wait func() bool) { c.rcall.wait = wait }

func (c *batchConn) read(in []inMsg) (int, error) {
	hs := c.rhdrs[:min(len(in), len(c.rhdrs))]
	for i := range hs {
		hs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		hs[i].Hdr.Flags = 0
		if c.oob != nil {
			hs[i].Hdr.Control = &c.oob[i*readCmsgLen]
			hs[i].Hdr.SetControllen(readCmsgLen)
		}
	}
	n, err := c.rcall.run(c.rc.Read, hs)
	if err != nil {
		return 0, err
	}
	for i := range n {
		h := &hs[i]
		in[i].n = int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			// Cut short: the callers' buffers are one byte longer than
			// the largest datagram they take, so a full one is too large.
			in[i].n = len(c.bufs[i])
		}
		in[i].from = udpPath{remote: c.sockaddrAddrPort(&c.rnames[i], h.Hdr.Namelen)}
		if c.oob != nil && h.Hdr.Controllen > 0 {
			c.control(c.oob[i*readCmsgLen:i*readCmsgLen+int(h.Hdr.Controllen)], &in[i].from)
		}
	}
	return n, nil
}

// sockaddrAddrPort reads a sockaddr_in or sockaddr_in6, unmapped; an IPv6
// address with a scope (a link-local one) carries its interface index as
// its zone.
func (c *batchConn) sockaddrAddrPort(sa *unix.RawSockaddrInet6, namelen uint32) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch {
	case sa.Family == unix.AF_INET && namelen >= unix.SizeofSockaddrInet4:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case sa.Family == unix.AF_INET6 && namelen >= unix.SizeofSockaddrInet6:
		ip := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && ip.Is6() {
			ip = ip.WithZone(c.zone(sa.Scope_id))
		}
		return netip.AddrPortFrom(ip, port)
	}
	return netip.AddrPort{}
}

// control takes what the socket asked for from a datagram's control
// messages: the kernel's drop counter and the address it came to.
func (c *batchConn) control(b []byte, from *udpPath) {
	for len(b) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(b) {
			return
		}
		data := b[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
			c.dropped = *(*uint32)(unsafe.Pointer(&data[0]))
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			// Spec_dst is the address to answer from: the destination of
			// a unicast datagram, the interface's for a broadcast one.
			from.local = netip.AddrFrom4(pi.Spec_dst)
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			ip := netip.AddrFrom16(pi.Addr).Unmap()
			if ip.IsMulticast() || (ip.Is4() && c.v4info) {
				break // no source to answer from (the routing chooses), or IP_PKTINFO's is better
			}
			if ip.Is6() && (ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast()) {
				ip = ip.WithZone(c.zone(pi.Ifindex))
			}
			from.local = ip
		}
		b = b[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(b)):]
	}
}

// zone returns the zone of interface index i, made once: the zone of an
// address seen before does not allocate either.
func (c *batchConn) zone(i uint32) string {
	z, ok := c.zones[i]
	if !ok {
		if c.zones == nil {
			c.zones = make(map[uint32]string)
		}
		z = strconv.Itoa(int(i))
		c.zones[i] = z
	}
	return z
}

func (c *batchConn) drops() uint64 { return uint64(c.dropped) }

func (c *batchConn) write(out []outMsg) (int, error) {
	if len(out) > len(c.whdrs) {
		c.whdrs = make([]unix.Mmsghdr, len(out))
		c.wiovs = make([]unix.Iovec, len(out))
		c.wnames = make([]unix.RawSockaddrInet6, len(out))
		if c.flags&batchLocal != 0 {
			c.wctl = make([]byte, pktinfoCmsgLen*len(out))
		}
	}
	hs := c.whdrs[:len(out)]
	for i := range out {
		o := &out[i]
		h := &hs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&c.wnames[i]))
		h.Namelen = c.putSockaddr(&c.wnames[i], o.to.remote)
		iov := &c.wiovs[i]
		if len(o.b) > 0 {
			iov.Base = &o.b[0]
		} else {
			iov.Base = nil
		}
		iov.SetLen(len(o.b))
		h.Iov = iov
		h.Iovlen = 1
		h.Control = nil
		h.SetControllen(0)
		if c.wctl != nil && o.to.local.IsValid() {
			ctl := c.wctl[i*pktinfoCmsgLen : (i+1)*pktinfoCmsgLen]
			h.Control = &ctl[0]
			h.SetControllen(c.putPktinfo(ctl, o.to.local))
		}
	}
	return c.wcall.run(c.rc.Write, hs)
}

// putSockaddr writes ap as the socket's family takes it, and returns its
// length: on an IPv6 socket an IPv4 address is mapped.
func (c *batchConn) putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) uint32 {
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))[:]
	if !c.v6 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		sa4.Addr = ap.Addr().As4()
		binary.BigEndian.PutUint16(port, ap.Port())
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
	binary.BigEndian.PutUint16(port, ap.Port())
	if z := ap.Addr().Zone(); z != "" {
		sa.Scope_id = zoneIndex(z)
	}
	return unix.SizeofSockaddrInet6
}

// putPktinfo writes the control message that makes local the source of a
// datagram into b, and returns its length.
func (c *batchConn) putPktinfo(b []byte, local netip.Addr) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	data := unsafe.Pointer(&b[unix.CmsgLen(0)])
	if !c.v6 {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		*(*unix.Inet4Pktinfo)(data) = unix.Inet4Pktinfo{Spec_dst: local.As4()}
		return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	}
	// Linux takes IPV6_PKTINFO with a mapped address for an IPv4
	// datagram of a dual-stack socket.
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	pi := unix.Inet6Pktinfo{Addr: local.As16()}
	if z := local.Zone(); z != "" {
		pi.Ifindex = zoneIndex(z)
	}
	*(*unix.Inet6Pktinfo)(data) = pi
	return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
}

// run makes the call for hs through RawConn's Read or Write, which waits
// for the socket to be ready (and honours deadlines) as long as do says it
// would block.
func (m *mmsgCall) run(rw func(func(uintptr) bool) error, hs []unix.Mmsghdr) (int, error) {
	m.hs = hs
	err := rw(m.fn)
	m.hs = nil
	switch {
	case err != nil:
		return 0, err
	case m.errno != 0:
		return 0, m.errno
	}
	return m.n, nil
}

func (m *mmsgCall) do(fd uintptr) bool {
	if m.nowait {
		r, _, e := unix.RawSyscall6(m.trap, fd, uintptr(unsafe.Pointer(&m.hs[0])), uintptr(len(m.hs)), unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EAGAIN && e != unix.EINTR {
			m.n, m.errno = int(r), e
			return true
		}
	}
	for {
		r, _, e := unix.Syscall6(m.trap, fd, uintptr(unsafe.Pointer(&m.hs[0])), uintptr(len(m.hs)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		m.n, m.errno = int(r), e
		return e != unix.EAGAIN || (m.wait != nil && !m.wait())
	}
}
