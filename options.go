package udpchat

import (
	"fmt"
	"log/slog"
	"net"
	"time"
)

// An Option configures a Relay (NewRelay) or a Member (Join). Each option
// says where it applies; giving an option to a side it does not apply to (a
// relay-only one to Join, WithQueueSize to NewRelay), or a value out of
// range, makes NewRelay or Join return an error wrapping ErrInvalidOption.
type Option func(*config) error

// Defaults. They live here and nowhere else.
const (
	DefaultAddr        = "127.0.0.1:2410"
	DefaultBufferSize  = 1024
	DefaultHeartbeat   = time.Second
	DefaultExpiry      = 3*DefaultHeartbeat + time.Second
	DefaultHistory     = 1024
	DefaultMaxMembers  = 1024
	DefaultMaxRooms    = 64 // each busy room holds up to WithHistory datagrams
	DefaultQueueSize   = 1024
	DefaultRateLimit   = 100       // chat messages per second per member
	DefaultByteLimit   = 128 << 10 // bytes of chat datagrams per second per member
	DefaultReadBuffer  = 4 << 20   // SO_RCVBUF of every socket, before the kernel's cap
	DefaultWriteBuffer = 4 << 20   // SO_SNDBUF of every socket, before the kernel's cap

	minBufferSize = 128   // room for every control datagram, sealed too (NACKs take fewer ranges), and a short chat
	maxBufferSize = 65507 // the largest UDP payload over IPv4
	minHistory    = 2 * readBatchSize
	maxHistory    = 1 << 20
	maxMaxMembers = 1 << 16
	maxMaxRooms   = 1 << 16
	maxSockBuffer = 1 << 30
)

type side uint8

const (
	sideRelay side = iota + 1
	sideMember
)

type config struct {
	side       side
	addr       *net.UDPAddr
	bufferSize int
	broadcast  *net.UDPAddr
	logger     *slog.Logger
	heartbeat  time.Duration
	expiry     time.Duration
	history    int
	maxMembers int
	maxRooms   int
	roomSize   int    // WithMaxRoomMembers; 0: as maxMembers
	room       string // WithRoom; "": the main room
	queueSize  int
	rateMsgs   float64 // per second; 0: no limit
	rateBytes  float64
	nameRule   func(string) error
	ifname     string       // WithInterface; "": chosen by address
	localAddr  *net.UDPAddr // WithLocalAddr; nil: an ephemeral port
	readBuf    int          // SO_RCVBUF; 0: the system's default
	writeBuf   int          // SO_SNDBUF; 0: the system's default
	keys       *keyring     // nil: datagrams are not sealed

	expirySet    bool
	plainText    bool
	heartbeatSet bool
}

