package leasesync

// The deterministic simulation of a failover pair (docs/simulation.md):
// both servers' real failover and leasesync code, their state machines and
// lease tables, in one process and one thread, driven by one seed. The
// world around them is simulated: the clock, the peer link (TCP: in
// order, a cut loses any tail), the stores, RFC 2131 clients and the
// operator. Every step is followed by the checks of safety invariants (docs/invariants.md);
// a failing schedule is shrunk to the fewest steps that still fail.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredhcp/coredhcp/logger"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/failover"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// simFault is a kind of fault a run may inject; SIM_FAULTS names the ones
// enabled (default: all).
type simFault uint32

const (
	faultCrash        simFault = 1 << iota // crash and restart with the store
	faultEmptyStore                        // restart with the store lost whole
	faultPartition                         // cut the peer link (losing any tail in flight), heal
	faultClientNet                         // clients that reach only one server
	faultLostAckPD                         // crash the peer just after a cut, partner-down on the survivor
	faultReleaseAck                        // release and come back at once, ack in flight
	faultSlowWrite                         // a write takes seconds while the client retransmits; both may fail
	faultStoreFail                         // the store fails every write for a while
	faultPDRestart                         // restart in partner-down without the peer, partner-down again
	faultNoChaddr                          // clients with neither chaddr nor client identifier
	faultMaintenance                       // maintenance start and stop
	faultOperator                          // resync and rebalance
	faultClock                             // clock skew between the servers and clock steps
	faultRestartApart                      // restart while cut off from a peer in PARTNER-DOWN (not in the default set)
	faultDecline                           // clients decline an address
	numFaults         = iota
)

var faultNames = [numFaults]string{"crash", "emptystore", "partition", "clientnet", "lostackpd", "releaseack",
	"slowwrite", "storefail", "pdrestart", "nochaddr", "maintenance", "operator", "clock", "restartapart", "decline"}

const allFaults simFault = 1<<numFaults - 1

// defaultFaults are the faults a run injects unless SIM_FAULTS says
// otherwise: all but restartapart, which still breaks the invariants
// through an open finding (docs/simulation.md).
const defaultFaults = allFaults &^ faultRestartApart

