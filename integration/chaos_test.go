//go:build integration

package integration

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

var (
	chaosN     = flag.Int("chaos.n", 3, "random fault schedules TestChaos runs")
	chaosSeed  = flag.Int64("chaos.seed", 0, "seed of the first schedule (0: from the clock); schedule i uses seed+i")
	chaosSteps = flag.Int("chaos.steps", 3, "faults per schedule")
	chaosPar   = flag.Int("chaos.parallel", 1, "schedules run at once, each in its own lab")
	chaosLab   = flag.String("chaos.lab", "cx", "lab prefix: the labs are PREFIX0, PREFIX1, ... (one per schedule running)")
)

// The chaos pair: a primary and a secondary on the client LAN, with a
// dedicated peer link between them, a relay with simulated clients, and
// real dhclient and udhcpc clients on the LAN.
const (
	chaosMCLT    = 5 * time.Second
	chaosLease   = 30 // seconds
	chaosPool    = "192.0.2.100-192.0.2.149"
	chaosSimN    = 30
	chaosRelayIP = "192.0.2.3"
	chaosPrimary = "192.0.2.1"
	chaosSecond  = "192.0.2.2"
)

// chaosTotals are the figures of a run over all schedules.
type chaosTotals struct {
	mu         sync.Mutex
	schedules  int
	faults     map[string]int
	granted    int
	checked    map[string]int
	violations int
}

