package udpchat

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The relay's fan-out socket.
//
// Each datagram a socket sends on Linux frees its send-buffer space when
// it leaves (at once on loopback), and the kernel tells every epoll that
// watches the socket that it is writable again. The Go runtime's poller
// watches the relay's socket, so each datagram of a fan-out wakes a thread
// parked in epoll_wait for nothing: on a busy relay that costs a third of
// the throughput (BENCHMARKS.md). So in unicast mode the relay sends
// through a second socket bound to the same address, which the runtime
// does not poll: a blocking socket, written with sendmmsg on the relay's
// goroutine, whose only wait is for send-buffer space.
//
// The relay's socket binds as any socket does, so it gets an address no
// one else holds. The two then share it through SO_REUSEPORT for the
// moment it takes to bind the second, which is connected to the relay's
// own address, so that the kernel gives it no datagram but those from
// that address, which nobody else can send from (what it took before the
// connect goes to the relay); and both clear SO_REUSEPORT, so that the
// address is no more shareable than a plain socket's: a second relay on it
// fails to bind, as it should.

func setReusePort(c syscall.RawConn, on int) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, on)
	}); err != nil {
		return err
	}
	return serr
}

// openFanout opens the twin of the relay's socket c for sending. It
// returns nil, and the relay sends through c, where there can be none: c
// is bound to 0.0.0.0 (the twin's connect would pin the source address of
// everything it sends) or to a broadcast or multicast address, or the
// kernel refuses a step. It also returns the datagrams for c that reached
// the twin in the moment between its bind and its connect.
func openFanout(c *net.UDPConn, cfg *config) (net.PacketConn, []inDatagram, error) {
	la := c.LocalAddr().(*net.UDPAddr)
	ip, ok := netip.AddrFromSlice(la.IP)
	ip = ip.Unmap()
	if !ok || ip.IsUnspecified() || ip.IsMulticast() || (ip.Is4() && ip.As4()[3] == 255) {
		return nil, nil, nil
	}
	var sa unix.Sockaddr
	if ip.Is4() {
		sa = &unix.SockaddrInet4{Port: la.Port, Addr: ip.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: la.Port, Addr: ip.As16(), ZoneId: zoneIndex(la.Zone)}
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	// c was bound without SO_REUSEPORT, so it got a port no one else
	// holds; now it lets the twin in, and then no one.
	if err := setReusePort(rc, 1); err != nil {
		cfg.logger.Debug("udpchat relay: no fan-out socket", "err", err)
		return nil, nil, nil
	}
	fd, took, err := bindTwin(sa, cfg)
	if cerr := setReusePort(rc, 0); cerr != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, nil, fmt.Errorf("clearing SO_REUSEPORT on the relay's socket: %w", cerr)
	}
	if err != nil {
		cfg.logger.Debug("udpchat relay: no fan-out socket", "err", err)
		return nil, took, nil
	}
	return &fanoutConn{fd: fd, laddr: la}, took, nil
}

// bindTwin makes the fan-out socket on sa, shared with the relay's socket
// for the moment it takes to bind and connect it to sa, and returns what
// it received meanwhile. On failure fd is -1.
func bindTwin(sa unix.Sockaddr, cfg *config) (fd int, took []inDatagram, err error) {
	family := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, err
	}
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	if err == nil {
		err = unix.Bind(fd, sa)
	}
	if err == nil {
		err = unix.Connect(fd, sa)
	}
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 0)
	}
	// Bound and not yet connected, the twin was one of two sockets on the
	// address: the kernel may have given it a datagram or two.
	for err == nil {
		b := make([]byte, cfg.bufferSize+1)
		n, from, rerr := unix.Recvfrom(fd, b, unix.MSG_DONTWAIT)
		if rerr != nil {
			break
		}
		switch sa := from.(type) {
		case *unix.SockaddrInet4:
			took = append(took, inDatagram{b[:n], udpPath{remote: netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))}})
		case *unix.SockaddrInet6:
			ip := netip.AddrFrom16(sa.Addr).Unmap()
			if sa.ZoneId != 0 && ip.Is6() {
				ip = ip.WithZone(strconv.Itoa(int(sa.ZoneId)))
			}
			took = append(took, inDatagram{b[:n], udpPath{remote: netip.AddrPortFrom(ip, uint16(sa.Port))}})
		}
	}
	if err == nil && cfg.broadcast != nil && !cfg.broadcast.IP.IsMulticast() {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
	}
	if err == nil && cfg.writeBuf > 0 {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, cfg.writeBuf)
	}
	if err != nil {
		unix.Close(fd)
		return -1, took, err
	}
	return fd, took, nil
}

// fanoutConn is the fan-out socket as a net.PacketConn, for x/net's
// multicast settings and for batchConn: a blocking socket outside the
// runtime's poller, that only sends.
type fanoutConn struct {
	fd    int
	laddr *net.UDPAddr
}

var errSendOnly = errors.New("udpchat: the fan-out socket only sends")

func (f *fanoutConn) SyscallConn() (syscall.RawConn, error) { return fanoutRaw(f.fd), nil }

// fanoutRaw runs the calls given to it at once: the socket blocks in the
// kernel instead of reporting EAGAIN.
type fanoutRaw int

func (fd fanoutRaw) Control(fn func(fd uintptr)) error   { fn(uintptr(fd)); return nil }
func (fd fanoutRaw) Read(fn func(fd uintptr) bool) error { return errSendOnly }
func (fd fanoutRaw) Write(fn func(fd uintptr) bool) error {
	for !fn(uintptr(fd)) {
	}
	return nil
}

func (f *fanoutConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	return 0, errSendOnly // batchConn writes it
}

func (f *fanoutConn) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, errSendOnly }
func (f *fanoutConn) ReadMsgUDP(b, oob []byte) (int, int, int, *net.UDPAddr, error) {
	return 0, 0, 0, nil, errSendOnly
}
func (f *fanoutConn) Read([]byte) (int, error)         { return 0, errSendOnly }
func (f *fanoutConn) Write([]byte) (int, error)        { return 0, errSendOnly }
func (f *fanoutConn) Close() error                     { return os.NewSyscallError("close", unix.Close(f.fd)) }
func (f *fanoutConn) LocalAddr() net.Addr              { return f.laddr }
func (f *fanoutConn) RemoteAddr() net.Addr             { return nil }
func (f *fanoutConn) SetDeadline(time.Time) error      { return errSendOnly }
func (f *fanoutConn) SetReadDeadline(time.Time) error  { return errSendOnly }
func (f *fanoutConn) SetWriteDeadline(time.Time) error { return errSendOnly }
