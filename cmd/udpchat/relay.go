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
	buffer := fs.Int("buffer", udpchat.DefaultBufferSize, "largest datagram in `bytes`, sent or accepted")
	rf := addRelayFlags(fs, "")
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
	if isSet(fs, "broadcast") {
		opts = append(opts, udpchat.WithBroadcast(*bcast))
	}
	if isSet(fs, "buffer") {
		opts = append(opts, udpchat.WithBufferSize(*buffer))
	}
	opts = append(opts, rf.options()...)
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
