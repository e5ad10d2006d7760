package udpchat

// The harness of the LAN tests (lan_linux_test.go): a small LAN of network
// namespaces on one machine, and relays and members running in them as
// child processes.
//
// The LAN is a bridge namespace holding Linux bridges (br0, and more if a
// test adds them) and host namespaces h1, h2, ..., each linked to a bridge
// by a veth pair: the host's end is eth0 (eth1, ...) with an address in a
// private /24, the other end is a port of the bridge. Nothing is created in,
// or sent through, the root namespace: every address a test uses belongs to
// a namespace the test created, and t.Cleanup deletes every namespace (and
// with it every link and bridge in it) even when the test fails.
//
// Code runs in a namespace as a child process: the test binary itself,
// re-executed with `ip netns exec NS` and the lanHelperEnv variable
// selecting its role (TestLANHelperProcess). A goroutine's thread cannot
// be moved into a namespace instead: a Member opens its broadcast listener
// later, from another goroutine on whatever thread, which would then land
// in the wrong namespace.
//
// The child speaks JSON lines on stdout (lanEvent) and takes commands on
// stdin, one a line:
//
//	relay:  stats                 print the relay's Stats
//	member: send TEXT             Send TEXT, print the result
//	        sendn N PREFIX        Send PREFIX-1 ... PREFIX-N one after the other, printing each result
//	        stats                 print the member's Stats
//
// Closing stdin ends it: Close, a last line with the Stats, and exit 0. A
// member prints every Message it receives, and every error of Receive.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// lanHelperEnv holds the JSON lanRole of a child process.
const lanHelperEnv = "UDPCHAT_LAN_HELPER"

// lanWait bounds every wait of the LAN tests for one event; lanChildWait,
// shorter, each wait inside a child (Join, a Send, Close), so that the
// parent hears how it failed before giving up on the child.
const (
	lanWait      = 15 * time.Second
	lanChildWait = 10 * time.Second
)

// lanRole tells a child process what to run.
type lanRole struct {
	Role      string        `json:"role"` // "relay" or "member"
	Name      string        `json:"name,omitempty"`
	Addr      string        `json:"addr"`                // WithAddr
	Broadcast string        `json:"broadcast,omitempty"` // WithBroadcast
	Heartbeat time.Duration `json:"heartbeat,omitempty"` // WithHeartbeat (relay)
	Interface string        `json:"interface,omitempty"` // WithInterface
	Key       string        `json:"key,omitempty"`       // WithKey, in hex
	// JoinWait bounds Join (default lanChildWait).
	JoinWait time.Duration `json:"joinWait,omitempty"`
}

// lanEvent is one line of a child's stdout.
type lanEvent struct {
	// relay: "relay" (listening, Addr), "relayerr" (NewRelay failed),
	// "stats", "closed" (Relay set).
	// member: "joined", "joinerr", "msg", "recverr", "sent" (Err set if
	// Send failed), "stats", "closed" (Member set).
	Ev            string       `json:"ev"`
	Addr          string       `json:"addr,omitempty"`
	Seq           uint64       `json:"seq,omitempty"`
	Kind          Kind         `json:"kind,omitempty"`
	From          string       `json:"from,omitempty"`
	Text          string       `json:"text,omitempty"`
	Err           string       `json:"err,omitempty"`
	InvalidOption bool         `json:"invalidOption,omitempty"` // Err matches ErrInvalidOption
	Unreachable   bool         `json:"unreachable,omitempty"`   // Err matches ErrRelayUnreachable
	Gap           bool         `json:"gap,omitempty"`           // Err is a *GapError
	Member        *MemberStats `json:"member,omitempty"`
	Relay         *RelayStats  `json:"relay,omitempty"`
}

func (e lanEvent) String() string {
	switch e.Ev {
	case "msg":
		return fmt.Sprintf("#%d %v %s %q", e.Seq, e.Kind, e.From, e.Text)
	case "sent":
		return fmt.Sprintf("sent %q err=%q", e.Text, e.Err)
	}
	b, _ := json.Marshal(e)
	return string(b)
}