func (f simFault) String() string {
	var out []string
	for i, n := range faultNames {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

// parseFaults reads SIM_FAULTS: empty for the default set, "all", or
// names separated by commas (each may be written faultName; a list that
// starts with -name removes names from the default set).
func parseFaults(s string) (simFault, error) {
	switch s {
	case "":
		return defaultFaults, nil
	case "all":
		return allFaults, nil
	}
	var f simFault
	if strings.HasPrefix(s, "-") {
		f = defaultFaults
	}
	for _, w := range strings.Split(s, ",") {
		w = strings.ToLower(strings.TrimSpace(w))
		neg := strings.HasPrefix(w, "-")
		w = strings.TrimPrefix(strings.TrimPrefix(w, "-"), "fault")
		found := false
		for i, n := range faultNames {
			if n == w {
				found = true
				if neg {
					f &^= 1 << i
				} else {
					f |= 1 << i
				}
			}
		}
		if !found && w != "" && w != "none" {
			return 0, fmt.Errorf("unknown fault %q (known: %s)", w, strings.Join(faultNames[:], ", "))
		}
	}
	return f, nil
}

// The invariants checked after every step.
const (
	invOneClient = iota // no address bound to two clients at overlapping times
	invDurable          // every ACKed lease is on disk
	invMCLT             // no lease past MCLT beyond what the peer acknowledged
	invOwned            // only owned addresses allocated outside PARTNER-DOWN
	invPeerAfter        // the peer's addresses only MCLT after entering PARTNER-DOWN
	invNeverUsed        // a never-used address this server owns is offered when asked
	numInv
)

var invNames = [numInv]string{"one-client", "durable-ack", "mclt", "owned-only", "partner-down-wait", "never-used-allocatable"}

// Simulation parameters. Small pools with more clients than addresses
// keep every address in turn (the paths that matter are reuse).
const (
	simMCLT      = 60
	simLease     = 300
	simOfferHold = 10
	simPoolSize  = 12
	simClients   = 16
	simSteps     = 240
	simMRD       = 15 // max-response-delay
)

// stepKind is one action of a schedule.
type stepKind uint8

const (
	stAdvance stepKind = iota
	stClientOn
	stRelease
	stDecline
	stReboot
	stClientNet
	stPartition
	stHeal
	stCrash
	stRestart
	stStoreFail
	stSlowWrite
	stPartnerDown
	stMaintStart
	stMaintStop
	stResync
	stRebalance
	stClockStep
	stLostAckPD
	stReleaseBack
)

var stepNames = map[stepKind]string{stAdvance: "advance", stClientOn: "client-on", stRelease: "release", stDecline: "decline",
	stReboot: "reboot", stClientNet: "client-net", stPartition: "partition", stHeal: "heal", stCrash: "crash",
	stRestart: "restart", stStoreFail: "store-fail", stSlowWrite: "slow-write", stPartnerDown: "partner-down",
	stMaintStart: "maintenance-start", stMaintStop: "maintenance-stop", stResync: "resync", stRebalance: "rebalance",
	stClockStep: "clock-step", stLostAckPD: "cut-crash-partner-down", stReleaseBack: "release-and-back"}

// step is one action with its arguments, fixed when the schedule is made so
// that removing other steps (shrinking) leaves it the same.
type step struct {
	kind stepKind
	a, b int
}

func (s step) String() string {
	switch s.kind {
	case stAdvance:
		return fmt.Sprintf("advance %ds", s.a)
	case stClientOn, stRelease, stDecline, stReboot, stReleaseBack:
		return fmt.Sprintf("%s client %d", stepNames[s.kind], s.a)
	case stClientNet:
		return fmt.Sprintf("client-net client %d reaches %s", s.a, reachName(s.b))
	case stPartition, stHeal:
		return stepNames[s.kind]
	case stRestart:
		if s.b == 1 {
			return fmt.Sprintf("restart %s with its store lost", nodeName(s.a))
		}
		return fmt.Sprintf("restart %s", nodeName(s.a))
	case stStoreFail:
		return fmt.Sprintf("store of %s failing=%v", nodeName(s.a), s.b == 1)
	case stSlowWrite:
		return fmt.Sprintf("slow write at %s for client %d (fail=%v)", nodeName(s.a), s.b%simClients, s.b >= simClients)
	case stClockStep:
		return fmt.Sprintf("clock of %s steps %+ds", nodeName(s.a), s.b)
	}
	return fmt.Sprintf("%s %s", stepNames[s.kind], nodeName(s.a))
}

func nodeName(i int) string { return [2]string{"primary", "secondary"}[i&1] }

func reachName(mask int) string {
	switch mask {
	case 1:
		return "primary only"
	case 2:
		return "secondary only"
	}
	return "both"
}

// schedule makes the steps of seed for the faults enabled.
func schedule(seed int64, faults simFault) []step {
	r := rand.New(rand.NewSource(seed))
	type choice struct {
		w    int
		need simFault
		make func() step
	}
	node := func() int { return r.Intn(2) }
	cl := func() int { return r.Intn(simClients) }
	choices := []choice{
		{40, 0, func() step { return step{stAdvance, 1 + r.Intn(20), 0} }},
		{8, 0, func() step { return step{stAdvance, 20 + r.Intn(200), 0} }},
		{14, 0, func() step { return step{stClientOn, cl(), 0} }},
		{3, 0, func() step { return step{stRelease, cl(), 0} }},
		{2, faultDecline, func() step { return step{stDecline, cl(), 0} }},
		{3, 0, func() step { return step{stReboot, cl(), 0} }},
		{4, faultClientNet, func() step { return step{stClientNet, cl(), 1 + r.Intn(3)} }},
		{3, faultPartition, func() step { return step{stPartition, 0, 0} }},
		{3, faultPartition, func() step { return step{stHeal, 0, 0} }},
		{2, faultCrash, func() step { return step{stCrash, node(), 0} }},
		{3, faultCrash, func() step { return step{stRestart, node(), 0} }},
		{2, faultEmptyStore, func() step { return step{stRestart, node(), 1} }},
		{2, faultStoreFail, func() step { return step{stStoreFail, node(), r.Intn(2)} }},
		{3, faultSlowWrite, func() step {
			b := cl()
			if r.Intn(2) == 0 {
				b += simClients // both writes fail
			}
			return step{stSlowWrite, node(), b}
		}},
		{2, faultCrash, func() step { return step{stPartnerDown, node(), 0} }},
		{2, faultLostAckPD, func() step { return step{stLostAckPD, node(), cl()} }},
		{2, faultPDRestart, func() step { return step{stPartnerDown, node(), 1} }},
		{2, faultMaintenance, func() step { return step{stMaintStart, node(), 0} }},
		{2, faultMaintenance, func() step { return step{stMaintStop, node(), 0} }},
		{1, faultOperator, func() step { return step{stResync, node(), 0} }},
		{1, faultOperator, func() step { return step{stRebalance, node(), 0} }},
		{1, faultClock, func() step { return step{stClockStep, node(), r.Intn(21) - 10} }},
		{3, faultReleaseAck, func() step { return step{stReleaseBack, cl(), 0} }},
	}
	total := 0
	var live []choice
	for _, c := range choices {
		if c.need == 0 || faults&c.need != 0 {
			live = append(live, c)
			total += c.w
		}
	}
	steps := make([]step, 0, simSteps)
	// Bring some clients up first.
	for i := 0; i < simClients/2; i++ {
		steps = append(steps, step{stClientOn, cl(), 0}, step{stAdvance, 1 + r.Intn(3), 0})
	}
	for len(steps) < simSteps {
		n := r.Intn(total)
		for _, c := range live {
			if n < c.w {
				steps = append(steps, c.make())
				break
			}
			n -= c.w
		}
	}
	return steps
}

// violation is a broken invariant.
type violation struct {
	inv  int
	at   int64
	text string
}

func (v *violation) String() string {
	return fmt.Sprintf("[%s] t=%d: %s", invNames[v.inv], v.at, v.text)
}

// simStats are the figures of a run.
type simStats struct {
	steps  int64
	checks [numInv]int64
	acks   int64
}

func (s *simStats) add(o *simStats) {
	s.steps += o.steps
	s.acks += o.acks
	for i := range s.checks {
		s.checks[i] += o.checks[i]
	}
}

// simWorld is one run: the pair, the network, the clients, the clock.
type simWorld struct {
	seed    int64
	faults  simFault
	r       *rand.Rand
	now     int64 // global time, seconds
	nodes   [2]*simNode
	conns   []*simConn
	cut     bool // the peer link is partitioned
	cls     []*simClient
	tol     int64 // seconds of clock error an overlap may come from
	stats   simStats
	viol    *violation
	trace   []string
	tracing bool
	// acked[n][ip] is the lease end or potential expiry (global time)
	// of n's latest update of ip that the peer acknowledged; sent[n][ip]
	// the largest n ever sent (it keeps it, SentExpiry, until its store
	// is lost). Invariant 3: a lease of n's ends within MCLT of either,
	// or of now.
	acked, sent [2]map[lease.IP]int64
	// watchIP is an address whose bindings the transcript follows.
	watchIP lease.IP
	watched [2]string
}

const simBase = 1_800_000_000 // global time at the start

func (w *simWorld) logf(format string, args ...any) {
	if w.tracing {
		w.trace = append(w.trace, fmt.Sprintf("t=%-6d ", w.now-simBase)+fmt.Sprintf(format, args...))
	}
}

func (w *simWorld) fail(inv int, format string, args ...any) {
	if w.viol == nil {
		w.viol = &violation{inv: inv, at: w.now - simBase, text: fmt.Sprintf(format, args...)}
		w.logf("VIOLATION %s", w.viol)
	}
}

// simNode is one server: its process (failover server and session, gone
// while crashed) and what survives a crash (store, clock).
type simNode struct {
	w       *simWorld
	idx     int
	id      net.IP
	primary bool
	offset  int64 // its clock minus global time
	store   *simStore
	com     *simCommitter
	srv     *failover.Server
	ses     *Session
	up      bool
	wakeAt  int64 // global time of the session's wake-up (0: none)
	dialReq bool
	wasPD   bool
	pdEnter int64 // global time PARTNER-DOWN was last entered (this process)
	offers  map[lease.IP]int64
	state   fsm.State
	// quiet is when it last stopped serving clients (crashed or in a
	// state that serves none), 0 while it may serve.
	quiet int64
	// fresh: its store was lost, and it has not been through RECOVER
	// to NORMAL since: the peer holds the only copy.
	fresh bool
}

func (n *simNode) localNow() int64 { return n.w.now + n.offset }

// simClock is a node's clock: global time plus its offset. AfterFunc only
// records the deadline; the world fires it.
type simClock struct{ n *simNode }

func (c simClock) Now() time.Time { return time.Unix(c.n.localNow(), 0) }

type simTimer struct {
	n  *simNode
	at int64
}

func (t simTimer) Stop() bool {
	if t.n.wakeAt == t.at {
		t.n.wakeAt = 0
		return true
	}
	return false
}

func (c simClock) AfterFunc(d time.Duration, f func()) interface{ Stop() bool } {
	s := int64((d + time.Second - 1) / time.Second)
	c.n.wakeAt = c.n.w.now + s
	return simTimer{c.n, c.n.wakeAt}
}

// simStore is a lease.Store in memory that may fail its writes.
type simStore struct {
	rows  map[lease.IP]lease.Binding
	state *lease.RelState
	fail  bool
}

func newSimStore() *simStore { return &simStore{rows: map[lease.IP]lease.Binding{}} }

var errSimStore = fmt.Errorf("simulated write failure")

func (m *simStore) Load(fn func(lease.Binding) error) error {
	ips := make([]lease.IP, 0, len(m.rows))
	for ip := range m.rows {
		ips = append(ips, ip)
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i] < ips[j] })
	for _, ip := range ips {
		b := m.rows[ip]
		b.ClientID, b.HWAddr = bytes.Clone(b.ClientID), bytes.Clone(b.HWAddr)
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

func (m *simStore) Write(rows []lease.Binding) error {
	if m.fail {
		return errSimStore
	}
	for _, b := range rows {
		b.ClientID, b.HWAddr = bytes.Clone(b.ClientID), bytes.Clone(b.HWAddr)
		b.Transmitted = false // not a stored column
		m.rows[b.IP] = b
	}
	return nil
}

func (m *simStore) LoadState() (lease.RelState, bool, error) {
	if m.state == nil {
		return lease.RelState{}, false, nil
	}
	return *m.state, true, nil
}

func (m *simStore) SaveState(st lease.RelState) error {
	if m.fail {
		return errSimStore
	}
	m.state = &st
	return nil
}

func (m *simStore) Close() error { return nil }

// Count implements lease.Counter.
func (m *simStore) Count() (int, error) { return len(m.rows), nil }

// simCommitter writes each binding at once, or, while slow, queues it
// until the world completes it (or loses it in a crash).
type simCommitter struct {
	st      *simStore
	slow    bool
	queue   []simWrite
	blocked chan struct{} // told when a write is queued
}

type simWrite struct {
	b   *lease.Batch
	row lease.Binding
}

func (c *simCommitter) Submit(b lease.Binding) *lease.Batch {
	bt := lease.NewPending()
	b.ClientID, b.HWAddr = bytes.Clone(b.ClientID), bytes.Clone(b.HWAddr)
	if !c.slow && len(c.queue) == 0 {
		bt.Finish(c.st.Write([]lease.Binding{b}))
		return bt
	}
	c.queue = append(c.queue, simWrite{bt, b})
	select {
	case c.blocked <- struct{}{}:
	default:
	}
	return bt
}

// complete ends the oldest queued write (written, or failed with the store).
func (c *simCommitter) complete() {
	wr := c.queue[0]
	c.queue = c.queue[1:]
	wr.b.Finish(c.st.Write([]lease.Binding{wr.row}))
}

// lose ends every queued write as failed, unwritten (a crash).
func (c *simCommitter) lose() {
	for _, wr := range c.queue {
		wr.b.Finish(lease.ErrClosed)
	}
	c.queue = nil
}

func (c *simCommitter) Close() error { return nil }

// simConn is one TCP connection between the nodes. end[i] is node i's side.
type simConn struct {
	w      *simWorld
	end    [2]*simEnd
	broken bool // cut: everything written from now on is lost
}

// simEnd is one side: its link, and the frames it sent on their way.
type simEnd struct {
	c      *simConn
	i      int
	l      *link
	closed bool
	out    []simFrame
	// upd are the BNDUPDs this side sent: xid -> address, potential
	// expiry (global time).
	upd map[uint32][2]int64
}

type simFrame struct {
	at     int64
	frame  []byte
	notice bool // the sender closed: the receiver reads EOF
}

type simAddr string

func (a simAddr) Network() string { return "sim" }
func (a simAddr) String() string  { return string(a) }

// Write splits what a link writes into frames on their way to the peer.
func (e *simEnd) Write(p []byte) (int, error) {
	if e.closed {
		return 0, net.ErrClosed
	}
	w := e.c.w
	rd := bytes.NewReader(p)
	for {
		f, err := wire.ReadFrame(rd, 1<<16)
		if err != nil {
			break
		}
		w.observeSent(e, f)
		if e.c.broken {
			continue
		}
		at := w.now + int64(w.r.Intn(2))
		if k := len(e.out); k > 0 && e.out[k-1].at > at {
			at = e.out[k-1].at
		}
		e.out = append(e.out, simFrame{at: at, frame: f})
	}
	return len(p), nil
}

func (e *simEnd) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	peer := e.c.end[1-e.i]
	peer.out = nil // no one reads them
	if !e.c.broken {
		at := e.c.w.now
		if k := len(e.out); k > 0 {
			at = e.out[k-1].at
		}
		e.out = append(e.out, simFrame{at: at, notice: true})
	}
	return nil
}

func (e *simEnd) Read([]byte) (int, error)         { return 0, io.EOF }
func (e *simEnd) LocalAddr() net.Addr              { return simAddr(nodeName(e.i)) }
func (e *simEnd) RemoteAddr() net.Addr             { return simAddr(nodeName(1 - e.i)) }
func (e *simEnd) SetDeadline(time.Time) error      { return nil }
func (e *simEnd) SetReadDeadline(time.Time) error  { return nil }
func (e *simEnd) SetWriteDeadline(time.Time) error { return nil }

// cutConn breaks c: each direction keeps a random prefix of what is in
// flight (it arrived before the cut) and loses the rest.
func (w *simWorld) cutConn(c *simConn) {
	if c.broken {
		return
	}
	c.broken = true
	for _, e := range c.end {
		keep := w.r.Intn(len(e.out) + 1)
		for i := range e.out[:keep] {
			e.out[i].at = min(e.out[i].at, w.now)
		}
		if keep < len(e.out) {
			w.logf("cut: %s loses %d frame(s) in flight", nodeName(e.i), len(e.out)-keep)
		}
		e.out = e.out[:keep]
	}
}

// observeSent tracks the potential expiries the peer holds (invariant 3).
func (w *simWorld) observeSent(e *simEnd, f []byte) {
	body, err := wire.DecodeBody(f)
	if err != nil {
		return
	}
	n := w.nodes[e.i]
	switch m := body.(type) {
	case *wire.BindingUpdate:
		ip, _ := lease.IPFromAddr(m.Addr)
		// What the receiver holds: the lease's end, and the potential
		// expiry (the sender's bound for the client).
		p := int64(max(m.PotentialExpiry, m.LeaseExpiry))
		if p != 0 {
			p -= n.offset
		}
		e.upd[m.XID] = [2]int64{int64(ip), p}
		// The sender keeps what it sent (SentExpiry) and waits for it
		// in PARTNER-DOWN: the receiver may extend the client up to it
		// plus MCLT.
		w.sent[e.i][ip] = max(w.sent[e.i][ip], p)
		w.logf("%s sends BNDUPD xid=%d %s %s end=%d pot=%d", nodeName(e.i), m.XID, m.Addr, m.Status,
			rel(int64(m.LeaseExpiry)-n.offset), rel(p))
	case *wire.BindingAck:
		w.logf("%s sends BNDACK xid=%d %s reject=%d", nodeName(e.i), m.XID, m.Addr, m.RejectReason)
	default:
		w.logf("%s sends %s", nodeName(e.i), body.Type())
	}
}

func rel(t int64) int64 {
	if t == 0 {
		return 0
	}
	return t - simBase
}

// observeDelivered: a BNDACK of ours arrived: the peer holds the times
// we sent.
func (w *simWorld) observeDelivered(e *simEnd, body wire.Body) {
	if m, ok := body.(*wire.BindingAck); ok && m.RejectReason == 0 {
		if u, ok := e.upd[m.XID]; ok {
			w.acked[e.i][lease.IP(u[0])] = u[1]
		}
	}
}

// Client states (RFC 2131 figure 5).
type cState uint8

const (
	cOff cState = iota
	cInit
	cRequesting
	cBound
	cRenewing
	cRebinding
	cReboot
)

var cStateNames = [...]string{"off", "init", "requesting", "bound", "renewing", "rebinding", "init-reboot"}

type simClient struct {
	idx      int
	hw       net.HardwareAddr // empty for a client without identity
	key      string
	state    cState
	ip       lease.IP // held (bound) or asked for
	end      int64    // global end of the lease it holds (0: none)
	t1, t2   int64
	server   int // the server that ACKed
	next     int64
	xid      uint32
	started  int64 // when this exchange began (secs)
	sent     int64 // when the first copy of the current REQUEST left
	tries    int
	reach    int // bit i: reaches node i
	secsGrow bool
	declines bool // declines its next ACK
	// declined is the address it last declined, until declinedUntil: a
	// host uses it, so an offer of it fails the client's ARP check again.
	declined      lease.IP
	declinedUntil int64
	offer         lease.IP
	offerBy       int
	back          bool // after a release: back at once, asking for its address
}

func (c *simClient) holds(now int64) bool {
	return c.end > now && (c.state == cBound || c.state == cRenewing || c.state == cRebinding || c.state == cReboot)
}

// newWorld builds the pair and the clients of seed.
func newWorld(seed int64, faults simFault, tracing bool) *simWorld {
	w := &simWorld{seed: seed, faults: faults, r: rand.New(rand.NewSource(seed ^ 0x5eed)), now: simBase, tracing: tracing}
	for i := range w.nodes {
		n := &simNode{w: w, idx: i, id: net.IPv4(192, 0, 2, byte(1+i)).To4(), primary: i == 0, store: newSimStore()}
		w.nodes[i] = n
		w.acked[i] = map[lease.IP]int64{}
		w.sent[i] = map[lease.IP]int64{}
	}
	if faults&faultClock != 0 {
		w.nodes[1].offset = int64(w.r.Intn(11) - 5)
		w.tol += max(w.nodes[1].offset, -w.nodes[1].offset)
	}
	w.tol += 2 // a skew below 2 s is not corrected; times are whole seconds
	for i := 0; i < simClients; i++ {
		c := &simClient{idx: i, reach: 3, secsGrow: w.r.Intn(3) == 0}
		if faults&faultNoChaddr != 0 && i%5 == 4 {
			c.hw = net.HardwareAddr{}
		} else {
			c.hw = net.HardwareAddr{0x02, 0, 0, 0, byte(seed), byte(i)}
		}
		c.key = lease.ClientKey(nil, append([]byte{1}, c.hw...))
		w.cls = append(w.cls, c)
	}
	for _, n := range w.nodes {
		w.start(n)
	}
	return w
}

var simPoolStart = lease.IP(192<<24 | 2<<8 | 10)

func (n *simNode) lines() (ls, fl []string) {
	ls = []string{"name=sim", "address=" + n.id.String(), "peer=" + n.w.nodes[1-n.idx].id.String(),
		fmt.Sprintf("max-response-delay=%d", simMRD), "min-balance=30", "max-balance=300"}
	if m := os.Getenv("SIM_MAXUNACKED"); m != "" {
		// A small max-unacked-updates keeps several updates of one
		// address in flight, superseded before their BNDACKs.
		ls = append(ls, "max-unacked-updates="+m)
	}
	if n.primary {
		ls = append(ls, "role=primary", fmt.Sprintf("mclt=%d", simMCLT), "split=128")
	} else {
		ls = append(ls, "role=secondary")
	}
	fl = []string{"name=sim", "db=sim", "subnet=192.0.2.0/24",
		fmt.Sprintf("pool=%s-%s", simPoolStart, simPoolStart+simPoolSize-1),
		fmt.Sprintf("lease-time=%d", simLease), fmt.Sprintf("offer-hold=%d", simOfferHold), "decline-hold=120"}
	return ls, fl
}

// start runs a node's process over its store.
func (w *simWorld) start(n *simNode) {
	ls, fl := n.lines()
	cfg, err := parse(ls)
	if err != nil {
		panic(err)
	}
	clk := simClock{n}
	ses := newRelationship(cfg, clk, nil)
	ses.rel.SetSession(nil, nil)
	n.store.fail = false
	n.com = &simCommitter{st: n.store, blocked: make(chan struct{}, 16)}
	srv, err := failover.NewDriven(fl, n.store, clk.Now, ses.rel, n.com)
	if err != nil {
		panic(err)
	}
	if _, err := ses.prepare(); err != nil {
		panic(err)
	}
	n.srv, n.ses, n.up = srv, ses, true
	n.wakeAt, n.dialReq, n.wasPD, n.pdEnter = 0, false, false, 0
	n.offers = map[lease.IP]int64{}
	ses.requestDial()
	w.endRound(n)
	w.logf("%s starts in %s (clock %+ds, tolerance %ds)", nodeName(n.idx), n.state, n.offset, w.tol)
}

// crash ends a node's process: its connection is cut (the peer reads EOF
// after what had left), writes under way are lost.
func (w *simWorld) crash(n *simNode) {
	if !n.up {
		return
	}
	n.up = false
	n.com.lose()
	for _, c := range w.conns {
		e := c.end[n.idx]
		if e.closed {
			continue
		}
		keep := w.r.Intn(len(e.out) + 1)
		e.out = e.out[:keep]
		e.Close()
	}
	w.logf("%s crashes", nodeName(n.idx))
	if n.quiet == 0 {
		n.quiet = w.now
	}
	n.srv, n.ses = nil, nil
}

// restartedApart reports whether a server runs that has not reached its
// peer since it started while the peer is in PARTNER-DOWN.
func (w *simWorld) restartedApart() bool {
	for _, n := range w.nodes {
		peer := w.nodes[1-n.idx]
		if n.up && peer.up && peer.state == fsm.PartnerDown && !n.ses.rel.View().Contacted {
			return true
		}
	}
	return false
}

// mayLose reports whether n's store may be lost whole without losing
// what no one else knows: the peer is up with a complete database, and
// every change of n's has reached it. (Losing the only copy of a lease
// loses it whatever the protocol does.)
func (w *simWorld) mayLose(n *simNode) bool {
	peer := w.nodes[1-n.idx]
	if !peer.up || peer.fresh {
		return false
	}
	if n.up && (len(n.ses.out.queue) > 0 || len(n.ses.out.inflight) > 0) {
		return false
	}
	for _, b := range n.store.rows {
		if b.Pending {
			return false
		}
	}
	return true
}

// endRound lets a node's session act on what it was told, then records what
// the world needs from it.
func (w *simWorld) endRound(n *simNode) {
	if !n.up {
		return
	}
	n.ses.endRound()
	select {
	case <-n.ses.wantDial:
		n.dialReq = true
	default:
	}
	st := n.ses.m.State()
	if st != n.state {
		w.logf("%s: %s -> %s (peer %s)", nodeName(n.idx), n.state, st, n.ses.m.Status().PeerState)
		n.state = st
	}
	if st == fsm.Normal {
		n.fresh = false
	}
	switch {
	case n.ses.m.MayServe():
		n.quiet = 0
	case n.quiet == 0:
		n.quiet = w.now
	}
	if st == fsm.PartnerDown && !n.wasPD {
		n.pdEnter = w.now
	}
	n.wasPD = st == fsm.PartnerDown
}

// drain handles the events the session was posted (binding changes).
func (w *simWorld) drain(n *simNode) {
	if !n.up {
		return
	}
	any := false
	for {
		select {
		case e := <-n.ses.events:
			n.ses.handle(e)
			any = true
			continue
		default:
		}
		break
	}
	if any {
		w.endRound(n)
	}
}

// operate runs an operator command as failoverctl would: the call blocks
// until the session goroutine -- here the world -- has handled it.
func (w *simWorld) operate(n *simNode, what string, fn func(*Session) error) {
	if !n.up {
		return
	}
	w.drain(n)
	ses := n.ses
	done := make(chan error, 1)
	go func() { done <- fn(ses) }()
	for {
		select {
		case err := <-done:
			w.logf("operator: %s on %s: %v", what, nodeName(n.idx), err)
			w.endRound(n)
			return
		case e := <-ses.events:
			ses.handle(e)
		}
	}
}

// connect runs a dial of node i: CONNECT and CONNECTACK (the real checks)
// when the peer is up and reachable, else a failed dial.
func (w *simWorld) connect(n *simNode) {
	peer := w.nodes[1-n.idx]
	failed := func(why string) {
		w.logf("%s: dial fails (%s)", nodeName(n.idx), why)
		n.ses.handle(event{kind: evDialFailed})
		w.endRound(n)
	}
	if !peer.up || w.cut {
		failed("peer unreachable")
		return
	}
	if n.ses.link != nil || peer.ses.link != nil {
		failed("already connected")
		return
	}
	p, s := n, peer
	if !p.primary {
		p, s = s, p
	}
	c := connectMsg(&p.ses.cfg, p.localNow())
	cb, _ := c.AppendTo(nil)
	cbody, err := wire.DecodeBody(cb)
	if err != nil {
		panic(err)
	}
	c = cbody.(*wire.Connect)
	ps, rej := checkConnect(&s.ses.cfg, c, s.localNow())
	a := connectAckMsg(&s.ses.cfg, c, rej, s.localNow())
	if rej != nil {
		failed("secondary refuses: " + rej.Error())
		return
	}
	ab, _ := a.AppendTo(nil)
	abody, err := wire.DecodeBody(ab)
	if err != nil {
		panic(err)
	}
	pp, rej := checkConnectAck(&p.ses.cfg, abody.(*wire.ConnectAck), p.localNow())
	if rej != nil {
		failed("primary refuses: " + rej.Error())
		return
	}
	conn := &simConn{w: w}
	for i := range conn.end {
		conn.end[i] = &simEnd{c: conn, i: i, upd: map[uint32][2]int64{}}
	}
	lp := &link{conn: conn.end[p.idx], params: pp, dialed: n == p, fed: true}
	lp.nextXID(false) // the CONNECT's
	ls := &link{conn: conn.end[s.idx], params: ps, dialed: n == s, fed: true}
	conn.end[p.idx].l, conn.end[s.idx].l = lp, ls
	w.conns = append(w.conns, conn)
	w.logf("%s connects", nodeName(n.idx))
	for _, x := range []*simNode{n, peer} {
		x.ses.handle(event{kind: evLinkUp, link: conn.end[x.idx].l})
		w.endRound(x)
	}
}

// deliver hands each node the frames due on its connections, in order.
func (w *simWorld) deliver() {
	live := w.conns[:0]
	for _, c := range w.conns {
		for _, e := range c.end {
			to := c.end[1-e.i]
			n := w.nodes[to.i]
			got := false
			for len(e.out) > 0 && e.out[0].at <= w.now && (!w.cut || c.broken) {
				f := e.out[0]
				e.out = e.out[1:]
				if to.closed || !n.up {
					continue
				}
				got = true
				if f.notice {
					n.ses.handle(event{kind: evLinkDown, link: to.l, err: io.EOF})
					continue
				}
				body, err := wire.DecodeBody(f.frame)
				if err != nil {
					panic(err)
				}
				w.observeDelivered(to, body)
				n.ses.handle(event{kind: evFrame, link: to.l, body: body})
			}
			if got {
				w.endRound(n)
			}
		}
		if !(c.end[0].closed && c.end[1].closed && len(c.end[0].out) == 0 && len(c.end[1].out) == 0) {
			live = append(live, c)
		}
	}
	w.conns = live
}

// watch logs every change of the bindings of w.watchIP (SIM_WATCH, the
// address's last byte), for diagnosis.
func (w *simWorld) watch() {
	if w.watchIP == 0 {
		return
	}
	for _, n := range w.nodes {
		if !n.up {
			continue
		}
		b, _ := n.srv.Observe(w.watchIP)
		d, _ := n.store.rows[w.watchIP]
		line := fmt.Sprintf("%v sent=%d peer=%d pending=%v / disk end=%d", b, rel(b.SentExpiry), rel(b.PeerExpiry), b.Pending, rel(d.End))
		if line != w.watched[n.idx] {
			w.watched[n.idx] = line
			w.logf("WATCH %s: %s", nodeName(n.idx), line)
		}
	}
}

// tick is one second of the world.
func (w *simWorld) tick() {
	w.watch()
	defer w.watch()
	w.now++
	for _, n := range w.nodes {
		if n.up {
			n.srv.Sweep()
			w.drain(n)
		}
	}
	w.deliver()
	for _, n := range w.nodes {
		if n.up && n.wakeAt != 0 && n.wakeAt <= w.now {
			n.wakeAt = 0
			n.ses.handle(event{kind: evTick})
			w.endRound(n)
		}
	}
	for _, n := range w.nodes {
		if n.up && n.dialReq {
			n.dialReq = false
			w.connect(n)
		}
	}
	for _, c := range w.cls {
		if c.state != cOff && c.next != 0 && c.next <= w.now {
			w.act(c)
		}
		if c.end != 0 && c.end <= w.now && c.holds(w.now-1) {
			w.logf("client %d: lease of %s expired", c.idx, c.ip)
			c.end = 0
			w.toInit(c, 0)
		}
	}
}

// Clients.

func (w *simWorld) toInit(c *simClient, delay int64) {
	c.state, c.tries, c.offer, c.end = cInit, 0, 0, 0
	c.next = w.now + delay
	c.started = c.next
	c.xid = w.r.Uint32()
}

func (w *simWorld) secs(c *simClient) uint16 {
	if !c.secsGrow {
		return 0
	}
	return uint16(min(w.now-c.started, 60))
}

func (w *simWorld) packet(c *simClient, t dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m := newPacket(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(t), dhcpv4.WithTransactionID(dhcpv4.TransactionID{
		byte(c.xid >> 24), byte(c.xid >> 16), byte(c.xid >> 8), byte(c.xid)})}, mods...)...)
	m.ClientHWAddr = c.hw
	m.NumSeconds = w.secs(c)
	return m
}