// TestChaos runs -chaos.n random schedules of faults against a pair
// serving real and simulated clients throughout, and after each proves
// invariants 1–5 of docs/invariants.md with the checker. Every schedule prints its
// seed; -chaos.seed=S -chaos.n=1 replays one.
func TestChaos(t *testing.T) {
	netlab.RequireTools(t, "udhcpc", "dhclient", "sqlite3", "tc")
	bin := filepath.Join(filepath.Dir(BinaryPath(t)), "coredhcp-failover-fakeclock")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v (make integration builds it)", bin, err)
	}
	seed := *chaosSeed
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000
	}
	t.Logf("chaos: %d schedules of %d faults from seed %d (replay one: -chaos.seed=S -chaos.n=1)", *chaosN, *chaosSteps, seed)
	tot := &chaosTotals{faults: map[string]int{}, checked: map[string]int{}}
	// Each schedule running takes a lab prefix from the pool; the pool's
	// size is how many run at once.
	prefixes := make(chan string, max(1, *chaosPar))
	for i := 0; i < cap(prefixes); i++ {
		prefixes <- fmt.Sprintf("%s%d", *chaosLab, i)
	}
	t.Run("schedules", func(t *testing.T) {
		for i := 0; i < *chaosN; i++ {
			s := seed + int64(i)
			t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
				if cap(prefixes) > 1 {
					t.Parallel()
				}
				prefix := <-prefixes
				defer func() { prefixes <- prefix }()
				runSchedule(t, bin, prefix, s, *chaosSteps, tot)
			})
		}
	})
	var fs, cs []string
	for k, v := range tot.faults {
		fs = append(fs, fmt.Sprintf("%s %d", k, v))
	}
	for k, v := range tot.checked {
		cs = append(cs, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(fs)
	sort.Strings(cs)
	nf, nc := 0, 0
	for _, v := range tot.faults {
		nf += v
	}
	for _, v := range tot.checked {
		nc += v
	}
	summary := fmt.Sprintf("chaos: %d schedules, %d faults injected (%s), %d leases granted, %d checks of leases (%s); %d violations",
		tot.schedules, nf, strings.Join(fs, ", "), tot.granted, nc, strings.Join(cs, ", "), tot.violations)
	t.Log(summary)
	fmt.Println(summary)
}

// chaosPair is one schedule's world.
type chaosPair struct {
	t       *testing.T
	l       *netlab.Lab
	rng     *rand.Rand
	srv     map[string]*Server // by server identifier
	sock    map[string]string
	clock   map[string]string // offset files
	offset  map[string]time.Duration
	check   *Checker
	sim     *SimRelay
	real    []Client
	faults  []string
	tlMu    sync.Mutex
	tl      map[string]Timeline
	seps    []Separation
	sepOpen *Separation
	stop    chan struct{}
	polled  sync.WaitGroup
}

func runSchedule(t *testing.T, bin, prefix string, seed int64, steps int, tot *chaosTotals) {
	t.Logf("schedule seed %d in lab %s", seed, prefix)
	l := netlab.NewLab(t, prefix)
	c := &chaosPair{t: t, l: l, rng: rand.New(rand.NewSource(seed)), srv: map[string]*Server{},
		sock: map[string]string{}, clock: map[string]string{}, offset: map[string]time.Duration{},
		tl: map[string]Timeline{}, stop: make(chan struct{}),
		check: NewChecker(chaosMCLT, chaosPrimary)}
	pn := l.AddNode("p", chaosPrimary+"/24")
	sn := l.AddNode("s", chaosSecond+"/24")
	l.Connect(pn, sn, "peer0", "198.51.100.1/24", "198.51.100.2/24")
	rn := l.AddNode("r", chaosRelayIP+"/24")
	fo := fmt.Sprintf("name=lan1 pool=%s lease-time=%d", chaosPool, chaosLease)
	for _, n := range []struct {
		node      *netlab.Node
		id, lines string
	}{
		{pn, chaosPrimary, "role=primary address=198.51.100.1 peer=198.51.100.2 mclt=5 split=128"},
		{sn, chaosSecond, "role=secondary address=198.51.100.2 peer=198.51.100.1"},
	} {
		c.sock[n.id] = filepath.Join(l.Dir, n.node.Name+".sock")
		c.clock[n.id] = filepath.Join(l.Dir, n.node.Name+".clock")
		c.srv[n.id] = StartServer(n.node, ServerOptions{Failover: fo, Plugins: LANPlugins, Bin: bin,
			Env:    []string{"COREDHCP_FAILOVER_FAKECLOCK=" + c.clock[n.id]},
			Before: []string{"leasesync: name=lan1 " + n.lines + " max-response-delay=3 min-balance=2 control=" + c.sock[n.id]}})
	}
	c.poll()
	defer c.stopPolling()
	c.waitNormal("the pair to reach NORMAL")

	c.sim = StartSimRelay(rn, chaosRelayIP, []string{chaosPrimary, chaosSecond}, chaosSimN, 0.15, seed)
	for i := 0; i < 2; i++ {
		u := NewUdhcpc(l.AddNode(fmt.Sprintf("u%d", i)), fmt.Sprintf("u%d", i))
		u.Start()
		c.real = append(c.real, u)
	}
	d := NewDhclient(l.AddNode("d0"), "d0")
	d.Start()
	c.real = append(c.real, d)
	l.OnFailure(c.dumpEvidence)
	c.run(2 * time.Second)

	for i := 0; i < steps; i++ {
		c.fault()
	}
	c.healAll()
	c.run(chaosMCLT + time.Second)
	c.sim.Stop()
	for _, cl := range c.real {
		cl.Stop()
	}
	c.stopPolling()

	// The final checks: every client's record, both databases.
	holds := c.holds()
	end := time.Now()
	var snaps []Snapshot
	for id := range c.srv {
		s := c.snapshot(id, "the end of the schedule")
		snaps = append(snaps, s)
		c.check.WithinMCLT(s, c.timeline(id))
	}
	c.check.NoAddressTwice(holds)
	c.check.NoAddressTwiceInDBs(end, snaps...)
	tls := map[string]Timeline{chaosPrimary: c.timeline(chaosPrimary), chaosSecond: c.timeline(chaosSecond)}
	for _, sep := range c.seps {
		sep.To = Reunited(tls[chaosPrimary], tls[chaosSecond], sep.From, sep.To)
		c.check.Separated(sep, holds, tls)
	}
	c.check.FirstLease(c.sim.FirstAcks(), c.sim.Records(), holds, tls)
	granted := 0
	for _, h := range holds {
		if !h.Real {
			granted++
		}
	}
	t.Logf("schedule seed %d: faults %s; %d holds (%d ACKs to simulated clients); checked %v; %d violations",
		seed, strings.Join(c.faults, ", "), len(holds), granted, c.check.Checked, len(c.check.Violations))
	tot.mu.Lock()
	tot.schedules++
	for _, f := range c.faults {
		tot.faults[strings.Fields(f)[0]]++
	}
	tot.granted += len(holds)
	for k, v := range c.check.Checked {
		tot.checked[k] += v
	}
	tot.violations += len(c.check.Violations)
	tot.mu.Unlock()
	for _, v := range c.check.Violations {
		t.Errorf("seed %d: %s", seed, v)
	}
}

// run lets the clients work for d.
func (c *chaosPair) run(d time.Duration) { time.Sleep(d) }

// between returns a random duration in [lo, hi).
func (c *chaosPair) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(c.rng.Int63n(int64(hi-lo)))
}

