package fsm

import (
	"fmt"
	"reflect"
	"testing"
)

// isc123 is docs/protocol.md §12.3 ("Reaction to the peer's state"), transcribed
// rule by rule; the rule field quotes the reference. A (local, peer) pair
// that no rule names means "nothing".
var isc123 = []struct {
	rule  string
	local State
	peers []State
	to    State   // Unknown: stay
	send  MsgType // extra message without a transition
	act   Action  // extra action without a transition
	prevs []State // the rule applies only if the previous peer state is one of these (nil: any)
}{
	{rule: "NORMAL: NORMAL → schedule pool check", local: Normal, peers: []State{Normal}, act: ActPoolCheck},
	{rule: "NORMAL: PARTNER-DOWN → POTENTIAL-CONFLICT", local: Normal, peers: []State{PartnerDown}, to: PotentialConflict},
	{rule: `NORMAL: POTENTIAL-CONFLICT / RESOLUTION-INTERRUPTED / CONFLICT-DONE → log "Invalid state transition" → SHUTDOWN`,
		local: Normal, peers: []State{PotentialConflict, ResolutionInterrupted, ConflictDone}, to: Shutdown},
	{rule: "NORMAL: RECOVER or SHUTDOWN → PARTNER-DOWN", local: Normal, peers: []State{Recover, Shutdown}, to: PartnerDown},
	{rule: "NORMAL: PAUSED → COMMUNICATIONS-INTERRUPTED", local: Normal, peers: []State{Paused}, to: CommInterrupted},

	{rule: "COMMUNICATIONS-INTERRUPTED: NORMAL / COMMUNICATIONS-INTERRUPTED / RECOVER-DONE / RECOVER-WAIT → send pending updates, → NORMAL",
		local: CommInterrupted, peers: []State{Normal, CommInterrupted, RecoverDone, RecoverWait}, to: Normal},
	{rule: "COMMUNICATIONS-INTERRUPTED: RECOVER → PARTNER-DOWN. SHUTDOWN → PARTNER-DOWN", local: CommInterrupted, peers: []State{Recover, Shutdown}, to: PartnerDown},
	{rule: "COMMUNICATIONS-INTERRUPTED: POTENTIAL-CONFLICT / PARTNER-DOWN / RESOLUTION-INTERRUPTED / CONFLICT-DONE → POTENTIAL-CONFLICT",
		local: CommInterrupted, peers: []State{PotentialConflict, PartnerDown, ResolutionInterrupted, ConflictDone}, to: PotentialConflict},

	{rule: "PARTNER-DOWN: RECOVER-DONE → NORMAL", local: PartnerDown, peers: []State{RecoverDone}, to: Normal},
	{rule: "PARTNER-DOWN: NORMAL / POTENTIAL-CONFLICT / PARTNER-DOWN / COMMUNICATIONS-INTERRUPTED / RESOLUTION-INTERRUPTED / CONFLICT-DONE → POTENTIAL-CONFLICT",
		local: PartnerDown, peers: []State{Normal, PotentialConflict, PartnerDown, CommInterrupted, ResolutionInterrupted, ConflictDone}, to: PotentialConflict},

	{rule: "RECOVER: RECOVER, PARTNER-DOWN, COMMUNICATIONS-INTERRUPTED → (re)send UPDREQALL", local: Recover, peers: []State{Recover, PartnerDown, CommInterrupted}, send: MsgUpdReqAll},
	// ISC: "RECOVER: NORMAL / POTENTIAL-CONFLICT / RESOLUTION-INTERRUPTED /
	// CONFLICT-DONE → POTENTIAL-CONFLICT" and "RECOVER: SHUTDOWN →
	// PARTNER-DOWN". Ours: RECOVER is left only through UPDDONE (issue 15,
	// TestRecoverLeavesOnlyThroughUpdateDone); RECOVER-DONE takes those rows.
	{rule: "RECOVER (ours): NORMAL / POTENTIAL-CONFLICT / RESOLUTION-INTERRUPTED / CONFLICT-DONE / SHUTDOWN → stay, (re)send UPDREQALL",
		local: Recover, peers: []State{Normal, PotentialConflict, ResolutionInterrupted, ConflictDone, Shutdown}, send: MsgUpdReqAll},

	// ISC: "RECOVER-DONE: NORMAL → NORMAL" and "RECOVER-DONE:
	// RECOVER-DONE → log `Both servers have entered recover-done!` →
	// NORMAL". Ours: send UPDREQ and go NORMAL at its UPDDONE, so that the
	// peer's updates of its PARTNER-DOWN leases arrive first
	// (TestRecoverDoneWaitsForThePeersUpdates).
	{rule: "RECOVER-DONE (ours): NORMAL / RECOVER-DONE → send UPDREQ, NORMAL at its UPDDONE",
		local: RecoverDone, peers: []State{Normal, RecoverDone}, send: MsgUpdReq},
	{rule: "RECOVER-DONE: SHUTDOWN → PARTNER-DOWN", local: RecoverDone, peers: []State{Shutdown}, to: PartnerDown},
	{rule: "RECOVER-DONE (ours): POTENTIAL-CONFLICT / RESOLUTION-INTERRUPTED / CONFLICT-DONE → POTENTIAL-CONFLICT",
		local: RecoverDone, peers: []State{PotentialConflict, ResolutionInterrupted, ConflictDone}, to: PotentialConflict},

	{rule: "POTENTIAL-CONFLICT: CONFLICT-DONE → send UPDREQ (only if the peer was POTENTIAL-CONFLICT before)",
		local: PotentialConflict, peers: []State{ConflictDone}, send: MsgUpdReq, prevs: []State{PotentialConflict}},
	{rule: `POTENTIAL-CONFLICT: NORMAL → log "moves to normal during conflict resolution - panic" → SHUTDOWN`, local: PotentialConflict, peers: []State{Normal}, to: Shutdown},
	// "POTENTIAL-CONFLICT: RECOVER → RECOVER" is ISC's; we deliberately stay
	// (draft-12 §9.10.3), see TestPotentialConflictPeerRecoverDoesNotOscillate.
	{rule: "POTENTIAL-CONFLICT: SHUTDOWN → PARTNER-DOWN", local: PotentialConflict, peers: []State{Shutdown}, to: PartnerDown},

	{rule: "RESOLUTION-INTERRUPTED: anything except SHUTDOWN/PAUSED/unknown/STARTUP → POTENTIAL-CONFLICT",
		local: ResolutionInterrupted, peers: []State{Normal, CommInterrupted, PartnerDown, PotentialConflict, Recover, RecoverDone, ResolutionInterrupted, ConflictDone, RecoverWait}, to: PotentialConflict},
	{rule: "RESOLUTION-INTERRUPTED: SHUTDOWN → PARTNER-DOWN", local: ResolutionInterrupted, peers: []State{Shutdown}, to: PartnerDown},

	{rule: "CONFLICT-DONE: NORMAL → NORMAL", local: ConflictDone, peers: []State{Normal}, to: Normal},
	{rule: "CONFLICT-DONE: SHUTDOWN → SHUTDOWN", local: ConflictDone, peers: []State{Shutdown}, to: Shutdown},
	{rule: "CONFLICT-DONE: anything else → log_fatal, dhcpd exits (ours: SHUTDOWN, serve nothing)",
		local: ConflictDone, peers: []State{Unknown, Startup, CommInterrupted, PartnerDown, Paused, ConflictDone}, to: Shutdown},
	// CONFLICT-DONE: POTENTIAL-CONFLICT / RESOLUTION-INTERRUPTED: stay.
	// CONFLICT-DONE (ours): RECOVER / RECOVER-WAIT / RECOVER-DONE: stay (the
	// peer answered our UPDREQ while recovering; it joins
	// POTENTIAL-CONFLICT at RECOVER-DONE).
	// RECOVER-WAIT: nothing, ever. SHUTDOWN, PAUSED, unknown: nothing.
}

