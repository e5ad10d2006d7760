package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/udpchat/udpchat"
)

// TestMetrics chats through a relay with -metrics and reads /metrics and
// /healthz over loopback HTTP.
func TestMetrics(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	relay, addr := startRelay(t, nil, "-metrics", maddr)
	bob := joinLine(t, nil, addr, "bob")
	alice := joinLine(t, nil, addr, "alice")
	alice.send(t, "one\ntwo\nthree\n")
	for _, s := range []string{"one", "two", "three"} {
		bob.waitLine(t, "alice: "+s)
	}
	// A datagram that is not udpchat's is dropped as malformed.
	junk, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	junk.Write([]byte("junk"))
	junk.Close()

	get := func(path string) (int, string) { t.Helper(); return httpGet(t, "http://"+maddr+path) }
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}

	// The junk datagram may still be on its way: read until it is counted.
	var m map[string]float64
	for range 100 {
		code, body := get("/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d\n%s", code, body)
		}
		m = parseMetrics(t, body)
		if m[`udpchat_relay_dropped_total{reason="malformed"}`] >= 1 {
			break
		}
	}
	for name, want := range map[string]float64{
		"udpchat_relay_members":                              2,
		"udpchat_relay_sequenced_total":                      5, // two joins, three chats
		`udpchat_relay_dropped_total{reason="malformed"}`:    1,
		`udpchat_relay_dropped_total{reason="rate_limited"}`: 0,
		"udpchat_relay_expired_total":                        0,
		"udpchat_relay_rooms":                                1,
		`udpchat_relay_room_members{room=""}`:                2,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present: %v), want %v", name, got, ok, want)
		}
	}
	if m["udpchat_relay_received_total"] < 6 || m["udpchat_relay_delivered_total"] < 8 {
		t.Errorf("received %v, delivered %v: too few", m["udpchat_relay_received_total"], m["udpchat_relay_delivered_total"])
	}

	alice.stdin.Close()
	alice.wait(t)
	bob.waitLine(t, "* alice left")
	if _, body := get("/metrics"); parseMetrics(t, body)["udpchat_relay_members"] != 1 {
		t.Errorf("members after alice left: want 1\n%s", body)
	}
	bob.stdin.Close()
	bob.wait(t)
	stopRelay(t, relay)
}

// httpGet fetches url (on loopback) and returns the status and the body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestMetricsRooms: the relay's metrics list the rooms with members and
// each one's members, as chats join rooms, move with /join and leave; an
// empty room is gone from them.
func TestMetricsRooms(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	relay, addr := startRelay(t, nil, "-metrics", maddr)
	rooms := func() map[string]float64 {
		t.Helper()
		code, body := httpGet(t, "http://"+maddr+"/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d\n%s", code, body)
		}
		m := map[string]float64{}
		for k, v := range parseMetrics(t, body) {
			if strings.HasPrefix(k, "udpchat_relay_room") || k == "udpchat_relay_members" {
				m[k] = v
			}
		}
		return m
	}
	want := func(what string, w map[string]float64) {
		t.Helper()
		// A leave may still be on its way to the relay: read until it
		// has been counted.
		for end := time.Now().Add(deadline); ; time.Sleep(10 * time.Millisecond) {
			got := rooms()
			if maps.Equal(got, w) {
				return
			}
			if time.Now().After(end) {
				t.Fatalf("%s: room metrics %v, want %v", what, got, w)
			}
		}
	}
	want("no one", map[string]float64{"udpchat_relay_rooms": 0, "udpchat_relay_members": 0})

	alice := joinLine(t, nil, addr, "alice")
	bob := joinLine(t, nil, addr, "bob", "-room", "ops")
	carol := joinLine(t, nil, addr, "carol", "-room", "ops")
	dave := joinLine(t, nil, addr, "dave", "-room", `q"uo\te`) // escaped in the label
	want("four in three rooms", map[string]float64{
		"udpchat_relay_rooms":                          3,
		"udpchat_relay_members":                        4,
		`udpchat_relay_room_members{room=""}`:          1,
		`udpchat_relay_room_members{room="ops"}`:       2,
		`udpchat_relay_room_members{room="q\"uo\\te"}`: 1,
	})

	alice.send(t, "/join ops\n")
	alice.waitLine(t, "* now in room ops")
	dave.send(t, "/quit\n")
	dave.wait(t)
	carol.waitLine(t, "* alice joined")
	want("the main room and dave's emptied", map[string]float64{
		"udpchat_relay_rooms":                    1,
		"udpchat_relay_members":                  3,
		`udpchat_relay_room_members{room="ops"}`: 3,
	})

	for _, p := range []*proc{alice, bob, carol} {
		p.stdin.Close()
		p.wait(t)
	}
	want("everyone gone", map[string]float64{"udpchat_relay_rooms": 0, "udpchat_relay_members": 0})
	stopRelay(t, relay)
}

// parseMetrics reads the text exposition format into name{labels} → value.
func parseMetrics(t *testing.T, body string) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	for sc := bufio.NewScanner(strings.NewReader(body)); sc.Scan(); {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// TestMetricsCoverRooms: the room metrics show every RoomInfo field, so
// a field added to the library fails here until it has one.
func TestMetricsCoverRooms(t *testing.T) {
	shown := map[string]bool{"Name": true, "Members": true} // the room label; udpchat_relay_room_members
	rt := reflect.TypeFor[udpchat.RoomInfo]()
	for i := range rt.NumField() {
		if f := rt.Field(i).Name; !shown[f] {
			t.Errorf("RoomInfo.%s has no metric", f)
		}
	}
	if rt.NumField() != len(shown) {
		t.Errorf("RoomInfo has %d fields, the metrics show %d", rt.NumField(), len(shown))
	}
}

// TestMetricsCoverStats: every RelayStats field is exported, so a counter
// added to the library fails here until it has a metric.
func TestMetricsCoverStats(t *testing.T) {
	have := map[string]bool{}
	for _, m := range relayMetrics {
		have[m.field] = true
	}
	st := reflect.TypeFor[udpchat.RelayStats]()
	for i := range st.NumField() {
		f := st.Field(i)
		if !have[f.Name] {
			t.Errorf("RelayStats.%s has no metric", f.Name)
		}
		switch f.Type.Kind() {
		case reflect.Int, reflect.Int64, reflect.Uint64:
		default:
			t.Errorf("RelayStats.%s is a %v, which Collect cannot read", f.Name, f.Type)
		}
		delete(have, f.Name)
	}
	for f := range have {
		t.Errorf("metric for RelayStats.%s, which does not exist", f)
	}
}
