package leasesync

import (
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/coredhcp/coredhcp/logger"
)

// TestSimulationWithTwoUpdatesInFlight: the default faults with
// max-unacked-updates=2 (SIM_MAXUNACKED), which keeps a server's
// pending updates queued across round trips instead of sent in one burst
// (seed 311389 needs 3). Regression test: a server in PARTNER-DOWN met its
// peer in RECOVER-DONE (restarted from that saved state, its recovery done
// before the PARTNER-DOWN server's latest leases), both went NORMAL, and
// the recovered server gave an address the other gave in PARTNER-DOWN,
// whose BNDUPD was still queued behind the STATE that said NORMAL. With
// the default limit (100) and the simulation's 12 addresses the updates
// all go before that STATE; with a pool larger than the limit they cannot.
// Shrunk, seed 303115: t=941 the secondary (PARTNER-DOWN) ACKs
// 192.0.2.21 to client 6 and sends BNDUPDs two at a time; t=943 it goes
// NORMAL on the primary's RECOVER-DONE, t=944 the primary went NORMAL,
// t=945 it ACKed 192.0.2.21 to client 15 while the secondary's BNDUPD of
// it left only then. Now RECOVER-DONE sends UPDREQ when the peer reports
// NORMAL or RECOVER-DONE and goes NORMAL at the UPDDONE, which follows the
// peer's pending BNDUPDs on the link (fsm
// TestRecoverDoneWaitsForThePeersUpdates).
func TestSimulationWithTwoUpdatesInFlight(t *testing.T) {
	t.Setenv("SIM_MAXUNACKED", "2")
	lg := logger.GetLogger("sim").Logger
	level := lg.GetLevel()
	lg.SetLevel(logrus.PanicLevel)
	defer lg.SetLevel(level)
	for _, seed := range []int64{300160, 303115, 304220} {
		if _, v := simRun(seed, defaultFaults, schedule(seed, defaultFaults), false); v != nil {
			t.Errorf("seed %d (SIM_MAXUNACKED=2): %s", seed, v)
		}
	}
	t.Setenv("SIM_MAXUNACKED", "3")
	for _, seed := range []int64{311389} {
		if _, v := simRun(seed, defaultFaults, schedule(seed, defaultFaults), false); v != nil {
			t.Errorf("seed %d (SIM_MAXUNACKED=3): %s", seed, v)
		}
	}
}