func (c *chaosPair) other(id string) string {
	if id == chaosPrimary {
		return chaosSecond
	}
	return chaosPrimary
}

func (c *chaosPair) pick() string {
	if c.rng.Intn(2) == 0 {
		return chaosPrimary
	}
	return chaosSecond
}

func (c *chaosPair) note(format string, args ...any) {
	f := fmt.Sprintf(format, args...)
	c.faults = append(c.faults, f)
	c.t.Logf("%s fault: %s", time.Now().Format("15:04:05.000"), f)
}

// fault injects one random fault, lets the clients work through it, and
// heals it.
func (c *chaosPair) fault() {
	x := c.pick()
	name := func(id string) string { return c.srv[id].Node.Name }
	switch k := c.rng.Intn(100); {
	case k < 30: // kill -9, maybe partner-down on the survivor, maybe lost storage
		y := c.other(x)
		c.separate("kill -9 of " + name(x))
		c.srv[x].Kill9()
		snap := c.snapshot(x, "kill -9 of "+name(x))
		c.check.Durable(snap, c.holds())
		c.check.WithinMCLT(snap, c.timeline(x))
		down := c.between(time.Second, 4*time.Second)
		pd := c.rng.Intn(100) < 50
		lost := c.rng.Intn(100) < 20
		if pd {
			down = chaosMCLT + c.between(time.Second, 3*time.Second)
		}
		c.note("kill9 %s, down %v, partner-down on %s: %v, database lost: %v", name(x), down.Round(time.Millisecond), name(y), pd, lost)
		if pd {
			c.waitState(y, "communications-interrupted")
			c.control(y, "partner-down")
		}
		c.run(down)
		if lost {
			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(c.srv[x].DB + suffix)
			}
		}
		c.srv[x].Start()
		c.waitNormal("NORMAL after the restart of " + name(x))
		c.healed()
	case k < 45: // SIGTERM and restart
		c.separate("SIGTERM to " + name(x))
		c.srv[x].Stop()
		snap := c.snapshot(x, "SIGTERM to "+name(x))
		c.check.Durable(snap, c.holds())
		down := c.between(500*time.Millisecond, 3*time.Second)
		c.note("sigterm %s, down %v", name(x), down.Round(time.Millisecond))
		c.run(down)
		c.srv[x].Start()
		c.waitNormal("NORMAL after the restart of " + name(x))
		c.healed()
	case k < 65: // the peer link cut, both still serving clients
		d := c.between(2*time.Second, 10*time.Second)
		c.note("cut peer link for %v", d.Round(time.Millisecond))
		c.l.IP("-n", c.srv[chaosPrimary].Node.NS, "link", "set", "dev", "peer0", "down")
		c.separate("the peer link cut")
		c.run(d)
		for id := range c.srv { // leases granted now wait for the peer's acknowledgement
			c.check.WithinMCLT(c.snapshot(id, "the peer link cut"), c.timeline(id))
		}
		c.l.IP("-n", c.srv[chaosPrimary].Node.NS, "link", "set", "dev", "peer0", "up")
		c.waitNormal("NORMAL after the peer link came back")
		c.healed()
	case k < 75: // one server off the client LAN, still talking to its peer
		d := c.between(2*time.Second, 8*time.Second)
		c.note("isolate %s from clients for %v", name(x), d.Round(time.Millisecond))
		c.srv[x].Node.SetLAN(false)
		c.run(d)
		c.srv[x].Node.SetLAN(true)
	case k < 82: // a slow peer link: a token bucket at 32 kbit/s, queueing
		// up to a second (the kernels here have tbf but not netem).
		d := c.between(2*time.Second, 8*time.Second)
		c.note("slow peer link (32 kbit/s) for %v", d.Round(time.Millisecond))
		for _, id := range []string{chaosPrimary, chaosSecond} {
			c.tc(id, "qdisc", "add", "dev", "peer0", "root", "tbf", "rate", "32kbit", "burst", "1600", "latency", "1s")
		}
		c.run(d)
		for _, id := range []string{chaosPrimary, chaosSecond} {
			c.tc(id, "qdisc", "del", "dev", "peer0", "root")
		}
	case k < 90: // a stalled server (SIGSTOP): alive, silent, then back
		d := c.between(500*time.Millisecond, 5*time.Second)
		c.note("stall %s for %v", name(x), d.Round(time.Millisecond))
		c.srv[x].Proc.Signal(syscall.SIGSTOP)
		c.run(d)
		c.srv[x].Proc.Signal(syscall.SIGCONT)
		c.waitNormal("NORMAL after " + name(x) + " woke up")
	default: // a clock step on one server
		step := time.Duration(c.rng.Intn(5)-2) * time.Second
		if step == 0 {
			step = time.Second
		}
		c.offset[x] += step
		c.note("step the clock of %s by %v (now %v off)", name(x), step, c.offset[x])
		if err := os.WriteFile(c.clock[x], []byte(c.offset[x].String()), 0o644); err != nil {
			c.t.Fatal(err)
		}
		if err := c.srv[x].Proc.Signal(syscall.SIGUSR2); err != nil {
			c.t.Fatalf("SIGUSR2 to %s: %v", name(x), err)
		}
		// The databases of this server now mix times of two clocks.
		c.check.Slack = time.Second + time.Duration(max(abs(int64(c.offset[chaosPrimary])), abs(int64(c.offset[chaosSecond]))))
		c.run(c.between(2*time.Second, 6*time.Second))
	}
}

