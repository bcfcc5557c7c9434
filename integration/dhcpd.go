//go:build integration

package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// DhcpdOptions describe one ISC dhcpd (Debian's isc-dhcp-server 4.4) in a
// failover relationship, as the dhcpd.conf below spells them.
type DhcpdOptions struct {
	Name    string // failover peer "NAME"
	Role    string // "primary" or "secondary"
	Address string // own address (listen, connect source)
	Peer    string // peer address
	MCLT    int    // primary only
	Split   int    // primary only
	// Optional; 0 leaves dhcpd's default (ISC replaces 0 by its default anyway).
	MaxResponseDelay int
	MaxUnacked       int
	LBMaxSeconds     int // load balance max seconds; 0: no load balancing (ISC's default)
	MinBalance       int
	MaxBalance       int
	AutoPartnerDown  int
	// The pool: range First-Last in 192.0.2.0/24 unless Subnet/Netmask say otherwise.
	First, Last     string
	Subnet, Netmask string
	DefaultLease    int // default-lease-time, seconds (600 if 0)
	MaxLease        int // max-lease-time (7200 if 0)
	OmapiPort       int // 0: no OMAPI
}

// Dhcpd is ISC dhcpd running in the foreground in a node's namespace, with
// its config, lease file, pid file and log in the lab directory.
type Dhcpd struct {
	Node   *netlab.Node
	Opts   DhcpdOptions
	Bin    string // a copy of dhcpd in the lab directory (see StartDhcpd)
	Conf   string
	Leases string
	PID    string
	Proc   *netlab.Proc
	starts int
}

// StartDhcpd writes dhcpd.conf and an empty lease file and starts dhcpd -4 -f
// -d on the node's LAN interface. It returns once dhcpd has bound UDP 67.
//
// dhcpd runs from a copy of /usr/sbin/dhcpd: Debian's AppArmor profile for
// /usr/sbin/dhcpd confines it to /etc/dhcp and /var/lib/dhcp, and the lab's
// files are elsewhere. The copy is the same program without that profile.
func StartDhcpd(n *netlab.Node, o DhcpdOptions) *Dhcpd {
	l := n.Lab
	t := l.T
	t.Helper()
	netlab.RequireTools(t, "dhcpd")
	base := filepath.Join(l.Dir, n.Name+".dhcpd")
	d := &Dhcpd{Node: n, Opts: o, Bin: base + ".bin", Conf: base + ".conf", Leases: base + ".leases", PID: base + ".pid"}
	if err := copyFile(netlab.Tool("dhcpd"), d.Bin, 0o755); err != nil {
		t.Fatalf("copying dhcpd: %v", err)
	}
	if err := os.WriteFile(d.Conf, []byte(o.config()), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.WriteFile(d.Leases, nil, 0o644); err != nil { // dhcpd refuses a missing -lf
		t.Fatalf("%v", err)
	}
	l.OnFailure(func() {
		t.Logf("--- dhcpd %s config %s:\n%s", n.Name, d.Conf, readFile(d.Conf))
		recs, err := ReadISCLeases(d.Leases)
		t.Logf("--- dhcpd %s lease file %s (%v), leases not free/backup:", n.Name, d.Leases, err)
		for _, r := range recs {
			if r.State != "free" && r.State != "backup" {
				t.Logf("  %v", r)
			}
		}
	})
	d.Start()
	return d
}

func (o DhcpdOptions) config() string {
	def := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# dhcpd.conf written by the ISC interop tests\n")
	fmt.Fprintf(&b, "authoritative;\nddns-update-style none;\nping-check false;\n")
	fmt.Fprintf(&b, "default-lease-time %d;\nmax-lease-time %d;\n", def(o.DefaultLease, 600), def(o.MaxLease, 7200))
	if o.OmapiPort != 0 {
		fmt.Fprintf(&b, "omapi-port %d;\n", o.OmapiPort)
	}
	fmt.Fprintf(&b, "\nfailover peer %q {\n  %s;\n", o.Name, o.Role)
	fmt.Fprintf(&b, "  address %s;\n  port 647;\n  peer address %s;\n  peer port 647;\n", o.Address, o.Peer)
	if o.MaxResponseDelay != 0 {
		fmt.Fprintf(&b, "  max-response-delay %d;\n", o.MaxResponseDelay)
	}
	if o.MaxUnacked != 0 {
		fmt.Fprintf(&b, "  max-unacked-updates %d;\n", o.MaxUnacked)
	}
	if o.Role == "primary" {
		fmt.Fprintf(&b, "  mclt %d;\n  split %d;\n", o.MCLT, o.Split)
	}
	if o.LBMaxSeconds != 0 {
		fmt.Fprintf(&b, "  load balance max seconds %d;\n", o.LBMaxSeconds)
	}
	if o.MinBalance != 0 {
		fmt.Fprintf(&b, "  min-balance %d;\n", o.MinBalance)
	}
	if o.MaxBalance != 0 {
		fmt.Fprintf(&b, "  max-balance %d;\n", o.MaxBalance)
	}
	if o.AutoPartnerDown != 0 {
		fmt.Fprintf(&b, "  auto-partner-down %d;\n", o.AutoPartnerDown)
	}
	fmt.Fprintf(&b, "}\n\n")
	subnet, mask := o.Subnet, o.Netmask
	if subnet == "" {
		subnet, mask = "192.0.2.0", "255.255.255.0"
	}
	fmt.Fprintf(&b, "subnet %s netmask %s {\n  option routers 192.0.2.1;\n  option domain-name-servers 192.0.2.53;\n", subnet, mask)
	fmt.Fprintf(&b, "  pool {\n    failover peer %q;\n    range %s %s;\n  }\n}\n", o.Name, o.First, o.Last)
	return b.String()
}

// Start (re)starts dhcpd on its lease file and waits until it has bound UDP
// port 67.
func (d *Dhcpd) Start() {
	t := d.Node.Lab.T
	t.Helper()
	if d.Proc != nil && d.Proc.Running() {
		t.Fatalf("dhcpd %s is already running (pid %d)", d.Node.Name, d.Proc.PID())
	}
	d.starts++
	d.Proc = d.Node.Start("dhcpd-"+d.Node.Name, d.Bin, "-4", "-f", "-d", "-cf", d.Conf, "-lf", d.Leases,
		"-pf", d.PID, d.Node.Iface)
	if err := d.Proc.WaitUDP(67, 10*time.Second); err != nil {
		t.Fatalf("dhcpd %s (start #%d): %v\nconfig:\n%s\nlog:\n%s", d.Node.Name, d.starts, err, readFile(d.Conf), d.Proc.Tail(30))
	}
}

// Kill9 kills dhcpd with SIGKILL.
func (d *Dhcpd) Kill9() {
	d.Proc.Kill()
	if code := d.Proc.ExitCode(); code != -1 {
		d.Node.Lab.T.Fatalf("dhcpd %s exited with status %d before SIGKILL reached it", d.Node.Name, code)
	}
}

// Log returns everything dhcpd logged, over all its starts.
func (d *Dhcpd) Log() string { return readFile(d.Proc.LogPath) }

var (
	iscMoveRE     = regexp.MustCompile(`failover peer (\S+): I move from (\S+) to (\S+)`)
	iscPeerMoveRE = regexp.MustCompile(`failover peer (\S+): peer moves from (\S+) to (\S+)`)
)

// StateMove is one "I move from A to B" (or, for the peer, "peer moves
// from A to B") line of dhcpd's log.
type StateMove struct{ From, To string }

// Moves returns dhcpd's own state changes, in order, over all its starts.
func (d *Dhcpd) Moves() []StateMove { return moves(d.Log(), iscMoveRE) }

// PeerMoves returns the peer state changes dhcpd saw, in order.
func (d *Dhcpd) PeerMoves() []StateMove { return moves(d.Log(), iscPeerMoveRE) }

func moves(log string, re *regexp.Regexp) []StateMove {
	var out []StateMove
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		out = append(out, StateMove{m[2], m[3]})
	}
	return out
}