// answer is a server's reply to a client.
type answer struct {
	from int
	typ  dhcpv4.MessageType // 0: none
	ip   lease.IP
	lt   int64
	pre  lease.Binding
	had  bool
}

// ask sends req to the servers in mask that the client reaches and
// collects their answers.
func (w *simWorld) ask(c *simClient, req *dhcpv4.DHCPv4, mask int) []answer {
	var out []answer
	for _, n := range w.nodes {
		if mask&(1<<n.idx) == 0 || c.reach&(1<<n.idx) == 0 || !n.up {
			continue
		}
		a, ok := w.serve(n, c, req)
		if ok {
			out = append(out, a)
		}
	}
	return out
}

// reqIP is the address a request is about.
func reqIP(req *dhcpv4.DHCPv4) lease.IP {
	if ip, ok := lease.IPFromNet(req.ClientIPAddr); ok && ip != 0 {
		return ip
	}
	ip, _ := lease.IPFromNet(req.RequestedIPAddress())
	return ip
}

// serve runs node n's handler on req, synchronously.
func (w *simWorld) serve(n *simNode, c *simClient, req *dhcpv4.DHCPv4) (answer, bool) {
	pre, had := n.srv.Observe(reqIP(req))
	resp := w.reply(n, req)
	// Invariant 6: a DISCOVER while this server owns a never-used
	// address no one holds an offer of is not refused as "pool exhausted".
	free, before := lease.IP(0), 0.0
	if req.MessageType() == dhcpv4.MessageTypeDiscover {
		if free = w.neverUsed(n); free != 0 {
			before = w.drops(n, "pool_exhausted")
		}
	}
	out, _ := n.srv.Handler4(req, resp)
	w.drain(n)
	a := w.answerOf(n, out)
	a.pre, a.had = pre, had
	if free != 0 {
		w.stats.checks[invNeverUsed]++
		if a.typ == 0 && w.drops(n, "pool_exhausted") > before {
			w.fail(invNeverUsed, "%s in %s has never-used %s but tells client %d the pool is exhausted", nodeName(n.idx), n.state, free, c.idx)
		}
	}
	return a, a.typ != 0
}

