package udpchat

import (
	"net/netip"
	"testing"
	"time"
)

// Path validation on the relay, without sockets: the relay's datagrams
// go to a fake writer, and time is passed in.

// pathRelay is a relay, not serving, whose datagrams a fake writer takes,
// with alice joined from pathHome.
type pathRelay struct {
	t     *testing.T
	r     *Relay
	w     *fakeWriter
	alice *relayMember
	now   time.Time
}

var (
	pathHome   = netip.MustParseAddrPort("127.0.0.1:40001")
	pathMoved  = netip.MustParseAddrPort("127.0.0.1:40002")
	pathThird  = netip.MustParseAddrPort("127.0.0.1:40003")
	aliceEpoch = uint64(4242) // alice's epoch
)

func newPathRelay(t *testing.T) *pathRelay {
	r, err := NewRelay(WithAddr("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	r.mu.Lock()
	t.Cleanup(r.mu.Unlock)
	w := &fakeWriter{}
	r.q.w = w
	pr := &pathRelay{t: t, r: r, w: w, now: time.Now()}
	pr.send(cookieJoin(r, pathHome, 1, aliceEpoch, "alice"), pathHome)
	if pr.alice = r.proto().main().byName["alice"]; pr.alice == nil {
		t.Fatal("alice did not join")
	}
	return pr
}

// send hands the relay b from `from` and returns what it sent, flushed.
func (pr *pathRelay) send(b []byte, from netip.AddrPort) []sent {
	pr.w.sent = nil
	pr.r.handleAt(b, from, pr.now)
	pr.r.q.flush()
	return pr.w.sent
}

// challenge sends a heartbeat of alice's from `from` and returns the token
// of the challenge it earns there (0 if none).
func (pr *pathRelay) challenge(from netip.AddrPort) uint64 {
	pr.t.Helper()
	hb := appendHeartbeat(nil, pr.alice.session, 1, 0)
	var token uint64
	for _, s := range pr.send(hb, from) {
		var p packet
		if s.to.remote != from || decode(s.b, &p) != nil || p.typ != tChallenge {
			pr.t.Fatalf("a heartbeat from %s got %x to %s, want only a challenge there", from, s.b, s.to.remote)
		}
		if len(s.b) > len(hb) {
			pr.t.Errorf("a challenge of %d bytes for %d received", len(s.b), len(hb))
		}
		token = p.token
	}
	return token
}

func (pr *pathRelay) respond(token uint64, from netip.AddrPort) {
	pr.send(appendToken(nil, tResponse, pr.alice.session, token), from)
}

func (pr *pathRelay) wantAt(want netip.AddrPort, migrated uint64) {
	pr.t.Helper()
	if got := pr.alice.path.remote; got != want {
		pr.t.Errorf("alice at %s, want %s", got, want)
	}
	if got := pr.r.proto().main().dsts[pr.alice.idx].remote; got != want {
		pr.t.Errorf("alice's fan-out goes to %s, want %s", got, want)
	}
	if got := pr.r.stats.Migrated; got != migrated {
		pr.t.Errorf("%d migrations, want %d", got, migrated)
	}
}

// A session moves only to the address that answers its challenge with
// the token, in time; before that, what comes from there is not acted on.
func TestPathValidation(t *testing.T) {
	pr := newPathRelay(t)
	heard := pr.alice.lastHeard
	pr.now = pr.now.Add(time.Second)
	token := pr.challenge(pathMoved)
	if token == 0 {
		t.Fatal("no challenge for alice's datagram from a new address")
	}
	if !pr.alice.lastHeard.Equal(heard) || pr.r.stats.DroppedUnvalidated != 1 {
		t.Errorf("a datagram from an unvalidated address counted: lastHeard pathMoved %v, DroppedUnvalidated %d",
			pr.alice.lastHeard.Sub(heard), pr.r.stats.DroppedUnvalidated)
	}
	pr.now = pr.now.Add(challengeGap / 2)
	if again := pr.challenge(pathMoved); again != 0 {
		t.Error("a second challenge within challengeGap")
	}

	pr.respond(token+1, pathMoved) // a guess
	pr.respond(token, pathThird)   // the token, from elsewhere
	pr.wantAt(pathHome, 0)

	pr.respond(token, pathMoved)
	pr.wantAt(pathMoved, 1)
	if pr.alice.probe != (pathProbe{}) {
		t.Errorf("the challenge outlived the move: %+v", pr.alice.probe)
	}
	pr.respond(token, pathMoved) // once more: on its own path, a response is nothing
	pr.wantAt(pathMoved, 1)
}

// The answer to a challenge counts only within probeLife of it: an address
// that answers much later may no longer be the member's.
func TestPathChallengeExpires(t *testing.T) {
	pr := newPathRelay(t)
	token := pr.challenge(pathMoved)
	pr.now = pr.now.Add(probeLife + time.Millisecond)
	pr.respond(token, pathMoved)
	pr.wantAt(pathHome, 0)

	// A new datagram from there gets a new challenge, with a new token.
	fresh := pr.challenge(pathMoved)
	if fresh == 0 || fresh == token {
		t.Fatalf("after the first expired: challenge %x, want a new token (old %x)", fresh, token)
	}
	pr.respond(token, pathMoved)
	pr.wantAt(pathHome, 0)
	pr.respond(fresh, pathMoved)
	pr.wantAt(pathMoved, 1)
}

// A rejoin from a new address that proves the session (it names the
// session and the relay's incarnation, and has the same epoch) moves it,
// and voids a challenge under way elsewhere. Naming the session with
// another epoch is another Member: the name is taken.
func TestRejoinMovesSession(t *testing.T) {
	pr := newPathRelay(t)
	token := pr.challenge(pathThird)
	rejoin := func(from netip.AddrPort, nonce, epoch uint64) []sent {
		_, c := pr.r.proto().cookies.check(&[cookieLen]byte{}, from, nonce, pr.now)
		return pr.send(appendJoin(nil, pr.alice.session, nonce, pr.alice.room.inc, epoch, 1, &c, "alice", ""), from)
	}

	sent := rejoin(pathMoved, 2, aliceEpoch+1)
	var p packet
	if len(sent) != 1 || decode(sent[0].b, &p) != nil || p.typ != tError || p.code != codeNameTaken {
		t.Errorf("another epoch naming alice's session from a new address: %v, want ERROR name taken", sent)
	}
	pr.wantAt(pathHome, 0)

	sent = rejoin(pathMoved, 3, aliceEpoch)
	if len(sent) == 0 || decode(sent[0].b, &p) != nil || p.typ != tWelcome {
		t.Fatalf("alice's rejoin from a new address: %v, want WELCOME", sent)
	}
	pr.wantAt(pathMoved, 1)
	pr.respond(token, pathThird)
	pr.wantAt(pathMoved, 1)
}

func TestPathProbeAnswers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	pr := pathProbe{to: pathMoved, token: 77, sent: t0}
	for _, tc := range []struct {
		name  string
		pr    pathProbe
		from  netip.AddrPort
		token uint64
		at    time.Time
		want  bool
	}{
		{"answers", pr, pathMoved, 77, t0.Add(probeLife), true},
		{"wrong token", pr, pathMoved, 78, t0, false},
		{"wrong address", pr, pathThird, 77, t0, false},
		{"too late", pr, pathMoved, 77, t0.Add(probeLife + 1), false},
		{"never sent", pathProbe{to: pathMoved, token: 77}, pathMoved, 77, t0, false},
		{"none", pathProbe{}, netip.AddrPort{}, 0, t0, false},
	} {
		if got := tc.pr.answers(tc.from, tc.token, tc.at); got != tc.want {
			t.Errorf("%s: answers = %v", tc.name, got)
		}
	}
}