// State is dhcpd's current failover state as its log last announced it
// ("" before any move); PeerState what it last recorded of the peer.
func (d *Dhcpd) State() string     { return lastMove(d.Moves()) }
func (d *Dhcpd) PeerState() string { return lastMove(d.PeerMoves()) }

func lastMove(ms []StateMove) string {
	if len(ms) == 0 {
		return ""
	}
	return ms[len(ms)-1].To
}

// StateSince returns dhcpd's state after the first n moves (counting from
// the beginning of the log): use len(Moves()) before an action, then wait
// for a move after it.
func (d *Dhcpd) MovesSince(n int) []StateMove {
	ms := d.Moves()
	if n >= len(ms) {
		return nil
	}
	return ms[n:]
}

// iscComplaints are the lines dhcpd logs when it dislikes what its failover
// peer sent (or did not send): malformed messages, refused handshakes,
// rejected updates, protocol errors, invalid states, silence. Taken from
// ISC's server/failover.c and the lab's probes (docs/protocol.md §23).
var iscComplaints = []*regexp.Regexp{
	regexp.MustCompile(`FAILOVER: `),                          // option size, duplicate option, overflow, invalid message type
	regexp.MustCompile(`protocol error`),                      // message length wait: protocol error
	regexp.MustCompile(`Failover CONNECT(ACK)? (from|to) .*`), // refused handshakes, both ways
	regexp.MustCompile(`failover: disconnect: `),
	regexp.MustCompile(`Failover DISCONNECT from`),
	regexp.MustCompile(`bind update on \S+ (from \S+ rejected|got ack from \S+: )`),
	regexp.MustCompile(`(?i)invalid state`),
	regexp.MustCompile(`(?i)unexpected`),
	regexp.MustCompile(`link startup timeout`),
	regexp.MustCompile(`timeout waiting for failover peer`),
	regexp.MustCompile(`Spurious update-done`),
	regexp.MustCompile(`(?i)panic`),
	regexp.MustCompile(`no matching state`),
	regexp.MustCompile(`(?i)unknown (failover )?(relationship|option|message)`),
	regexp.MustCompile(`(?i)bad (length|option|message)`),
	regexp.MustCompile(`(?i)malformed`),
	regexp.MustCompile(`(?i)out of (memory|sync)`),
	regexp.MustCompile(`failover peer \S+: Invalid`),
}

