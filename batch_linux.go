package udpchat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// overflowCmsgLen is the room for one SO_RXQ_OVFL control message.
var overflowCmsgLen = unix.CmsgSpace(4)

type batchConn struct {
	rc      syscall.RawConn
	bufs    [][]byte
	rhdrs   []unix.Mmsghdr
	riovs   []unix.Iovec
	rnames  []unix.RawSockaddrInet4
	oob     []byte // overflowCmsgLen per read buffer; nil without overflow
	dropped uint32 // the kernel's count, from the newest SO_RXQ_OVFL seen

	whdrs  []unix.Mmsghdr
	wiovs  []unix.Iovec
	wnames []unix.RawSockaddrInet4

	// The calls RawConn makes, made once: a closure per call would be an
	// allocation per batch. A read and a write may run at once (the relay
	// flushes in Close while Serve reads), so each has its own.
	rcall, wcall mmsgCall
}

// mmsgCall is one recvmmsg or sendmmsg call for hs, with its answer.
type mmsgCall struct {
	trap  uintptr
	fn    func(fd uintptr) bool
	hs    []unix.Mmsghdr
	n     int
	errno syscall.Errno
}

func newBatchConn(pc *ipv4.PacketConn, bufs [][]byte, overflow bool) (*batchConn, error) {
	sc, ok := pc.PacketConn.(syscall.Conn)
	if !ok {
		return nil, errors.New("udpchat: socket has no SyscallConn")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &batchConn{
		rc:     rc,
		bufs:   bufs,
		rhdrs:  make([]unix.Mmsghdr, len(bufs)),
		riovs:  make([]unix.Iovec, len(bufs)),
		rnames: make([]unix.RawSockaddrInet4, len(bufs)),
	}
	c.rcall.trap, c.rcall.fn = unix.SYS_RECVMMSG, c.rcall.do
	c.wcall.trap, c.wcall.fn = unix.SYS_SENDMMSG, c.wcall.do
	if overflow {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
		}); err != nil {
			return nil, err
		}
		if serr != nil {
			return nil, fmt.Errorf("SO_RXQ_OVFL: %w", serr)
		}
		c.oob = make([]byte, overflowCmsgLen*len(bufs))
	}
	for i := range bufs {
		c.riovs[i].Base = &bufs[i][0]
		c.riovs[i].SetLen(len(bufs[i]))
		h := &c.rhdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&c.rnames[i]))
		h.Iov = &c.riovs[i]
		h.Iovlen = 1
	}
	return c, nil
}

func (c *batchConn) read(in []inMsg) (int, error) {
	hs := c.rhdrs[:min(len(in), len(c.rhdrs))]
	for i := range hs {
		hs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		hs[i].Hdr.Flags = 0
		if c.oob != nil {
			hs[i].Hdr.Control = &c.oob[i*overflowCmsgLen]
			hs[i].Hdr.SetControllen(overflowCmsgLen)
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
		sa := &c.rnames[i]
		if h.Hdr.Namelen >= unix.SizeofSockaddrInet4 && sa.Family == unix.AF_INET {
			in[i].from = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
		} else {
			in[i].from = netip.AddrPort{}
		}
		if c.oob != nil && h.Hdr.Controllen > 0 {
			c.overflow(c.oob[i*overflowCmsgLen : i*overflowCmsgLen+int(h.Hdr.Controllen)])
		}
	}
	return n, nil
}

// overflow takes the kernel's drop counter from a SO_RXQ_OVFL control
// message, the only kind the socket asks for.
func (c *batchConn) overflow(b []byte) {
	for len(b) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(b) {
			return
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && l >= unix.CmsgLen(4) {
			c.dropped = *(*uint32)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
		}
		b = b[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(b)):]
	}
}

func (c *batchConn) drops() uint64 { return uint64(c.dropped) }

func (c *batchConn) write(out []outMsg) (int, error) {
	if len(out) > len(c.whdrs) {
		c.whdrs = make([]unix.Mmsghdr, len(out))
		c.wiovs = make([]unix.Iovec, len(out))
		c.wnames = make([]unix.RawSockaddrInet4, len(out))
	}
	hs := c.whdrs[:len(out)]
	for i, o := range out {
		sa := &c.wnames[i]
		sa.Family = unix.AF_INET
		sa.Addr = o.to.Addr().As4()
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], o.to.Port())
		iov := &c.wiovs[i]
		if len(o.b) > 0 {
			iov.Base = &o.b[0]
		} else {
			iov.Base = nil
		}
		iov.SetLen(len(o.b))
		h := &hs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(sa))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Iov = iov
		h.Iovlen = 1
	}
	return c.wcall.run(c.rc.Write, hs)
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
	for {
		r, _, e := unix.Syscall6(m.trap, fd, uintptr(unsafe.Pointer(&m.hs[0])), uintptr(len(m.hs)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		m.n, m.errno = int(r), e
		return e != unix.EAGAIN
	}
}
