package fsm

import (
	"strings"
	"testing"
)

// TestRecoverLeavesOnlyThroughUpdateDone is issue 15, path 1: a server
// without stored state starts in RECOVER and must not leave it before the
// peer has sent every binding (UPDREQALL answered by UPDDONE), whatever
// state the peer reports. Before the fix, a peer in SHUTDOWN moved it to
// PARTNER-DOWN (serving the peer's clients' addresses MCLT later) and a
// peer in POTENTIAL-CONFLICT, RESOLUTION-INTERRUPTED, CONFLICT-DONE or
// NORMAL moved it to POTENTIAL-CONFLICT (conflict resolution exchanges
// only pending updates: NORMAL with a partial database).
//
// Each case is run twice: the peer's STATE ends STARTUP, or STARTUP has
// already ended alone (the link came up later). After UPDDONE and the
// MCLT wait, RECOVER-DONE moves on according to the peer's state, which
// it learned while it could not react to it (no deadlock); with a NORMAL
// peer, through UPDREQ and the peer's UPDDONE.
func TestRecoverLeavesOnlyThroughUpdateDone(t *testing.T) {
	const now, mclt = 10_000, 30
	for _, tc := range []struct {
		peer      State
		reason    string // in Status.Reason while waiting
		afterDone State  // once RECOVER-DONE is reached
	}{
		{peer: Shutdown, reason: "the peer is shutdown", afterDone: PartnerDown},
		{peer: PotentialConflict, reason: "peer is potential-conflict", afterDone: PotentialConflict},
		{peer: ResolutionInterrupted, reason: "peer is resolution-interrupted", afterDone: PotentialConflict},
		{peer: ConflictDone, reason: "peer is conflict-done", afterDone: PotentialConflict},
		{peer: Normal, reason: "peer is normal", afterDone: Normal},
	} {
		for _, startupOver := range []bool{false, true} {
			name := tc.peer.String()
			if startupOver {
				name += "/after-startup"
			}
			t.Run(name, func(t *testing.T) {
				m := New(Config{Role: Secondary, MCLT: mclt}, Persistent{}, now)
				at := int64(now)
				if startupOver {
					at += DefaultStartupTimeout
					m.Tick(at)
					if m.State() != Recover {
						t.Fatalf("Startup timeout without stored state: %s, want recover", m.State())
					}
				}
				m.Connected(at)
				m.Ready()
				m.PeerState(tc.peer, false, at)
				rd := m.Ready()
				if m.State() != Recover {
					t.Fatalf("Peer %s moved a server without stored state from recover to %s before UPDDONE: %v", tc.peer, m.State(), rd.Transitions)
				}
				if n := countType(rd.Send, MsgUpdReqAll); n != 1 {
					t.Errorf("Peer %s: %d UPDREQALL sent, want 1 (so that an answering peer answers): %v", tc.peer, n, rd.Send)
				}
				if r := m.Status().Reason; !strings.Contains(r, "waiting in recover") || !strings.Contains(r, tc.reason) {
					t.Errorf("Peer %s: status reason %q, want it to say it waits in recover and that %s", tc.peer, r, tc.reason)
				}
				// The peer repeats its state: still recovering.
				m.PeerState(tc.peer, false, at+1)
				if m.State() != Recover {
					t.Fatalf("Repeated peer %s moved us to %s", tc.peer, m.State())
				}
				m.UpdateDone(at + 2)
				if m.State() != RecoverWait {
					t.Fatalf("UPDDONE with peer %s: %s, want recover-wait", tc.peer, m.State())
				}
				m.Ready()
				m.Tick(now + mclt)
				if tc.peer == Normal {
					// RECOVER-DONE asks the NORMAL peer for its
					// pending updates and goes NORMAL at their
					// UPDDONE (TestRecoverDoneWaitsForThePeersUpdates).
					if rd := m.Ready(); m.State() != RecoverDone || countType(rd.Send, MsgUpdReq) != 1 {
						t.Fatalf("MCLT after the start with peer normal: %s, sent %v; want recover-done and one UPDREQ", m.State(), rd.Send)
					}
					m.UpdateDone(now + mclt + 1)
				}
				if m.State() != tc.afterDone {
					t.Errorf("MCLT after the start with peer %s: %s, want %s (a recover-done server must not wait for a peer state that will not change)", tc.peer, m.State(), tc.afterDone)
				}
			})
		}
	}
}

func countType(msgs []Message, typ MsgType) int {
	n := 0
	for _, m := range msgs {
		if m.Type == typ {
			n++
		}
	}
	return n
}

