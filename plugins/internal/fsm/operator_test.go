package fsm

import "testing"

// TestOperatorGuards: which of the operator's commands beyond a state
// (maintenance start and stop, resync, rebalance) each state allows, as
// failoverctl sees them. A cell is (our state, the peer's, connected).
func TestOperatorGuards(t *testing.T) {
	all := []State{Normal, CommInterrupted, PartnerDown, PotentialConflict, ConflictDone,
		ResolutionInterrupted, Recover, RecoverWait, RecoverDone, Paused, Shutdown}
	for _, st := range all {
		for _, peer := range all {
			for _, connected := range []bool{false, true} {
				n := newNetwork(1000, false)
				x := n.add("a", Config{Role: Primary, MCLT: 3600}, Persistent{})
				n.force(x, st, peer, 900, connected)
				m := x.m
				peerReady := peer == Normal || peer == CommInterrupted || peer == Paused
				cell := st.String() + "/" + peer.String()
				if !connected {
					cell += " (disconnected)"
				}

				already, err := m.CheckMaintenanceStart()
				wantAlready := connected && st == Shutdown
				wantOK := connected && (st == Normal || st == CommInterrupted || st == Paused) && peerReady
				if already != wantAlready || (err == nil) != (wantOK || wantAlready) {
					t.Errorf("%s: maintenance start: already %t, err %v", cell, already, err)
				}

				to, err := m.MaintenanceStopTarget()
				switch {
				case st == Paused && connected && peerReady:
					if err != nil || to != Normal {
						t.Errorf("%s: maintenance stop to %s (%v), want normal", cell, to, err)
					}
				case st == Paused || st == Shutdown:
					if err != nil || to != Recover {
						t.Errorf("%s: maintenance stop to %s (%v), want recover", cell, to, err)
					}
				default:
					if err == nil {
						t.Errorf("%s: maintenance stop to %s accepted outside maintenance", cell, to)
					}
				}

				if err := m.CheckResync(); (err == nil) != connected {
					t.Errorf("%s: resync: %v", cell, err)
				}
				if err := m.CheckRebalance(); (err == nil) != (st == Normal) || m.MayBalance() != (st == Normal) {
					t.Errorf("%s: rebalance: %v, may balance %t", cell, err, m.MayBalance())
				}
			}
		}
	}
}
