package leasesync

import "testing"

// Seeds of the 1,000,000-schedule run (default faults) that found a path
// to one address bound to two clients; each failed before its fix
// (docs/simulation.md tells each story).
func TestSimulationSeedsOfTheLongRun(t *testing.T) {
	for _, tc := range []struct {
		seed int64
		fix  string
	}{
		// A re-sent ACTIVE crossed a client's RELEASE: a duel on both
		// servers (failover ApplyPeer, dueled).
		{1286705, "a duel whenever an update of ours is in flight"},
		// A stale server in PARTNER-DOWN returned an ended lease to its
		// client (failover usableBy).
		{1235449, "an ended lease is not the client's when stale"},
		// Our update in flight was dropped when the peer's copy was
		// taken, and the peer's next update won no duel (leasesync
		// outbox.supersede; failover duelLost's copies).
		{1164889, "updates in flight stay for the duels"},
	} {
		if _, v := quietSim(t, "", tc.seed); v != nil {
			t.Errorf("seed %d (%s): %s", tc.seed, tc.fix, v)
		}
	}
}