func (w *simWorld) reply(n *simNode, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t := dhcpv4.MessageTypeAck
	if req.MessageType() == dhcpv4.MessageTypeDiscover {
		t = dhcpv4.MessageTypeOffer
	}
	// What dhcpv4.NewReplyFromRequest builds.
	return newPacket(dhcpv4.WithReply(req), dhcpv4.WithGatewayIP(req.GatewayIPAddr),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionRelayAgentInformation),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientIdentifier),
		dhcpv4.WithMessageType(t), dhcpv4.WithServerIP(n.id), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(n.id)))
}

// newPacket is dhcpv4.New without its transaction ID, which New draws
// from crypto/rand (a tenth of the simulation's time) only for every
// caller here to overwrite it.
func newPacket(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		ClientHWAddr:  make(net.HardwareAddr, 6),
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       make(dhcpv4.Options),
	}
	for _, mod := range mods {
		mod(m)
	}
	return m
}

func (w *simWorld) answerOf(n *simNode, out *dhcpv4.DHCPv4) answer {
	a := answer{from: n.idx}
	if out == nil {
		return a
	}
	a.typ = out.MessageType()
	a.ip, _ = lease.IPFromNet(out.YourIPAddr)
	a.lt = int64(out.IPAddressLeaseTime(0) / time.Second)
	return a
}

