package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/udpchat/udpchat"
)

// relayMetric maps one field of udpchat.RelayStats to a metric.
type relayMetric struct {
	field string // the RelayStats field
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	label string // the value of the reason label, for the dropped counters
}

// relayMetrics lists every RelayStats field (TestMetricsCoverStats checks
// that none is missing). The Dropped* fields become one counter,
// udpchat_relay_dropped_total, with a reason label.
var relayMetrics = func() []relayMetric {
	counter := func(field, name, help string) relayMetric {
		return relayMetric{field: field, typ: prometheus.CounterValue,
			desc: prometheus.NewDesc("udpchat_relay_"+name, help, nil, nil)}
	}
	ms := []relayMetric{
		counter("Received", "received_total", "Datagrams read from the socket."),
		counter("Sequenced", "sequenced_total", "Messages (chat, join, leave) given a sequence number."),
		counter("Delivered", "delivered_total", "Deliver datagrams sent (one per member, or one per message in broadcast mode)."),
		counter("Retransmitted", "retransmitted_total", "Deliver datagrams resent to answer a member's NACK."),
		counter("Reordered", "reordered_total", "Chats that arrived ahead of a lost one and waited for it."),
		counter("Expired", "expired_total", "Members removed after missing heartbeats."),
		counter("Migrated", "migrated_total", "Sessions moved to a member's new address after it answered a challenge there."),
		{field: "Members", typ: prometheus.GaugeValue,
			desc: prometheus.NewDesc("udpchat_relay_members", "Current number of members.", nil, nil)},
	}
	dropped := prometheus.NewDesc("udpchat_relay_dropped_total",
		"Datagrams discarded, by reason (the RelayStats Dropped* counters).", []string{"reason"}, nil)
	t := reflect.TypeFor[udpchat.RelayStats]()
	for i := range t.NumField() {
		if f := t.Field(i).Name; strings.HasPrefix(f, "Dropped") {
			ms = append(ms, relayMetric{field: f, desc: dropped, typ: prometheus.CounterValue,
				label: snake(strings.TrimPrefix(f, "Dropped"))})
		}
	}
	return ms
}()

// snake turns "SendErrors" into "send_errors".
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// The rooms' gauges, read from Relay.Rooms on every scrape. The main room's
// label is room="", as its name is "" (in PromQL, {room=""} selects it).
// There is one series per open room, so at most -max-rooms of them.
var (
	roomsDesc = prometheus.NewDesc("udpchat_relay_rooms",
		"Rooms with members (the main room counts when it has members).", nil, nil)
	roomMembersDesc = prometheus.NewDesc("udpchat_relay_room_members",
		`Current number of members, by room (room="" is the main room); rooms without members are left out.`, []string{"room"}, nil)
)

// relayCollector reads the relay's Stats and Rooms on every scrape.
type relayCollector struct{ r *udpchat.Relay }

func (c relayCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- roomsDesc
	ch <- roomMembersDesc
	seen := map[*prometheus.Desc]bool{}
	for _, m := range relayMetrics {
		if !seen[m.desc] {
			seen[m.desc] = true
			ch <- m.desc
		}
	}
}

func (c relayCollector) Collect(ch chan<- prometheus.Metric) {
	s := reflect.ValueOf(c.r.Stats())
	for _, m := range relayMetrics {
		var v float64
		switch f := s.FieldByName(m.field); f.Kind() {
		case reflect.Int, reflect.Int64:
			v = float64(f.Int())
		default:
			v = float64(f.Uint())
		}
		var labels []string
		if m.label != "" {
			labels = []string{m.label}
		}
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v, labels...)
	}
	open := 0
	for _, room := range c.r.Rooms() {
		if room.Members > 0 {
			open++
			ch <- prometheus.MustNewConstMetric(roomMembersDesc, prometheus.GaugeValue, float64(room.Members), room.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(roomsDesc, prometheus.GaugeValue, float64(open))
}

// serveMetrics serves /metrics and /healthz on addr. It returns the bound
// address and a function that stops the server.
func serveMetrics(addr string, r *udpchat.Relay, logger *slog.Logger) (string, func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(relayCollector{r},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != http.ErrServerClosed {
			logger.Error("metrics server", "err", err)
		}
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}
	return ln.Addr().String(), stop, nil
}
