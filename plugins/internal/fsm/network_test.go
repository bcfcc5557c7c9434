package fsm

import (
	"fmt"
	"sort"
	"strings"
)

// network is a simulated failover pair: two endpoints, the TCP link between
// them and the sessions' behaviour that the state machine relies on
// (answering UPDREQ/UPDREQALL with UPDDONE, persisting before sending).
// Time is logical; nothing sleeps. It is used by the datadriven transcripts
// (verbose output) and by the randomised simulation.
type network struct {
	now   int64
	nodes []*node
	// link is true while a TCP connection is established. A node may not
	// have noticed a broken link yet (node.connected stays true until
	// notice); whatever it sends meanwhile is lost.
	link  bool
	queue []envelope
	out   *strings.Builder // nil: quiet
	// check is called after every Ready is applied; it reports invariant
	// violations.
	check func(n *network) error
	err   error
	// updDone is the node whose UPDDONE is being processed.
	updDone *node
}

type node struct {
	name string
	cfg  Config
	m    *Machine // nil while crashed
	disk Persistent
	// connected mirrors the machine's view of the link.
	connected bool
	// owes is true when the peer asked for updates and our session has
	// not yet answered with UPDDONE.
	owes bool
	// lastTimer is the last NextTimer printed.
	lastTimer int64
	// pdCause is the reason the current PARTNER-DOWN episode started.
	pdCause string
	// enteredBy is the reason of the last transition into each state,
	// not counting returns from STARTUP.
	enteredBy map[State]string
	// commanded counts accepted operator commands.
	commanded int
}

type envelope struct {
	from, to *node
	msg      Message
	updDone  bool
}

func (e envelope) String() string {
	if e.updDone {
		return fmt.Sprintf("%s->%s UPDDONE", e.from.name, e.to.name)
	}
	return fmt.Sprintf("%s->%s %s", e.from.name, e.to.name, e.msg)
}

func newNetwork(now int64, verbose bool) *network {
	n := &network{now: now}
	if verbose {
		n.out = &strings.Builder{}
	}
	return n
}

func (n *network) printf(format string, args ...any) {
	if n.out != nil {
		fmt.Fprintf(n.out, format, args...)
	}
}

func (n *network) fail(format string, args ...any) {
	if n.err == nil {
		n.err = fmt.Errorf(format, args...)
	}
}

func (n *network) node(name string) *node {
	for _, x := range n.nodes {
		if x.name == name {
			return x
		}
	}
	return nil
}

func (n *network) peerOf(x *node) *node {
	for _, y := range n.nodes {
		if y != x {
			return y
		}
	}
	return nil
}

// add creates a node (replacing one of the same name) and starts its
// machine from p.
func (n *network) add(name string, cfg Config, p Persistent) *node {
	x := &node{name: name, cfg: cfg, disk: p}
	replaced := false
	for i, y := range n.nodes {
		if y.name == name {
			n.nodes[i] = x
			replaced = true
		}
	}
	if !replaced {
		n.nodes = append(n.nodes, x)
	}
	n.queue = nil
	x.m = New(cfg, p, n.now)
	n.flush()
	return x
}

// flush drains every running machine's Ready, persists, queues messages
// and prints, then runs the invariant check.
func (n *network) flush() {
	for _, x := range n.nodes {
		if x.m == nil {
			continue
		}
		r := x.m.Ready()
		n.apply(x, r)
	}
	if n.check != nil {
		if err := n.check(n); err != nil {
			n.fail("%v", err)
		}
	}
}