// drops reads node n's drop counter for reason.
func (w *simWorld) drops(n *simNode, reason string) float64 { return n.srv.Dropped(reason) }

// act runs a client's next move.
func (w *simWorld) act(c *simClient) {
	switch c.state {
	case cInit:
		w.discover(c)
	case cRequesting:
		w.select_(c)
	case cBound:
		c.state = cRenewing
		w.renew(c)
	case cRenewing:
		if w.now >= c.t2 {
			c.state = cRebinding
		}
		w.renew(c)
	case cRebinding:
		w.renew(c)
	case cReboot:
		w.reboot(c)
	}
}

func (w *simWorld) discover(c *simClient) {
	req := w.packet(c, dhcpv4.MessageTypeDiscover)
	if c.ip != 0 && (c.back || w.r.Intn(2) == 0) {
		req.UpdateOption(dhcpv4.OptRequestedIPAddress(c.ip.Net()))
	}
	c.back = false
	var offers []answer
	for _, a := range w.ask(c, req, 3) {
		if a.typ == dhcpv4.MessageTypeOffer && (a.ip != c.declined || w.now >= c.declinedUntil) {
			offers = append(offers, a)
			w.nodes[a.from].offers[a.ip] = w.now + simOfferHold
		}
	}
	if len(offers) == 0 {
		c.tries++
		c.next = w.now + int64(min(4<<min(c.tries, 3), 60)) + int64(w.r.Intn(2))
		return
	}
	o := offers[w.r.Intn(len(offers))]
	w.logf("client %d: offer of %s from %s", c.idx, o.ip, nodeName(o.from))
	c.offer, c.offerBy, c.tries = o.ip, o.from, 0
	c.state = cRequesting
	w.select_(c)
}

