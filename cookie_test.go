package udpchat

import (
	"net/netip"
	"testing"
	"time"
)

// The cookie jar, without sockets: time is passed in.

func TestCookieJarLifetime(t *testing.T) {
	j := newCookieJar()
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	t0 := time.Unix(0, 0).Add(1000 * cookieSlot) // the start of a slot
	var none [cookieLen]byte
	ok, c := j.check(&none, src, 7, t0)
	if ok {
		t.Fatal("a join without a cookie was taken")
	}
	tests := []struct {
		name  string
		src   netip.AddrPort
		nonce uint64
		at    time.Duration
		ok    bool
	}{
		{"same slot", src, 7, cookieSlot / 2, true},
		{"next slot", src, 7, cookieSlot + cookieSlot/2, true},
		{"two slots on", src, 7, 2 * cookieSlot, false},
		{"another port", netip.MustParseAddrPort("127.0.0.1:5001"), 7, 0, false},
		{"another address", netip.MustParseAddrPort("127.0.0.2:5000"), 7, 0, false},
		{"another nonce", src, 8, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A fresh jar each time would have other secrets: replay the
			// same jar's history up to the moment instead.
			j := newCookieJar()
			_, c := j.check(&none, src, 7, t0)
			if got, _ := j.check(&c, tt.src, tt.nonce, t0.Add(tt.at)); got != tt.ok {
				t.Fatalf("check = %v, want %v", got, tt.ok)
			}
		})
	}
	// The cookie the jar gives when it refuses is the one it takes.
	if ok, _ := j.check(&c, src, 7, t0); !ok {
		t.Fatal("the jar's own cookie was refused")
	}
	// After a long pause both secrets are new: no old cookie is good.
	if ok, _ := j.check(&c, src, 7, t0.Add(100*cookieSlot)); ok {
		t.Fatal("a cookie was good 100 slots later")
	}
}

func TestCookieJarNonces(t *testing.T) {
	j := newCookieJar()
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	t0 := time.Unix(0, 0).Add(1000 * cookieSlot)
	var none [cookieLen]byte
	j.check(&none, src, 1, t0)
	j.record(1)
	if !j.used(1) || j.used(2) {
		t.Fatal("used does not report the recorded nonce alone")
	}
	j.forget(1)
	if j.used(1) {
		t.Fatal("a forgotten nonce is still used")
	}
	j.record(1)
	// The nonce is remembered while its cookie is good, and no longer.
	j.check(&none, src, 1, t0.Add(cookieSlot))
	if !j.used(1) {
		t.Fatal("nonce forgotten while its cookie is still good")
	}
	j.check(&none, src, 1, t0.Add(2*cookieSlot))
	if j.used(1) {
		t.Fatal("nonce remembered after its cookie expired")
	}
}

// A flood of joins cannot grow the nonce memory past its bound; the older
// slot's nonces give way first.
func TestCookieJarBound(t *testing.T) {
	j := newCookieJar()
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	t0 := time.Unix(0, 0).Add(1000 * cookieSlot)
	var none [cookieLen]byte
	j.check(&none, src, 0, t0)
	for n := range uint64(maxJoined) {
		j.record(n)
	}
	j.check(&none, src, 0, t0.Add(cookieSlot))
	j.record(maxJoined)
	if len(j.joined) > maxJoined {
		t.Fatalf("%d nonces kept, bound %d", len(j.joined), maxJoined)
	}
	if !j.used(maxJoined) {
		t.Fatal("the newest nonce was not kept")
	}
	if j.used(0) {
		t.Fatal("the older slot's nonces did not give way")
	}
}

// A wall clock stepped back across a slot's start must not turn the jar
// back: the turn forward after it would make a second secret for a slot
// whose cookies are out, and each of them would fail once.
func TestCookieJarClockStepBack(t *testing.T) {
	j := newCookieJar()
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	t0 := time.Unix(0, 0).Add(1000*cookieSlot + cookieSlot/2)
	var none [cookieLen]byte
	_, c := j.check(&none, src, 7, t0)
	back := t0.Add(-cookieSlot) // the previous slot
	if ok, _ := j.check(&c, src, 7, back); !ok {
		t.Fatal("a cookie of the current slot failed after the clock stepped back")
	}
	if ok, _ := j.check(&c, src, 7, t0); !ok {
		t.Fatal("a cookie failed when the clock came forward again to its slot")
	}
	if ok, _ := j.check(&c, src, 7, t0.Add(cookieSlot)); !ok {
		t.Fatal("a cookie failed in the slot after its own")
	}
}

// A jar's first time may fall in slot 0 (the epoch's first 30 s).
func TestCookieJarFirstSlot(t *testing.T) {
	j := newCookieJar()
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	var none [cookieLen]byte
	_, c := j.check(&none, src, 7, time.Unix(1, 0))
	if ok, _ := j.check(&c, src, 7, time.Unix(2, 0)); !ok {
		t.Fatal("the jar's own cookie was refused in slot 0")
	}
}
