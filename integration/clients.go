//go:build integration

package integration

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// Client is a real DHCP client process in its own node (so its own MAC).
// Each client's hook script appends one line per event to an events file;
// that is how the tests learn the bound address and lease times.
type Client interface {
	Name() string
	Kind() string // "dhclient" or "udhcpc"
	HW() net.HardwareAddr
	Node() *netlab.Node
	// Start starts acquiring a lease and returns at once.
	Start()
	// Events returns every event the client reported so far.
	Events() []Event
	// WaitBound waits for a binding event (bound, renew, rebind, reboot)
	// among events[since:] and returns the first one.
	WaitBound(since int, timeout time.Duration) Event
	// Renew asks the server to confirm the held lease and returns the
	// resulting event. dhclient is restarted on its lease file, so it sends
	// an INIT-REBOOT REQUEST (event "reboot"); udhcpc gets SIGUSR1 and sends a
	// RENEWING unicast REQUEST (event "renew").
	Renew() Event
	// Release sends a DHCPRELEASE for the held lease.
	Release()
	// Stop stops the client without releasing its lease.
	Stop()
}

// Event is one call of a client's hook script.
type Event struct {
	Kind     string // lower case: bound renew rebind reboot release deconfig preinit expire fail nak ...
	IP       string
	Mask     string
	Lease    int64 // seconds
	ServerID string
	At       int64 // unix time of the event
	Index    int   // position in the events file
}

// Bound reports whether the event means "holding IP now".
func (e Event) Bound() bool {
	switch e.Kind {
	case "bound", "renew", "rebind", "reboot":
		return true
	}
	return false
}

// Ends is the lease expiry the client computed.
func (e Event) Ends() time.Time { return time.Unix(e.At+e.Lease, 0) }

func (e Event) String() string {
	return fmt.Sprintf("#%d %s ip=%s lease=%ds sid=%s at=%s", e.Index, e.Kind, e.IP, e.Lease, e.ServerID,
		time.Unix(e.At, 0).UTC().Format("15:04:05"))
}

func readEvents(path string) []Event {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var evs []Event
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		e := Event{Index: len(evs)}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "ev":
				e.Kind = strings.ToLower(v)
			case "ip":
				e.IP = v
			case "mask":
				e.Mask = v
			case "lease":
				e.Lease, _ = strconv.ParseInt(v, 10, 64)
			case "sid":
				e.ServerID = v
			case "at":
				e.At, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		evs = append(evs, e)
	}
	return evs
}

// clientBase holds what both kinds share: the node, files and process.
type clientBase struct {
	node   *netlab.Node
	name   string
	kind   string
	events string
	script string
	proc   *netlab.Proc
}

func (c *clientBase) Name() string         { return c.name }
func (c *clientBase) Kind() string         { return c.kind }
func (c *clientBase) HW() net.HardwareAddr { return c.node.MAC }
func (c *clientBase) Node() *netlab.Node   { return c.node }
func (c *clientBase) Events() []Event      { return readEvents(c.events) }

func (c *clientBase) WaitBound(since int, timeout time.Duration) Event {
	t := c.node.Lab.T
	t.Helper()
	var got Event
	err := netlab.Eventually(timeout, func() error {
		for _, e := range c.Events() {
			if e.Index >= since && e.Bound() {
				got = e
				return nil
			}
		}
		return fmt.Errorf("no binding event after #%d", since)
	})
	if err != nil {
		t.Fatalf("%s %s (%s): %v within %v; events:\n%s\nlog:\n%s",
			c.kind, c.name, c.node.MAC, err, timeout, formatEvents(c.Events()), c.tail())
	}
	return got
}