// TestLANHelperProcess is not a test: it is the body of the child processes
// of the LAN tests, and returns at once when run as a test. A child exits
// from here with os.Exit, so that TestMain (goleak) never sees it end.
func TestLANHelperProcess(t *testing.T) {
	spec := os.Getenv(lanHelperEnv)
	if spec == "" {
		return
	}
	var role lanRole
	if err := json.Unmarshal([]byte(spec), &role); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", lanHelperEnv, err)
		os.Exit(2)
	}
	out := &lanOut{enc: json.NewEncoder(os.Stdout)}
	switch role.Role {
	case "relay":
		os.Exit(lanRelayMain(role, out))
	case "member":
		os.Exit(lanMemberMain(role, out))
	}
	fmt.Fprintf(os.Stderr, "unknown role %q\n", role.Role)
	os.Exit(2)
}

// lanOut writes events, one JSON line each, from any goroutine.
type lanOut struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *lanOut) emit(e lanEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.enc.Encode(e); err != nil {
		// The parent is gone: nothing more to say to anyone.
		os.Exit(3)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// lanOptions turns a role into options.
func lanOptions(role lanRole) ([]Option, error) {
	opts := []Option{WithAddr(role.Addr)}
	if role.Broadcast != "" {
		opts = append(opts, WithBroadcast(role.Broadcast))
	}
	if role.Heartbeat > 0 {
		opts = append(opts, WithHeartbeat(role.Heartbeat))
	}
	if role.Interface != "" {
		opts = append(opts, WithInterface(role.Interface))
	}
	if role.Key != "" {
		key, err := hex.DecodeString(role.Key)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		opts = append(opts, WithKey(key))
	}
	return opts, nil
}

func lanRelayMain(role lanRole, out *lanOut) int {
	opts, err := lanOptions(role)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r, err := NewRelay(opts...)
	if err != nil {
		out.emit(lanEvent{Ev: "relayerr", Err: err.Error(), InvalidOption: errors.Is(err, ErrInvalidOption)})
		return 0
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(context.Background()) }()
	out.emit(lanEvent{Ev: "relay", Addr: r.Addr().String()})
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "stats":
			st := r.Stats()
			out.emit(lanEvent{Ev: "stats", Relay: &st})
		default:
			fmt.Fprintf(os.Stderr, "relay: unknown command %q\n", sc.Text())
			return 2
		}
	}
	r.Close()
	select {
	case err = <-served:
	case <-time.After(lanChildWait):
		err = errors.New("Serve did not return after Close")
	}
	st := r.Stats()
	out.emit(lanEvent{Ev: "closed", Relay: &st, Err: errText(err)})
	if err != nil {
		return 1
	}
	return 0
}

func lanMemberMain(role lanRole, out *lanOut) int {
	opts, err := lanOptions(role)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	wait := lanChildWait
	if role.JoinWait > 0 {
		wait = role.JoinWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	m, err := Join(ctx, role.Name, opts...)
	cancel()
	if err != nil {
		out.emit(lanEvent{Ev: "joinerr", Err: err.Error(), InvalidOption: errors.Is(err, ErrInvalidOption), Unreachable: errors.Is(err, ErrRelayUnreachable)})
		return 0
	}
	out.emit(lanEvent{Ev: "joined"})

	received := make(chan struct{})
	go func() {
		defer close(received)
		for {
			msg, err := m.Receive(context.Background())
			var gap *GapError
			switch {
			case errors.Is(err, ErrClosed):
				return
			case errors.As(err, &gap):
				out.emit(lanEvent{Ev: "recverr", Err: err.Error(), Gap: true})
			case err != nil:
				out.emit(lanEvent{Ev: "recverr", Err: err.Error()})
				return
			default:
				out.emit(lanEvent{Ev: "msg", Seq: msg.Seq, Kind: msg.Kind, From: msg.From, Text: msg.Text})
			}
		}
	}()

	send := func(text string) {
		ctx, cancel := context.WithTimeout(context.Background(), lanChildWait)
		defer cancel()
		out.emit(lanEvent{Ev: "sent", Text: text, Err: errText(m.Send(ctx, text))})
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "send":
			send(arg)
		case "sendn":
			ns, prefix, _ := strings.Cut(arg, " ")
			n, err := strconv.Atoi(ns)
			if err != nil || n < 1 || n > 10000 {
				fmt.Fprintf(os.Stderr, "member: bad sendn %q\n", arg)
				return 2
			}
			for i := 1; i <= n; i++ {
				send(fmt.Sprintf("%s-%d", prefix, i))
			}
		case "stats":
			st := m.Stats()
			out.emit(lanEvent{Ev: "stats", Member: &st})
		default:
			fmt.Fprintf(os.Stderr, "member: unknown command %q\n", sc.Text())
			return 2
		}
	}
	err = m.Close()
	select {
	case <-received:
	case <-time.After(lanChildWait):
		fmt.Fprintln(os.Stderr, "member: Receive did not return after Close")
		return 1
	}
	st := m.Stats()
	out.emit(lanEvent{Ev: "closed", Member: &st, Err: errText(err)})
	return 0
}

