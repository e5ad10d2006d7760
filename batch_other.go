//go:build !linux

package udpchat

import (
	"net"

	"golang.org/x/net/ipv4"
)

type batchConn struct {
	pc  *ipv4.PacketConn
	rms []ipv4.Message
	wms []ipv4.Message
}

func newBatchConn(pc *ipv4.PacketConn, bufs [][]byte, overflow bool) (*batchConn, error) {
	c := &batchConn{pc: pc, rms: make([]ipv4.Message, len(bufs))}
	for i := range bufs {
		c.rms[i].Buffers = [][]byte{bufs[i]}
	}
	return c, nil
}

func (c *batchConn) read(in []inMsg) (int, error) {
	ms := c.rms[:min(len(in), len(c.rms))]
	n, err := c.pc.ReadBatch(ms, 0)
	for i := range n {
		in[i] = inMsg{n: ms[i].N, from: addrPortOf(ms[i].Addr)}
	}
	return n, err
}

func (c *batchConn) drops() uint64 { return 0 }

func (c *batchConn) write(out []outMsg) (int, error) {
	for len(c.wms) < len(out) {
		c.wms = append(c.wms, ipv4.Message{Buffers: make([][]byte, 1)})
	}
	ms := c.wms[:len(out)]
	for i, o := range out {
		ms[i].Buffers[0] = o.b
		ms[i].Addr = net.UDPAddrFromAddrPort(o.to)
	}
	n, err := c.pc.WriteBatch(ms, 0)
	for i := range ms {
		ms[i].Buffers[0], ms[i].Addr = nil, nil
	}
	return n, err
}