func (c *clientBase) waitEvent(since int, kind string, timeout time.Duration) Event {
	t := c.node.Lab.T
	t.Helper()
	var got Event
	err := netlab.Eventually(timeout, func() error {
		for _, e := range c.Events() {
			if e.Index >= since && e.Kind == kind {
				got = e
				return nil
			}
		}
		return fmt.Errorf("no %q event after #%d", kind, since)
	})
	if err != nil {
		t.Fatalf("%s %s (%s): %v within %v; events:\n%s\nlog:\n%s",
			c.kind, c.name, c.node.MAC, err, timeout, formatEvents(c.Events()), c.tail())
	}
	return got
}

func (c *clientBase) stop() {
	if c.proc == nil || !c.proc.Running() {
		return
	}
	err := c.proc.Stop(5 * time.Second)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM {
		return // the usual way these clients end
	}
	if err != nil {
		c.node.Lab.T.Logf("stopping %s %s: %v", c.kind, c.name, err)
	}
}

func (c *clientBase) tail() string {
	if c.proc == nil {
		return "(never started)"
	}
	return c.proc.Tail(15)
}

func formatEvents(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %v\n", e)
	}
	return b.String()
}

func writeScript(t netlab.T, path, body string) {
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatalf("%v", err)
	}
}

// ---------------------------------------------------------------- dhclient

// Dhclient is ISC dhclient running in the foreground (-d) with its own
// config, lease file, pid file and hook script (which records events and
// configures the address, nothing else: no resolv.conf, no routes).
type Dhclient struct {
	clientBase
	bin, conf, leases, pidfile string
}

// NewDhclient prepares a dhclient on node; hostname is sent as option 12.
func NewDhclient(n *netlab.Node, hostname string) *Dhclient {
	n.Lab.T.Helper()
	netlab.RequireTools(n.Lab.T, "dhclient")
	base := filepath.Join(n.Lab.Dir, n.Name+".dhclient")
	d := &Dhclient{
		clientBase: clientBase{node: n, name: hostname, kind: "dhclient", events: base + ".events", script: base + ".sh"},
		bin:        base + ".bin", conf: base + ".conf", leases: base + ".leases", pidfile: base + ".pid",
	}
	// As dhcpd (see StartDhcpd), dhclient runs from a copy: Debian's
	// AppArmor profile for /sbin/dhclient would deny it the lab's files.
	if err := copyFile(netlab.Tool("dhclient"), d.bin, 0o755); err != nil {
		n.Lab.T.Fatalf("copying dhclient: %v", err)
	}
	conf := fmt.Sprintf(`# dhclient config of lab node %s
timeout 30;
retry 1;
initial-interval 1;
backoff-cutoff 2;
send host-name %q;
request subnet-mask, broadcast-address, routers, domain-name-servers, dhcp-lease-time;
`, n.NS, hostname)
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		n.Lab.T.Fatalf("%v", err)
	}
	if err := os.WriteFile(d.leases, nil, 0o644); err != nil { // dhclient refuses a missing -lf
		n.Lab.T.Fatalf("%v", err)
	}
	writeScript(n.Lab.T, d.script, fmt.Sprintf(`#!/bin/sh
# dhclient-script stand-in for lab node %s: record the event, set the address.
echo "ev=$reason ip=$new_ip_address mask=$new_subnet_mask lease=$new_dhcp_lease_time sid=$new_dhcp_server_identifier at=$(date +%%s)" >> %s
case $reason in
PREINIT) ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
	[ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ] && ip -4 addr flush dev "$interface"
	ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
EXPIRE|FAIL|RELEASE|STOP) ip -4 addr flush dev "$interface" ;;
esac
exit 0
`, n.NS, d.events))
	return d
}

// Start runs dhclient -d; with a lease in its lease file it starts in
// INIT-REBOOT, otherwise in INIT.
func (d *Dhclient) Start() {
	d.node.Lab.T.Helper()
	if d.proc != nil && d.proc.Running() {
		d.node.Lab.T.Fatalf("dhclient %s already running", d.name)
	}
	d.proc = d.node.Start("dhclient-"+d.name, d.bin, "-d", "-v", "-cf", d.conf, "-lf", d.leases,
		"-pf", d.pidfile, "-sf", d.script, d.node.Iface)
}

