package udpchat

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// decode parses one datagram strictly: a datagram whose length does not
// match its type exactly, or whose fields are out of range, is rejected.
// It never panics and never allocates.
func decode(b []byte, p *packet) error {
	if len(b) < headerLen {
		return errShort
	}
	if b[0] != 'U' || b[1] != 'C' {
		return errMagic
	}
	if b[2] != wireVersion {
		return errVersion
	}
	*p = packet{typ: b[3], id: binary.BigEndian.Uint64(b[4:])}
	body := b[headerLen:]
	u64 := func(i int) uint64 { return binary.BigEndian.Uint64(body[i:]) }
	fixed := func(n int) error {
		if len(body) != n {
			return errLength
		}
		return nil
	}
	switch p.typ {
	case tJoin:
		if len(b) < joinMinLen {
			return errLength
		}
		p.nonce, p.prevInc, p.epoch, p.mseq, p.prevNext = u64(0), u64(8), u64(16), u64(24), u64(32)
		if (p.id != 0 || p.prevNext != 0) && p.prevInc == 0 {
			return errField // a previous session or place, but no previous relay
		}
		if p.epoch == 0 || p.mseq == 0 {
			return errField
		}
		p.cookie = [cookieLen]byte(body[40 : 40+cookieLen])
		name, rest, err := splitName(body[40+cookieLen:])
		if err != nil {
			return err
		}
		room, rest, err := splitName(rest)
		if err != nil {
			return err
		}
		if len(rest) != 0 {
			return errLength
		}
		p.name, p.room = name, room
	case tWelcome:
		if err := fixed(welcomeLen - headerLen); err != nil {
			return err
		}
		p.nonce, p.session, p.seq = u64(0), u64(8), u64(16)
		p.heartbeat = time.Duration(binary.BigEndian.Uint32(body[24:])) * time.Millisecond
		p.expiry = time.Duration(binary.BigEndian.Uint32(body[28:])) * time.Millisecond
		p.history = int(binary.BigEndian.Uint32(body[32:]))
		p.maxDatagram = int(binary.BigEndian.Uint16(body[36:]))
		if p.heartbeat <= 0 || p.expiry < p.heartbeat || p.maxDatagram < minBufferSize || p.history < minHistory || p.history > maxHistory {
			return errField
		}
		ip, ok := addr16(body[38:54])
		src, srcOK := addr16(body[56:72])
		switch port := binary.BigEndian.Uint16(body[54:]); {
		case !ok || !srcOK:
			return errField
		case port != 0 && ip.IsValid():
			p.group = netip.AddrPortFrom(ip, port)
		case port != 0 || ip.IsValid():
			return errField
		}
		p.groupSrc = src
	case tChat:
		if len(body) < chatHdrLen-headerLen {
			return errLength
		}
		to, text, err := splitName(body[24:])
		if err != nil {
			return err
		}
		p.mseq, p.was, p.to, p.text = u64(0), seqAt{u64(8), u64(16)}, to, text
		if p.was.inc == 0 && p.was.seq != 0 || p.was.inc != 0 && p.was.seq == 0 {
			return errField
		}
	case tDeliver:
		if len(body) < deliverHdrLen-headerLen {
			return errLength
		}
		p.seq, p.unixNano, p.epoch, p.mseq = u64(0), int64(u64(8)), u64(16), u64(24)
		p.kind = Kind(body[32])
		if p.kind < KindChat || p.kind > KindPrivate {
			return errField
		}
		name, rest, err := splitName(body[33:])
		if err != nil {
			return err
		}
		if len(name) == 0 {
			return errNameWire
		}
		if p.kind == KindPrivate {
			if p.to, rest, err = splitName(rest); err != nil {
				return err
			}
			if len(p.to) == 0 {
				return errNameWire
			}
		}
		p.name, p.text = name, rest
	case tHeartbeat:
		if err := fixed(16); err != nil {
			return err
		}
		p.seq, p.stable = u64(0), u64(8)
	case tStatus:
		if err := fixed(32); err != nil {
			return err
		}
		p.seq, p.mseq, p.stable, p.prunable = u64(0), u64(8), u64(16), u64(24)
	case tStable:
		if err := fixed(24); err != nil {
			return err
		}
		p.seq, p.stable, p.prunable = u64(0), u64(8), u64(16)
	case tNack, tGone:
		n := len(body) / 16
		if len(body)%16 != 0 || n == 0 || n > maxNackRanges || (p.typ == tGone && n != 1) {
			return errLength
		}
		for i := range n {
			first, last := u64(16*i), u64(16*i+8)
			if first == 0 || last < first {
				return errField
			}
			p.ranges[i] = [2]uint64{first, last}
		}
		p.nranges = n
	case tChallenge, tResponse:
		if err := fixed(8); err != nil {
			return err
		}
		p.token = u64(0)
	case tBye:
		if err := fixed(8); err != nil {
			return err
		}
		p.session = u64(0)
	case tSkip:
		if err := fixed(16); err != nil {
			return err
		}
		if p.seq, p.session = u64(0), u64(8); p.seq == 0 {
			return errField
		}
	case tCookie:
		if err := fixed(cookieMsgLen - headerLen); err != nil {
			return err
		}
		p.nonce = u64(0)
		p.cookie = [cookieLen]byte(body[8:])
	case tLeave:
		if err := fixed(0); err != nil {
			return err
		}
	case tError:
		if err := fixed(9); err != nil {
			return err
		}
		p.code, p.ref = body[0], binary.BigEndian.Uint64(body[1:])
	case tRosterReq:
		name, rest, err := splitName(body)
		if err != nil {
			return err
		}
		if len(rest) != 0 {
			return errLength
		}
		p.name = name
	case tRoster:
		if len(body) < 10 {
			return errLength
		}
		p.seq = u64(0)
		switch body[8] {
		case 0:
		case 1:
			p.more = true
		default:
			return errField
		}
		after, entries, err := splitName(body[9:])
		if err != nil {
			return err
		}
		p.name, p.entries = after, entries
		for rest := entries; len(rest) > 0; {
			name, r, err := splitName(rest)
			if err != nil {
				return err
			}
			if len(name) == 0 {
				return errNameWire
			}
			rest = r
		}
	default:
		return errType
	}
	return nil
}

// splitName splits a length-prefixed name (at most maxNameLen bytes) off b.
func splitName(b []byte) (name, rest []byte, err error) {
	if len(b) < 1 {
		return nil, nil, errLength
	}
	n := int(b[0])
	if n > maxNameLen || len(b) < 1+n {
		return nil, nil, errNameWire
	}
	return b[1 : 1+n], b[1+n:], nil
}

// addr16 reads what appendAddr16 wrote; zeros are the zero Addr. An
// unspecified address written otherwise (::ffff:0.0.0.0) is not canonical.
func addr16(b []byte) (netip.Addr, bool) {
	a := [16]byte(b)
	ip := netip.AddrFrom16(a).Unmap()
	if ip.IsUnspecified() {
		return netip.Addr{}, a == [16]byte{}
	}
	return ip, true
}