// expectedEntry computes the docs/protocol.md §12.5 outputs of a transition from → to: the
// messages (STATE first) and the actions.
func expectedEntry(role Role, from, to, peer State, stos int64) ([]Message, []Action) {
	var acts []Action
	switch from {
	case Normal, PotentialConflict, PartnerDown:
		acts = append(acts, ActRequeueUnacked)
	}
	msgs := []Message{{Type: MsgState, State: to, Stos: stos}}
	switch to {
	case Normal:
		acts = append(acts, ActPoolBalance, ActSendPending)
	case PotentialConflict:
		if role == Primary || peer == ConflictDone {
			msgs = append(msgs, Message{Type: MsgUpdReq})
		}
	case Recover:
		msgs = append(msgs, Message{Type: MsgUpdReqAll})
	case PartnerDown:
		acts = append(acts, ActPartnerDownEntered)
	}
	return msgs, acts
}

func forcedMachine(role Role, local, peer State, now int64) *Machine {
	m := New(Config{Role: role, MCLT: 30}, Persistent{}, now)
	m.state, m.saved, m.stos = local, local, now-100
	m.peer, m.peerStos = peer, now-100
	m.connected, m.peerHeard = true, true
	m.Ready()
	return m
}

// TestISC12_3_ReactionToPeerState enumerates every (local state, previous
// peer state, new peer state, role) with a changed peer state and checks the
// reaction against isc123, including the docs/protocol.md §12.5 entry outputs of each
// transition.
func TestISC12_3_ReactionToPeerState(t *testing.T) {
	const now = 5000
	cells := 0
	for _, role := range []Role{Primary, Secondary} {
		for _, local := range AllStates {
			if local == Startup {
				continue // STARTUP is covered by TestISC12_1_*
			}
			for _, prev := range AllStates {
				for _, peer := range AllStates {
					if peer == prev {
						continue
					}
					cells++
					name := fmt.Sprintf("Cell %s/local=%s/prev=%s/peer=%s", role, local, prev, peer)
					rule := "no rule: nothing happens"
					var wantTo State
					var wantSend MsgType
					var wantAct Action
					for _, r := range isc123 {
						if r.local != local || !contains(r.peers, peer) || (r.prevs != nil && !contains(r.prevs, prev)) {
							continue
						}
						rule, wantTo, wantSend, wantAct = r.rule, r.to, r.send, r.act
					}
					m := forcedMachine(role, local, prev, now)
					m.PeerState(peer, false, now)
					rd := m.Ready()
					var wantMsgs []Message
					var wantActs []Action
					if wantAct != 0 {
						wantActs = append(wantActs, wantAct)
					}
					if wantSend != 0 {
						wantMsgs = append(wantMsgs, Message{Type: wantSend})
					}
					if wantTo != Unknown {
						msgs, acts := expectedEntry(role, local, wantTo, peer, now)
						wantMsgs = append(wantMsgs, msgs...)
						wantActs = append(wantActs, acts...)
					} else {
						wantTo = local
					}
					if m.State() != wantTo {
						t.Errorf("%s: state %s, want %s (rule %q)", name, m.State(), wantTo, rule)
						continue
					}
					if !reflect.DeepEqual(rd.Send, wantMsgs) {
						t.Errorf("%s: sent %v, want %v (rule %q)", name, rd.Send, wantMsgs, rule)
					}
					if !reflect.DeepEqual(rd.Actions, wantActs) {
						t.Errorf("%s: actions %v, want %v (rule %q)", name, rd.Actions, wantActs, rule)
					}
					if m.Status().PeerState != peer || rd.Persist == nil || rd.Persist.PeerState != peer {
						t.Errorf("%s: the peer's new state was not recorded and persisted: %+v", name, rd.Persist)
					}
					if wantTo != local && (len(rd.Transitions) != 1 || rd.Transitions[0].Reason == "") {
						t.Errorf("%s: want one transition with a reason, got %v", name, rd.Transitions)
					}
				}
			}
		}
	}
	if cells != 2*12*13*12 {
		t.Errorf("Enumerated %d cells", cells)
	}
}

