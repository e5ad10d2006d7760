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
	r, w := idleRelay(t)
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

// The answer to a challenge counts only within probeLife of it (to within
// a pathTick): an address that answers much later may no longer be the
// member's.
func TestPathChallengeExpires(t *testing.T) {
	pr := newPathRelay(t)
	token := pr.challenge(pathMoved)
	pr.now = pr.now.Add(probeLife + pathTick)
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
// Path tokens, without sockets: a token answers for the session and the
// address it was made for, within its life, and across a turn of the
// cookie secrets; nothing else passes.
func TestPathTokens(t *testing.T) {
	j := newCookieJar()
	t0 := time.Unix(1000, 0)
	tok := j.pathToken(7, pathMoved, t0)
	for _, tc := range []struct {
		name    string
		token   uint64
		session uint64
		from    netip.AddrPort
		at      time.Time
		want    bool
	}{
		{"answers", tok, 7, pathMoved, t0, true},
		{"at its life's end", tok, 7, pathMoved, t0.Add(probeLife - pathTick), true},
		{"too late", tok, 7, pathMoved, t0.Add(probeLife + pathTick), false},
		{"much too late", tok, 7, pathMoved, t0.Add(65536 * pathTick), false},
		{"wrong token", tok ^ 1, 7, pathMoved, t0, false},
		{"wrong tick", tok + 1<<48, 7, pathMoved, t0.Add(pathTick), false},
		{"another address", tok, 7, pathThird, t0, false},
		{"another session", tok, 8, pathMoved, t0, false},
	} {
		if got := j.checkPathToken(tc.token, tc.session, tc.from, tc.at, probeLife); got != tc.want {
			t.Errorf("%s: checkPathToken = %v", tc.name, got)
		}
	}
	// Made just before the secrets turn, checked just after (a new jar:
	// this one has turned to the "much too late" check's slot).
	j = newCookieJar()
	edge := time.Unix(0, (t0.UnixNano()/int64(cookieSlot)+1)*int64(cookieSlot)-int64(time.Millisecond))
	tok = j.pathToken(7, pathMoved, edge)
	if !j.checkPathToken(tok, 7, pathMoved, edge.Add(time.Second), probeLife) {
		t.Error("a token made before the secrets turned fails after")
	}
}

// A datagram of the session from a third address, between the challenge
// to the member's new address and the member's answer, takes nothing from
// the answer: the session moves. (Without a key anyone on the path can
// send one; with a key, a captured datagram replayed.)
func TestThirdAddressDoesNotVoidChallenge(t *testing.T) {
	pr := newPathRelay(t)
	token := pr.challenge(pathMoved)
	if third := pr.challenge(pathThird); third == 0 {
		t.Fatal("no challenge for the third address")
	}
	pr.respond(token, pathMoved)
	pr.wantAt(pathMoved, 1)
}