func (c *chaosPair) tc(id string, args ...string) {
	if out, err := c.srv[id].Node.Run(10*time.Second, "tc", args...); err != nil {
		c.t.Fatalf("tc %s in %s: %v: %s", strings.Join(args, " "), c.srv[id].Node.NS, err, out)
	}
}

// healAll ends the schedule with everything working.
func (c *chaosPair) healAll() {
	c.waitNormal("NORMAL at the end of the schedule")
}

// separate records that the servers can no longer talk, with both
// databases as they are now.
func (c *chaosPair) separate(why string) {
	sep := &Separation{From: time.Now(), Start: map[string]Snapshot{}, Why: why}
	for id := range c.srv {
		sep.Start[id] = c.snapshot(id, "the start of "+why)
	}
	c.sepOpen = sep
}

// healed closes the open separation: both servers are in NORMAL again.
func (c *chaosPair) healed() {
	if c.sepOpen != nil {
		c.sepOpen.To = time.Now()
		c.seps = append(c.seps, *c.sepOpen)
		c.sepOpen = nil
	}
}

func (c *chaosPair) snapshot(id, why string) Snapshot {
	return Snapshot{Server: id, At: time.Now(), Leases: c.srv[id].Leases(), Why: why}
}

func (c *chaosPair) holds() []Hold {
	hs := HoldsOfSim(c.sim.Records())
	for _, cl := range c.real {
		hs = append(hs, HoldsOfClient(cl)...)
	}
	return hs
}

func (c *chaosPair) timeline(id string) Timeline {
	c.tlMu.Lock()
	defer c.tlMu.Unlock()
	return append(Timeline(nil), c.tl[id]...)
}

