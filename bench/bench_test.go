//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Every goroutine the benchmark starts (drains, relays, loads) must have
// stopped when a run returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestQuickRun runs every case briefly in process and checks that each
// one measured something and that udpchat's relay lost nothing.
func TestQuickRun(t *testing.T) {
	cfg := quickConfig()
	cfg.Dur, cfg.Warm = 150*time.Millisecond, 30*time.Millisecond
	var progress strings.Builder
	rep, err := run(cfg, &progress)
	t.Log(progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	want := map[string]bool{}
	for _, c := range []string{"raw", "raw windowed", "naive", "udpchat", "raw broadcast", "raw broadcast windowed",
		"udpchat broadcast", "latency direct", "latency naive", "latency udpchat"} {
		want[c] = true
	}
	for _, r := range rep.Runs {
		delete(want, r.Case)
		switch {
		case strings.HasPrefix(r.Case, "latency"):
			if r.Samples == 0 || r.P50 <= 0 || r.P99 < r.P50 {
				t.Errorf("%s: %d samples, p50 %v, p99 %v", r.Case, r.Samples, r.P50, r.P99)
			}
		case r.Delivered == 0 || r.Rate <= 0 || r.Sent == 0:
			t.Errorf("%s N=%d: sent %d, delivered %d", r.Case, r.N, r.Sent, r.Delivered)
		}
		if strings.Contains(r.Case, "udpchat") {
			// settle notes any message the relay did not sequence, any
			// member missing and any drop.
			if r.Relay == nil || len(r.Notes) > 0 {
				t.Errorf("%s N=%d: relay stats %+v, notes %q", r.Case, r.N, r.Relay, r.Notes)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("runs missing: %v", want)
	}
	m := rep.Memory
	if m.Relay == nil || m.Relay.Members != cfg.MemBase+cfg.MemJoins || m.JoinsPerSec <= 0 || m.PerMember <= 0 {
		t.Errorf("memory case: %+v", m)
	}
	var out bytes.Buffer
	if err := rep.print(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"unicast vs raw", "unicast vs naive", "broadcast vs raw", "latency p50", "heap per member", "join rate"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("JSON: %v", err)
	}
}

// TestSendRounds checks the windowed raw sender's arithmetic: a round is
// one datagram to each receiver, started by the one to receiver #0.
func TestSendRounds(t *testing.T) {
	d, err := newDrain(3, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.stop()
	_, _, addrs, err := d.receivers(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBlaster(addrs, false, 2) // batches of 2 over 3 receivers
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	for i, want := range []struct{ rounds, next int }{
		{1, 2}, // receivers 0, 1
		{1, 1}, // 2, then 0 starts a round
		{0, 0}, // 1, 2
	} {
		rounds, err := b.sendRounds(1)
		if err != nil || rounds != want.rounds || b.next != want.next {
			t.Fatalf("batch %d: %d rounds, next %d, %v; want %d rounds, next %d", i, rounds, b.next, err, want.rounds, want.next)
		}
	}
	if !d.waitSum(0, 3, 6, 5*time.Second) {
		t.Fatalf("receivers counted %d of 6 datagrams", d.sum(0, 3))
	}
	for i := range 3 {
		if c := d.count(i); c != 2 {
			t.Errorf("receiver %d counted %d datagrams, want 2", i, c)
		}
	}
}

func TestStamp(t *testing.T) {
	for _, ts := range []int64{0, 1, 123456789, 1<<62 + 5} {
		b := payload(payloadSize)
		stamp(b, ts)
		if got, ok := parseStamp(b); !ok || got != ts {
			t.Errorf("stamp %d: parsed %d, %v from %q", ts, got, ok, b[len(b)-16:])
		}
	}
	if _, ok := parseStamp([]byte(fmt.Sprintf("%016s", "xyz"))); ok {
		t.Error("parsed a stamp from non-hex bytes")
	}
}