func (n *network) apply(x *node, r Ready) {
	for _, s := range r.Notes {
		n.printf("  %s: note %s\n", x.name, s)
	}
	eff := x.disk.MyState // the state before this Ready (the saved one in STARTUP)
	for _, t := range r.Transitions {
		n.printf("  %s: %s -> %s (stos %d): %s\n", x.name, t.From, t.To, t.Stos, t.Reason)
		// (R) RECOVER is left only through the peer's UPDDONE (to
		// RECOVER-WAIT or RECOVER-DONE), or to SHUTDOWN.
		if from := t.From; from == Recover || from == Startup && eff == Recover {
			switch {
			case t.To == Recover, t.To == Startup, t.To == Shutdown:
			case (t.To == RecoverWait || t.To == RecoverDone) && n.updDone == x:
			default:
				n.fail("(R) %s left recover for %s without the peer's UPDDONE: %s", x.name, t.To, t.Reason)
			}
		}
		if t.To != Startup {
			eff = t.To
		}
		if t.From != Startup {
			if x.enteredBy == nil {
				x.enteredBy = map[State]string{}
			}
			x.enteredBy[t.To] = t.Reason
		}
		// A PARTNER-DOWN resumed after a restart continues the episode.
		if t.To == PartnerDown && (t.From != Startup || x.pdCause == "") {
			x.pdCause = t.Reason
		}
	}
	for _, a := range r.Actions {
		n.printf("  %s: action %s\n", x.name, a)
	}
	if r.Persist != nil {
		x.disk = *r.Persist
		p := *r.Persist
		n.printf("  %s: persist my %s@%d peer %s@%d mclt %d\n", x.name, p.MyState, p.MyStos, p.PeerState, p.PeerStos, p.MCLT)
	}
	if got := x.m.Persistent(); got != x.disk {
		n.fail("%s: persisted %+v but the machine's record is %+v", x.name, x.disk, got)
	}
	peer := n.peerOf(x)
	for _, msg := range r.Send {
		if !x.connected {
			n.fail("%s: machine sent %s while not connected", x.name, msg)
			continue
		}
		if n.link && peer == nil {
			// A lone machine (table transcripts): show what it sends.
			n.printf("  %s: send %s\n", x.name, msg)
			continue
		}
		if !n.link || peer == nil || peer.m == nil || !peer.connected {
			n.printf("  %s: send %s (lost: link down)\n", x.name, msg)
			continue
		}
		n.printf("  %s: send %s\n", x.name, msg)
		n.queue = append(n.queue, envelope{from: x, to: peer, msg: msg})
	}
	if r.NextTimer != x.lastTimer {
		_, what := x.m.nextTimer()
		if r.NextTimer == 0 {
			n.printf("  %s: timer none\n", x.name)
		} else {
			n.printf("  %s: timer %d (%s)\n", x.name, r.NextTimer, what)
		}
		x.lastTimer = r.NextTimer
	}
}

// connect establishes the link: CONNECT/CONNECTACK done, both sides send
// their STATE (the secondary first, as it sends it with the CONNECTACK).
func (n *network) connect() error {
	if n.link {
		return fmt.Errorf("already connected")
	}
	for _, x := range n.nodes {
		if x.m == nil {
			return fmt.Errorf("%s is down", x.name)
		}
		if x.connected {
			return fmt.Errorf("%s has not noticed the old link is gone", x.name)
		}
	}
	n.link = true
	order := append([]*node(nil), n.nodes...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].cfg.Role > order[j].cfg.Role })
	for _, x := range order {
		x.connected = true
		x.owes = false
	}
	for _, x := range order {
		if x.cfg.Role == Secondary {
			if p := n.peerOf(x); p != nil && p.m != nil {
				x.m.SetMCLT(p.m.mclt)
			}
		}
		x.m.Connected(n.now)
		n.apply(x, x.m.Ready())
	}
	n.flush()
	return nil
}

// cut breaks the link; in-flight messages are lost; nobody notices yet.
func (n *network) cut() {
	n.link = false
	n.queue = nil
	for _, x := range n.nodes {
		x.owes = false
	}
}

// notice tells x's machine that the link is gone.
func (n *network) notice(x *node) {
	if x.m == nil || !x.connected || n.link {
		return
	}
	x.connected = false
	x.m.Disconnected(n.now)
	n.flush()
}

// disconnect cuts the link and both sides notice at once.
func (n *network) disconnect() {
	n.cut()
	for _, x := range n.nodes {
		n.notice(x)
	}
}

// crash stops x (kill -9). Its disk survives. The peer sees the FIN at once
// unless silent.
func (n *network) crash(x *node, silent bool) {
	x.m = nil
	x.connected = false
	x.lastTimer = 0
	n.cut()
	if !silent {
		if p := n.peerOf(x); p != nil {
			n.notice(p)
		}
	}
}