// select_ sends the SELECTING REQUEST (broadcast, naming the server).
func (w *simWorld) select_(c *simClient) {
	if c.tries >= 4 {
		w.toInit(c, 1)
		return
	}
	if c.tries == 0 {
		c.sent = w.now
	}
	c.tries++
	req := w.packet(c, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(c.offer.Net())),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(w.nodes[c.offerBy].id)))
	for _, a := range w.ask(c, req, 3) {
		if a.from != c.offerBy {
			continue
		}
		w.answered(c, a, req)
		return
	}
	c.next = w.now + 4
}

// renew sends a RENEWING (unicast to its server) or REBINDING (broadcast)
// REQUEST.
func (w *simWorld) renew(c *simClient) {
	if c.tries == 0 {
		c.xid = w.r.Uint32()
		c.started, c.sent = w.now, w.now
	}
	c.tries++
	req := w.packet(c, dhcpv4.MessageTypeRequest)
	req.ClientIPAddr = c.ip.Net()
	mask := 3
	if c.state == cRenewing {
		mask = 1 << c.server
	}
	for _, a := range w.ask(c, req, mask) {
		if c.state != cRenewing && c.state != cRebinding {
			break
		}
		w.answered(c, a, req)
	}
	if c.state == cRenewing || c.state == cRebinding {
		// RFC 2131 4.4.5: half the time left, at least 60 s; here at
		// least 10 s, to keep the pace.
		left := c.t2 - w.now
		if c.state == cRebinding {
			left = c.end - w.now
		}
		c.next = w.now + max(left/2, 10)
		if c.state == cRenewing && c.next > c.t2 {
			c.next = c.t2
		}
	}
}

// reboot sends the INIT-REBOOT REQUEST (broadcast, no server id).
func (w *simWorld) reboot(c *simClient) {
	if c.tries >= 3 {
		// No answer: RFC 2131 3.2 lets it keep the unexpired lease.
		c.state = cBound
		c.next = c.t1
		if c.next <= w.now {
			c.next = w.now + 1
		}
		return
	}
	if c.tries == 0 {
		c.sent = w.now
	}
	c.tries++
	req := w.packet(c, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(c.ip.Net())))
	for _, a := range w.ask(c, req, 3) {
		if c.state != cReboot {
			break
		}
		w.answered(c, a, req)
	}
	if c.state == cReboot {
		c.next = w.now + 4
	}
}

// answered handles an ACK or NAK.
func (w *simWorld) answered(c *simClient, a answer, req *dhcpv4.DHCPv4) {
	n := w.nodes[a.from]
	switch a.typ {
	case dhcpv4.MessageTypeNak:
		w.logf("client %d: NAK from %s", c.idx, nodeName(a.from))
		w.toInit(c, 0)
		c.next = w.now + 1
	case dhcpv4.MessageTypeAck:
		w.stats.acks++
		w.logf("client %d: ACK %s from %s for %ds (%s, before: %v %s)", c.idx, a.ip, nodeName(a.from), a.lt, n.state, a.had, a.pre)
		w.checkAck(n, c, a)
		// RFC 2131 4.4.1: the lease runs from when the request was
		// first sent.
		c.ip, c.server, c.state, c.tries = a.ip, a.from, cBound, 0
		c.end = c.sent + a.lt
		c.t1, c.t2 = c.sent+a.lt/2, c.sent+a.lt*7/8
		c.next = c.t1
		if c.declines {
			c.declines = false
			c.declined, c.declinedUntil = a.ip, w.now+120
			w.logf("client %d: declines %s", c.idx, a.ip)
			d := w.packet(c, dhcpv4.MessageTypeDecline, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(a.ip.Net())),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(n.id)))
			w.ask(c, d, 3)
			w.toInit(c, 10)
		}
	}
}

// Checks.

// checkAck checks an ACK of node n to client c (invariants 1 to 5).
func (w *simWorld) checkAck(n *simNode, c *simClient, a answer) {
	if a.lt <= 0 {
		return
	}
	// 1: no other client holds the address beyond the clock error.
	w.stats.checks[invOneClient]++
	for _, o := range w.cls {
		// Clients are told apart by the simulation, not by their keys:
		// two clients with one key (path 6) are two clients.
		if o != c && o.ip == a.ip && o.holds(w.now+w.tol) {
			w.fail(invOneClient, "%s ACKs %s to client %d for %ds, but client %d holds it until t=%d (from %s)",
				nodeName(n.idx), a.ip, c.idx, a.lt, o.idx, o.end-simBase, nodeName(o.server))
			return
		}
	}
	// 2: the lease told is on disk.
	w.stats.checks[invDurable]++
	end := c.sent + n.offset + a.lt
	if b, ok := n.store.rows[a.ip]; !ok || b.State != lease.Active || b.Key() != c.key || b.End < end {
		w.fail(invDurable, "%s ACKs %s to client %d until %d (its clock), but its disk holds %v (present %v)",
			nodeName(n.idx), a.ip, c.idx, rel(end), b, ok)
		return
	}
	// 3: within MCLT of what the peer holds.
	w.stats.checks[invMCLT]++
	held := max(w.acked[n.idx][a.ip], w.sent[1-n.idx][a.ip])
	bound := max(w.now, held) + simMCLT + w.tol
	if c.sent+a.lt > bound {
		w.fail(invMCLT, "%s ACKs %s to client %d until t=%d, beyond MCLT past what the peer holds (t=%d)",
			nodeName(n.idx), a.ip, c.idx, c.sent+a.lt-simBase, rel(held))
		return
	}
	// 4 and 5: whose address it was.
	if a.had && a.pre.Key() == c.key && a.pre.Key() != "" {
		return // its own binding
	}
	own := (!a.had && n.primary) || (a.had && (a.pre.State == lease.Free && n.primary || a.pre.State == lease.Backup && !n.primary))
	if n.state != fsm.PartnerDown {
		w.stats.checks[invOwned]++
		if !own {
			w.fail(invOwned, "%s in %s ACKs %s to client %d: not its own (was %v, known %v)",
				nodeName(n.idx), n.state, a.ip, c.idx, a.pre, a.had)
		}
		return
	}
	if !own {
		w.stats.checks[invPeerAfter]++
		// MCLT after entering PARTNER-DOWN, or after the peer
		// stopped serving if it has not served since (SHUTDOWN).
		from := n.pdEnter
		if q := w.nodes[1-n.idx].quiet; q != 0 {
			from = min(from, q)
		}
		if w.now+w.tol < from+simMCLT {
			w.fail(invPeerAfter, "%s ACKs the peer's %s to client %d at %ds into PARTNER-DOWN, the peer quiet since t=%d (was %v, known %v)",
				nodeName(n.idx), a.ip, c.idx, w.now-n.pdEnter, rel(w.nodes[1-n.idx].quiet), a.pre, a.had)
		}
	}
}

// neverUsed returns a never-used address that n owns and that no one
// holds an offer of (0: none).
func (w *simWorld) neverUsed(n *simNode) lease.IP {
	v := n.ses.rel.View()
	local := n.localNow()
	stale := v.MyState == fsm.PartnerDown && !v.Contacted
	pdOpen := v.MyState == fsm.PartnerDown && (v.Contacted || v.OperatorPartnerDown) && local >= v.PartnerDownStart()+v.MCLT+2
	if !(n.primary && !stale || pdOpen) || !v.MayServe {
		return 0
	}
	for ip := simPoolStart; ip < simPoolStart+simPoolSize; ip++ {
		if _, ok := n.srv.Observe(ip); !ok && n.offers[ip] < w.now-2 {
			return ip
		}
	}
	return 0
}