// Renew restarts dhclient on its lease file and waits for the outcome.
func (d *Dhclient) Renew() Event {
	d.node.Lab.T.Helper()
	d.Stop()
	since := len(d.Events())
	d.Start()
	return d.WaitBound(since, 30*time.Second)
}

// Release stops the running dhclient, then runs "dhclient -r", which sends
// DHCPRELEASE for the lease in the lease file.
func (d *Dhclient) Release() {
	t := d.node.Lab.T
	t.Helper()
	d.Stop()
	since := len(d.Events())
	out, err := d.node.Run(30*time.Second, d.bin, "-r", "-v", "-cf", d.conf, "-lf", d.leases,
		"-pf", d.pidfile+".release", "-sf", d.script, d.node.Iface)
	if err != nil {
		t.Fatalf("dhclient -r for %s: %v\n%s", d.name, err, out)
	}
	d.waitEvent(since, "release", 5*time.Second)
}

// Stop sends SIGTERM: dhclient exits without releasing.
func (d *Dhclient) Stop() { d.stop() }

// ---------------------------------------------------------------- udhcpc

// Udhcpc is busybox udhcpc in the foreground, staying in the background
// after it is bound (it renews on SIGUSR1, releases on SIGUSR2).
type Udhcpc struct {
	clientBase
}

// NewUdhcpc prepares a udhcpc on node; hostname is sent as option 12.
// udhcpc sends a client identifier (01 + MAC) by default.
func NewUdhcpc(n *netlab.Node, hostname string) *Udhcpc {
	n.Lab.T.Helper()
	netlab.RequireTools(n.Lab.T, "udhcpc")
	base := filepath.Join(n.Lab.Dir, n.Name+".udhcpc")
	u := &Udhcpc{clientBase{node: n, name: hostname, kind: "udhcpc", events: base + ".events", script: base + ".sh"}}
	writeScript(n.Lab.T, u.script, fmt.Sprintf(`#!/bin/sh
# udhcpc default.script stand-in for lab node %s: record the event, set the address.
echo "ev=$1 ip=$ip mask=$mask lease=$lease sid=$serverid at=$(date +%%s)" >> %s
case $1 in
deconfig) ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
esac
exit 0
`, n.NS, u.events))
	return u
}

// Start runs udhcpc -f; it broadcasts a DISCOVER every second until bound.
func (u *Udhcpc) Start() {
	u.node.Lab.T.Helper()
	if u.proc != nil && u.proc.Running() {
		u.node.Lab.T.Fatalf("udhcpc %s already running", u.name)
	}
	u.proc = u.node.Start("udhcpc-"+u.name, "udhcpc", "-f", "-i", u.node.Iface, "-s", u.script,
		"-t", "30", "-T", "1", "-A", "1", "-x", "hostname:"+u.name)
}

// Renew sends SIGUSR1 and waits for the outcome.
func (u *Udhcpc) Renew() Event {
	t := u.node.Lab.T
	t.Helper()
	since := len(u.Events())
	if err := u.proc.Signal(syscall.SIGUSR1); err != nil {
		t.Fatalf("udhcpc %s: %v\n%s", u.name, err, u.tail())
	}
	return u.WaitBound(since, 30*time.Second)
}

// Release sends SIGUSR2: udhcpc sends DHCPRELEASE, deconfigures and idles.
func (u *Udhcpc) Release() {
	t := u.node.Lab.T
	t.Helper()
	since := len(u.Events())
	if err := u.proc.Signal(syscall.SIGUSR2); err != nil {
		t.Fatalf("udhcpc %s: %v\n%s", u.name, err, u.tail())
	}
	u.waitEvent(since, "deconfig", 5*time.Second)
}

// Stop sends SIGTERM (without -R udhcpc does not release).
func (u *Udhcpc) Stop() { u.stop() }
