package udpchat

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// encode is decode's inverse, for the round-trip tests.
func encode(p *packet) []byte {
	switch p.typ {
	case tJoin:
		return appendJoin(nil, p.id, p.nonce, p.prevInc, p.epoch, p.mseq, p.prevNext, &p.cookie, string(p.name), string(p.room))
	case tWelcome:
		return appendWelcome(nil, p.id, p.nonce, p.session, p.seq, p.heartbeat, p.expiry, p.history, p.maxDatagram, p.group, p.groupSrc)
	case tChat:
		return appendChat(nil, p.id, p.mseq, p.was, string(p.to), string(p.text))
	case tDeliver:
		return appendDeliver(nil, p.id, p.seq, p.unixNano, p.epoch, p.mseq, p.kind, string(p.name), string(p.to), p.text)
	case tStatus:
		return appendStatus(nil, p.id, p.seq, p.mseq, p.stable, p.prunable)
	case tStable:
		return appendStable(nil, p.id, p.seq, p.stable, p.prunable)
	case tHeartbeat:
		return appendHeartbeat(nil, p.id, p.seq, p.stable)
	case tNack, tGone:
		b := appendHeader(nil, p.typ, p.id)
		for _, r := range p.ranges[:p.nranges] {
			b = append(b, appendU64Pair(nil, 0, 0, r[0], r[1])[headerLen:]...)
		}
		return b
	case tBye:
		return appendBye(nil, p.id, p.session)
	case tChallenge, tResponse:
		return appendToken(nil, p.typ, p.id, p.token)
	case tSkip:
		return appendSkip(nil, p.id, p.seq, p.session)
	case tCookie:
		return appendCookie(nil, p.id, p.nonce, &p.cookie)
	case tLeave:
		return appendHeader(nil, p.typ, p.id)
	case tError:
		return appendError(nil, p.id, p.code, p.ref)
	case tRosterReq:
		return appendRosterReq(nil, p.id, string(p.name))
	case tRoster:
		return append(appendRosterHeader(nil, p.id, p.seq, p.more, p.name), p.entries...)
	}
	return nil
}

