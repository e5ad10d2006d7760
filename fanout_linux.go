package udpchat

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
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
// The two sockets share the address through SO_REUSEPORT for the moment
// it takes to bind the second. The second is then connected to the
// relay's own address, so that the kernel gives it no datagram but those
// from that address, which nobody else can send from; and both clear
// SO_REUSEPORT, so that the address is no more shareable than a plain
// socket's: a second relay on it fails to bind, as it should.

// fanoutControl sets SO_REUSEPORT on the relay's socket before it binds
// when it is to have a fan-out twin: when it is bound to an address that
// names the interface (the twin's connect would otherwise pin the source
// address of every datagram it sends).
func fanoutControl(cfg *config) func(network, address string, c syscall.RawConn) error {
	if cfg.addr.IP.IsUnspecified() || (cfg.plainText && cfg.broadcast != nil) {
		return nil // for the plain-text case, see NewRelay
	}
	return func(network, address string, c syscall.RawConn) error {
		return setReusePort(c, 1)
	}
}

func setReusePort(c syscall.RawConn, on int) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, on)
	}); err != nil {
		return err
	}
	return serr
}

// openFanout opens the twin of the relay's socket c for sending, if
// fanoutControl gave c SO_REUSEPORT. It returns nil when there is none.
// Either way c no longer shares its address when it returns without an
// error.
func openFanout(c *net.UDPConn, cfg *config) (pc *ipv4.PacketConn, err error) {
	if fanoutControl(cfg) == nil {
		return nil, nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := setReusePort(rc, 0); cerr != nil {
			if pc != nil {
				pc.Close()
			}
			pc, err = nil, fmt.Errorf("udpchat: relay socket: clearing SO_REUSEPORT: %w", cerr)
		}
	}()
	la := c.LocalAddr().(*net.UDPAddr)
	sa := &unix.SockaddrInet4{Port: la.Port, Addr: [4]byte(la.IP.To4())}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("udpchat: fan-out socket: %w", err)
	}
	f := &fanoutConn{fd: fd, laddr: la}
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
	if err == nil && cfg.broadcast != nil && !cfg.broadcast.IP.IsMulticast() {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
	}
	if err == nil && cfg.writeBuf > 0 {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, cfg.writeBuf)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("udpchat: fan-out socket on %s: %w", la, err)
	}
	return ipv4.NewPacketConn(f), nil
}

// fanoutConn is the fan-out socket as a net.PacketConn, for ipv4: a
// blocking socket outside the runtime's poller, that only sends.
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
	u, ok := addr.(*net.UDPAddr)
	if !ok || u.IP.To4() == nil {
		return 0, &net.OpError{Op: "write", Net: "udp4", Addr: addr, Err: syscall.EAFNOSUPPORT}
	}
	err := unix.Sendto(f.fd, b, 0, &unix.SockaddrInet4{Port: u.Port, Addr: [4]byte(u.IP.To4())})
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp4", Addr: addr, Err: err}
	}
	return len(b), nil
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
