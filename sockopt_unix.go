//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package udpchat

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// controlShared lets several sockets bind one port, as members listening for
// the relay's broadcast or multicast do. Both SO_REUSEADDR and SO_REUSEPORT
// are set so that the socket can share the port with programs that set
// either one.
func controlShared(network, address string, c syscall.RawConn) error {
	return setsockopts(c, unix.SO_REUSEADDR, unix.SO_REUSEPORT, unix.SO_BROADCAST)
}

// controlBroadcast allows sending to a broadcast address.
func controlBroadcast(network, address string, c syscall.RawConn) error {
	return setsockopts(c, unix.SO_BROADCAST)
}

func setsockopts(c syscall.RawConn, opts ...int) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		for _, o := range opts {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 1); serr != nil {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}