// TestStartupReactsToARepeatedPeerState: a server restarted in a state
// that processes a repeated peer state (COMMUNICATIONS-INTERRUPTED,
// PARTNER-DOWN) evaluates it when STARTUP ends. ISC returns to the saved
// state unevaluated; with a peer that stayed in RECOVER-DONE, which has
// no row for either, both then waited forever (simulated pair, seed 2122).
func TestStartupReactsToARepeatedPeerState(t *testing.T) {
	for _, saved := range []State{CommInterrupted, PartnerDown} {
		m := New(Config{Role: Primary, MCLT: 30}, Persistent{MyState: saved, MyStos: 900, PeerState: RecoverDone, PeerStos: 900, MCLT: 30}, 1000)
		m.Connected(1000)
		m.PeerState(RecoverDone, false, 1000)
		if m.State() != Normal {
			t.Errorf("Saved %s, the peer repeats recover-done: %s, want normal (%s)", saved, m.State(), m.Status().Reason)
		}
	}
}

// Issue 16, item 8: after a restart, Status tells when the current state
// was entered apart from the start the protocol counts it from. A server
// NORMAL since 9,000 restarts at 10,000 and finds its peer in
// PARTNER-DOWN: it entered RECOVER at 10,000, but (as ISC) the state's
// start is kept from the saved NORMAL, so no MCLT wait follows UPDDONE.
// Restarted into the state it saved, it has been in it since before.
func TestStatusTellsEnteredFromTheProtocolsStart(t *testing.T) {
	const savedAt, now, mclt = 9_000, 10_000, 30
	saved := Persistent{MyState: Normal, MyStos: savedAt, PeerState: Normal, PeerStos: savedAt}

	m := New(Config{Role: Primary, MCLT: mclt}, saved, now)
	m.Connected(now)
	m.PeerState(PartnerDown, false, now)
	m.Ready()
	st := m.Status()
	if st.State != Recover || st.Entered != now || st.Stos != savedAt {
		t.Fatalf("Saved normal, peer partner-down: %s entered %d, stos %d; want recover entered %d (the restart), stos %d (kept, as ISC)",
			st.State, st.Entered, st.Stos, now, savedAt)
	}
	m.UpdateDone(now + 1)
	m.Ready()
	if st := m.Status(); st.State != RecoverDone || st.Entered != now+1 {
		t.Fatalf("After UPDDONE: %s entered %d; want recover-done at once (stos + mclt passed), entered %d", st.State, st.Entered, now+1)
	}

	m = New(Config{Role: Primary, MCLT: mclt}, saved, now)
	if st := m.Status(); st.State != Startup || st.Entered != now {
		t.Fatalf("At start: %s entered %d, want startup entered %d", st.State, st.Entered, now)
	}
	m.Connected(now)
	m.PeerState(Normal, false, now)
	m.Ready()
	if st := m.Status(); st.State != Normal || st.Entered != savedAt || st.Stos != savedAt {
		t.Fatalf("Saved normal, peer normal: %s entered %d, stos %d; want normal since %d, before the restart", st.State, st.Entered, st.Stos, savedAt)
	}
}

// TestAServerWithItsDatabaseWaitsForARecoveringPeer: ISC skips the MCLT
// wait when the peer recovers too, its rule for a new pair. A server that
// kept its database cannot tell a new peer from one that lost its own --
// the secondary in PARTNER-DOWN loses its disk while the primary is in
// maintenance; the primary's maintenance stop then meets it in RECOVER --
// and that peer's clients hold leases no database knows of, granted until
// it stopped and running at most MCLT beyond. So it waits MCLT from when
// it heard the peer recover (before the fix: RECOVER-DONE at once, and
// NORMAL with the peer, handing out those clients' addresses). The wait
// survives a restart. A server started without a database keeps ISC's
// shortcut: the pair reaches NORMAL only when both are RECOVER-DONE.
func TestAServerWithItsDatabaseWaitsForARecoveringPeer(t *testing.T) {
	const now, mclt = 10_000, 30
	m := New(Config{Role: Primary, MCLT: mclt}, Persistent{MyState: Shutdown, MyStos: now - 1000, PeerState: PartnerDown, PeerStos: now - 1000, MCLT: mclt}, now)
	m.Connected(now)
	m.PeerState(PartnerDown, false, now)
	if err := m.CommandReason(Recover, now+1, "maintenance over"); err != nil {
		t.Fatal(err)
	}
	heard := int64(now + 100) // the peer lost its disk, restarted, recovers
	m.PeerState(Recover, false, heard)
	m.UpdateDone(heard + 1)
	if m.State() != RecoverWait {
		t.Fatalf("UPDDONE from a recovering peer: %s, want recover-wait (%s)", m.State(), m.Status().Reason)
	}
	if r := m.Status().Reason; !strings.Contains(r, "may have lost its database") {
		t.Errorf("Reason %q does not say why it waits", r)
	}
	// A restart keeps the wait.
	m.Ready()
	m2 := New(Config{Role: Primary, MCLT: mclt}, m.Persistent(), heard+2)
	m2.Connected(heard + 2)
	m2.PeerState(Recover, false, heard+2)
	for _, mm := range []*Machine{m, m2} {
		mm.Tick(heard + mclt - 1)
		if mm.State() != RecoverWait {
			t.Fatalf("Before MCLT after hearing the peer recover: %s, want recover-wait", mm.State())
		}
		mm.Tick(heard + mclt)
		if mm.State() != RecoverDone {
			t.Fatalf("MCLT after hearing the peer recover: %s, want recover-done", mm.State())
		}
	}

	fresh := New(Config{Role: Secondary, MCLT: mclt}, Persistent{}, now)
	fresh.Connected(now)
	fresh.PeerState(Recover, false, now)
	fresh.UpdateDone(now + 1)
	if fresh.State() != RecoverDone {
		t.Fatalf("Without a database, peer recovering too: %s, want recover-done at once (ISC's new pair)", fresh.State())
	}
}