func newConfig(s side, opts []Option) (*config, error) {
	c := &config{
		side:       s,
		bufferSize: DefaultBufferSize,
		heartbeat:  DefaultHeartbeat,
		history:    DefaultHistory,
		maxMembers: DefaultMaxMembers,
		maxRooms:   DefaultMaxRooms,
		queueSize:  DefaultQueueSize,
		rateMsgs:   DefaultRateLimit,
		rateBytes:  DefaultByteLimit,
		readBuf:    DefaultReadBuffer,
		writeBuf:   DefaultWriteBuffer,
	}
	if err := WithAddr(DefaultAddr)(c); err != nil {
		return nil, err
	}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.side == sideMember && !c.plainText {
		// Members of the protocol learn these from the relay.
		switch {
		case c.broadcast != nil:
			return nil, fmt.Errorf("%w: WithBroadcast applies to the relay only (and to members with WithPlainText)", ErrInvalidOption)
		case c.heartbeatSet:
			return nil, fmt.Errorf("%w: WithHeartbeat applies to the relay only (and to members with WithPlainText)", ErrInvalidOption)
		case c.expirySet:
			return nil, fmt.Errorf("%w: WithExpiry applies to the relay only (and to members with WithPlainText)", ErrInvalidOption)
		}
	}
	if c.plainText && c.room != "" {
		return nil, fmt.Errorf("%w: WithRoom and WithPlainText: plain text has no rooms", ErrInvalidOption)
	}
	if c.plainText && c.keys != nil {
		return nil, fmt.Errorf("%w: WithPlainText and WithKey: plain text is not sealed", ErrInvalidOption)
	}
	if !c.expirySet {
		c.expiry = 3*c.heartbeat + time.Second
	}
	if c.expiry < 2*c.heartbeat {
		return nil, fmt.Errorf("%w: expiry %v must be at least two heartbeats (%v)", ErrInvalidOption, c.expiry, 2*c.heartbeat)
	}
	if c.roomSize == 0 {
		c.roomSize = c.maxMembers
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func relayOnly(c *config, name string) error {
	if c.side != sideRelay {
		return fmt.Errorf("%w: %s applies to the relay only", ErrInvalidOption, name)
	}
	return nil
}

// WithAddr sets, for a relay, the local address to listen on and, for a
// member, the relay's address. Both default to 127.0.0.1:2410. The address
// is IPv4 ("127.0.0.1:2410") or IPv6 ("[::1]:2410") with a port; the relay
// accepts port 0 and reports the chosen port through Addr. A relay bound
// to a wildcard address ("0.0.0.0:2410", or "[::]:2410", which takes IPv4
// too where the system allows) answers each member from the address that
// member dialled.
func WithAddr(addr string) Option {
	return func(c *config) error {
		a, err := resolveUDP(addr)
		if err != nil {
			return fmt.Errorf("%w: WithAddr: %w", ErrInvalidOption, err)
		}
		if c.side == sideMember && (a.Port == 0 || a.IP.IsUnspecified()) {
			return fmt.Errorf("%w: WithAddr: a member needs the relay's address and port, not %s", ErrInvalidOption, addr)
		}
		c.addr = a
		return nil
	}
}

// WithLocalAddr sets the address a member's own socket binds, such as
// "0.0.0.0:2411" (default: an ephemeral port on the address that reaches
// the relay). Member only. It serves firewalls that let through one port,
// and peers that must know where to send.
//
// With WithPlainText it makes the member a peer, as in the classic
// two-person chat program: it takes "name:text" lines arriving at addr
// from any source (the classic peer sends from another port than it
// listens on), sends its own lines to WithAddr, and sends no keepalives (a
// peer does not need them, and would print them). A plain member that talks
// to a plain relay from a fixed address is served while it speaks at least
// once an expiry span.
func WithLocalAddr(addr string) Option {
	return func(c *config) error {
		if c.side != sideMember {
			return fmt.Errorf("%w: WithLocalAddr applies to members only", ErrInvalidOption)
		}
		a, err := resolveUDP(addr)
		if err != nil {
			return fmt.Errorf("%w: WithLocalAddr: %w", ErrInvalidOption, err)
		}
		c.localAddr = a
		return nil
	}
}

// WithBufferSize sets the largest datagram, in bytes, that either side sends
// or accepts (default 1024, at least 128, at most 65507). Larger datagrams
// from the network are dropped and counted; Send refuses a text that does not
// fit with ErrMessageTooLarge. A member reads datagrams as large as the
// relay's buffer size, which the relay announces in the handshake.
func WithBufferSize(n int) Option {
	return func(c *config) error {
		if n < minBufferSize || n > maxBufferSize {
			return fmt.Errorf("%w: WithBufferSize(%d): want %d to %d", ErrInvalidOption, n, minBufferSize, maxBufferSize)
		}
		c.bufferSize = n
		return nil
	}
}

// WithBroadcast makes the relay send each message once to addr, an IPv4
// broadcast address (such as 127.255.255.255:2411 or a subnet's broadcast
// address) or a multicast group, IPv4 ("239.77.7.7:2411") or IPv6
// ("[ff05::77:7]:2411"; a link-scope ff02:: group needs the interface, see
// WithInterface), instead of one unicast copy per member. Multicast leaves
// with a TTL (hop limit) of 1: the group is the LAN's.
// Relay only (but see WithPlainText): members learn the address in the
// handshake and listen on its port with SO_REUSEPORT, so several members
// on one host share it. Each
// member keeps its own unicast socket for everything else, because a unicast
// datagram to a shared port reaches only one of the sockets bound to it.
// For a multicast group, see WithInterface.
func WithBroadcast(addr string) Option {
	return func(c *config) error {
		a, err := resolveUDP(addr)
		if err != nil {
			return fmt.Errorf("%w: WithBroadcast: %w", ErrInvalidOption, err)
		}
		if a.Port == 0 || a.IP.IsUnspecified() {
			return fmt.Errorf("%w: WithBroadcast: %s needs an address and a port", ErrInvalidOption, addr)
		}
		if a.IP.To4() == nil && !a.IP.IsMulticast() {
			return fmt.Errorf("%w: WithBroadcast: %s: IPv6 has no broadcast; use a multicast group", ErrInvalidOption, a.IP)
		}
		if a.IP.Equal(net.IPv4bcast) {
			// The limited broadcast address leaves through every interface;
			// a subnet's broadcast address says which network is meant.
			return fmt.Errorf("%w: WithBroadcast: use a subnet's broadcast address, not %s", ErrInvalidOption, a.IP)
		}
		c.broadcast = a
		return nil
	}
}

// WithInterface names the network interface (such as "eth0") that a
// multicast group is sent on by the relay and joined on by a member
// (relay and member). Without it each side uses the interface that holds
// its address: the relay's bound address, or the address a member reaches
// the relay from; a relay bound to 0.0.0.0 uses the only multicast
// interface that is up, and NewRelay fails with ErrInvalidOption when
// there are several. Broadcast needs no interface: the kernel routes a
// subnet's broadcast address to its network.
func WithInterface(name string) Option {
	return func(c *config) error {
		if _, err := net.InterfaceByName(name); err != nil {
			return fmt.Errorf("%w: WithInterface(%q): %w", ErrInvalidOption, name, err)
		}
		c.ifname = name
		return nil
	}
}

// WithRoom names the room a member joins (default "", the main room).
// Member only. Each room of a relay is a group of its own: its own order,
// members, history and repairs, and names unique within it, so alice may
// be in two rooms, through two Members. A room exists while it has
// members. Room names follow the rules of member names; plain text has no
// rooms.
func WithRoom(name string) Option {
	return func(c *config) error {
		if c.side != sideMember {
			return fmt.Errorf("%w: WithRoom applies to members only", ErrInvalidOption)
		}
		if err := checkRoom(name); err != nil {
			return fmt.Errorf("%w: WithRoom: %w", ErrInvalidOption, err)
		}
		c.room = name
		return nil
	}
}

// WithLogger sets where the library logs (relay and member). By default it is
// silent: library code never prints.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		c.logger = l
		return nil
	}
}