// lanProc is a child process running a relay or a member in a namespace.
type lanProc struct {
	t      *testing.T
	name   string // the member's name
	label  string // "alice@h2"
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr lockedBuffer
	notify chan struct{} // a new event, or the end of stdout
	exited chan struct{} // closed once the process has been waited for

	mu      sync.Mutex
	evs     []lanEvent
	raw     []string // stdout lines that are not events
	eof     bool
	waitErr error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startProc runs role in the namespace ns. The process is ended when the
// test ends: stdin closed, a bounded wait, then a kill by its PID; a
// non-zero exit or a data race in it fails the test.
func startProc(t *testing.T, ns, label string, role lanRole) *lanProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary: %v", err)
	}
	spec, err := json.Marshal(role)
	if err != nil {
		t.Fatal(err)
	}
	p := &lanProc{t: t, label: label, notify: make(chan struct{}, 1), exited: make(chan struct{})}
	// ip execs the binary in its own place: the PID is the child's. (Not
	// /proc/self/exe: ip would resolve that to itself.)
	p.cmd = exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestLANHelperProcess$", "-test.count=1", "-test.timeout=2m")
	// Under the race detector a process sleeps a second at exit, to let
	// late reports in; the child's races are reported as they happen.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	p.cmd.Env = append(os.Environ(), lanHelperEnv+"="+string(spec), "GORACE="+gorace)
	p.cmd.Stderr = &p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	// Should this test process die, its children die with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", label, err)
	}
	go p.read(stdout)
	t.Cleanup(p.stop)
	return p
}

// read collects the child's events until its stdout ends, then waits for it.
func (p *lanProc) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e lanEvent
		line := sc.Text()
		p.mu.Lock()
		if json.Unmarshal([]byte(line), &e) == nil && e.Ev != "" {
			p.evs = append(p.evs, e)
		} else {
			p.raw = append(p.raw, line)
		}
		p.mu.Unlock()
		p.wake()
	}
	io.Copy(io.Discard, stdout) // a line too long: drain, so that Wait can return
	err := p.cmd.Wait()
	p.mu.Lock()
	p.eof, p.waitErr = true, err
	p.mu.Unlock()
	close(p.exited)
	p.wake()
}

func (p *lanProc) wake() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// stop ends the child: stdin closed, then a bounded wait, then a kill.
func (p *lanProc) stop() {
	t := p.t
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(lanWait):
		t.Errorf("%s (pid %d) did not exit within %v of its stdin closing: killing it", p.label, p.cmd.Process.Pid, lanWait)
		p.cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(lanWait):
			t.Errorf("%s (pid %d) still not waited for after SIGKILL", p.label, p.cmd.Process.Pid)
			return
		}
	}
	p.mu.Lock()
	err, raw := p.waitErr, p.raw
	p.mu.Unlock()
	stderr := p.stderr.String()
	if err != nil || strings.Contains(stderr, "DATA RACE") {
		t.Errorf("%s exited: %v\nstdout (not events): %q\nstderr:\n%s", p.label, err, raw, stderr)
	}
}

// events returns the events so far (a snapshot: the child appends only).
func (p *lanProc) events() []lanEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.evs[:len(p.evs):len(p.evs)]
}

