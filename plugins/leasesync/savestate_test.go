package leasesync

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// stateFailStore fails the next failNext SaveState calls.
type stateFailStore struct {
	lease.Store
	failNext atomic.Int32
}

func (s *stateFailStore) SaveState(st lease.RelState) error {
	if s.failNext.Add(-1) >= 0 {
		return errors.New("disk full")
	}
	return s.Store.SaveState(st)
}

// A failover state whose write failed is written again at the next round:
// the state on disk must not stay behind. Before the fix the session
// logged the failure and never wrote it again until the state changed
// once more; a server that went PARTNER-DOWN while its store failed came
// back from a restart as COMMUNICATIONS-INTERRUPTED and went NORMAL with
// its peer, skipping POTENTIAL-CONFLICT (TestSimulationSavesThePartnerDownState).
func TestAFailedStateSaveIsRetried(t *testing.T) {
	fs := &stateFailStore{}
	tg, _ := normalTargetWith(t, targetOpts{wrap: func(st lease.Store) lease.Store { fs.Store = st; return fs }})
	fs.failNext.Store(1)
	if err := tg.s.Command(fsm.Shutdown); err != nil {
		t.Fatal(err)
	}
	// Two more rounds: the command's has ended, and one after it.
	tg.s.inspect(func() {})
	tg.s.inspect(func() {})
	tg.s.inspect(func() {})
	st, ok, err := tg.store.LoadState()
	if err != nil || !ok || st.MyState != uint8(wire.StateShutdown) {
		t.Fatalf("stored state %d (ok %t, err %v), want shutdown (%d)", st.MyState, ok, err, wire.StateShutdown)
	}
}

// Simulation seed 402496 with max-unacked-updates=1 (default faults),
// shrunk: the primary's store fails from t=15 to t=212; t=74 the
// operator declares partner-down on it (the state write fails, and was
// never tried again); t=213 it ACKs 192.0.2.12, a BACKUP address, to
// client 6 (the lease is durable: the store works again); t=240 it
// restarts from its stored state, NORMAL, so COMMUNICATIONS-INTERRUPTED,
// and at t=282 both servers go NORMAL; t=285 the secondary ACKs
// 192.0.2.12 to client 12 while the primary's BNDUPD of it is still
// queued behind max-unacked-updates=1.
func TestSimulationSavesThePartnerDownState(t *testing.T) {
	const seed = 402496
	if _, v := quietSim(t, "1", seed); v != nil {
		t.Errorf("seed %d (SIM_MAXUNACKED=1): %s", seed, v)
	}
}
