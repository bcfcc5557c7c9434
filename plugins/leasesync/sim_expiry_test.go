package leasesync

import "testing"

// Simulation seed 402780 with max-unacked-updates=1 (default faults). Shrunk: the secondary's store fails from t=553 until
// its restart at t=882, so the expiry of client 2's lease of 192.0.2.15
// (end t=598) is in memory only. t=859, on a new link, it sends BNDUPD
// EXPIRED of 192.0.2.15 all the same (Pending reads memory), the primary
// acknowledges and frees it, and t=877 gives it to client 15. t=882 the
// secondary restarts from its disk, where 192.0.2.15 is still client 2's
// ACTIVE lease, and t=890 ACKs it to client 2 again: one address, two
// clients. The sweep's expiries now follow the rule of a client's change
// (plugins/failover/durable.go): hidden while written, undone on failure,
// announced from what the disk holds (failover
// TestASweepExpiryWhoseWriteFailsIsNeitherSeenNorKept).
func TestSimulationAnUnwrittenExpiryIsNotAnnounced(t *testing.T) {
	const seed = 402780
	if _, v := quietSim(t, "1", seed); v != nil {
		t.Errorf("seed %d (SIM_MAXUNACKED=1): %s", seed, v)
	}
}
