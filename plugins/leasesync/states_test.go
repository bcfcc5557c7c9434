package leasesync

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// stateOf is the target's failover state as the failover plugin sees it.
func stateOf(tg *target) func() fsm.State {
	return func() fsm.State { return tg.s.Relationship().View().MyState }
}

// backupRows are the secondary's BACKUP addresses 192.0.2.100..199: every
// free address of the pool is the secondary's, far beyond its share.
func backupRows(now int64) []lease.Binding {
	var rows []lease.Binding
	for i := 100; i < 200; i++ {
		rows = append(rows, lease.Binding{IP: mustIP(fmt.Sprintf("192.0.2.%d", i)), State: lease.Backup, PeerExpiry: now, SentExpiry: now})
	}
	return rows
}

// TestPoolRequestOutsideNormalTransfersNothing: POOLREQ is answered with
// POOLRESP 0 outside NORMAL (issue 15, suspicion "POOLREQ triggers a
// transfer in any state"). ISC balances only in NORMAL
// (dhcp_failover_pool_dobalance); moving free addresses to a peer that is
// not in NORMAL with us changes ownership while the servers do not agree
// on who serves.
func TestPoolRequestOutsideNormalTransfersNothing(t *testing.T) {
	clk := &fakeClock{now: time.Now()}
	now := clk.Now().Unix()
	tg := startTarget(t, targetOpts{clk: clk, rows: backupRows(now),
		saved: &lease.RelState{MyState: uint8(wire.StatePartnerDown), MyStos: now - 100, PeerState: uint8(wire.StateRecover), PeerStos: now - 100, MCLT: 30}})
	p := dialFrom(t, tg, peerIP)
	p.connect()
	p.send(&wire.State{ServerState: wire.StateRecover, StartTimeOfState: uint32(now)})
	waitTarget(t, tg, "partner-down after startup", func() bool { return stateOf(tg)() == fsm.PartnerDown })
	ownBefore, _ := tg.srv.FreeCounts()
	p.send(&wire.PoolRequest{})
	r := expect[*wire.PoolResponse](p)
	if r.AddressesTransferred != 0 {
		t.Errorf("A partner-down server answered POOLREQ with %d addresses transferred, want 0 outside normal", r.AddressesTransferred)
	}
	var own int
	tg.s.inspect(func() { own, _ = tg.srv.FreeCounts() })
	if own != ownBefore {
		t.Errorf("Free addresses owned went from %d to %d on a POOLREQ outside normal", ownBefore, own)
	}
}

// TestAutoPartnerDownIsHandedToTheStateMachine: with auto-partner-down
// configured, a server that lost its peer moves itself from
// COMMUNICATIONS-INTERRUPTED to PARTNER-DOWN that long after (issue 15:
// the mutation "auto-partner-down not handed to the state machine" passed
// every test).
func TestAutoPartnerDownIsHandedToTheStateMachine(t *testing.T) {
	clk := &fakeClock{now: time.Now()}
	tg, p := normalTargetWith(t, targetOpts{clk: clk, extra: "auto-partner-down=10"})
	p.c.Close()
	waitTarget(t, tg, "communications-interrupted after the link loss", func() bool { return stateOf(tg)() == fsm.CommInterrupted })
	tg.s.inspect(func() {}) // the session has armed its timers
	clk.Advance(9 * time.Second)
	tg.s.inspect(func() {})
	if st := stateOf(tg)(); st != fsm.CommInterrupted {
		t.Fatalf("9s into communications-interrupted with auto-partner-down=10: %s", st)
	}
	clk.Advance(2 * time.Second)
	waitTarget(t, tg, "partner-down 10s after the link loss", func() bool { return stateOf(tg)() == fsm.PartnerDown })
}

// TestShutdownToRecoverWaitsMCLTWhenUpdatesArePending settles issue 15's
// suspicion "SetUpdatesPending is never called": leaving SHUTDOWN for
// RECOVER while the peer is PARTNER-DOWN skips the MCLT wait (stos = now -
// MCLT, ISC) only if the peer has acknowledged every update of ours.
// Otherwise the peer does not know some of our leases, and the MCLT wait
// is what lets them end.
func TestShutdownToRecoverWaitsMCLTWhenUpdatesArePending(t *testing.T) {
	for _, pending := range []bool{false, true} {
		t.Run(fmt.Sprintf("pending=%t", pending), func(t *testing.T) {
			clk := &fakeClock{now: time.Now()}
			now := clk.Now().Unix()
			var rows []lease.Binding
			if pending {
				rows = append(rows, lease.Binding{IP: mustIP("192.0.2.150"), State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 0xa},
					Start: now - 10, End: now + 600, CLTT: now - 10, SentExpiry: now + 600, Pending: true})
			}
			tg := startTarget(t, targetOpts{clk: clk, rows: rows,
				saved: &lease.RelState{MyState: uint8(wire.StateShutdown), MyStos: now - 100, PeerState: uint8(wire.StatePartnerDown), PeerStos: now - 100, MCLT: 30}})
			p := dialFrom(t, tg, peerIP)
			p.connect()
			p.send(&wire.State{ServerState: wire.StatePartnerDown, StartTimeOfState: uint32(now - 100)})
			waitTarget(t, tg, "shutdown after startup", func() bool { return stateOf(tg)() == fsm.Shutdown })
			// The raw peer never acknowledges: a pending update stays so.
			if err := tg.s.Command(fsm.Recover); err != nil {
				t.Fatal(err)
			}
			var st fsm.Status
			tg.s.inspect(func() { st = tg.s.m.Status() })
			want := now - 30 // nothing pending: no MCLT wait, as ISC
			if pending {
				want = now
			}
			if st.State != fsm.Recover || st.Stos != want {
				t.Errorf("Shutdown -> recover with the peer partner-down, updates pending %t: %s stos %d, want recover stos %d (now %d, mclt 30): %s",
					pending, st.State, st.Stos, want, now, st.Reason)
			}
			if pending == strings.Contains(st.Reason, "nothing is queued") {
				t.Errorf("Reason %q with updates pending %t", st.Reason, pending)
			}
		})
	}
}

