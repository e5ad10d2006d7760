package main

import (
	"flag"
	"time"

	"github.com/udpchat/udpchat"
)

// relayFlags are the flags of the relay's own options, shared by "udpchat
// relay" and "udpchat chat -host", so that a hosted relay takes the same.
type relayFlags struct {
	fs                  *flag.FlagSet
	iface               *string
	history, maxMembers *int
	maxRooms, roomSize  *int
	rate, rateBytes     *int
	heartbeat, expiry   *time.Duration
	readBuf, writeBuf   *int
	names               []string
}

// addRelayFlags defines the relay's flags on fs; note follows each usage.
func addRelayFlags(fs *flag.FlagSet, note string) *relayFlags {
	f := &relayFlags{fs: fs}
	f.iface = fs.String("interface", "", "network `interface` to send multicast on"+note)
	f.history = fs.Int("history", udpchat.DefaultHistory, "recent `messages` kept to repair members' losses"+note)
	f.maxMembers = fs.Int("max-members", udpchat.DefaultMaxMembers, "most `members` at once, in all rooms together"+note)
	f.maxRooms = fs.Int("max-rooms", udpchat.DefaultMaxRooms, "most `rooms` open at once (a room is open while it has members)"+note)
	f.roomSize = fs.Int("max-room-members", 0, "most `members` of one room (default -max-members)"+note)
	f.rate = fs.Int("rate", udpchat.DefaultRateLimit, "chat `messages` per second per member (0: no limit)"+note)
	f.rateBytes = fs.Int("rate-bytes", udpchat.DefaultByteLimit, "chat `bytes` per second per member (0: no limit; else at least 32753)"+note)
	f.heartbeat = fs.Duration("heartbeat", udpchat.DefaultHeartbeat, "how often members heartbeat"+note)
	f.expiry = fs.Duration("expiry", 0, "silence after which a member is removed, and a plain relay stops forwarding to an address (default 3 heartbeats + 1s)"+note)
	f.readBuf = fs.Int("read-buffer", udpchat.DefaultReadBuffer, "socket receive buffer (SO_RCVBUF) in `bytes`, before the kernel's cap"+note)
	f.writeBuf = fs.Int("write-buffer", udpchat.DefaultWriteBuffer, "socket send buffer (SO_SNDBUF) in `bytes`, before the kernel's cap"+note)
	f.names = []string{"interface", "history", "max-members", "max-rooms", "max-room-members", "rate", "rate-bytes", "heartbeat", "expiry", "read-buffer", "write-buffer"}
	return f
}

// given reports whether any of the relay's flags was given.
func (f *relayFlags) given() bool {
	for _, n := range f.names {
		if isSet(f.fs, n) {
			return true
		}
	}
	return false
}

// options returns the options of the flags given: only those, so that the
// library's defaults (such as an expiry derived from the heartbeat) stay
// its own.
func (f *relayFlags) options() []udpchat.Option {
	var opts []udpchat.Option
	set := func(name string) bool { return isSet(f.fs, name) }
	if set("interface") {
		opts = append(opts, udpchat.WithInterface(*f.iface))
	}
	if set("history") {
		opts = append(opts, udpchat.WithHistory(*f.history))
	}
	if set("max-members") {
		opts = append(opts, udpchat.WithMaxMembers(*f.maxMembers))
	}
	if set("max-rooms") {
		opts = append(opts, udpchat.WithMaxRooms(*f.maxRooms))
	}
	if set("max-room-members") {
		opts = append(opts, udpchat.WithMaxRoomMembers(*f.roomSize))
	}
	if set("rate") || set("rate-bytes") {
		opts = append(opts, udpchat.WithRateLimit(*f.rate, *f.rateBytes))
	}
	if set("heartbeat") {
		opts = append(opts, udpchat.WithHeartbeat(*f.heartbeat))
	}
	if set("expiry") {
		opts = append(opts, udpchat.WithExpiry(*f.expiry))
	}
	if set("read-buffer") || set("write-buffer") {
		opts = append(opts, udpchat.WithSocketBuffers(*f.readBuf, *f.writeBuf))
	}
	return opts
}