// poll samples each server's state every 100 ms through its control
// socket, each server on its own so that a slow one does not delay the
// other's samples; "" while a server is down.
func (c *chaosPair) poll() {
	for id, sock := range c.sock {
		c.polled.Add(1)
		go func() {
			defer c.polled.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				if smp, ok := controlSample(sock); ok {
					c.tlMu.Lock()
					c.tl[id] = append(c.tl[id], smp)
					c.tlMu.Unlock()
				}
				select {
				case <-c.stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
}

func (c *chaosPair) stopPolling() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
		c.polled.Wait()
	}
}

// waitNormal waits until both servers say NORMAL (and see each other so).
func (c *chaosPair) waitNormal(what string) {
	c.t.Helper()
	err := netlab.Eventually(60*time.Second, func() error {
		for id, sock := range c.sock {
			st, peer := controlStatus(sock)
			if st != "normal" || peer != "normal" {
				return fmt.Errorf("%s is %q, its peer %q", c.srv[id].Node.Name, st, peer)
			}
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (c *chaosPair) waitState(id, state string) {
	c.t.Helper()
	err := netlab.Eventually(30*time.Second, func() error {
		if st, _ := controlStatus(c.sock[id]); st != state {
			return fmt.Errorf("%s is %q, want %q", c.srv[id].Node.Name, st, state)
		}
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// control sends a command to a server's control socket and fails the
// schedule on an error.
func (c *chaosPair) control(id, cmd string) {
	c.t.Helper()
	var reply struct {
		Error string `json:"error"`
	}
	if err := controlCall(c.sock[id], cmd, &reply); err != nil || reply.Error != "" {
		c.t.Fatalf("%s on %s: %v %s", cmd, c.srv[id].Node.Name, err, reply.Error)
	}
}

func (c *chaosPair) dumpEvidence() {
	for _, h := range c.holds() {
		c.t.Logf("hold: %v", h)
	}
	for id := range c.srv {
		var b strings.Builder
		last := ""
		for _, s := range c.timeline(id) {
			if s.State != last {
				fmt.Fprintf(&b, " %s=%q", s.At.Format("15:04:05.000"), s.State)
				last = s.State
			}
		}
		c.t.Logf("states of %s:%s", c.srv[id].Node.Name, b.String())
	}
}

// serverStatus is what the checks read of a control socket's status.
type serverStatus struct {
	State     string `json:"state"`
	PeerState string `json:"peer_state"`
	Connected bool   `json:"connected"`
}

// readStatus asks a control socket for its status within timeout.
func readStatus(sock string, timeout time.Duration) (serverStatus, error) {
	var reply struct {
		Status *serverStatus `json:"status"`
	}
	if err := controlCallTimeout(sock, "status", &reply, timeout); err != nil {
		return serverStatus{}, err
	}
	if reply.Status == nil {
		return serverStatus{}, errors.New("no status in the answer")
	}
	return *reply.Status, nil
}

// controlStatus returns a server's state and its peer's, "" when the
// control socket does not answer.
func controlStatus(sock string) (state, peer string) {
	st, _ := readStatus(sock, 5*time.Second)
	return st.State, st.PeerState
}

// controlSample reads a server's state and whether it holds a session with
// its peer, stamped when the answer came; "" and false when nothing listens
// on the control socket (the server is down). A server that does not
// answer within 300 ms (stopped, or busy starting) gives no sample.
func controlSample(sock string) (Sample, bool) {
	st, err := readStatus(sock, 300*time.Millisecond)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Sample{}, false
	}
	return Sample{At: time.Now(), State: st.State, Connected: st.Connected}, true
}

func controlCall(sock, cmd string, reply any) error {
	return controlCallTimeout(sock, cmd, reply, 5*time.Second)
}

func controlCallTimeout(sock, cmd string, reply any, timeout time.Duration) error {
	conn, err := net.DialTimeout("unix", sock, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(conn).Encode(map[string]string{"command": cmd}); err != nil {
		return err
	}
	return json.NewDecoder(conn).Decode(reply)
}
