package udpchat

// Helpers for sockets and addresses, shared by the relay and the member.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// setBuffers applies WithSocketBuffers to a socket.
func setBuffers(c net.PacketConn, cfg *config) error {
	u, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	if cfg.readBuf > 0 {
		if err := u.SetReadBuffer(cfg.readBuf); err != nil {
			return fmt.Errorf("SO_RCVBUF %d: %w", cfg.readBuf, err)
		}
	}
	if cfg.writeBuf > 0 {
		if err := u.SetWriteBuffer(cfg.writeBuf); err != nil {
			return fmt.Errorf("SO_SNDBUF %d: %w", cfg.writeBuf, err)
		}
	}
	return nil
}

// resolveUDP4 resolves addr to an IPv4 UDP address; an empty host means
// 0.0.0.0.
func resolveUDP4(addr string) (*net.UDPAddr, error) {
	a, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	if a.IP == nil {
		a.IP = net.IPv4zero
	}
	a.IP = a.IP.To4()
	return a, nil
}

// groupInterface chooses the interface a group's multicast leaves or is
// joined on: the one named by WithInterface; else the one that holds
// local, the address the relay is bound to or the member reaches the
// relay from (so a relay bound to 127.0.0.1 keeps it on loopback); else,
// for an unspecified address, the only interface that is up, not
// loopback, and multicast-capable. Choosing for the user among several
// is how LAN chat tools send to the wrong network on multi-homed hosts.
func groupInterface(name string, local net.IP) (*net.Interface, error) {
	if name != "" {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %w", name, err)
		}
		return ifi, nil
	}
	if local != nil && !local.IsUnspecified() {
		return interfaceByIP(local)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var found []net.Interface
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagLoopback == 0 && ifi.Flags&net.FlagMulticast != 0 {
			found = append(found, ifi)
		}
	}
	switch len(found) {
	case 0:
		return nil, errors.New("no multicast interface is up; name one with WithInterface")
	case 1:
		return &found[0], nil
	}
	names := make([]string, len(found))
	for i := range found {
		names[i] = found[i].Name
	}
	return nil, fmt.Errorf("bound to %s, the relay could multicast on any of %v: name one with WithInterface or bind to its address", local, names)
}

// interfaceByIP finds the interface that holds ip.
func interfaceByIP(ip net.IP) (*net.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return &ifs[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no interface holds %s", ip)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// isRefused reports an ICMP port unreachable for an earlier datagram, as
// each system reports it on a connected UDP socket.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// isTransient reports read and write errors that concern one earlier
// datagram rather than the socket: ICMP errors reported late, and a
// momentary shortage of buffers.
func isTransient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.ENOBUFS)
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
