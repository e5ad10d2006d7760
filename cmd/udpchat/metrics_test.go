package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

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

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + maddr + path)
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