// seedDatagrams returns one genuine datagram of every type.
func seedDatagrams() [][]byte {
	group := netip.MustParseAddrPort("127.255.255.255:2411")
	roster := appendRosterHeader(nil, 9, 77, true, []byte("alice"))
	roster = appendName(appendName(roster, "bob"), "carol")
	nack := appendHeader(nil, tNack, 5)
	for _, r := range [][2]uint64{{3, 4}, {9, 9}} {
		nack = append(nack, appendU64Pair(nil, 0, 0, r[0], r[1])[headerLen:]...)
	}
	return [][]byte{
		appendJoin(nil, 0, 1, 0, 7, 1, 0, &[cookieLen]byte{}, "alice", ""),
		appendJoin(nil, 0, 1, 0, 7, 1, 0, &[cookieLen]byte{1, 2, 3}, "alice", ""),
		appendCookie(nil, 9, 1, &[cookieLen]byte{4, 5, 6}),
		appendJoin(nil, 0, 1, 99, 7, 12, 0, &[cookieLen]byte{}, "a-very-long-name-of-32-bytes-xyz", ""),
		appendWelcome(nil, 9, 1, 5, 1, time.Second, 4*time.Second, 1024, 1024, netip.AddrPort{}, netip.Addr{}),
		appendWelcome(nil, 9, 1, 5, 1, time.Second, 4*time.Second, 1024, 1024, group, netip.Addr{}),
		appendChat(nil, 5, 1, seqAt{}, "", "hello"),
		appendChat(nil, 5, 2, seqAt{}, "", ""),
		appendDeliver(nil, 9, 3, time.Now().UnixNano(), 7, 1, KindChat, "alice", "", []byte("hello")),
		appendDeliver(nil, 9, 4, 0, 7, 0, KindJoin, "bob", "", nil),
		appendHeartbeat(nil, 5, 3, 2),
		appendStatus(nil, 9, 10, 2, 8, 7),
		appendStable(nil, 9, 10, 8, 7),
		nack,
		appendU64Pair(nil, tGone, 9, 1, 100),
		appendHeader(nil, tLeave, 5),
		appendBye(nil, 9, 5),
		appendError(nil, 9, codeNameTaken, 1),
		appendRosterReq(nil, 5, ""),
		roster,
		appendToken(nil, tChallenge, 9, 0xc0ffee),
		appendSkip(nil, 9, 12, 5),
		appendJoin(nil, 5, 1, 99, 7, 12, 40, &[cookieLen]byte{1}, "bob", "ops"),
		appendChat(nil, 5, 3, seqAt{99, 41}, "alice", "psst"),
		appendDeliver(nil, 9, 5, 1, 7, 3, KindPrivate, "bob", "alice", []byte("psst")),
		appendToken(nil, tResponse, 5, 0xc0ffee),
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, b := range seedDatagrams() {
		var p packet
		if err := decode(b, &p); err != nil {
			t.Fatalf("decode(%x): %v", b, err)
		}
		if got := encode(&p); !bytes.Equal(got, b) {
			t.Errorf("type %d: encode(decode(b)) = %x, want %x", p.typ, got, b)
		}
		// Every proper prefix of a genuine datagram is rejected, except
		// where the cut leaves a valid, shorter datagram.
		for n := range len(b) {
			var q packet
			err := decode(b[:n], &q)
			textCut := (p.typ == tChat && n >= chatHdrLen) || (p.typ == tDeliver && n >= deliverHdrLen+len(p.name)) ||
				(p.typ == tRoster && n < len(b) && err == nil) || // cut between names
				(p.typ == tNack && n > headerLen && (n-headerLen)%16 == 0) // cut between ranges
			if err == nil && !textCut {
				t.Errorf("type %d cut to %d of %d bytes decoded without error", p.typ, n, len(b))
			}
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := appendChat(nil, 5, 1, seqAt{}, "", "hi")
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errShort},
		{"magic", append([]byte("XC"), valid[2:]...), errMagic},
		{"version", append([]byte{'U', 'C', 1}, valid[3:]...), errVersion},
		{"type", appendHeader(nil, 200, 1), errType},
		{"heartbeat without body", appendHeader(nil, tHeartbeat, 5), errLength},
		{"join epoch zero", appendJoin(nil, 0, 1, 0, 0, 1, 0, &[cookieLen]byte{}, "al", ""), errField},
		{"join first seq zero", appendJoin(nil, 0, 1, 0, 7, 0, 0, &[cookieLen]byte{}, "al", ""), errField},
		{"join too short", appendJoin(nil, 0, 1, 0, 7, 1, 0, &[cookieLen]byte{}, "alice", "")[:joinMinLen-1], errLength},
		{"join trailing byte", append(appendJoin(nil, 0, 1, 0, 7, 1, 0, &[cookieLen]byte{}, "a", ""), 0), errLength},
		{"join place without relay", appendJoin(nil, 0, 1, 0, 7, 1, 5, &[cookieLen]byte{}, "a", ""), errField},
		{"chat seq without incarnation", appendChat(nil, 5, 1, seqAt{0, 3}, "", "x"), errField},
		{"chat incarnation without seq", appendChat(nil, 5, 1, seqAt{3, 0}, "", "x"), errField},
		{"join name past end", func() []byte {
			b := appendJoin(nil, 0, 1, 0, 7, 1, 0, &[cookieLen]byte{}, "al", "")
			b[headerLen+40+cookieLen] = 60
			return b
		}(), errNameWire},
		{"deliver kind", func() []byte {
			b := appendDeliver(nil, 9, 1, 0, 7, 0, KindChat, "a", "", nil)
			b[headerLen+32] = 9
			return b
		}(), errField},
		{"deliver empty name", appendDeliver(nil, 9, 1, 0, 7, 0, KindChat, "", "", nil), errNameWire},
		{"nack backwards", appendU64Pair(nil, tNack, 5, 9, 3), errField},
		{"nack zero", appendU64Pair(nil, tNack, 5, 0, 3), errField},
		{"nack ragged", append(appendU64Pair(nil, tNack, 5, 1, 3), 1), errLength},
		{"gone two ranges", append(appendU64Pair(nil, tGone, 5, 1, 3), appendU64Pair(nil, 0, 0, 5, 6)[headerLen:]...), errLength},
		{"welcome zero heartbeat", appendWelcome(nil, 9, 1, 5, 1, 0, time.Second, 1024, 1024, netip.AddrPort{}, netip.Addr{}), errField},
		{"welcome tiny buffer", appendWelcome(nil, 9, 1, 5, 1, time.Second, 4*time.Second, 1024, 10, netip.AddrPort{}, netip.Addr{}), errField},
		{"welcome tiny history", appendWelcome(nil, 9, 1, 5, 1, time.Second, 4*time.Second, 1, 1024, netip.AddrPort{}, netip.Addr{}), errField},
		{"welcome mapped zero source", func() []byte {
			b := appendWelcome(nil, 9, 1, 5, 1, time.Second, 4*time.Second, 1024, 1024, netip.AddrPort{}, netip.Addr{})
			b[welcomeLen-6], b[welcomeLen-5] = 0xff, 0xff // ::ffff:0.0.0.0, which reads as none
			return b
		}(), errField},
		{"welcome mapped zero group", func() []byte {
			b := appendWelcome(nil, 9, 1, 5, 1, time.Second, 4*time.Second, 1024, 1024, netip.AddrPort{}, netip.Addr{})
			b[welcomeLen-24], b[welcomeLen-23] = 0xff, 0xff
			return b
		}(), errField},
		{"roster empty name", appendName(appendRosterHeader(nil, 9, 1, false, nil), ""), errNameWire},
		{"roster more=2", func() []byte { b := appendRosterHeader(nil, 9, 1, false, nil); b[headerLen+8] = 2; return b }(), errField},
	} {
		var p packet
		if err := decode(tc.b, &p); err != tc.want {
			t.Errorf("%s: decode = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race (.ci/run runs it)")
	}
	seeds := seedDatagrams()
	var p packet
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range seeds {
			decode(b, &p)
		}
	}); n != 0 {
		t.Errorf("decode allocates %v times per run, want 0", n)
	}
}

