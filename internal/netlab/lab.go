// Package netlab is the namespace lab and process harness shared by the
// integration tests (integration/) and the benchmark (bench/): a LAN of
// Linux network namespaces joined by a bridge that lives in a namespace of
// its own, point-to-point links, and processes started inside the
// namespaces with their output in log files. Nothing is configured in the
// root namespace. It needs root and iproute2.
//
// The lab reports through T, the part of testing.TB it uses: a test passes
// its *testing.T; a program passes an adapter whose Fatalf ends the program
// after running the cleanups (see bench/harness.go).
package netlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// T is what the lab needs of its user; *testing.T and testing.TB satisfy it.
// Fatalf must not return (a test's ends the goroutine, a program's exits).
// Cleanup registers a function to run at the end (last registered first),
// and Failed reports whether Errorf or Fatalf was called.
type T interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

// LanIface is the name of a node's interface on the LAN, inside its namespace.
const LanIface = "lan"

const bridge = "br0"

// Lab is one LAN: a bridge in its own network namespace (PREFIX-sw) and nodes,
// each in its own namespace (PREFIX-NAME) and joined to the bridge by a veth
// pair. Nothing is created in the root namespace. Every namespace whose name
// starts with PREFIX- is deleted when the lab is created (leftovers of a
// crashed run) and when the test ends, together with the processes in it.
// Labs with different prefixes (the tests', the benchmark's) can run side by
// side.
type Lab struct {
	T      T
	Prefix string
	Dir    string // logs, configs, lease files; kept if the test fails
	Switch string // namespace of the bridge

	nodes     []*Node
	procs     []*Proc
	onFailure []func()
	macSeq    int
}