// run plays steps and returns the first violation (nil: none).
func (w *simWorld) run(steps []step) *violation {
	for i, s := range steps {
		w.stats.steps++
		w.logf("step %d: %s", i, s)
		w.do(s)
		if w.viol != nil {
			return w.viol
		}
	}
	// Let everything settle for a while, checking still.
	for i := 0; i < 2*simLease && w.viol == nil; i++ {
		w.tick()
	}
	return w.viol
}

func (w *simWorld) advance(d int) {
	for i := 0; i < d && w.viol == nil; i++ {
		w.tick()
	}
}

// do runs one step.
func (w *simWorld) do(s step) {
	switch s.kind {
	case stAdvance:
		w.advance(s.a)
	case stClientOn:
		c := w.cls[s.a]
		if c.state == cOff {
			w.toInit(c, 0)
			w.act(c)
		}
	case stRelease, stReleaseBack:
		c := w.cls[s.a]
		if !c.holds(w.now) {
			return
		}
		req := w.packet(c, dhcpv4.MessageTypeRelease, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(w.nodes[c.server].id)))
		req.ClientIPAddr = c.ip.Net()
		w.logf("client %d releases %s to %s", c.idx, c.ip, nodeName(c.server))
		w.ask(c, req, 1<<c.server)
		c.end, c.state, c.next = 0, cOff, 0
		if s.kind == stReleaseBack {
			// Back soon, asking for its old address: the RELEASED has
			// reached the peer, its BNDACK may be in flight -- or lost
			// in a cut.
			w.advance(1 + w.r.Intn(2))
			if w.faults&faultPartition != 0 && w.r.Intn(2) == 0 {
				w.do(step{kind: stPartition})
			}
			w.toInit(c, 0)
			c.back = true
			w.act(c)
		}
	case stDecline:
		w.cls[s.a].declines = true
	case stReboot:
		c := w.cls[s.a]
		if c.holds(w.now) {
			c.state, c.tries, c.xid = cReboot, 0, w.r.Uint32()
			c.started = w.now
			w.act(c)
		}
	case stClientNet:
		w.cls[s.a].reach = s.b
	case stPartition:
		if w.faults&faultRestartApart == 0 && w.restartedApart() {
			// Same as restartapart: a server declared down, back before
			// it has reached its peer, would be cut off again.
			return
		}
		if !w.cut {
			w.cut = true
			w.logf("partition")
			for _, c := range w.conns {
				w.cutConn(c)
			}
		}
	case stHeal:
		w.cut = false
		for _, c := range w.cls {
			c.reach = 3
		}
	case stCrash:
		w.crash(w.nodes[s.a])
	case stRestart:
		n := w.nodes[s.a]
		if s.b == 1 && !w.mayLose(n) {
			return
		}
		if peer := w.nodes[1-n.idx]; w.faults&faultRestartApart == 0 && w.cut && peer.up && peer.state == fsm.PartnerDown {
			// The operator declared this server down: it stays down
			// until it can reach its peer (draft-12: partner-down is
			// for a peer that is down).
			return
		}
		if n.up {
			w.crash(n)
		}
		if s.b == 1 {
			w.logf("%s loses its store", nodeName(n.idx))
			n.store = newSimStore()
			// What it sent is not forgotten by the invariant: before
			// serving again it recovers every binding from the peer,
			// whose leases were bounded by it.
			w.acked[n.idx] = map[lease.IP]int64{}
			n.fresh = true
		}
		w.start(n)
	case stStoreFail:
		if n := w.nodes[s.a]; n.up {
			n.store.fail = s.b == 1
		}
	case stSlowWrite:
		w.slowWrite(w.nodes[s.a], w.cls[s.b%simClients], s.b >= simClients)
	case stPartnerDown:
		n, peer := w.nodes[s.a], w.nodes[1-s.a]
		if s.b == 1 && n.up && peer.up {
			// A restart in PARTNER-DOWN: crash both; the peer stays
			// down.
			if n.state != fsm.PartnerDown {
				return
			}
			w.crash(peer)
			w.crash(n)
			w.start(n)
		}
		// The operator declares partner-down only with the peer down.
		if n.up && !peer.up {
			w.operate(n, "partner-down", func(s *Session) error { return s.Command(fsm.PartnerDown) })
		}
	case stLostAckPD:
		// A cut that may lose BNDACKs, then the peer dies and the
		// operator declares partner-down on the survivor.
		n, peer := w.nodes[s.a], w.nodes[1-s.a]
		if !n.up || !peer.up {
			return
		}
		// A client of n's renews; n's BNDUPD reaches the peer, which
		// adopts its potential expiry; the cut may lose the BNDACK.
		var c *simClient
		for i := range w.cls {
			if o := w.cls[(s.b+i)%simClients]; o.holds(w.now) && o.server == n.idx && o.reach&(1<<n.idx) != 0 {
				c = o
				break
			}
		}
		if c != nil {
			c.state, c.tries = cRenewing, 0
			w.renew(c)
			w.advance(1) // the update arrives; its BNDACK may be on its way
		}
		for _, c := range w.conns {
			w.cutConn(c)
		}
		w.cut = true
		if c != nil && w.faults&faultClientNet != 0 {
			// It is on the peer's side of the cut: it rebinds there
			// (at T2), and the peer dies some time after.
			c.reach = 1 << peer.idx
			for i := 0; i < simLease && c.server != peer.idx && w.viol == nil; i++ {
				w.tick()
			}
			// The peer dies within half a lease of that: before the
			// potential expiry it adopted has passed.
			w.advance(w.r.Intn(simLease / 2))
		} else {
			w.advance(w.r.Intn(simLease))
		}
		w.crash(peer)
		w.operate(n, "partner-down", func(s *Session) error { return s.Command(fsm.PartnerDown) })
	case stMaintStart:
		w.operate(w.nodes[s.a], "maintenance start", func(s *Session) error { _, err := s.MaintenanceStart(); return err })
	case stMaintStop:
		w.operate(w.nodes[s.a], "maintenance stop", func(s *Session) error { _, err := s.MaintenanceStop(); return err })
	case stResync:
		w.operate(w.nodes[s.a], "resync", func(s *Session) error { _, err := s.Resync(); return err })
	case stRebalance:
		w.operate(w.nodes[s.a], "rebalance", func(s *Session) error { _, err := s.Rebalance(); return err })
	case stClockStep:
		n := w.nodes[s.a]
		n.offset += int64(s.b)
		w.tol += int64(max(s.b, -s.b))
		w.logf("clock of %s steps %+ds", nodeName(n.idx), s.b)
	}
}

