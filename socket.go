package udpchat

// Helpers for sockets and addresses, shared by the relay and the member.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
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

// resolveUDP resolves addr to a UDP address, IPv4 (4 bytes) or IPv6 (16,
// not a mapped IPv4 one); an empty host means 0.0.0.0. A name resolves to
// its first address, IPv4 first.
func resolveUDP(addr string) (*net.UDPAddr, error) {
	a, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	if a.IP == nil {
		a.IP = net.IPv4zero
	}
	if ip4 := a.IP.To4(); ip4 != nil {
		a.IP = ip4
	}
	return a, nil
}

// udpNetwork returns the network to open a socket on addr with: "udp4" or
// "udp6", and "udp" for the IPv6 wildcard, which takes IPv4 datagrams too
// (as mapped addresses) where the system allows: Linux, macOS, FreeBSD
// and Windows do unless told otherwise; OpenBSD never does.
func udpNetwork(ip net.IP) string {
	switch {
	case ip.To4() != nil:
		return "udp4"
	case ip.IsUnspecified():
		return "udp"
	}
	return "udp6"
}

// zoneIndex returns the interface index an IPv6 zone names: the index
// itself, as the relay's addresses carry it, or an interface's name.
func zoneIndex(zone string) uint32 {
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
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

// localIPs returns this host's addresses, IPv4 and IPv6.
func localIPs() []netip.Addr {
	as, _ := net.InterfaceAddrs()
	var ips []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				ips = append(ips, ip.Unmap())
			}
		}
	}
	return ips
}

// broadcastSource returns the address of this host on the subnet whose
// broadcast address is bcast: the source of a relay's broadcast copies
// when it is bound to 0.0.0.0. It is the zero Addr if no subnet has it.
func broadcastSource(bcast net.IP) netip.Addr {
	as, _ := net.InterfaceAddrs()
	b4 := bcast.To4()
	for _, a := range as {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.To4() == nil || len(n.Mask) != net.IPv4len {
			continue
		}
		ip := n.IP.To4()
		var last [4]byte
		for i := range last {
			last[i] = ip[i] | ^n.Mask[i]
		}
		if net.IP(last[:]).Equal(b4) {
			return netip.AddrFrom4([4]byte(ip))
		}
	}
	return netip.Addr{}
}

// interfaceSource returns an address of ifi of the family asked for
// (IPv4 if v4), a global one rather than a link-local one: the source of
// a relay's multicast copies when it is bound to a wildcard address.
func interfaceSource(ifi *net.Interface, v4 bool) netip.Addr {
	as, _ := ifi.Addrs()
	var found netip.Addr
	for _, a := range as {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || ip.Unmap().Is4() != v4 {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() {
			if !found.IsValid() {
				found = ip.WithZone(strconv.Itoa(ifi.Index))
			}
			continue
		}
		return ip
	}
	return found
}

// unzoned returns ap without its IPv6 zone.
func unzoned(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().WithZone(""), ap.Port())
}