// WithQueueSize sets how many received messages a member holds for Receive
// (default 1024). Member only. When the application falls behind, the member
// stops taking new messages and later repairs them from the relay's history;
// what history no longer holds is reported as a GapError. (With
// WithPlainText nothing can be repaired: a line that finds the queue full
// is dropped and counted in MemberStats.Dropped.)
func WithQueueSize(n int) Option {
	return func(c *config) error {
		if c.side != sideMember {
			return fmt.Errorf("%w: WithQueueSize applies to members only", ErrInvalidOption)
		}
		if n < 1 || n > maxHistory {
			return fmt.Errorf("%w: WithQueueSize(%d): want 1 to %d", ErrInvalidOption, n, maxHistory)
		}
		c.queueSize = n
		return nil
	}
}

// WithPlainText makes the relay or member speak plain UTF-8 datagrams of
// the form "name: text", like the classic classroom chat programs and
// everyday tools such as nc -u and socat, instead of the udpchat
// protocol. Relay and member.
//
// The relay forwards every line from any address, unchanged: one unicast
// copy to each address it has heard a line from within the expiry span
// (the sender's included), or one copy to the WithBroadcast address. A
// line with empty text ("name:") only tells the relay that its sender is
// listening; a plain Member sends one at Join and every heartbeat. A plain
// member sends "name: text\n" to the relay, and Receive returns each line it gets as a KindChat
// message, numbered by the member; with WithBroadcast (which a plain
// member takes too) it also listens on that address's port, shared with
// other programs on the host, for the relay's broadcasts. One space after
// the colon and one trailing newline (or CRLF) are taken off a line's text.
//
// Plain text gives up everything the protocol adds: there is no
// handshake, no join or leave events, no common order, no recovery of
// lost lines (Send returns once the datagram is sent), no protection of
// names (anyone may write "alice: ..."), and no key (WithKey is refused).
// Lines are still checked: invalid UTF-8, a bad name, an oversized
// datagram or a sender over its rate limit are dropped and counted.
//
// Nor are source addresses checked: a line with a forged source makes the
// relay send the group's lines to that address for the expiry span (at
// most WithMaxMembers addresses are served; when they are all taken, the
// one silent longest gives way). Use plain text on loopback or a LAN you
// trust; SECURITY.md has the details. A plain member takes WithBroadcast,
// WithHeartbeat and WithExpiry (for Members: the span a name is listed
// after its last line); Send refuses an empty text, which is a keepalive.
func WithPlainText() Option {
	return func(c *config) error {
		c.plainText = true
		return nil
	}
}