// TestEmptyDatabaseStaysInRecoverWithAShutdownPeer is issue 15, path 1,
// over the wire: a server started without stored state meets a peer in
// SHUTDOWN. It stays in RECOVER and asks for every binding (UPDREQALL);
// before the fix it went straight to PARTNER-DOWN and, MCLT later, handed
// out addresses that the peer's clients held. failoverctl status says why
// it waits.
func TestEmptyDatabaseStaysInRecoverWithAShutdownPeer(t *testing.T) {
	clk := &fakeClock{now: time.Now()}
	tg := startTarget(t, targetOpts{clk: clk})
	p := dialFrom(t, tg, peerIP)
	p.connect()
	p.send(&wire.State{ServerState: wire.StateShutdown, StartTimeOfState: uint32(clk.Now().Unix() - 100)})
	waitTarget(t, tg, "the peer's shutdown to be processed", func() bool {
		return tg.s.Relationship().View().PeerState == fsm.Shutdown
	})
	st, err := tg.s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.State != fsm.Recover.String() || !strings.Contains(st.Reason, "the peer is shutdown") {
		t.Fatalf("No stored state, peer in shutdown: %s (%q), want recover saying that it waits for the shutdown peer's bindings", st.State, st.Reason)
	}
	expect[*wire.UpdateRequestAll](p)
}

// restartedWithPeer starts a target whose saved state is saved, entered
// ago seconds before now, and connects a peer that reports peer.
func restartedWithPeer(t *testing.T, saved fsm.State, ago int64, peer wire.ServerState) (*target, *rawPeer, int64) {
	clk := &fakeClock{now: time.Now()}
	now := clk.Now().Unix()
	tg := startTarget(t, targetOpts{clk: clk, saved: &lease.RelState{MyState: uint8(saved), MyStos: now - ago,
		PeerState: uint8(wire.StateNormal), PeerStos: now - ago, MCLT: 30}})
	p := dialFrom(t, tg, peerIP)
	p.connect()
	p.send(&wire.State{ServerState: peer, StartTimeOfState: uint32(now - ago)})
	return tg, p, now
}

// TestPartnerDownFromStartupDatesFromEntry: a server restarted with a
// saved NORMAL whose peer reports SHUTDOWN moves from STARTUP to
// PARTNER-DOWN keeping the saved stos, as ISC does; the reuse rules must
// still date PARTNER-DOWN from when it was entered. With the old stos the
// peer's addresses opened at once, while the peer's last lease (its update
// lost or refused) could still run for MCLT: the simulation of the pair
// found a client given an address another held that way.
func TestPartnerDownFromStartupDatesFromEntry(t *testing.T) {
	tg, _, now := restartedWithPeer(t, fsm.Normal, 1000, wire.StateShutdown)
	waitTarget(t, tg, "partner-down after startup", func() bool { return stateOf(tg)() == fsm.PartnerDown })
	v := tg.s.Relationship().View()
	if got := v.PartnerDownStart(); got < now {
		t.Errorf("PARTNER-DOWN entered at %d dates from %d for the reuse rules (%ds earlier): the peer's addresses open before MCLT has passed", now, got, now-got)
	}
}

// TestPartnerDownFromShutdownIsStale: a server in SHUTDOWN (maintenance)
// hands its pools to the peer, which moves to PARTNER-DOWN and may give
// our free addresses too. If the operator then declares partner-down here
// (the peer died), our own free addresses are as stale as after a restart:
// they wait MCLT from the declaration, like the peer's. Found by the
// simulation of the pair (seed 132: the primary gave a never-used address
// the secondary had given while it was in SHUTDOWN).
func TestPartnerDownFromShutdownIsStale(t *testing.T) {
	tg, p, now := restartedWithPeer(t, fsm.Shutdown, 100, wire.StatePartnerDown)
	waitTarget(t, tg, "shutdown after startup", func() bool {
		v := tg.s.Relationship().View()
		return v.MyState == fsm.Shutdown && v.Contacted
	})
	p.c.Close() // the peer dies
	waitTarget(t, tg, "the link down", func() bool { return !tg.s.Relationship().View().Connected })
	if err := tg.s.Command(fsm.PartnerDown); err != nil {
		t.Fatal(err)
	}
	// The command returns once the machine has moved; the view is
	// published by the session loop after it.
	waitTarget(t, tg, "partner-down in the view", func() bool { return tg.s.Relationship().View().MyState == fsm.PartnerDown })
	v := tg.s.Relationship().View()
	if v.Contacted {
		t.Errorf("Partner-down declared in shutdown leaves our free addresses usable at once (Contacted), want them stale until MCLT")
	}
	if got := v.PartnerDownStart(); got < now {
		t.Errorf("PARTNER-DOWN dates from %d, before the declaration at %d", got, now)
	}
}
