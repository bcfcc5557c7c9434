package failover

import (
	"fmt"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// TestEveryDuelHasOneWinnerOnBothServers: two updates of one address
// cross; each server judges the peer's against its own (peerWinsDuel).
// Whatever the two states and whichever server is the primary, exactly
// one copy must win on both: if the primary keeps its own, the secondary
// takes it, and the other way round. Both keeping their own, or both
// taking the other's, leaves the servers holding different bindings with
// nothing left in flight to reconcile them (docs/protocol.md §13.4).
func TestEveryDuelHasOneWinnerOnBothServers(t *testing.T) {
	prim, _ := newPairHarness(t, true, 128, fsm.Normal)
	sec, _ := newPairHarness(t, false, 128, fsm.Normal)
	now := prim.clock.Now().Unix()
	ip := mustIP("192.0.2.100")
	hw := func(c byte) []byte { return []byte{1, 2, 0, 0, 0, 0, c} }
	type copyOf struct {
		name string
		b    lease.Binding
	}
	var copies []copyOf
	for _, st := range []lease.State{lease.Free, lease.Expired, lease.Released, lease.Abandoned, lease.Reset, lease.Backup} {
		copies = append(copies, copyOf{st.String(), lease.Binding{IP: ip, State: st, HWAddr: hw(1), Start: now - 100, End: now - 10, CLTT: now - 100}})
	}
	for _, c := range []byte{1, 2} {
		for _, a := range []struct {
			name      string
			cltt, end int64
		}{{"running", now - 50, now + 500}, {"running, later cltt", now - 40, now + 500}, {"running, later end", now - 50, now + 600},
			{"ended", now - 700, now - 100}, {"ended, later cltt", now - 690, now - 100}, {"infinite", now - 50, 0}} {
			copies = append(copies, copyOf{fmt.Sprintf("active of client %d, %s", c, a.name),
				lease.Binding{IP: ip, State: lease.Active, HWAddr: hw(c), Start: a.cltt, End: a.end, CLTT: a.cltt}})
		}
	}
	for _, p := range copies {
		for _, s := range copies {
			// The primary holds p (its own, unacknowledged) and
			// receives s; the secondary holds s and receives p.
			pc, sc := p.b, s.b
			primTakes := prim.s.peerWinsDuel(&pc, &sc)
			pc, sc = p.b, s.b
			secTakes := sec.s.peerWinsDuel(&sc, &pc)
			switch {
			case primTakes && secTakes:
				t.Errorf("primary's %s against secondary's %s: each takes the other's", p.name, s.name)
			case !primTakes && !secTakes:
				t.Errorf("primary's %s against secondary's %s: each keeps its own", p.name, s.name)
			}
		}
	}
}