// TestRecoverDoneWaitsForThePeersUpdates: a server in RECOVER-DONE whose
// peer reports NORMAL (or RECOVER-DONE) has left PARTNER-DOWN, but its
// updates of the addresses it gave then may still be queued behind that
// STATE (max-unacked-updates). NORMAL at once (ISC) let the recovered
// server give such an address again (TestSimulationWithTwoUpdatesInFlight
// in plugins/leasesync, seed 303115). It sends UPDREQ, once per link, and
// goes NORMAL only at the UPDDONE; a link lost meanwhile keeps
// RECOVER-DONE and the next link asks again. A restart in RECOVER-DONE
// asks after its STATE.
func TestRecoverDoneWaitsForThePeersUpdates(t *testing.T) {
	const now, mclt = 10_000, 30
	m := New(Config{Role: Primary, MCLT: mclt}, Persistent{MyState: RecoverDone, MyStos: now - 100, PeerState: PartnerDown, PeerStos: now - 200}, now)
	m.Connected(now)
	m.PeerState(PartnerDown, false, now)
	if m.State() != RecoverDone {
		t.Fatalf("Saved recover-done, peer partner-down: %s", m.State())
	}
	m.Ready()

	m.PeerState(Normal, false, now+1)
	rd := m.Ready()
	if m.State() != RecoverDone || m.MayServe() {
		t.Fatalf("Peer normal: %s (may serve %t), want recover-done until the peer's UPDDONE", m.State(), m.MayServe())
	}
	if n := countType(rd.Send, MsgUpdReq); n != 1 {
		t.Fatalf("Peer normal: %d UPDREQ sent, want 1: %v", n, rd.Send)
	}
	if !m.Status().AwaitingUpdateDone {
		t.Errorf("Status does not say recover-done waits for the peer's UPDDONE")
	}
	m.PeerState(Normal, false, now+2)
	if rd := m.Ready(); m.State() != RecoverDone || countType(rd.Send, MsgUpdReq) != 0 {
		t.Fatalf("Repeated peer normal: %s, sent %v; want recover-done and no second UPDREQ", m.State(), rd.Send)
	}

	// The link drops before the UPDDONE: the request died with it.
	m.Disconnected(now + 3)
	if m.State() != RecoverDone || m.Status().AwaitingUpdateDone {
		t.Fatalf("Link lost: %s (awaiting %t), want recover-done, no request outstanding", m.State(), m.Status().AwaitingUpdateDone)
	}
	m.Connected(now + 4)
	m.Ready()
	m.UpdateDone(now + 4) // not ours: nothing asked on this link
	if m.State() != RecoverDone {
		t.Fatalf("UPDDONE before our UPDREQ on the new link: %s, want recover-done", m.State())
	}
	m.PeerState(Normal, false, now+5)
	if rd := m.Ready(); countType(rd.Send, MsgUpdReq) != 1 {
		t.Fatalf("Peer normal on the new link: sent %v, want one UPDREQ", rd.Send)
	}
	m.UpdateDone(now + 6)
	if m.State() != Normal {
		t.Fatalf("UPDDONE answering our UPDREQ, peer normal: %s, want normal", m.State())
	}

	// A restart in RECOVER-DONE with the peer NORMAL: STATE, then UPDREQ.
	m = New(Config{Role: Primary, MCLT: mclt}, Persistent{MyState: RecoverDone, MyStos: now - 100, PeerState: PartnerDown, PeerStos: now - 200}, now)
	m.Connected(now)
	m.Ready()
	m.PeerState(Normal, false, now)
	rd = m.Ready()
	want := []Message{{Type: MsgState, State: RecoverDone, Stos: now - 100}, {Type: MsgUpdReq}}
	if m.State() != RecoverDone || len(rd.Send) != 2 || rd.Send[0] != want[0] || rd.Send[1] != want[1] {
		t.Fatalf("Restart in recover-done, peer normal: %s, sent %v; want recover-done, %v", m.State(), rd.Send, want)
	}
}
