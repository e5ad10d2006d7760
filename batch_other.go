//go:build !linux

package udpchat

import (
	"errors"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Elsewhere than on Linux a batchConn reads and writes one datagram per
// call, through the standard library, which every platform has (x/net's
// batches need recvmsg, which Windows lacks). With batchLocal it asks for
// the address each datagram came to and names the source of each answer
// through x/net's control messages, where the platform has them: IPv4 on
// macOS (IP_PKTINFO) and IPv6 on macOS and the BSDs (IPV6_PKTINFO). Where
// it has not (IPv4 on the BSDs, IPv4 members of a [::] socket, whose
// kernel ignores IPV6_PKTINFO for them, and Windows), the routing chooses
// the source, so a relay there should be bound to the address members
// dial.
type batchConn struct {
	c     *net.UDPConn
	v6    bool
	local bool // control messages give and take the local address
	bufs  [][]byte
	oob   []byte
}

func newBatchConn(conn any, bufs [][]byte, flags batchFlags) (*batchConn, error) {
	u, ok := conn.(*net.UDPConn)
	if !ok {
		return nil, errors.New("not a UDP socket")
	}
	c := &batchConn{c: u, bufs: bufs}
	if la, ok := u.LocalAddr().(*net.UDPAddr); ok {
		c.v6 = la.IP.To4() == nil
	}
	if flags&batchLocal != 0 {
		var err error
		if c.v6 {
			err = ipv6.NewPacketConn(u).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		} else {
			err = ipv4.NewPacketConn(u).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		}
		c.local = err == nil
		c.oob = make([]byte, 128)
	}
	return c, nil
}

// directReads: a member's Receive may not read its socket itself here
// (see readRole): the standard library's reads cannot ask before they
// wait.
const directReads = false

func (c *batchConn) setReadWait(func() bool) {}

func (c *batchConn) read(in []inMsg) (int, error) {
	if len(in) == 0 || len(c.bufs) == 0 {
		return 0, nil
	}
	n, oobn, _, from, err := c.c.ReadMsgUDPAddrPort(c.bufs[0], c.oob)
	if isMsgSize(err) {
		// Windows: the datagram did not fit. Reported as a full buffer,
		// which is one byte more than any datagram taken: dropped and
		// counted as oversized, as a truncated read is elsewhere.
		n, oobn, err = len(c.bufs[0]), 0, nil
	}
	if err != nil {
		return 0, err
	}
	in[0] = inMsg{n: n, from: udpPath{remote: netip.AddrPortFrom(from.Addr().Unmap(), from.Port())}}
	if c.local && oobn > 0 {
		in[0].from.local = c.parseLocal(c.oob[:oobn])
	}
	return 1, nil
}

func (c *batchConn) parseLocal(b []byte) netip.Addr {
	var ip net.IP
	if c.v6 {
		var cm ipv6.ControlMessage
		if cm.Parse(b) == nil {
			ip = cm.Dst
		}
	} else {
		var cm ipv4.ControlMessage
		if cm.Parse(b) == nil {
			ip = cm.Dst
		}
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok || a.IsMulticast() {
		return netip.Addr{}
	}
	return a.Unmap()
}

// setBufs has reads go into bufs from now on; here only the first is read
// into. It may not run during a read.
func (c *batchConn) setBufs(bufs [][]byte) { c.bufs = bufs }

func (c *batchConn) drops() uint64 { return 0 }

func (c *batchConn) write(out []outMsg) (int, error) {
	for i, o := range out {
		var oob []byte
		if c.local && o.to.local.IsValid() {
			if c.v6 {
				oob = (&ipv6.ControlMessage{Src: o.to.local.AsSlice()}).Marshal()
			} else {
				oob = (&ipv4.ControlMessage{Src: o.to.local.AsSlice()}).Marshal()
			}
		}
		to := o.to.remote
		if c.v6 && to.Addr().Is4() {
			to = netip.AddrPortFrom(netip.AddrFrom16(to.Addr().As16()), to.Port())
		}
		if _, _, err := c.c.WriteMsgUDPAddrPort(o.b, oob, to); err != nil {
			return i, err
		}
	}
	return len(out), nil
}
