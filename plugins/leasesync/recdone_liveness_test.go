package leasesync

import (
	"fmt"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/coredhcp/coredhcp/logger"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// Regression test (attack2 finding): the UPDDONE answering an UPDREQ
// waited until the whole outbox was idle (nothing queued, in flight,
// deferred or to retry), not only for the updates pending when the
// request came. A server that keeps changing bindings -- clients served
// in NORMAL, or, as in the simulation, every client REQUEST failing on a
// failing store and re-announcing its address -- never sent it, and a
// peer in RECOVER-DONE, which goes NORMAL only at that UPDDONE, stayed in
// RECOVER-DONE (serving no one) for as long as the churn lasted. Now, as
// in ISC, UPDDONE follows the BNDACKs of what was pending at the request
// (outbox.owed).
//
// Here the peer asks (UPDREQ) while one update is queued and, before it
// acknowledges each BNDUPD, the target's bindings change once more (the
// failover plugin announces an address). Only the first update was due
// at the request: UPDDONE should follow its BNDACK. Each step waits for
// the target to have handled it, so that the run is the same every time
// (the peer's messages reach the session through the link's reader, the
// changes directly).
func TestUpdateDoneIsNotStarvedByLaterChanges(t *testing.T) {
	tg, p := normalTarget(t)
	rel := tg.s.Relationship()
	churn := func(i int) { rel.Changed(mustIP(fmt.Sprintf("192.0.2.%d", 180+i%10))) }
	// handled waits until cond holds on the session's goroutine.
	handled := func(what string, cond func() bool) {
		waitTarget(t, tg, what, func() (ok bool) {
			tg.s.inspect(func() { ok = cond() })
			return ok
		})
	}
	first := mustIP("192.0.2.180")
	churn(0)
	handled("the first change queued or sent", func() bool {
		_, sent := tg.s.out.inflight[first]
		return sent || tg.s.out.queued[first]
	})
	p.send(&wire.UpdateRequest{})
	handled("the UPDREQ handled", func() bool { return tg.s.out.peerReq != nil })
	const rounds = 30
	updates := 0
	for {
		b, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		switch m := b.(type) {
		case *wire.BindingUpdate:
			updates++
			if updates <= rounds {
				churn(updates) // queued before the ack is handled
			}
			ack := &wire.BindingAck{Header: wire.Header{XID: m.XID}}
			ack.Addr = m.Addr
			p.send(ack)
			ip, _ := lease.IPFromAddr(m.Addr)
			handled("the BNDACK handled", func() bool { return tg.s.out.inflight[ip].xid != m.XID })
		case *wire.UpdateDone:
			if updates > 2 {
				t.Fatalf("UPDDONE only after %d BNDUPDs: it waited for changes made after the UPDREQ (1 was pending at the request)", updates)
			}
			return
		}
	}
}

// Regression test (attack2 finding, fixed with the one above): simulation
// seed 400450 with max-unacked-updates=1 (default faults). Before the fix: t=2260 the primary's store
// starts failing for good; t=2262 the primary is NORMAL, the secondary
// RECOVER-DONE; t=2446 the secondary sends UPDREQ. Every client REQUEST
// to the primary now fails its write and re-announces the address
// (writeClient), so the primary always has a BNDUPD queued or in flight
// and never sends UPDDONE: until the end of the run (t=3067, 620 s
// later, linked all along) the secondary stays in RECOVER-DONE and no
// client gets a lease (6 ACKs in the whole run), although the
// secondary's store works and, before the recdone merge, it would have
// gone NORMAL on the primary's STATE and served. Now the primary's
// UPDDONE follows the BNDACKs of what was pending at the UPDREQ.
func TestSimulationRecoverDoneLeavesWhileThePeerIsBusy(t *testing.T) {
	const seed = 400450
	w, v := quietSim(t, "1", seed)
	if v != nil {
		t.Fatalf("seed %d: %s", seed, v)
	}
	for _, n := range w.nodes {
		st := n.ses.m.Status()
		if n.up && !w.cut && st.Connected && st.State == fsm.RecoverDone {
			t.Errorf("seed %d: %s still in recover-done at the end of the run, linked to a peer in %s (awaiting UPDDONE: %t)",
				seed, nodeName(n.idx), st.PeerState, st.AwaitingUpdateDone)
		}
	}
}

// quietSim runs seed with the default faults and max-unacked-updates
// maxUnacked (SIM_MAXUNACKED), the simulation's logger silenced.
func quietSim(t *testing.T, maxUnacked string, seed int64) (*simWorld, *violation) {
	t.Helper()
	t.Setenv("SIM_MAXUNACKED", maxUnacked)
	lg := logger.GetLogger("sim").Logger
	level := lg.GetLevel()
	lg.SetLevel(logrus.PanicLevel)
	defer lg.SetLevel(level)
	return simRun(seed, defaultFaults, schedule(seed, defaultFaults), false)
}
