package udpchat

import (
	"fmt"
	"time"
)

// The options that apply to the relay only (WithHeartbeat and WithExpiry
// also to plain-text members).

// WithHeartbeat sets how often members send a heartbeat to the relay
// (default 1s). Relay only (but see WithPlainText): members learn the
// interval in the handshake. It must be at least 10ms.
func WithHeartbeat(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond || d > time.Hour {
			return fmt.Errorf("%w: WithHeartbeat(%v): want 10ms to 1h", ErrInvalidOption, d)
		}
		c.heartbeat, c.heartbeatSet = d, true
		return nil
	}
}

// WithExpiry sets how long the relay waits for any datagram from a member
// before it removes the member and announces that it left (default three
// heartbeats plus one second). Members use the same span, learnt in the
// handshake, to decide that the relay is gone and join again. Relay only
// (but see WithPlainText); it must be at least two heartbeats.
func WithExpiry(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 || d > 24*time.Hour {
			return fmt.Errorf("%w: WithExpiry(%v): want a positive duration up to 24h", ErrInvalidOption, d)
		}
		c.expiry, c.expirySet = d, true
		return nil
	}
}

// WithHistory sets how many recent messages the relay keeps to repair
// members' losses (default 1024, at least 128). Relay only. The relay keeps
// history × buffer size bytes for it.
func WithHistory(n int) Option {
	return func(c *config) error {
		if err := relayOnly(c, "WithHistory"); err != nil {
			return err
		}
		if n < minHistory || n > maxHistory {
			return fmt.Errorf("%w: WithHistory(%d): want %d to %d", ErrInvalidOption, n, minHistory, maxHistory)
		}
		c.history = n
		return nil
	}
}

// WithMaxMembers caps the relay's members, all rooms together (default
// 1024); the next Join fails with ErrRelayFull. Relay only. With WithPlainText it caps the addresses
// lines are forwarded to, and the names listed, and the one heard from
// longest ago gives way to a new one.
func WithMaxMembers(n int) Option {
	return func(c *config) error {
		if err := relayOnly(c, "WithMaxMembers"); err != nil {
			return err
		}
		if n < 1 || n > maxMaxMembers {
			return fmt.Errorf("%w: WithMaxMembers(%d): want 1 to %d", ErrInvalidOption, n, maxMaxMembers)
		}
		c.maxMembers = n
		return nil
	}
}

// WithMaxRooms caps the rooms a relay holds at once (default 64); a Join
// that would open one more fails with ErrRelayFull. Relay only. A room
// costs little while it is quiet, but each busy one keeps up to WithHistory
// delivered datagrams for repairs, so the relay's memory is bounded by
// rooms × history × buffer size (64 MiB at the defaults). WithMaxMembers
// caps the members of all rooms together.
func WithMaxRooms(n int) Option {
	return func(c *config) error {
		if err := relayOnly(c, "WithMaxRooms"); err != nil {
			return err
		}
		if n < 1 || n > maxMaxRooms {
			return fmt.Errorf("%w: WithMaxRooms(%d): want 1 to %d", ErrInvalidOption, n, maxMaxRooms)
		}
		c.maxRooms = n
		return nil
	}
}

// WithMaxRoomMembers caps the members of each room (default: as
// WithMaxMembers, no cap of its own); the next Join to a full room fails
// with ErrRelayFull. Relay only. With many rooms on one relay it keeps one
// room from taking every place WithMaxMembers leaves.
func WithMaxRoomMembers(n int) Option {
	return func(c *config) error {
		if err := relayOnly(c, "WithMaxRoomMembers"); err != nil {
			return err
		}
		if n < 1 || n > maxMaxMembers {
			return fmt.Errorf("%w: WithMaxRoomMembers(%d): want 1 to %d", ErrInvalidOption, n, maxMaxMembers)
		}
		c.roomSize = n
		return nil
	}
}

// WithRateLimit limits each member's chat datagrams to messages per second
// and bytes per second, with bursts of two seconds' worth (default 100
// messages and 128 KiB). Relay only. The relay drops and counts what goes
// beyond; a Member resends it later, so a member that sends too fast is
// slowed down rather than losing messages, while a flood from a hostile
// client is cut to the rate and leaves the others' share alone. 0 turns a
// limit off; a byte rate must be at least 32753 (half the largest
// datagram), so that a burst holds any datagram. With WithPlainText the
// limits apply to each source address's lines, keepalives included.
func WithRateLimit(messages, bytes int) Option {
	return func(c *config) error {
		if err := relayOnly(c, "WithRateLimit"); err != nil {
			return err
		}
		if messages < 0 || bytes < 0 {
			return fmt.Errorf("%w: WithRateLimit(%d, %d): want limits of 0 (none) or more", ErrInvalidOption, messages, bytes)
		}
		if bytes > 0 && bytes < maxBufferSize/2 {
			// A burst must hold at least one datagram of any size.
			return fmt.Errorf("%w: WithRateLimit(%d, %d): want at least %d bytes per second", ErrInvalidOption, messages, bytes, maxBufferSize/2)
		}
		c.rateMsgs, c.rateBytes = float64(messages), float64(bytes)
		return nil
	}
}

// WithNameRule adds a rule for members' names, checked by the relay after
// the built-in ones (1 to 32 bytes of UTF-8, no control or bidi characters, no ':',
// no space at either end). A join whose name the rule refuses fails with
// ErrInvalidName; with WithPlainText, a line from such a name is dropped
// and counted in DroppedRejected. Relay only.
func WithNameRule(rule func(name string) error) Option {
	return func(c *config) error {
		if err := relayOnly(c, "WithNameRule"); err != nil {
			return err
		}
		if rule == nil {
			return fmt.Errorf("%w: WithNameRule(nil)", ErrInvalidOption)
		}
		c.nameRule = rule
		return nil
	}
}
