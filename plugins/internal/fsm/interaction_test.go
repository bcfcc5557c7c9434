package fsm

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestInteraction runs the transcripts in testdata/*.txt. Each script drives
// a simulated pair (network) and prints, per command, the messages delivered
// and each machine's reaction. Regenerate with
//
//	go test ./plugins/internal/fsm/ -run TestInteraction -rewrite
//
// and commit only output you have checked against docs/protocol.md §12 and the
// captures.
//
// Commands (every command takes an optional t=N (absolute) or t=+Ns that
// first advances the clock; the clock starts at 1000):
//
//	new name=p role=primary|secondary [mclt=30] [saved=STATE stos=N peer=STATE peer-stos=N saved-mclt=N]
//	    [auto-partner-down=N] [startup-timeout=N]
//	force name=p state=S peer=S [stos=N] [connected=false]
//	                             put p directly into a cell of the tables (no output)
//	connect                      link up: both send STATE (secondary first)
//	disconnect                   link down, both notice
//	cut                          link down, nobody notices yet
//	notice p                     p notices the link is gone
//	crash p [silent]             kill -9: p stops; its peer notices unless silent
//	restart p [amnesia]          start p from its disk (or from nothing)
//	deliver [n=N] [auto=false]   deliver in-flight messages, oldest first; when none
//	                             are left, sessions owing an UPDDONE send it
//	peer-state p state=S [startup=true]   inject a STATE into p
//	updone p                     inject an UPDDONE into p
//	tick [p]                     fire due timers (all machines, or p)
//	command p STATE              operator command
//	pending p true|false         SetUpdatesPending
//	status [p]                   print Status
func TestInteraction(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		n := newNetwork(1000, true)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			n.out.Reset()
			n.err = nil
			if err := runCommand(t, n, d); err != nil {
				fmt.Fprintf(n.out, "error: %v\n", err)
			}
			if n.err != nil {
				t.Fatalf("Invariant violated at %s: %v", d.Pos, n.err)
			}
			s := n.out.String()
			if s == "" {
				return "ok\n"
			}
			return s
		})
	})
}

func parseTime(t *testing.T, now int64, v string) int64 {
	v = strings.TrimSuffix(v, "s")
	if rel, ok := strings.CutPrefix(v, "+"); ok {
		d, err := strconv.ParseInt(rel, 10, 64)
		if err != nil {
			t.Fatalf("Bad time %q: %v", v, err)
		}
		return now + d
	}
	a, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("Bad time %q: %v", v, err)
	}
	return a
}

func argState(t *testing.T, d *datadriven.TestData, key string) (State, bool) {
	var v string
	if !d.MaybeScanArgs(t, key, &v) {
		return Unknown, false
	}
	s, err := ParseState(v)
	if err != nil {
		t.Fatalf("Bad state at %s: %v", d.Pos, err)
	}
	return s, true
}

// positional returns the arguments given without a value (e.g. "p" in "tick p").
func positional(d *datadriven.TestData) []string {
	var r []string
	for _, a := range d.CmdArgs {
		if len(a.Vals) == 0 {
			r = append(r, a.Key)
		}
	}
	return r
}

func runCommand(t *testing.T, n *network, d *datadriven.TestData) error {
	var tv string
	if d.MaybeScanArgs(t, "t", &tv) {
		if nt := parseTime(t, n.now, tv); nt > n.now {
			n.now = nt
		}
	}
	pos := positional(d)
	nodeArg := func(i int) *node {
		if i >= len(pos) {
			t.Fatalf("Command %s at %s needs a node name", d.Cmd, d.Pos)
		}
		x := n.node(pos[i])
		if x == nil {
			t.Fatalf("Unknown node %q at %s", pos[i], d.Pos)
		}
		return x
	}
	switch d.Cmd {
	case "new":
		var name, role string
		d.ScanArgs(t, "name", &name)
		d.ScanArgs(t, "role", &role)
		cfg := Config{Role: Primary}
		if role == "secondary" {
			cfg.Role = Secondary
		}
		d.MaybeScanArgs(t, "mclt", &cfg.MCLT)
		d.MaybeScanArgs(t, "auto-partner-down", &cfg.AutoPartnerDown)
		d.MaybeScanArgs(t, "startup-timeout", &cfg.StartupTimeout)
		var p Persistent
		if s, ok := argState(t, d, "saved"); ok {
			p.MyState = s
			p.MyStos = n.now
		}
		if d.HasArg("stos") {
			var v string
			d.ScanArgs(t, "stos", &v)
			p.MyStos = parseTime(t, n.now, v)
		}
		if s, ok := argState(t, d, "peer"); ok {
			p.PeerState = s
			p.PeerStos = p.MyStos
		}
		if d.HasArg("peer-stos") {
			var v string
			d.ScanArgs(t, "peer-stos", &v)
			p.PeerStos = parseTime(t, n.now, v)
		}
		d.MaybeScanArgs(t, "saved-mclt", &p.MCLT)
		if err := cfg.Validate(); err != nil && cfg.Role == Primary {
			return err
		}
		n.add(name, cfg, p)
	case "force":
		var name string
		d.ScanArgs(t, "name", &name)
		x := n.node(name)
		if x == nil {
			t.Fatalf("Unknown node %q at %s", name, d.Pos)
		}
		st, _ := argState(t, d, "state")
		peer, _ := argState(t, d, "peer")
		stos := n.now
		if d.HasArg("stos") {
			var v string
			d.ScanArgs(t, "stos", &v)
			stos = parseTime(t, n.now, v)
		}
		connected := true
		d.MaybeScanArgs(t, "connected", &connected)
		n.force(x, st, peer, stos, connected)
		return nil
	case "connect":
		return n.connect()
	case "disconnect":
		n.disconnect()
	case "cut":
		n.cut()
	case "notice":
		n.notice(nodeArg(0))
	case "crash":
		x := nodeArg(0)
		n.crash(x, len(pos) > 1 && pos[1] == "silent")
		n.printf("  %s: crashed (disk: my %s@%d peer %s@%d)\n", x.name, x.disk.MyState, x.disk.MyStos, x.disk.PeerState, x.disk.PeerStos)
	case "restart":
		x := nodeArg(0)
		n.restart(x, len(pos) > 1 && pos[1] == "amnesia")
	case "deliver":
		limit := 1000
		d.MaybeScanArgs(t, "n", &limit)
		auto := true
		d.MaybeScanArgs(t, "auto", &auto)
		n.deliverAll(auto, limit)
	case "peer-state":
		x := nodeArg(0)
		s, ok := argState(t, d, "state")
		if !ok {
			var raw int
			d.ScanArgs(t, "raw", &raw)
			s = State(raw)
		}
		startup := false
		d.MaybeScanArgs(t, "startup", &startup)
		x.m.PeerState(s, startup, n.now)
		n.flush()
	case "updone":
		n.updateDone(nodeArg(0))
	case "tick":
		var only *node
		if len(pos) > 0 {
			only = nodeArg(0)
		}
		n.tick(n.now, only)
	case "command":
		x := nodeArg(0)
		if len(pos) < 2 {
			t.Fatalf("Command at %s needs a state", d.Pos)
		}
		s, err := ParseState(pos[1])
		if err != nil {
			if v, err2 := strconv.Atoi(pos[1]); err2 == nil {
				s = State(v)
			} else {
				t.Fatalf("Bad state at %s: %v", d.Pos, err)
			}
		}
		return n.command(x, s)
	case "pending":
		x := nodeArg(0)
		x.m.SetUpdatesPending(len(pos) > 1 && pos[1] == "true")
	case "status":
		for _, x := range n.nodes {
			if len(pos) > 0 && x.name != pos[0] {
				continue
			}
			if x.m == nil {
				n.printf("%s: down\n", x.name)
				continue
			}
			s := x.m.Status()
			n.printf("%s: %s state=%s saved=%s stos=%d peer=%s peer-startup=%t peer-stos=%d connected=%t mclt=%d may-serve=%t\n",
				x.name, s.Role, s.State, s.SavedState, s.Stos, s.PeerState, s.PeerStartup, s.PeerStos, s.Connected, s.MCLT, s.MayServe)
			if s.NextTimer != 0 {
				n.printf("%s: next timer %d (%s)\n", x.name, s.NextTimer, s.NextTimerWhat)
			}
			n.printf("%s: reason: %s\n", x.name, s.Reason)
		}
	default:
		t.Fatalf("Unknown command %q at %s", d.Cmd, d.Pos)
	}
	return nil
}