// Node is a namespace with one interface on the LAN (and optionally more
// links, see Connect).
type Node struct {
	Lab   *Lab
	Name  string // short name; also the name of its bridge port
	NS    string // network namespace
	Iface string // interface on the LAN, inside NS
	MAC   net.HardwareAddr
	Addrs []string // CIDRs configured on Iface
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,14}$`)

// NewLab creates the bridge namespace and registers the teardown with
// t.Cleanup. It fails the test unless it runs as root with iproute2 present.
func NewLab(t T, prefix string) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("the lab creates network namespaces and must run as root (euid %d)", os.Geteuid())
	}
	RequireTools(t, "ip")
	if !nameRE.MatchString(prefix) || len(prefix) > 8 {
		t.Fatalf("lab prefix %q: want 1-8 lower-case letters or digits", prefix)
	}
	if err := RemoveNamespaces(prefix); err != nil {
		t.Fatalf("removing leftovers of an earlier run: %v", err)
	}
	dir, err := os.MkdirTemp("", prefix+"-"+sanitize(t.Name())+"-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	l := &Lab{T: t, Prefix: prefix, Dir: dir, Switch: prefix + "-sw"}
	t.Cleanup(l.close)
	l.addNamespace(l.Switch)
	l.IP("-n", l.Switch, "link", "add", bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	l.IP("-n", l.Switch, "link", "set", "dev", bridge, "up")
	return l
}

// AddNode creates namespace PREFIX-NAME with interface "lan" (a fresh,
// locally administered MAC) bridged to the LAN, configures cidrs on it and
// brings it up. A node without addresses is a DHCP client.
func (l *Lab) AddNode(name string, cidrs ...string) *Node {
	l.T.Helper()
	if !nameRE.MatchString(name) {
		l.T.Fatalf("node name %q: want at most 15 lower-case letters or digits, starting with a letter", name)
	}
	l.macSeq++
	n := &Node{
		Lab:   l,
		Name:  name,
		NS:    l.Prefix + "-" + name,
		Iface: LanIface,
		MAC:   net.HardwareAddr{0x02, 0xcf, 0, 0, byte(l.macSeq >> 8), byte(l.macSeq)},
		Addrs: cidrs,
	}
	l.addNamespace(n.NS)
	l.IP("link", "add", n.Iface, "netns", n.NS, "address", n.MAC.String(), "type", "veth",
		"peer", "name", name, "netns", l.Switch)
	l.IP("-n", l.Switch, "link", "set", "dev", name, "master", bridge)
	l.IP("-n", l.Switch, "link", "set", "dev", name, "up")
	for _, c := range cidrs {
		l.IP("-n", n.NS, "addr", "add", c, "dev", n.Iface)
	}
	l.IP("-n", n.NS, "link", "set", "dev", n.Iface, "up")
	l.nodes = append(l.nodes, n)
	return n
}

// Connect adds a point-to-point veth link between two nodes, outside the
// bridge (for example a dedicated failover peer link): interface ifname in
// both namespaces, with cidrA on a's end and cidrB on b's.
func (l *Lab) Connect(a, b *Node, ifname, cidrA, cidrB string) {
	l.T.Helper()
	if !nameRE.MatchString(ifname) || ifname == LanIface {
		l.T.Fatalf("link name %q: want at most 15 lower-case letters or digits, not %q", ifname, LanIface)
	}
	l.IP("link", "add", ifname, "netns", a.NS, "type", "veth", "peer", "name", ifname, "netns", b.NS)
	l.IP("-n", a.NS, "addr", "add", cidrA, "dev", ifname)
	l.IP("-n", b.NS, "addr", "add", cidrB, "dev", ifname)
	l.IP("-n", a.NS, "link", "set", "dev", ifname, "up")
	l.IP("-n", b.NS, "link", "set", "dev", ifname, "up")
}

// SetLAN cuts (up=false) or restores the node's port on the bridge: the
// node's own interface stays up, frames just stop flowing, like a pulled cable
// on the switch side.
func (n *Node) SetLAN(up bool) {
	n.Lab.IP("-n", n.Lab.Switch, "link", "set", "dev", n.Name, upDown(up))
}

// SetLink brings the node's interface ifname (a Connect link) down or up:
// to cut a point-to-point link so that both ends see it, set both.
func (n *Node) SetLink(ifname string, up bool) {
	n.Lab.IP("-n", n.NS, "link", "set", "dev", ifname, upDown(up))
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// Addr returns the node's first address without prefix length, or "".
func (n *Node) Addr() string {
	if len(n.Addrs) == 0 {
		return ""
	}
	return strings.SplitN(n.Addrs[0], "/", 2)[0]
}

// IP runs the ip(8) command in the root namespace and fails the test on error.
func (l *Lab) IP(args ...string) {
	l.T.Helper()
	out, err := exec.Command(Tool("ip"), args...).CombinedOutput()
	if err != nil {
		l.T.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *Lab) addNamespace(ns string) {
	l.T.Helper()
	l.IP("netns", "add", ns)
	// No IPv6: no link-local chatter on the LAN.
	n := &Node{Lab: l, NS: ns}
	if out, err := n.Run(10*time.Second, "sysctl", "-qw",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
		l.T.Fatalf("sysctl in %s: %v\n%s", ns, err, out)
	}
	l.IP("-n", ns, "link", "set", "dev", "lo", "up")
}

// Run runs a command inside the node's namespace and returns its combined
// output; it is killed after timeout.
func (n *Node) Run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Tool("ip"), append([]string{"netns", "exec", n.NS, Tool(name)}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v", name, timeout)
	}
	return string(out), err
}

// Do runs fn on an OS thread switched into the node's namespace, so that the
// sockets fn opens live there (they stay there after Do returns).
func (n *Node) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", n.NS))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.NS, err)
			return
		}
		ferr := fn()
		// A thread that cannot return to its namespace stays locked and dies
		// with this goroutine.
		if setns(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// OnFailure registers fn to run at teardown when the test has failed, before
// the processes are stopped (to print evidence: DB rows, client leases).
func (l *Lab) OnFailure(fn func()) { l.onFailure = append(l.onFailure, fn) }

func (l *Lab) close() {
	t := l.T
	failed := t.Failed()
	if failed {
		for i := len(l.onFailure) - 1; i >= 0; i-- {
			l.onFailure[i]()
		}
		for _, p := range l.procs {
			t.Logf("--- log of %s (pid %d, %s), last 40 lines:\n%s", p.Name, p.PID(), p.LogPath, p.Tail(40))
		}
	}
	for _, p := range l.procs {
		p.Kill()
	}
	if err := RemoveNamespaces(l.Prefix); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if failed || os.Getenv("CFI_KEEP") != "" {
		t.Logf("lab files kept in %s", l.Dir)
		return
	}
	os.RemoveAll(l.Dir)
}

// RemoveNamespaces deletes every namespace named PREFIX-*, first killing (by
// PID, SIGKILL) the processes still inside it: they can only be ours.
func RemoveNamespaces(prefix string) error {
	out, err := exec.Command(Tool("ip"), "netns", "list").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns list: %v: %s", err, out)
	}
	var errs []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], prefix+"-") {
			continue
		}
		ns := f[0]
		pids, _ := exec.Command(Tool("ip"), "netns", "pids", ns).Output()
		for _, s := range strings.Fields(string(pids)) {
			if pid, err := strconv.Atoi(s); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if o, err := exec.Command(Tool("ip"), "netns", "delete", ns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("ip netns delete %s: %v: %s", ns, err, o))
		}
	}
	if errs != nil {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// Eventually polls cond every 50 ms until it returns nil or the deadline
// passes, and returns cond's last error.
func Eventually(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