// TestISC12_3_UnchangedPeerStateIgnoredUnless checks "If the reported state
// equals the already-known partner state, the message is ignored unless the
// local state is PARTNER-DOWN, COMMUNICATIONS-INTERRUPTED,
// RESOLUTION-INTERRUPTED, RECOVER or CONFLICT-DONE".
func TestISC12_3_UnchangedPeerStateIgnoredUnless(t *testing.T) {
	const now = 5000
	for _, local := range AllStates {
		if local == Startup {
			continue
		}
		for _, peer := range AllStates {
			m := forcedMachine(Primary, local, peer, now)
			m.PeerState(peer, false, now)
			rd := m.Ready()
			processed := false
			switch local {
			case PartnerDown, CommInterrupted, ResolutionInterrupted, Recover, ConflictDone:
				processed = true
			case RecoverDone:
				processed = true // ours: see peerStateProcessedWhenUnchanged
			}
			if local == Unknown {
				processed = true // ISC: "&& state->me.state" — unknown always processes
			}
			if !processed && !rd.Empty() {
				t.Errorf("Local %s, peer %s repeated: want the STATE ignored, got %+v", local, peer, rd)
			}
			if processed && len(rd.Notes) == 0 {
				t.Errorf("Local %s, peer %s repeated: want the STATE processed (peer moves note), got %+v", local, peer, rd)
			}
		}
	}
}