// WithSocketBuffers sets the kernel's receive and send buffer sizes
// (SO_RCVBUF and SO_SNDBUF), in bytes, of the relay's socket or of a
// member's sockets (default 4 MiB each; 0 keeps the system's default).
// Relay and member. The receive buffer holds what arrives while the relay
// is busy fanning out, or while a member is slow to read; what does not
// fit is dropped by the kernel, counted in RelayStats.DroppedKernel and
// MemberStats.DroppedKernel on Linux, and repaired by the protocol at the
// cost of a retransmission. The kernel caps both sizes (on Linux at
// net.core.rmem_max and net.core.wmem_max, often only 208 KiB: raise them
// with sysctl on a busy relay).
func WithSocketBuffers(read, write int) Option {
	return func(c *config) error {
		if read < 0 || write < 0 || read > maxSockBuffer || write > maxSockBuffer {
			return fmt.Errorf("%w: WithSocketBuffers(%d, %d): want 0 (the system's default) to %d bytes", ErrInvalidOption, read, write, maxSockBuffer)
		}
		c.readBuf, c.writeBuf = read, write
		return nil
	}
}

// WithKey gives the group a shared key (16, 24 or 32 bytes, for AES-128,
// -192 or -256): every datagram is sealed with AES-GCM, so that neither
// the text nor the names appear on the wire, and the relay and members take
// nothing that was not sealed with a key of the group. Relay and member.
// A member without the key, or with a wrong one, cannot join: Join fails
// with ErrRelayUnreachable, as the relay cannot tell it from noise. The
// first key seals; the older ones only open, which lets a group change keys
// without losing messages: give everyone WithKey(old, new), then
// WithKey(new, old), then WithKey(new). Sealing adds 33 bytes to every
// datagram, which counts against WithBufferSize.
func WithKey(key []byte, older ...[]byte) Option {
	return func(c *config) error {
		ring, err := newKeyring(append([][]byte{key}, older...))
		if err != nil {
			return fmt.Errorf("%w: WithKey: %w", ErrInvalidOption, err)
		}
		c.keys = ring
		return nil
	}
}

// sealOverhead is what sealing adds to each datagram: 0 without a key.
func (c *config) sealOverhead() int {
	if c.keys == nil {
		return 0
	}
	return sealOverhead
}
