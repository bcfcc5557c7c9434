package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// The lab (internal/netlab, prefix pfb, beside the tests' own prefixes):
//
//	pfb-sw   bridge br0: the client LAN, 198.51.100.0/24
//	pfb-s1   lan 198.51.100.1/24, peer 203.0.113.1/30   server (or primary)
//	pfb-s2   lan 198.51.100.3/24, peer 203.0.113.2/30   secondary of a pair
//	pfb-cli  lan 198.51.100.2/24                         perfdhcp, as a relay
//
// The peer link (s1 peer -- s2 peer) carries the failover sessions; it can
// be cut and healed. perfdhcp always acts as a relay (giaddr 198.51.100.2),
// so every reply goes to 198.51.100.2:67; the pool (198.18.0.0/15) lives
// only inside DHCP packets and is never a destination.
const (
	labPrefix = "pfb"

	s1LAN   = "198.51.100.1"
	s2LAN   = "198.51.100.3"
	cliLAN  = "198.51.100.2"
	s1Peer  = "203.0.113.1"
	s2Peer  = "203.0.113.2"
	lanName = netlab.LanIface
	peerIf  = "peer"
)

// labUp builds the lab; prog tears it down at exit.
func (b *bench) labUp() {
	lab := netlab.NewLab(prog, labPrefix)
	b.s1 = lab.AddNode("s1", s1LAN+"/24")
	b.s2 = lab.AddNode("s2", s2LAN+"/24")
	b.cli = lab.AddNode("cli", cliLAN+"/24")
	lab.Connect(b.s1, b.s2, peerIf, s1Peer+"/30", s2Peer+"/30")
	// The bridge forwards at once (no STP, no forward delay), but give
	// the links a moment to come up.
	time.Sleep(300 * time.Millisecond)
}

// setPeerLink cuts (false) or heals (true) the failover peer link, on both
// ends so that both servers see it.
func (b *bench) setPeerLink(up bool) {
	b.s1.SetLink(peerIf, up)
	b.s2.SetLink(peerIf, up)
}

// startIn starts a server in namespace n, on the servers' CPU, with env
// added and its output appended to logPath.
func (b *bench) startIn(n *netlab.Node, env []string, logPath, name string, args ...string) *netlab.Proc {
	return n.StartCmd(netlab.Cmd{Label: filepath.Base(name), Log: logPath, Env: env, CPUs: b.srvCPUs, Name: name, Args: args})
}

// waitUDP waits until p has bound UDP port 67.
func waitUDP(p *netlab.Proc, timeout time.Duration) error {
	if err := p.WaitUDP(67, timeout); err != nil {
		return fmt.Errorf("%w; the end of its log:\n%s", err, p.Tail(20))
	}
	return nil
}

// program is netlab.T for this command: Fatalf (a failed lab step) and
// fail end the program after the cleanups (the lab's teardown: processes
// killed, namespaces deleted), which also run at a normal end (done) and
// on SIGINT or SIGTERM.
type program struct {
	mu       sync.Mutex
	failed   bool
	cleanups []func()
	once     sync.Once
}

var prog = &program{}

func (p *program) Helper()                         {}
func (p *program) Name() string                    { return "bench" }
func (p *program) Logf(format string, args ...any) { logf(format, args...) }
func (p *program) Fatalf(format string, args ...any) {
	p.setFailed()
	p.exit(1, fmt.Sprintf(format, args...))
}

func (p *program) Errorf(format string, args ...any) {
	p.setFailed()
	logf("error: "+format, args...)
}

func (p *program) setFailed() {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
}

func (p *program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *program) Cleanup(fn func()) {
	p.mu.Lock()
	p.cleanups = append(p.cleanups, fn)
	p.mu.Unlock()
}

// done runs the cleanups, last registered first, once.
func (p *program) done() {
	p.once.Do(func() {
		p.mu.Lock()
		fns := p.cleanups
		p.mu.Unlock()
		for i := len(fns) - 1; i >= 0; i-- {
			fns[i]()
		}
	})
}

func (p *program) exit(code int, msg string) {
	fmt.Fprintln(os.Stderr, "bench:", msg)
	p.done()
	os.Exit(code)
}