// iscNotComplaints are lines that match a pattern above but are ISC
// describing its own normal course; each is explained.
var iscNotComplaints = []*regexp.Regexp{
	// State names: "I move from potential-conflict to ..." is a state change,
	// judged by the test, not a complaint.
	regexp.MustCompile(`failover peer \S+: (I|peer) move`),
	// Both servers dialled at once after a cut and the peer kept the
	// other connection: two ISC servers race the same way. Whether the
	// surviving link works is judged by the states the test waits for.
	regexp.MustCompile(`^Failover CONNECT to \S+ rejected: Connection rejected, duplicate connection\.$`),
}

// DuelingUpdates matches the line dhcpd logs when its peer refused one of
// its binding updates because both had changed the binding at once and the
// peer's copy won (reject reason 16; docs/protocol.md §13.4, failover.c
// failover_lease_is_better). Two ISC servers do this on every fresh start
// and on a broadcast DHCPDECLINE; it is the protocol resolving a race, not
// a complaint about a message. Scenarios where both sides change one
// binding at once (a restart at a lease's end) allow it and check that the
// two databases agree afterwards.
var DuelingUpdates = regexp.MustCompile(`bind update on \S+ from \S+ rejected: incoming update is less critical than outgoing update`)

// Complaints returns dhcpd's log lines (all starts) that complain about the
// peer, verbatim, minus those in allowed (extra expected lines of a scenario,
// e.g. a timeout after the test cut the link).
func (d *Dhcpd) Complaints(allowed ...*regexp.Regexp) []string {
	return complaints(d.Log(), append(append([]*regexp.Regexp{}, iscNotComplaints...), allowed...))
}

func complaints(log string, allowed []*regexp.Regexp) []string {
	var out []string
lines:
	for _, line := range strings.Split(log, "\n") {
		for _, a := range allowed {
			if a.MatchString(line) {
				continue lines
			}
		}
		for _, c := range iscComplaints {
			if c.MatchString(line) {
				out = append(out, line)
				continue lines
			}
		}
	}
	return out
}

// CheckNoComplaints fails the test with every complaining line, verbatim.
func (d *Dhcpd) CheckNoComplaints(t testing.TB, allowed ...*regexp.Regexp) {
	t.Helper()
	if c := d.Complaints(allowed...); len(c) > 0 {
		t.Errorf("dhcpd %s complained about its peer (%d lines):\n  %s", d.Node.Name, len(c), strings.Join(c, "\n  "))
	}
}

// LeaseRecords reads dhcpd's lease file: the last record of each address.
func (d *Dhcpd) LeaseRecords() []LeaseRecord {
	t := d.Node.Lab.T
	t.Helper()
	recs, err := ReadISCLeases(d.Leases)
	if err != nil {
		t.Fatalf("dhcpd %s: %v", d.Node.Name, err)
	}
	return recs
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// SetLocalState changes dhcpd's failover state as an operator does, with
// omshell over OMAPI (the failover-state object's local-state, a wire
// state number: 4 partner-down, 7 paused, 8 shutdown, 6 recover, 2
// normal). The config must have an OmapiPort.
func (d *Dhcpd) SetLocalState(state int) {
	t := d.Node.Lab.T
	t.Helper()
	if d.Opts.OmapiPort == 0 {
		t.Fatalf("dhcpd %s has no omapi-port: cannot use omshell", d.Node.Name)
	}
	netlab.RequireTools(t, "omshell")
	script := fmt.Sprintf("server 127.0.0.1\nport %d\nconnect\nnew failover-state\nset name = %q\nopen\nset local-state = %d\nupdate\n",
		d.Opts.OmapiPort, d.Opts.Name, state)
	cmd := exec.Command(netlab.Tool("ip"), "netns", "exec", d.Node.NS, netlab.Tool("omshell"))
	cmd.Stdin = strings.NewReader(script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	// omshell exits 0 even when OMAPI refuses; it then prints the error.
	if err != nil || strings.Contains(string(out), "can't") || !strings.Contains(string(out), fmt.Sprintf("local-state = %d", state)) {
		t.Fatalf("omshell on dhcpd %s, local-state = %d: %v\n%s", d.Node.Name, state, err, out)
	}
}