// TestISC12_3_PartnerDownIgnoresPeerInStartup checks "PARTNER-DOWN (ignored
// while the peer's STARTUP flag is set)" and draft-12 §9.4.3.
func TestISC12_3_PartnerDownIgnoresPeerInStartup(t *testing.T) {
	for _, peer := range AllStates {
		m := forcedMachine(Primary, PartnerDown, Unknown, 5000)
		m.PeerState(peer, true, 5000)
		if m.State() != PartnerDown {
			t.Errorf("Peer %s with STARTUP flag moved a partner-down server to %s", peer, m.State())
		}
		if rd := m.Ready(); len(rd.Send) != 0 || len(rd.Transitions) != 0 {
			t.Errorf("Peer %s with STARTUP flag: unexpected output %+v", peer, rd)
		}
	}
}

// TestISC6_3_InvalidPeerStateGoesShutdown checks "A server-state outside
// {0–11, 254} → Invalid state: N and ISC moves itself to SHUTDOWN".
func TestISC6_3_InvalidPeerStateGoesShutdown(t *testing.T) {
	for _, bad := range []State{12, 13, 100, 253, 255} {
		m := forcedMachine(Secondary, Normal, Normal, 5000)
		m.PeerState(bad, false, 5000)
		if m.State() != Shutdown || m.Status().PeerState != Normal {
			t.Errorf("Peer state %d: got %s (peer recorded %s), want shutdown with the peer state unchanged", bad, m.State(), m.Status().PeerState)
		}
	}
}

// TestISC12_1_StartupEvaluatesSavedState checks "the transition table below
// is evaluated as if the server were in its saved state; if that did not
// move it, it simply returns to the saved state (special case: saved
// RESOLUTION-INTERRUPTED → POTENTIAL-CONFLICT)", with NORMAL + peer
// PARTNER-DOWN giving RECOVER in STARTUP and no UPDREQALL sent by the RECOVER
// row while still in STARTUP.
func TestISC12_1_StartupEvaluatesSavedState(t *testing.T) {
	const now = 5000
	for _, saved := range AllStates {
		if saved == Startup || saved == Unknown {
			continue
		}
		for _, known := range AllStates {
			if known == Startup {
				continue // never on the wire, so never a known peer state
			}
			for _, peer := range AllStates {
				m := New(Config{Role: Primary, MCLT: 30}, Persistent{MyState: saved, MyStos: 100, PeerState: known, PeerStos: 100}, now)
				m.Connected(now)
				m.Ready()
				m.PeerState(peer, true, now)
				rd := m.Ready()
				want := saved
				switch {
				case peer == known && saved == ResolutionInterrupted:
					want = PotentialConflict
				case peer == known && !peerStateProcessedWhenUnchanged(saved):
				default:
					// Ours: a saved state that processes a repeated
					// peer state evaluates it in STARTUP too.
					ref := peerReaction(saved, peer, known, false, true)
					if ref.to != Unknown {
						want = ref.to
					}
					if saved == Normal && peer == PartnerDown {
						want = Recover
					}
				}
				if want == RecoverWait {
					want = RecoverDone // "immediately if already past": stos 100 + mclt 30 < now
				}
				if want == RecoverDone {
					// Ours: entering RECOVER-DONE reacts to the peer's
					// state at once (it may never be repeated).
					if r := peerReaction(RecoverDone, peer, peer, false, true); r.to != Unknown {
						want = r.to
					}
				}
				if m.State() != want {
					t.Errorf("Saved %s, known peer %s, peer reports %s: state %s, want %s", saved, known, peer, m.State(), want)
					continue
				}
				// Leaving STARTUP keeps stos (the transition's stos is the
				// saved one), and never sends UPDREQALL twice.
				if len(rd.Transitions) == 0 || rd.Transitions[0].From != Startup || (rd.Transitions[0].To != RecoverWait && rd.Transitions[0].Stos != 100) {
					t.Errorf("Saved %s, peer %s: first transition %v, want one out of startup keeping stos 100", saved, peer, rd.Transitions)
				}
				n := 0
				for _, s := range rd.Send {
					if s.Type == MsgUpdReqAll {
						n++
					}
				}
				if n > 1 {
					t.Errorf("Saved %s, peer %s: %d UPDREQALL while leaving startup", saved, peer, n)
				}
			}
		}
	}
}