// waitFor waits until cond holds for the child's events, and returns them.
// It fails the test if the child ends first or lanWait passes.
func (p *lanProc) waitFor(what string, cond func(evs []lanEvent) bool) []lanEvent {
	p.t.Helper()
	deadline := time.NewTimer(lanWait)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		evs, eof := p.evs[:len(p.evs):len(p.evs)], p.eof
		p.mu.Unlock()
		if cond(evs) {
			return evs
		}
		if eof {
			p.t.Fatalf("%s ended before %s\n%s", p.label, what, p.dump())
		}
		select {
		case <-p.notify:
		case <-deadline.C:
			p.t.Fatalf("%s: timed out after %v waiting for %s\n%s", p.label, lanWait, what, p.dump())
		}
	}
}

// waitEv waits for the first event named one of evs at index from or
// later, and returns its index and the event.
func (p *lanProc) waitEv(from int, evs ...string) (int, lanEvent) {
	p.t.Helper()
	var i int
	p.waitFor(strings.Join(evs, " or "), func(all []lanEvent) bool {
		for i = from; i < len(all); i++ {
			for _, ev := range evs {
				if all[i].Ev == ev {
					return true
				}
			}
		}
		return false
	})
	return i, p.events()[i]
}

// dump describes the child's state for a failure message.
func (p *lanProc) dump() string {
	evs := p.events()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d events", p.label, len(evs))
	if len(evs) > 40 {
		fmt.Fprintf(&b, ", the last 40")
		evs = evs[len(evs)-40:]
	}
	b.WriteString(":\n")
	for _, e := range evs {
		fmt.Fprintf(&b, "  %v\n", e)
	}
	if s := p.stderr.String(); s != "" {
		fmt.Fprintf(&b, "stderr:\n%s", s)
	}
	return b.String()
}

// command writes one command line to the child.
func (p *lanProc) command(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("%s: writing %q: %v\n%s", p.label, line, err, p.dump())
	}
}

func count(evs []lanEvent, ev string) int {
	n := 0
	for _, e := range evs {
		if e.Ev == ev {
			n++
		}
	}
	return n
}

// stats asks the child for its Stats and waits for the answer.
func (p *lanProc) stats() lanEvent {
	p.t.Helper()
	n := count(p.events(), "stats")
	p.command("stats")
	evs := p.waitFor("stats", func(evs []lanEvent) bool { return count(evs, "stats") > n })
	for i := len(evs) - 1; ; i-- {
		if evs[i].Ev == "stats" {
			return evs[i]
		}
	}
}

func (p *lanProc) relayStats() RelayStats   { return *p.stats().Relay }
func (p *lanProc) memberStats() MemberStats { return *p.stats().Member }

// messages returns the messages the member has received so far.
func (p *lanProc) messages() []lanEvent {
	var ms []lanEvent
	for _, e := range p.events() {
		if e.Ev == "msg" {
			ms = append(ms, e)
		}
	}
	return ms
}

// lan is a LAN of network namespaces: a bridge namespace and hosts.
type lan struct {
	t      *testing.T
	id     string
	brNS   string
	hosts  map[string]string // h1 -> its namespace
	links  []lanLink
	lanIdx int
}

// lanLink is one host interface, linked to a bridge.
type lanLink struct {
	host, dev, bridge string
	port              string // the veth end in the bridge namespace
	ip, mac           string
}

var lanCount atomic.Int32

// requireLAN skips the test where it cannot build namespaces.
// lanSkip skips a LAN test that cannot run here, or fails it where the
// LAN tests must run (UDPCHAT_REQUIRE_LAN is set, as .ci/run does as root).
func lanSkip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("UDPCHAT_REQUIRE_LAN") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func requireLAN(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		lanSkip(t, "LAN tests need root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		lanSkip(t, "LAN tests need iproute2's ip: %v", err)
	}
}

