package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/udpchat/udpchat"
)

// runRelay runs a relay until ctx ends (SIGINT or SIGTERM), then closes it,
// which tells the members.
func runRelay(ctx context.Context, args []string) error {
	fs := newFlagSet("relay", "[flags]")
	addr := fs.String("addr", udpchat.DefaultAddr, "`address` to listen on (port 0 picks one)")
	bcast := fs.String("broadcast", "", "send each message once to this broadcast `address` or multicast group instead of once per member")
	iface := fs.String("interface", "", "network `interface` to send multicast on")
	buffer := fs.Int("buffer", udpchat.DefaultBufferSize, "largest datagram in `bytes`, sent or accepted")
	history := fs.Int("history", udpchat.DefaultHistory, "recent `messages` kept to repair members' losses")
	maxMembers := fs.Int("max-members", udpchat.DefaultMaxMembers, "largest group `size`")
	rate := fs.Int("rate", udpchat.DefaultRateLimit, "chat `messages` per second per member (0: no limit)")
	rateBytes := fs.Int("rate-bytes", udpchat.DefaultByteLimit, "chat `bytes` per second per member (0: no limit; else at least 32753)")
	heartbeat := fs.Duration("heartbeat", udpchat.DefaultHeartbeat, "how often members heartbeat")
	expiry := fs.Duration("expiry", 0, "silence after which a member is removed (default 3 heartbeats + 1s)")
	readBuf := fs.Int("read-buffer", udpchat.DefaultReadBuffer, "socket receive buffer (SO_RCVBUF) in `bytes`, before the kernel's cap")
	writeBuf := fs.Int("write-buffer", udpchat.DefaultWriteBuffer, "socket send buffer (SO_SNDBUF) in `bytes`, before the kernel's cap")
	plain := fs.Bool("plain", false, "forward plain-text \"name: text\" datagrams, as nc -u sends them, instead of the protocol")
	keyFile := keyFlag(fs)
	metrics := fs.String("metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics and a health check at /healthz")
	logFormat := fs.String("log-format", "text", "log `format` on standard error: text or json")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, errText(err))
		return errUsage
	}
	keys, err := loadKeys(*keyFile)
	if err != nil {
		return err
	}

	// Only the options given are passed on, so that the library's defaults
	// (such as an expiry derived from the heartbeat) stay its own.
	opts := []udpchat.Option{udpchat.WithAddr(*addr), udpchat.WithLogger(logger)}
	set := func(name string) bool { return isSet(fs, name) }
	if set("broadcast") {
		opts = append(opts, udpchat.WithBroadcast(*bcast))
	}
	if set("interface") {
		opts = append(opts, udpchat.WithInterface(*iface))
	}
	if set("buffer") {
		opts = append(opts, udpchat.WithBufferSize(*buffer))
	}
	if set("history") {
		opts = append(opts, udpchat.WithHistory(*history))
	}
	if set("max-members") {
		opts = append(opts, udpchat.WithMaxMembers(*maxMembers))
	}
	if set("rate") || set("rate-bytes") {
		opts = append(opts, udpchat.WithRateLimit(*rate, *rateBytes))
	}
	if set("heartbeat") {
		opts = append(opts, udpchat.WithHeartbeat(*heartbeat))
	}
	if set("expiry") {
		opts = append(opts, udpchat.WithExpiry(*expiry))
	}
	if set("read-buffer") || set("write-buffer") {
		opts = append(opts, udpchat.WithSocketBuffers(*readBuf, *writeBuf))
	}
	if *plain {
		opts = append(opts, udpchat.WithPlainText())
	}
	if len(keys) > 0 {
		opts = append(opts, udpchat.WithKey(keys[0], keys[1:]...))
	}
	r, err := udpchat.NewRelay(opts...)
	if err != nil {
		return err
	}
	defer r.Close()

	var stopMetrics func()
	if *metrics != "" {
		bound, stop, err := serveMetrics(*metrics, r, logger)
		if err != nil {
			return err
		}
		stopMetrics = stop
		logger.Info("serving metrics", "url", "http://"+bound+"/metrics")
	}
	fmt.Printf("udpchat relay listening on %s%s\n", r.Addr(), modeNote(*plain, len(keys) > 0))

	err = r.Serve(ctx)
	if ctx.Err() != nil {
		err = nil // a signal: the ordinary way to stop
		logger.Info("closing the relay")
	}
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if stopMetrics != nil {
		stopMetrics()
	}
	return err
}

// modeNote says how the relay talks, after its address.
func modeNote(plain, key bool) string {
	switch {
	case plain:
		return " (plain text: no handshake, order, recovery or key)"
	case key:
		return " (with a group key)"
	}
	return ""
}

// newLogger returns the logger the library logs to, on standard error.
func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, o)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}
