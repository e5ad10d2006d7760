//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || windows)

package udpchat

import (
	"errors"
	"syscall"
)

var errNoSockopt = errors.New("sharing a port and broadcasting are not supported on this platform")

func controlShared(network, address string, c syscall.RawConn) error { return errNoSockopt }

func controlBroadcast(network, address string, c syscall.RawConn) error { return errNoSockopt }