// FuzzDecode checks that decode never panics and that whatever it accepts
// encodes back to the same bytes: the decoder is strict and canonical.
func FuzzDecode(f *testing.F) {
	for _, b := range seedDatagrams() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet
		if decode(b, &p) != nil {
			return
		}
		if got := encode(&p); !bytes.Equal(got, b) {
			t.Fatalf("type %d: encode(decode(%x)) = %x", p.typ, b, got)
		}
	})
}

// FuzzRelayHandle feeds datagrams through the relay's whole per-datagram
// path (size check, decode, session check, dispatch) with two members
// joined, and checks that the relay's state stays consistent.
func FuzzRelayHandle(f *testing.F) {
	for _, b := range seedDatagrams() {
		f.Add(b, false)
		f.Add(b, true)
	}
	r, err := NewRelay(WithAddr("127.0.0.1:0"), WithHistory(minHistory), WithBufferSize(256))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	// The members' addresses are sockets of this test that absorb the
	// relay's answers.
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sink.Close() })
	member := addrPortOf(sink.LocalAddr())
	stranger := netip.AddrPortFrom(member.Addr(), member.Port()+1)
	now := time.Now()
	r.mu.Lock()
	r.handleAt(cookieJoin(r, member, 1, 7, "alice"), member, now)
	r.q.flush()
	session := r.proto().main().byName["alice"].session
	r.mu.Unlock()
	f.Add(appendChat(nil, session, 1, seqAt{}, "", "hi"), false)
	f.Add(appendU64Pair(nil, tNack, session, 1, 3), false)
	f.Fuzz(func(t *testing.T, b []byte, fromStranger bool) {
		from := member
		if fromStranger {
			from = stranger
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.handleAt(b, from, now)
		r.mode.batchDone(now)
		r.q.flush()
		if err := r.proto().check(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzOpen checks that opening never panics on any datagram, and that
// anything sealed opens to itself.
func FuzzOpen(f *testing.F) {
	ring, err := newKeyring([][]byte{bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{8}, 16)})
	if err != nil {
		f.Fatal(err)
	}
	s := newSealer(ring)
	for _, b := range seedDatagrams() {
		f.Add(b)
		f.Add(s.seal(b))
	}
	dst := make([]byte, 0, 1<<16)
	f.Fuzz(func(t *testing.T, b []byte) {
		ring.open(dst, b)
		plain, salt, _, err := ring.open(dst, s.seal(b))
		if err != nil || !bytes.Equal(plain, b) || salt != s.salt {
			t.Fatalf("seal then open: %v, %x", err, plain)
		}
	})
}

var writeCorpus = flag.Bool("write-corpus", false, "write the seed datagrams into testdata/fuzz")

// TestWriteCorpus keeps a corpus of genuine datagrams in testdata/fuzz for
// the fuzz targets (go test -run TestWriteCorpus -write-corpus).
func TestWriteCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus")
	}
	for i, b := range seedDatagrams() {
		for target, extra := range map[string]string{"FuzzDecode": "", "FuzzRelayHandle": "bool(false)\n", "FuzzOpen": ""} {
			dir := filepath.Join("testdata", "fuzz", target)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n%s", strconv.Quote(string(b)), extra)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("genuine-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