// slowWrite: client c's request reaches n while n's store takes seconds to
// write; c retransmits before the first write ends; both writes then
// succeed, fail (fail), or are lost with a crash of n.
func (w *simWorld) slowWrite(n *simNode, c *simClient, fail bool) {
	if !n.up || c.reach&(1<<n.idx) == 0 {
		return
	}
	var req *dhcpv4.DHCPv4
	switch {
	case c.holds(w.now) && c.server == n.idx:
		c.state = cRenewing
		c.xid, c.started, c.sent, c.tries = w.r.Uint32(), w.now, w.now, 0
		req = w.packet(c, dhcpv4.MessageTypeRequest)
		req.ClientIPAddr = c.ip.Net()
	case c.state == cRequesting && c.offerBy == n.idx:
		req = w.packet(c, dhcpv4.MessageTypeRequest,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(c.offer.Net())),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(n.id)))
	default:
		return
	}
	w.logf("slow write at %s: client %d sends %s", nodeName(n.idx), c.idx, req.MessageType())
	for len(n.com.blocked) > 0 {
		<-n.com.blocked
	}
	n.com.slow = true
	type call struct {
		done chan struct{}
		out  *dhcpv4.DHCPv4
		pre  lease.Binding
		had  bool
	}
	srv := n.srv
	var owners []*call // the callers of the queued writes, in order
	start := func() *call {
		cl := &call{done: make(chan struct{})}
		cl.pre, cl.had = srv.Observe(reqIP(req))
		resp := w.reply(n, req)
		r := req
		go func() {
			defer close(cl.done)
			cl.out, _ = srv.Handler4(r, resp)
		}()
		select {
		case <-cl.done:
		case <-n.com.blocked:
			owners = append(owners, cl)
		}
		return cl
	}
	first := start()
	// The client's retransmission timer. The world stands still
	// meanwhile: what is on the wire arrives that much later, which
	// biases the skew measured from it (a known limit of measuring
	// skew from one CONTACT): the tolerance covers it.
	stall := 3 + int64(w.r.Intn(3))
	w.now += stall
	w.tol += stall
	if c.secsGrow {
		req.NumSeconds += 4
	}
	second := start()
	crash := w.faults&faultCrash != 0 && w.r.Intn(4) == 0
	if fail {
		n.store.fail = true
	}
	if crash {
		w.logf("%s crashes with %d write(s) under way", nodeName(n.idx), len(n.com.queue))
		n.com.lose()
		<-first.done
		<-second.done
		w.crash(n)
		n.com.slow = false
		return
	}
	for _, cl := range owners {
		// One write ends; its waiter finishes before the next ends.
		n.com.complete()
		<-cl.done
	}
	<-first.done
	<-second.done
	n.com.slow = false
	n.store.fail = false
	w.drain(n)
	for _, cl := range []*call{first, second} {
		a := w.answerOf(n, cl.out)
		a.pre, a.had = cl.pre, cl.had
		if a.typ != 0 && (c.state == cRenewing || c.state == cRequesting || c.state == cBound) {
			w.answered(c, a, req)
		}
	}
	if c.state == cRenewing || c.state == cRequesting {
		c.next = w.now + 1
	}
}

// simResult is one seed's outcome.
type simResult struct {
	seed  int64
	viol  *violation
	steps []step
	stats simStats
}

// simRun plays seed's schedule under faults.
func simRun(seed int64, faults simFault, steps []step, tracing bool) (*simWorld, *violation) {
	w := newWorld(seed, faults, tracing)
	if x, err := strconv.Atoi(os.Getenv("SIM_WATCH")); err == nil && tracing {
		w.watchIP = simPoolStart&^0xff | lease.IP(x)
	}
	v := w.run(steps)
	return w, v
}

// shrink removes steps while the run still breaks the same invariant
// (delta debugging), and returns the shortest schedule found.
func shrink(seed int64, faults simFault, steps []step, inv int) []step {
	fails := func(s []step) bool {
		_, v := simRun(seed, faults, s, false)
		return v != nil && v.inv == inv
	}
	n := 2
	for len(steps) >= 2 && n <= len(steps) {
		chunk := (len(steps) + n - 1) / n
		removed := false
		for i := 0; i < len(steps); i += chunk {
			try := append(append([]step{}, steps[:i]...), steps[min(i+chunk, len(steps)):]...)
			if fails(try) {
				steps = try
				n = max(n-1, 2)
				removed = true
				break
			}
		}
		if !removed {
			if chunk == 1 {
				break
			}
			n = min(n*2, len(steps))
		}
	}
	return steps
}

func envInt(t *testing.T, name string, def int64) int64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return v
}

// TestSimulation runs the simulation: SIM_SEEDS seeds from 1 (default a
// few dozen; make sim runs thousands), or only SIM_SEED with its
// transcript; SIM_FAULTS picks the fault kinds.
func TestSimulation(t *testing.T) {
	faults, err := parseFaults(os.Getenv("SIM_FAULTS"))
	if err != nil {
		t.Fatal(err)
	}
	lg := logger.GetLogger("sim").Logger
	level := lg.GetLevel()
	lg.SetLevel(logrus.PanicLevel)
	defer lg.SetLevel(level)

	if one := envInt(t, "SIM_SEED", 0); one != 0 {
		steps := schedule(one, faults)
		w, v := simRun(one, faults, steps, true)
		if v != nil && os.Getenv("SIM_NOSHRINK") == "" {
			steps = shrink(one, faults, steps, v.inv)
			w, v = simRun(one, faults, steps, true)
		}
		for _, l := range w.trace {
			t.Log(l)
		}
		if v != nil {
			t.Fatalf("seed %d (faults %s): %s", one, faults, v)
		}
		t.Logf("seed %d: %d steps, %d ACKs, no violation", one, w.stats.steps, w.stats.acks)
		return
	}
	seeds := envInt(t, "SIM_SEEDS", 24)
	first := envInt(t, "SIM_FIRST", 1)
	workers := runtime.GOMAXPROCS(0)
	var next atomic.Int64
	next.Store(first)
	var mu sync.Mutex
	var total simStats
	var bad []simResult
	badSeeds := 0
	var badList []string
	begin := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed := next.Add(1) - 1
				if seed >= first+seeds {
					return
				}
				steps := schedule(seed, faults)
				w, v := simRun(seed, faults, steps, false)
				mu.Lock()
				total.add(&w.stats)
				if v != nil {
					badSeeds++
					badList = append(badList, fmt.Sprintf("%d[%s]", seed, invNames[v.inv]))
					if len(bad) < 3 {
						bad = append(bad, simResult{seed: seed, viol: v, steps: steps})
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(begin)
	var checks []string
	for i, n := range invNames {
		checks = append(checks, fmt.Sprintf("%s=%d", n, total.checks[i]))
	}
	summary := fmt.Sprintf("simulation: %d seeds (from %d, faults %s), %d steps, %d ACKs, checks: %s; %d violating seed(s); %.1fs, %.1f seeds/s",
		seeds, first, faults, total.steps, total.acks, strings.Join(checks, " "), badSeeds, el.Seconds(), float64(seeds)/el.Seconds())
	fmt.Println(summary)
	if len(badList) > 0 {
		sort.Slice(badList, func(i, j int) bool {
			a, _ := strconv.Atoi(strings.SplitN(badList[i], "[", 2)[0])
			b, _ := strconv.Atoi(strings.SplitN(badList[j], "[", 2)[0])
			return a < b
		})
		fmt.Printf("violating seeds: %s\n", strings.Join(badList[:min(len(badList), 12)], " "))
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].seed < bad[j].seed })
	for _, b := range bad {
		steps := shrink(b.seed, faults, b.steps, b.viol.inv)
		w, v := simRun(b.seed, faults, steps, true)
		var sb strings.Builder
		fmt.Fprintf(&sb, "seed %d: %s\nreplay: SIM_SEED=%d SIM_FAULTS=%s go test -run '^TestSimulation$' ./plugins/leasesync/\nshortest schedule (%d of %d steps):\n",
			b.seed, b.viol, b.seed, faults, len(steps), len(b.steps))
		for i, s := range steps {
			fmt.Fprintf(&sb, "  %d. %s\n", i, s)
		}
		sb.WriteString("transcript:\n")
		for _, l := range w.trace {
			sb.WriteString("  " + l + "\n")
		}
		if v == nil {
			sb.WriteString("(the shrunk schedule no longer fails on replay)\n")
		}
		t.Error(sb.String())
	}
}

// TestSimulationIsDeterministic: a seed replays exactly (its transcript is
// the same every time), or a shrunk schedule would prove nothing.
func TestSimulationIsDeterministic(t *testing.T) {
	lg := logger.GetLogger("sim").Logger
	level := lg.GetLevel()
	lg.SetLevel(logrus.PanicLevel)
	defer lg.SetLevel(level)
	for seed := int64(1); seed <= 4; seed++ {
		steps := schedule(seed, allFaults)
		a, _ := simRun(seed, allFaults, steps, true)
		b, _ := simRun(seed, allFaults, steps, true)
		if len(a.trace) != len(b.trace) {
			t.Fatalf("seed %d: transcripts of %d and %d lines", seed, len(a.trace), len(b.trace))
		}
		for i := range a.trace {
			if a.trace[i] != b.trace[i] {
				t.Fatalf("seed %d: line %d differs:\n%s\n%s", seed, i, a.trace[i], b.trace[i])
			}
		}
	}
}