// restart starts x again from its disk, or from nothing (amnesia).
func (n *network) restart(x *node, amnesia bool) {
	if amnesia {
		x.disk = Persistent{}
	}
	x.m = New(x.cfg, x.disk, n.now)
	x.connected = false
	n.flush()
}

// deliverOne delivers the oldest in-flight message. When nothing is in
// flight, sessions that owe an UPDDONE send it (all bindings have been
// sent). It returns false when there is nothing left to do.
func (n *network) deliverOne(autoUpdDone bool) bool {
	if len(n.queue) == 0 {
		if !autoUpdDone || !n.link {
			return false
		}
		sent := false
		for _, x := range n.nodes {
			if x.owes && x.m != nil && x.connected {
				x.owes = false
				p := n.peerOf(x)
				n.queue = append(n.queue, envelope{from: x, to: p, updDone: true})
				sent = true
			}
		}
		if !sent {
			return false
		}
	}
	e := n.queue[0]
	n.queue = n.queue[1:]
	n.printf("%s\n", e)
	to := e.to
	if to.m == nil || !to.connected {
		n.printf("  (dropped: %s is not connected)\n", to.name)
		return true
	}
	switch {
	case e.updDone:
		n.updateDone(to)
		return true
	case e.msg.Type == MsgState:
		to.m.PeerState(e.msg.State, e.msg.Startup, n.now)
	case e.msg.Type == MsgUpdReq, e.msg.Type == MsgUpdReqAll:
		if to.owes {
			n.printf("  %s: session: new request replaces the one still being served\n", to.name)
		} else {
			n.printf("  %s: session: will answer UPDDONE after sending updates\n", to.name)
		}
		to.owes = true
	}
	n.flush()
	return true
}

// updateDone hands x's machine an UPDDONE from its peer.
func (n *network) updateDone(x *node) {
	n.updDone = x
	x.m.UpdateDone(n.now)
	n.flush()
	n.updDone = nil
}

// deliverAll delivers until nothing is in flight (bounded).
func (n *network) deliverAll(autoUpdDone bool, limit int) int {
	i := 0
	for ; i < limit && n.deliverOne(autoUpdDone); i++ {
	}
	return i
}

// quiescent reports whether both machines run, are connected on a live
// link, and have nothing left to exchange.
func (n *network) quiescent() bool {
	if !n.link || len(n.queue) > 0 {
		return false
	}
	for _, x := range n.nodes {
		if x.m == nil || !x.connected || x.owes {
			return false
		}
	}
	return true
}

// tick advances the clock to t and ticks every running machine.
func (n *network) tick(t int64, only *node) {
	if t > n.now {
		n.now = t
	}
	for _, x := range n.nodes {
		if x.m != nil && (only == nil || only == x) {
			x.m.Tick(n.now)
		}
	}
	n.flush()
}

// nextTimer is the earliest timer of any running machine (0 = none).
func (n *network) nextTimer() int64 {
	var at int64
	for _, x := range n.nodes {
		if x.m == nil {
			continue
		}
		if t, _ := x.m.nextTimer(); t != 0 && (at == 0 || t < at) {
			at = t
		}
	}
	return at
}

func (n *network) command(x *node, to State) error {
	if x.m == nil {
		return fmt.Errorf("%s is down", x.name)
	}
	err := x.m.Command(to, n.now)
	if err == nil {
		x.commanded++
	}
	n.flush()
	return err
}

// force puts x's machine directly into state st (not STARTUP) with known
// peer state peer and stos, connected or not, discarding any output. It is
// how the table transcripts set up a cell.
func (n *network) force(x *node, st, peer State, stos int64, connected bool) {
	m := x.m
	m.state, m.saved, m.stos = st, st, stos
	m.peer, m.peerStos, m.peerStartup = peer, stos, false
	m.connected, m.peerHeard = connected, connected
	m.reason = "forced by the test"
	m.autoPDDeadline = 0
	if st == CommInterrupted && m.cfg.AutoPartnerDown > 0 {
		m.autoPDDeadline = stos + m.cfg.AutoPartnerDown
	}
	x.connected = connected
	n.link = connected
	n.queue = nil
	x.owes = false
	m.Ready()
	x.disk = m.Persistent()
	x.lastTimer, _ = m.nextTimer()
}
