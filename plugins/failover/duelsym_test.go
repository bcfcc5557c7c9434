package failover

import (
	"fmt"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// duelCopy is one server's copy of an address, named for the report.
type duelCopy struct {
	name string
	b    lease.Binding
}

// duelClient is client c's hardware address.
func duelClient(c byte) []byte { return []byte{1, 2, 0, 0, 0, 0, c} }

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
	hw := duelClient
	var copies []duelCopy
	for _, st := range []lease.State{lease.Free, lease.Expired, lease.Released, lease.Abandoned, lease.Reset, lease.Backup} {
		copies = append(copies, duelCopy{st.String(), lease.Binding{IP: ip, State: st, HWAddr: hw(1), Start: now - 100, End: now - 10, CLTT: now - 100}})
	}
	for _, c := range []byte{1, 2} {
		for _, a := range []struct {
			name      string
			cltt, end int64
		}{{"running", now - 50, now + 500}, {"running, later cltt", now - 40, now + 500}, {"running, later end", now - 50, now + 600},
			{"ended", now - 700, now - 100}, {"ended, later cltt", now - 690, now - 100}, {"infinite", now - 50, 0}} {
			copies = append(copies, duelCopy{fmt.Sprintf("active of client %d, %s", c, a.name),
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

// TestEveryCrossingOfUpdatesHasOneWinnerOnBothServers: as
// TestEveryDuelHasOneWinnerOnBothServers, through ApplyPeer in NORMAL,
// whose checks after the duel (the state transitions) may refuse what
// the duel let win: a refusal there, while the peer refused ours in the
// duel, leaves each server with its own copy.
//
// One set of crossings does that, and is pinned here (known bug, in the
// failover README): the primary's FREE or BACKUP whose potential expiry
// is still ahead crosses the secondary's EXPIRED or RESET. The primary
// keeps its copy by the duel; the secondary lets it win the duel, then
// refuses it (reason 2: it will not free an address a client may hold
// until that potential expiry), as ISC does. Neither copy lets both
// servers give the address: the secondary gives only BACKUP addresses
// and holds EXPIRED or RESET, which it gives to nobody (after the
// primary's BACKUP the address is given by neither until a later change
// settles it). No schedule of the simulation has produced this crossing.
func TestEveryCrossingOfUpdatesHasOneWinnerOnBothServers(t *testing.T) {
	now := int64(1_800_000_000)
	ip := mustIP("192.0.2.100")
	hw := duelClient
	var copies []duelCopy
	for _, st := range []lease.State{lease.Free, lease.Expired, lease.Released, lease.Reset, lease.Backup} {
		for _, pe := range []int64{now - 10, now + 100} {
			copies = append(copies, duelCopy{fmt.Sprintf("%s, potential expiry %+d", st, pe-now),
				lease.Binding{IP: ip, State: st, HWAddr: hw(1), Start: now - 100, End: now - 10, CLTT: now - 100, PeerExpiry: pe, SentExpiry: pe}})
		}
	}
	copies = append(copies, duelCopy{"abandoned", lease.Binding{IP: ip, State: lease.Abandoned, Start: now - 100, End: now + 100, CLTT: now - 100}})
	for _, c := range []byte{1, 2} {
		for _, a := range []struct {
			name      string
			cltt, end int64
		}{{"running", now - 50, now + 500}, {"running, later cltt", now - 40, now + 500}, {"ended", now - 700, now - 100}, {"ended 30 s ago", now - 600, now - 30}} {
			copies = append(copies, duelCopy{fmt.Sprintf("active of client %d, %s", c, a.name),
				lease.Binding{IP: ip, State: lease.Active, HWAddr: hw(c), Start: a.cltt, End: a.end, CLTT: a.cltt, PeerExpiry: a.end, SentExpiry: a.end}})
		}
	}
	// takes reports whether the server of role primary, holding mine
	// unacknowledged, accepts theirs. resent: mine is not a change but
	// a binding the peer had and asked for again (an update request's
	// answer), in flight all the same.
	takes := func(primary, resent bool, mine, theirs lease.Binding) bool {
		h, _ := newPairHarness(t, primary, 128, fsm.Normal)
		mine.Pending = !resent
		h.s.table.Put(mine)
		r, _, done := h.s.ApplyPeer(theirs, now, mine)
		if r == 0 {
			if err := done.Wait(); err != nil {
				t.Fatal(err)
			}
		}
		return r == 0
	}
	// keepsOwn is the pinned set above.
	keepsOwn := func(p, s lease.Binding) bool {
		return (p.State == lease.Free || p.State == lease.Backup) && p.PeerExpiry > now &&
			(s.State == lease.Expired || s.State == lease.Reset)
	}
	for _, resent := range []struct {
		name       string
		prim, secd bool
	}{{"both changes", false, false}, {"the primary's re-sent", true, false}, {"the secondary's re-sent", false, true}} {
		pinned := 0
		for _, p := range copies {
			for _, s := range copies {
				primTakes, secTakes := takes(true, resent.prim, p.b, s.b), takes(false, resent.secd, s.b, p.b)
				switch {
				case primTakes && secTakes:
					t.Errorf("%s: primary's %s against secondary's %s: each takes the other's", resent.name, p.name, s.name)
				case !primTakes && !secTakes && keepsOwn(p.b, s.b):
					pinned++
				case !primTakes && !secTakes:
					t.Errorf("%s: primary's %s against secondary's %s: each keeps its own", resent.name, p.name, s.name)
				case keepsOwn(p.b, s.b):
					t.Errorf("%s: primary's %s against secondary's %s: one winner now; drop it from the pinned set and the README's bug", resent.name, p.name, s.name)
				}
			}
		}
		if pinned != 8 {
			t.Errorf("%s: %d crossings leave each server its own copy, want the 8 pinned", resent.name, pinned)
		}
	}
}

// A copy of the peer's own update among ours in flight is no duel
// (simulation seed 1164889): client 3 got 192.0.2.19 from both servers
// alike (end 509), released it to the primary (RELEASED, in flight), and
// took it again from the secondary (ACTIVE, end 509). The secondary's
// ACTIVE must beat the primary's RELEASED at the primary, where the
// primary's own ACTIVE in flight is the same lease as the one arriving:
// judged against it, the tie went to the primary, and the secondary's
// newer lease was refused while the secondary took the RELEASED.
func TestACopyOfThePeersUpdateInFlightIsNoDuel(t *testing.T) {
	now := int64(1_800_000_000)
	ip := mustIP("192.0.2.100")
	active := lease.Binding{IP: ip, State: lease.Active, HWAddr: duelClient(3), Start: now - 1, End: now + 300, CLTT: now - 1}
	released := lease.Binding{IP: ip, State: lease.Released, HWAddr: duelClient(3), Start: now, End: now, CLTT: now}
	prim, _ := newPairHarness(t, true, 128, fsm.Normal)
	cur := released
	cur.Pending = true
	prim.s.table.Put(cur)
	if r, msg, done := prim.s.ApplyPeer(active, now, active, released); r != 0 {
		t.Fatalf("the primary refused the secondary's newer ACTIVE: %d %s", r, msg)
	} else if err := done.Wait(); err != nil {
		t.Fatal(err)
	}
	// The secondary, holding that ACTIVE (taken from the primary, its
	// own copy in flight), refuses the primary's RELEASED: both end with
	// client 3's lease.
	sec, _ := newPairHarness(t, false, 128, fsm.Normal)
	sec.s.table.Put(active)
	if r, _, _ := sec.s.ApplyPeer(released, now, active); r == 0 {
		t.Fatal("the secondary took the RELEASED over its ACTIVE in flight")
	}
}
