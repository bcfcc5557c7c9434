package fsm

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

var (
	simSeed      = flag.Uint64("fsm.seed", 1, "first seed of the simulated schedules")
	simSchedules = flag.Int("fsm.schedules", 1000, "number of simulated schedules")
	simSteps     = flag.Int("fsm.steps", 300, "steps per simulated schedule")
)

// The invariants checked by the simulation. They follow draft-12's safety
// argument: a server cannot tell a dead peer from a cut link (draft-12 §9.4), so
// while the servers cannot talk each may serve only from what it owns
// (COMMUNICATIONS-INTERRUPTED, CONFLICT-DONE; NORMAL until it notices), and
// the only state that takes the partner's addresses, PARTNER-DOWN, must be
// entered only when the partner is not operating: because the partner said
// so (SHUTDOWN, RECOVER) or because an operator or the auto-partner-down
// timer asserted it (then MCLT is the only protection, by design).
//
//	(S)  At every step: if both servers may serve and one of them is in
//	     PARTNER-DOWN, then one of them is in a PARTNER-DOWN declared by an
//	     operator or by auto-partner-down (the assertion the draft leaves
//	     to the operator); a PARTNER-DOWN derived from the peer's messages
//	     never coexists with a serving peer.
//	(a)  Whenever the pair is quiescent (link up, both connected, nothing
//	     in flight, no UPDDONE owed — i.e. each has processed the other's
//	     current state): neither is NORMAL while the other is PARTNER-DOWN,
//	     and if both may serve then both are NORMAL.
//	(b)  Liveness: after the chaos phase (no more commands), with both
//	     servers running and the link healed, delivering everything and
//	     firing timers brings both to NORMAL within a bounded number of
//	     rounds, unless one is in SHUTDOWN or PAUSED (administrative
//	     states, left only by an operator).
//	(c)  MayServe is false in every state that does not serve clients and
//	     whenever the peer's known state forbids service.
//	(d)  After every Ready the record on disk (the last Persist) equals
//	     the machine's Persistent, and a restart resumes from it.
//	(R)  A server leaves RECOVER (including out of STARTUP with saved
//	     RECOVER) only to SHUTDOWN, or to RECOVER-WAIT / RECOVER-DONE while
//	     handling the peer's UPDDONE: never without the peer's bindings
//	     (checked in network.apply, for the transcripts too).
func TestSimulatedPair(t *testing.T) {
	stats := map[string]int{}
	for i := 0; i < *simSchedules; i++ {
		seed := *simSeed + uint64(i)
		if err := runSchedule(seed, *simSteps, stats, *simSchedules == 1 && testing.Verbose()); err != nil {
			t.Fatalf("Schedule with seed %d (rerun: go test -run TestSimulatedPair -fsm.seed=%d -fsm.schedules=1 -v): %v", seed, seed, err)
		}
	}
	keys := make([]string, 0, len(stats))
	for k := range stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %6d  %s", stats[k], k)
	}
	t.Logf("Seeds %d..%d, %d steps each; outcomes:%s", *simSeed, *simSeed+uint64(*simSchedules)-1, *simSteps, b.String())
}

func operatorOrAuto(cause string) bool {
	return strings.HasPrefix(cause, "operator command") || strings.HasPrefix(cause, "auto-partner-down")
}

// checkInvariants implements (S), (c) and the step part of (d).
func checkInvariants(n *network) error {
	var up []*node
	for _, x := range n.nodes {
		if x.m == nil {
			continue
		}
		up = append(up, x)
		m := x.m
		if (!m.State().ServesClients() || PeerForbidsService(m.peer)) && m.MayServe() {
			return fmt.Errorf("(c) %s may serve in %s with peer %s", x.name, m.State(), m.peer)
		}
		if p := m.Persistent(); p.MyState == Startup || !p.MyState.Valid() || p.MyState == Unknown {
			return fmt.Errorf("(d) %s would persist state %s", x.name, p.MyState)
		}
	}
	if len(up) == 2 && up[0].m.MayServe() && up[1].m.MayServe() {
		declared := false
		for _, x := range up {
			if x.m.State() == PartnerDown && operatorOrAuto(x.pdCause) {
				declared = true
			}
		}
		for i, x := range up {
			if x.m.State() == PartnerDown && !declared {
				o := up[1-i]
				return fmt.Errorf("(S) %s is partner-down (%q) while %s serves in %s, and no partner-down was declared", x.name, x.pdCause, o.name, o.m.State())
			}
		}
	}
	return nil
}

// checkQuiescent implements (a).
func checkQuiescent(n *network) error {
	if !n.quiescent() {
		return nil
	}
	a, b := n.nodes[0].m, n.nodes[1].m
	for _, pair := range [][2]*Machine{{a, b}, {b, a}} {
		if pair[0].State() == Normal && pair[1].State() == PartnerDown {
			return fmt.Errorf("(a) quiescent pair with one normal and the other partner-down")
		}
	}
	if a.MayServe() && b.MayServe() && (a.State() != Normal || b.State() != Normal) {
		return fmt.Errorf("(a) quiescent pair both serving in %s and %s", a.State(), b.State())
	}
	return nil
}

var commandTargets = []State{PartnerDown, Paused, Shutdown, Recover, Normal}