// newLAN makes the bridge namespace with bridge br0 and the namespaces of
// the hosts named, unconnected. Names carry this process's PID and a
// counter, so that parallel runs and leftovers of a killed run don't clash.
func newLAN(t *testing.T, hosts ...string) *lan {
	t.Helper()
	requireLAN(t)
	n := lanCount.Add(1)
	l := &lan{t: t, id: fmt.Sprintf("ucl%d-%d", os.Getpid(), n), hosts: make(map[string]string), lanIdx: int(n)}
	l.brNS = l.id + "-br"
	if out, err := runIP(nil, "netns", "add", l.brNS); err != nil {
		lanSkip(t, "LAN tests need network namespaces: ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { l.delNS(l.brNS) })
	l.ip("-n", l.brNS, "link", "set", "lo", "up")
	if out, err := runIP(nil, "-n", l.brNS, "link", "add", "br0", "type", "bridge"); err != nil {
		lanSkip(t, "LAN tests need Linux bridges: %v: %s", err, out)
	}
	l.addBridge("br0", false)
	for _, h := range hosts {
		ns := l.id + "-" + h
		l.ip("netns", "add", ns)
		t.Cleanup(func() { l.delNS(ns) })
		l.hosts[h] = ns
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	return l
}

// addBridge sets up the bridge name in the bridge namespace, creating it
// first if create is set.
func (l *lan) addBridge(name string, create bool) {
	if create {
		l.ip("-n", l.brNS, "link", "add", name, "type", "bridge")
	}
	// Multicast snooping off: the bridge then floods every multicast frame
	// to every port, like a plain switch. With snooping on it forwards a
	// group only to ports it has heard an IGMP report from; there is no
	// querier on this LAN, and a member's first report races with the
	// relay's first datagrams to the group, so which copies arrive would
	// depend on timing. (It also keeps mcast_flood, which the loss tests
	// switch, in charge of every multicast frame.)
	l.ip("-n", l.brNS, "link", "set", name, "type", "bridge", "mcast_snooping", "0")
	l.ip("-n", l.brNS, "link", "set", name, "up")
}

// newStdLAN is the usual LAN: n hosts h1..hn, each with eth0 at
// 10.231.7.i/24 on br0.
func newStdLAN(t *testing.T, n int) *lan {
	t.Helper()
	var hosts []string
	for i := 1; i <= n; i++ {
		hosts = append(hosts, fmt.Sprintf("h%d", i))
	}
	l := newLAN(t, hosts...)
	for i, h := range hosts {
		l.connect(h, "eth0", "br0", fmt.Sprintf("10.231.7.%d/24", i+1))
	}
	l.settle()
	return l
}

// connect links host's interface dev to bridge with the address cidr.
func (l *lan) connect(host, dev, bridge, cidr string) {
	l.t.Helper()
	ns := l.ns(host)
	port := fmt.Sprintf("v%d%s", len(l.links), dev)
	mac := fmt.Sprintf("02:75:63:%02x:%02x:%02x", l.lanIdx&0xff, len(l.links), 1)
	if out, err := runIP(nil, "-n", ns, "link", "add", dev, "address", mac, "type", "veth", "peer", "name", port, "netns", l.brNS); err != nil {
		lanSkip(l.t, "LAN tests need veth links: %v: %s", err, out)
	}
	// No IPv6 link-local address: no IPv6 chatter on the LAN.
	l.ip("-n", ns, "link", "set", dev, "addrgenmode", "none")
	l.ip("-n", ns, "addr", "add", cidr, "brd", "+", "dev", dev)
	l.ip("-n", ns, "link", "set", dev, "up")
	l.ip("-n", l.brNS, "link", "set", port, "master", bridge)
	l.ip("-n", l.brNS, "link", "set", port, "up")
	ip, _, _ := strings.Cut(cidr, "/")
	l.links = append(l.links, lanLink{host: host, dev: dev, bridge: bridge, port: port, ip: ip, mac: mac})
}

// settle gives every host a permanent neighbour entry for every other host
// on its bridges: no ARP, so that no broadcast but the tests' own crosses
// the LAN, and switching a port's broadcast flooding off (loss tests)
// cannot starve address resolution.
func (l *lan) settle() {
	l.t.Helper()
	for _, a := range l.links {
		for _, b := range l.links {
			if a.bridge == b.bridge && a.host != b.host {
				l.ip("-n", l.ns(a.host), "neigh", "replace", b.ip, "lladdr", b.mac, "dev", a.dev, "nud", "permanent")
			}
		}
	}
}

// on returns the LAN for use in the (sub)test t: processes it starts end
// with t. The namespaces stay with the test that made them.
func (l *lan) on(t *testing.T) *lan {
	c := *l
	c.t = t
	return &c
}

func (l *lan) ns(host string) string {
	ns, ok := l.hosts[host]
	if !ok {
		l.t.Fatalf("no host %q in the LAN", host)
	}
	return ns
}

func (l *lan) link(host, dev string) lanLink {
	for _, k := range l.links {
		if k.host == host && k.dev == dev {
			return k
		}
	}
	l.t.Fatalf("no link %s of %s", dev, host)
	return lanLink{}
}

func (l *lan) delNS(ns string) {
	if out, err := runIP(nil, "netns", "del", ns); err != nil {
		l.t.Errorf("deleting namespace %s: %v: %s", ns, err, out)
	}
}

// runIP runs ip (or, with cmd, another command) with a time limit.
func runIP(cmd []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lanWait)
	defer cancel()
	name := "ip"
	if cmd != nil {
		name, args = cmd[0], append(cmd[1:len(cmd):len(cmd)], args...)
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// ip runs ip with args and fails the test if it fails.
func (l *lan) ip(args ...string) string {
	l.t.Helper()
	out, err := runIP(nil, args...)
	if err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

// in runs a command in host's namespace and fails the test if it fails.
func (l *lan) in(host string, args ...string) string {
	l.t.Helper()
	out, err := runIP(nil, append([]string{"netns", "exec", l.ns(host)}, args...)...)
	if err != nil {
		l.t.Fatalf("in %s: %s: %v: %s", host, strings.Join(args, " "), err, out)
	}
	return out
}

// setFlood switches the flooding of broadcast and multicast frames to
// host's interface dev on or off, at its bridge port. Off, the host loses
// every broadcast and multicast datagram (the relay's fan-out copies)
// while unicast (handshakes, heartbeats, NACKs and their repairs) still
// passes.
func (l *lan) setFlood(host, dev string, on bool) {
	l.t.Helper()
	v := "off"
	if on {
		v = "on"
	}
	out, err := runIP([]string{"bridge"}, "-n", l.brNS, "link", "set", "dev", l.link(host, dev).port, "mcast_flood", v, "bcast_flood", v)
	if err != nil {
		l.t.Fatalf("bridge link set %s mcast_flood %s: %v: %s", l.link(host, dev).port, v, err, out)
	}
}

// ipCounters reads the host's IP counters (/proc/net/netstat and
// /proc/net/snmp of its namespace) as "IpExt.InBcastPkts" and the like.
func (l *lan) ipCounters(host string) map[string]uint64 {
	l.t.Helper()
	c := make(map[string]uint64)
	out := l.in(host, "cat", "/proc/net/netstat", "/proc/net/snmp")
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(values) || len(names) == 0 || names[0] != values[0] {
			l.t.Fatalf("unexpected counters in %s:\n%s", host, out)
		}
		group := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			v, _ := strconv.ParseUint(values[j], 10, 64)
			c[group+"."+names[j]] = v
		}
	}
	return c
}

// groups lists the IPv4 multicast groups host has joined on dev.
func (l *lan) groups(host, dev string) []string {
	l.t.Helper()
	var gs []string
	for _, line := range strings.Split(l.ip("-n", l.ns(host), "maddr", "show", "dev", dev), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "inet" {
			gs = append(gs, f[1])
		}
	}
	return gs
}

// startRelay runs a relay on host and waits until it listens; it returns
// the process and the relay's address.
func (l *lan) startRelay(host string, role lanRole) (*lanProc, string) {
	l.t.Helper()
	role.Role = "relay"
	p := startProc(l.t, l.ns(host), "relay@"+host, role)
	_, e := p.waitEv(0, "relay", "relayerr")
	if e.Ev == "relayerr" {
		l.t.Fatalf("relay on %s: NewRelay: %s", host, e.Err)
	}
	return p, e.Addr
}

// join runs a member named name on host, joining the relay at addr, and
// waits until Join has returned.
func (l *lan) join(host, name, addr string, role lanRole) *lanProc {
	l.t.Helper()
	role.Role, role.Name, role.Addr = "member", name, addr
	p := startProc(l.t, l.ns(host), name+"@"+host, role)
	p.name = name
	_, e := p.waitEv(0, "joined", "joinerr")
	if e.Ev == "joinerr" {
		l.t.Fatalf("%s on %s: Join: %s", name, host, e.Err)
	}
	return p
}