// TestISC12_2_LinkLoss checks the docs/protocol.md §12.2 table, applied to the current state
// and, in STARTUP, to the saved state (which ends STARTUP).
func TestISC12_2_LinkLoss(t *testing.T) {
	for _, local := range AllStates {
		if local == Startup {
			continue
		}
		want := local
		switch local {
		case Normal:
			want = CommInterrupted
		case PotentialConflict, Unknown:
			want = ResolutionInterrupted
		}
		m := forcedMachine(Primary, local, Normal, 5000)
		m.Disconnected(5000)
		rd := m.Ready()
		if m.State() != want {
			t.Errorf("Link lost in %s: %s, want %s", local, m.State(), want)
		}
		if len(rd.Send) != 0 {
			t.Errorf("Link lost in %s: sent %v after the link was gone", local, rd.Send)
		}
		requeue := local == ConflictDone || local == Normal || local == PotentialConflict
		if got := contains(rd.Actions, ActRequeueUnacked); got != requeue {
			t.Errorf("Link lost in %s: requeue-unacked %t, want %t", local, got, requeue)
		}
		if local == Unknown {
			continue
		}
		// The same from STARTUP with that saved state.
		s := New(Config{Role: Primary, MCLT: 30}, Persistent{MyState: local, MyStos: 4990}, 5000)
		s.Connected(5000)
		s.Disconnected(5001)
		if s.State() != want {
			t.Errorf("Link lost in startup (saved %s): %s, want %s", local, s.State(), want)
		}
	}
}

// TestPotentialConflictPeerRecoverDoesNotOscillate is the schedule the
// simulation found (seed 342): a primary in RECOVER and a secondary starting
// up with saved POTENTIAL-CONFLICT connect; their STATEs cross. With ISC's
// rows (RECOVER + peer POTENTIAL-CONFLICT → POTENTIAL-CONFLICT and
// POTENTIAL-CONFLICT + peer RECOVER → RECOVER) each crossing makes both
// swap states again, forever. We stay in POTENTIAL-CONFLICT, so the pair
// settles there and resolves the conflict.
func TestPotentialConflictPeerRecoverDoesNotOscillate(t *testing.T) {
	n := newNetwork(10_000, false)
	n.check = checkInvariants
	p := n.add("p", Config{Role: Primary, MCLT: 54}, Persistent{MyState: Recover, MyStos: 9000, PeerState: PartnerDown, PeerStos: 9000, MCLT: 54})
	n.add("s", Config{Role: Secondary}, Persistent{MyState: PotentialConflict, MyStos: 9000, PeerState: Normal, PeerStos: 9000, MCLT: 54})
	n.tick(n.now+15, p) // p leaves STARTUP alone: RECOVER
	if err := n.connect(); err != nil {
		t.Fatal(err)
	}
	if steps := n.deliverAll(true, 200); steps >= 200 {
		t.Fatalf("The pair is still exchanging messages after %d deliveries (oscillation)", steps)
	}
	for _, x := range n.nodes {
		if x.m.State() != Normal {
			t.Errorf("Server %s ended in %s, want normal after conflict resolution", x.name, x.m.State())
		}
	}
	if n.err != nil {
		t.Error(n.err)
	}
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