func runSchedule(seed uint64, steps int, stats map[string]int, verbose bool) (err error) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	n := newNetwork(10_000, verbose)
	n.check = checkInvariants
	var trace []string
	defer func() {
		if err != nil {
			tail := trace
			if len(tail) > 40 {
				tail = tail[len(tail)-40:]
			}
			err = fmt.Errorf("%w\nlast steps:\n  %s", err, strings.Join(tail, "\n  "))
		}
	}()
	mclt := int64(10 + rng.IntN(50))
	var auto int64
	if rng.IntN(3) == 0 {
		auto = int64(5 + rng.IntN(30))
	}
	commands := rng.IntN(2) == 0
	var pp, ps Persistent
	if rng.IntN(2) == 0 {
		pp = Persistent{MyState: Normal, MyStos: 9000, PeerState: Normal, PeerStos: 9000, MCLT: mclt}
		ps = pp
	}
	p := n.add("p", Config{Role: Primary, MCLT: mclt, AutoPartnerDown: auto}, pp)
	s := n.add("s", Config{Role: Secondary, AutoPartnerDown: auto}, ps)
	nodes := []*node{p, s}
	pick := func() *node { return nodes[rng.IntN(2)] }
	usedCommands := false

	step := func(what string) error {
		if n.out != nil {
			fmt.Printf("%s\n=== t=%d %s\n", n.out.String(), n.now, what)
			n.out.Reset()
		}
		trace = append(trace, fmt.Sprintf("t=%d %s -> p=%s(peer %s) s=%s(peer %s)", n.now, what, stateOf(p), peerOf(p), stateOf(s), peerOf(s)))
		if n.err != nil {
			return n.err
		}
		return checkQuiescent(n)
	}

	for i := 0; i < steps; i++ {
		r := rng.IntN(100)
		var what string
		switch {
		case r < 40:
			if !n.deliverOne(true) {
				continue
			}
			what = "deliver"
		case r < 50:
			if n.link || p.m == nil || s.m == nil || p.connected || s.connected {
				continue
			}
			if err := n.connect(); err != nil {
				return err
			}
			what = "connect"
		case r < 53:
			n.cut()
			what = "cut"
		case r < 60:
			x := pick()
			n.notice(x)
			what = "notice " + x.name
		case r < 62:
			n.disconnect()
			what = "disconnect"
		case r < 64:
			x := pick()
			if x.m == nil {
				continue
			}
			n.crash(x, rng.IntN(2) == 0)
			what = "crash " + x.name
		case r < 70:
			x := pick()
			if x.m != nil {
				continue
			}
			if err := checkRestart(n, x, rng.IntN(5) == 0); err != nil {
				return err
			}
			what = "restart " + x.name
		case r < 82:
			n.tick(n.now+int64(1+rng.IntN(40)), nil)
			what = "advance+tick"
		case r < 88:
			if at := n.nextTimer(); at != 0 {
				n.tick(at, nil)
				what = "tick to next timer"
			} else {
				continue
			}
		default:
			if !commands {
				continue
			}
			x := pick()
			to := commandTargets[rng.IntN(len(commandTargets))]
			if err := n.command(x, to); err != nil {
				what = fmt.Sprintf("command %s %s refused: %v", x.name, to, err)
			} else {
				what = fmt.Sprintf("command %s %s", x.name, to)
				usedCommands = true
			}
		}
		if err := step(what); err != nil {
			return err
		}
	}

	// Liveness phase: no more commands; heal everything.
	for _, x := range nodes {
		if x.m == nil {
			if err := checkRestart(n, x, false); err != nil {
				return err
			}
		}
	}
	n.cut()
	for _, x := range nodes {
		n.notice(x)
	}
	if err := n.connect(); err != nil {
		return fmt.Errorf("heal: %v", err)
	}
	if err := step("heal"); err != nil {
		return err
	}
	for round := 0; round < 20; round++ {
		n.deliverAll(true, 500)
		if err := step("deliver all"); err != nil {
			return err
		}
		if p.m.State() == Normal && s.m.State() == Normal {
			break
		}
		at := n.nextTimer()
		if at == 0 {
			break
		}
		n.tick(at, nil)
		if err := step("tick to next timer"); err != nil {
			return err
		}
	}
	outcome := fmt.Sprintf("p=%s s=%s", p.m.State(), s.m.State())
	switch {
	case p.m.State() == Normal && s.m.State() == Normal:
		outcome = "both normal"
	case isAdmin(p.m.State()) || isAdmin(s.m.State()):
		x := p
		if isAdmin(s.m.State()) {
			x = s
		}
		why := x.enteredBy[x.m.State()]
		switch {
		case why == "":
			why = "stored at start"
		case strings.HasPrefix(why, "operator"):
			why = "operator command"
		}
		why = x.name + " " + x.m.State().String() + ": " + why
		outcome += " (" + why + ")"
		if !usedCommands {
			outcome += " [no commands]"
		}
	default:
		return fmt.Errorf("(b) no progress to normal after healing: %s", outcome)
	}
	stats[outcome]++
	return nil
}

func isAdmin(s State) bool { return s == Shutdown || s == Paused }

// checkRestart restarts x and checks (d): it resumes from what was persisted.
func checkRestart(n *network, x *node, amnesia bool) error {
	disk := x.disk
	n.restart(x, amnesia)
	st := x.m.Status()
	if !amnesia && st.SavedState != disk.MyState {
		return fmt.Errorf("(d) %s restarted with saved state %s, disk says %s", x.name, st.SavedState, disk.MyState)
	}
	if !amnesia && st.Stos != disk.MyStos {
		return fmt.Errorf("(d) %s restarted with stos %d, disk says %d", x.name, st.Stos, disk.MyStos)
	}
	return n.err
}

func stateOf(x *node) string {
	if x.m == nil {
		return "down"
	}
	s := x.m.State().String()
	if x.connected {
		s += "+"
	}
	return s
}

func peerOf(x *node) string {
	if x.m == nil {
		return "-"
	}
	return x.m.peer.String()
}
