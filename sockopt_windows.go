package udpchat

import (
	"errors"
	"syscall"

	"golang.org/x/sys/windows"
)

// controlShared lets several sockets bind one port. Windows has no
// SO_REUSEPORT; its SO_REUSEADDR shares a port between sockets.
func controlShared(network, address string, c syscall.RawConn) error {
	return setsockopts(c, windows.SO_REUSEADDR, windows.SO_BROADCAST)
}

// controlBroadcast allows sending to a broadcast address.
func controlBroadcast(network, address string, c syscall.RawConn) error {
	return setsockopts(c, windows.SO_BROADCAST)
}

func setsockopts(c syscall.RawConn, opts ...int) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		for _, o := range opts {
			if serr = windows.SetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, o, 1); serr != nil {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// isMsgSize reports a datagram longer than the buffer read into: Windows
// fails the read (WSAEMSGSIZE) where others truncate it.
func isMsgSize(err error) bool { return errors.Is(err, windows.WSAEMSGSIZE) }
