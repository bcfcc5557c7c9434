package fsm

import (
	"errors"
	"fmt"
)

// DefaultStartupTimeout is ISC's STARTUP timer (seconds, docs/protocol.md §11).
const DefaultStartupTimeout = 15

// Config is the static configuration of one failover endpoint.
type Config struct {
	Role Role
	// MCLT in seconds. The primary's is configured; the secondary learns
	// it from CONNECT (SetMCLT) and keeps it in Persistent.MCLT.
	MCLT int64
	// AutoPartnerDown is the number of seconds spent in
	// COMMUNICATIONS-INTERRUPTED after which the server moves itself to
	// PARTNER-DOWN; 0 disables it (ISC's default, docs/protocol.md §19).
	AutoPartnerDown int64
	// StartupTimeout in seconds; 0 means ISC's 15.
	StartupTimeout int64
}

// Validate checks the configuration; its errors state the rule.
func (c Config) Validate() error {
	switch {
	case c.Role != Primary && c.Role != Secondary:
		return fmt.Errorf("role must be primary or secondary, got %d", c.Role)
	case c.MCLT < 0:
		return fmt.Errorf("mclt must not be negative, got %d", c.MCLT)
	case c.Role == Primary && c.MCLT == 0:
		return errors.New("the primary needs an mclt greater than 0 (it sends it in CONNECT)")
	case c.AutoPartnerDown < 0:
		return fmt.Errorf("auto-partner-down must not be negative (0 disables it), got %d", c.AutoPartnerDown)
	case c.StartupTimeout < 0:
		return fmt.Errorf("startup timeout must not be negative (0 means %d s), got %d", DefaultStartupTimeout, c.StartupTimeout)
	}
	return nil
}

// Persistent is what must be stored durably and given back to New after a
// restart: ISC's `failover peer "R" state { my state S at T; partner state P
// at T2; mclt N; }` record.
type Persistent struct {
	// MyState is the current state, or the saved state while in STARTUP.
	// Never Startup.
	MyState State
	// MyStos is the start time of MyState.
	MyStos int64
	// PeerState is the last state the peer reported.
	PeerState State
	// PeerStos is the local time at which PeerState was learned (ISC
	// ignores the peer's own start-time-of-state).
	PeerStos int64
	// MCLT in force. Meaningful for the secondary, which learns it from
	// CONNECT and, like ISC, stores it.
	MCLT int64
}

// Status is a read-only snapshot for the relationship and the status CLI.
type Status struct {
	Role  Role
	State State // Startup while starting up
	// SavedState is the state STARTUP will return to (meaningful in
	// STARTUP; equals State otherwise).
	SavedState State
	// Entered is when State was entered; for the state a restart
	// returned to, when it was entered before the restart.
	Entered int64
	// Stos is the state's start time as the protocol counts it: Entered,
	// except that a state reached straight from STARTUP keeps the start
	// of the state saved before the restart, and RECOVER-WAIT keeps
	// RECOVER's (as ISC). RECOVER-WAIT ends MCLT after it.
	Stos        int64
	PeerState   State
	PeerStartup bool // the peer's last STATE had the STARTUP flag
	PeerStos    int64
	Connected   bool
	MCLT        int64
	// NextTimer is the earliest pending deadline (0 = none) and
	// NextTimerWhat names it: "startup-timeout", "recover-wait" or
	// "auto-partner-down".
	NextTimer     int64
	NextTimerWhat string
	// Reason says why we are in State.
	Reason string
	// MayServe is Machine.MayServe.
	MayServe bool
	// AwaitingUpdateDone is set in RECOVER-DONE once UPDREQ went to a
	// peer that has left PARTNER-DOWN: NORMAL follows its UPDDONE.
	AwaitingUpdateDone bool
}

// Errors returned by Command. Each is wrapped with the details.
var (
	ErrInvalidState      = errors.New("not a failover state")
	ErrNotAdministrative = errors.New("state cannot be set by an operator")
	ErrStartingUp        = errors.New("in startup: wait until the startup state ends")
	ErrPartnerReachable  = errors.New("partner-down refused: the partner is connected and operating")
	ErrRecovering        = errors.New("partner-down refused while recovering")
	ErrNotFromState      = errors.New("transition not allowed from the current state")
)

// Machine is the failover state machine of one endpoint. It is pure: no
// I/O, no clock, no goroutines. It is not safe for concurrent use; the
// session goroutine owns it and publishes Status snapshots.
type Machine struct {
	cfg Config

	state       State
	saved       State // state STARTUP returns to
	stos        int64
	entered     int64 // Status.Entered
	peer        State
	peerStartup bool
	peerStos    int64
	connected   bool
	peerHeard   bool // a STATE arrived on the current link
	mclt        int64
	reason      string

	updatesPending bool
	// askedUpdates: in RECOVER-DONE, UPDREQ was sent on this link
	// after the peer reported NORMAL or RECOVER-DONE; its UPDDONE
	// moves us to NORMAL (see askPeerUpdates).
	askedUpdates bool
	// hadState is set when the machine started from a stored state: the
	// database was not lost (see UpdateDone).
	hadState bool

	startupDeadline int64
	autoPDDeadline  int64 // 0 = not armed

	out           Ready
	lastPersisted Persistent
}

// New returns a machine in STARTUP with saved state p.MyState (ISC
// dhcp_failover_startup). A zero Persistent (no stored state) — and any
// stored state that is not a valid non-startup state — means RECOVER with
// stos = now and partner state unknown, as ISC starts without a failover
// record (docs/protocol.md §12.1). The first Ready carries the transition to STARTUP and,
// when the record was normalised, a Persist.
func New(cfg Config, p Persistent, now int64) *Machine {
	m := &Machine{cfg: cfg, lastPersisted: p}
	saved, stos := p.MyState, p.MyStos
	why := fmt.Sprintf("process start, saved state %s", saved)
	if saved == Unknown || saved == Startup || !saved.Valid() {
		if p != (Persistent{}) {
			why = fmt.Sprintf("process start, stored state %s unusable: recovering", saved)
		} else {
			why = "process start without stored state: recovering"
		}
		saved, stos = Recover, now
	} else {
		m.hadState = true
	}
	m.saved, m.stos = saved, stos
	if p.PeerState.Valid() && p.PeerState != Startup {
		m.peer, m.peerStos = p.PeerState, p.PeerStos
	}
	m.mclt = cfg.MCLT
	if cfg.Role == Secondary && p.MCLT > 0 {
		m.mclt = p.MCLT
	}
	m.state = Startup
	m.entered = now
	m.reason = why
	m.startupDeadline = now + m.startupTimeout()
	m.out.Transitions = append(m.out.Transitions, Transition{From: saved, To: Startup, At: now, Stos: stos, Reason: why})
	return m
}

func (m *Machine) startupTimeout() int64 {
	if m.cfg.StartupTimeout > 0 {
		return m.cfg.StartupTimeout
	}
	return DefaultStartupTimeout
}

// effective is the state the transition tables are evaluated in: the saved
// state while in STARTUP (ISC: me.state == startup ? saved_state : me.state).
func (m *Machine) effective() State {
	if m.state == Startup {
		return m.saved
	}
	return m.state
}

// Persistent returns the record that must be on disk now.
func (m *Machine) Persistent() Persistent {
	return Persistent{MyState: m.effective(), MyStos: m.stos, PeerState: m.peer, PeerStos: m.peerStos, MCLT: m.mclt}
}

// State returns the current state (Startup while starting up).
func (m *Machine) State() State { return m.state }

// MayServe reports whether the server may answer DHCP clients now: its
// state serves clients and the peer's last known state does not forbid it
// (ISC dhcp_failover_set_service_state). Which clients and addresses remain
// the binding layer's business (load balancing in NORMAL, own pool only
// outside PARTNER-DOWN, MCLT rules).
func (m *Machine) MayServe() bool {
	return m.state.ServesClients() && !PeerForbidsService(m.peer)
}

// Status returns a snapshot.
func (m *Machine) Status() Status {
	next, what := m.nextTimer()
	return Status{
		Role: m.cfg.Role, State: m.state, SavedState: m.effective(), Entered: m.entered, Stos: m.stos,
		PeerState: m.peer, PeerStartup: m.peerStartup, PeerStos: m.peerStos,
		Connected: m.connected, MCLT: m.mclt, NextTimer: next, NextTimerWhat: what,
		Reason: m.reason, MayServe: m.MayServe(), AwaitingUpdateDone: m.askedUpdates,
	}
}

func (m *Machine) nextTimer() (int64, string) {
	var at int64
	var what string
	consider := func(t int64, w string) {
		if at == 0 || t < at {
			at, what = t, w
		}
	}
	if m.state == Startup {
		consider(m.startupDeadline, "startup-timeout")
	}
	if m.state == RecoverWait {
		consider(m.stos+m.mclt, "recover-wait")
	}
	if m.autoPDDeadline != 0 {
		consider(m.autoPDDeadline, "auto-partner-down")
	}
	return at, what
}

// Ready drains the accumulated outputs.
func (m *Machine) Ready() Ready {
	r := m.out
	m.out = Ready{}
	if p := m.Persistent(); p != m.lastPersisted {
		m.lastPersisted = p
		r.Persist = &p
	}
	r.NextTimer, _ = m.nextTimer()
	return r
}

// SetMCLT records the MCLT the secondary learned from CONNECT (ISC adopts
// the primary's value unconditionally and stores it). An MCLT of 0 is
// ignored: it would remove every MCLT wait (the handshake refuses a
// CONNECT without one too).
func (m *Machine) SetMCLT(mclt int64) {
	if mclt > 0 {
		m.mclt = mclt
	}
}

// SetUpdatesPending tells the machine whether BNDUPDs are queued or waiting
// for a BNDACK. It only matters for ISC's SHUTDOWN → RECOVER shortcut
// (docs/protocol.md §12.5): with nothing pending and the peer in PARTNER-DOWN, RECOVER is
// entered with stos = now − MCLT so that no MCLT wait follows.
func (m *Machine) SetUpdatesPending(pending bool) { m.updatesPending = pending }

func (m *Machine) note(format string, args ...any) {
	m.out.Notes = append(m.out.Notes, fmt.Sprintf(format, args...))
}

func (m *Machine) send(msg Message) {
	if m.connected {
		m.out.Send = append(m.out.Send, msg)
	}
}

func (m *Machine) sendState() {
	m.send(Message{Type: MsgState, State: m.effective(), Startup: m.state == Startup, Stos: m.stos})
}

func (m *Machine) act(a Action) { m.out.Actions = append(m.out.Actions, a) }

// setState is ISC's dhcp_failover_set_state (docs/protocol.md §12.5).
func (m *Machine) setState(to State, now int64, reason string) {
	from := m.state
	if from == to {
		return
	}
	// Common actions. Re-queue what the peer has not acknowledged.
	switch from {
	case Normal, PotentialConflict, PartnerDown:
		m.act(ActRequeueUnacked)
	}
	// stos: kept when entering RECOVER-WAIT and when leaving STARTUP.
	if to != RecoverWait && to != Startup && from != Startup {
		m.stos = now
	}
	// Administrative SHUTDOWN → RECOVER while the peer is PARTNER-DOWN
	// and nothing is queued: skip the MCLT wait.
	if to == Recover && from == Shutdown && m.peer == PartnerDown && !m.updatesPending {
		m.stos = now - m.mclt
		reason += fmt.Sprintf("; peer is partner-down and nothing is queued: stos set to now - mclt (%ds ago)", m.mclt)
	}
	m.entered = now
	if from == Startup && to == m.saved {
		m.entered = m.stos
	}
	m.state = to
	m.reason = reason
	m.autoPDDeadline = 0 // any change cancels auto-partner-down
	m.askedUpdates = false
	m.out.Transitions = append(m.out.Transitions, Transition{From: from, To: to, At: now, Stos: m.stos, Reason: reason})
	if to == RecoverDone && m.connected && m.peerHeard {
		// The peer's state may have been reported while we were in
		// RECOVER or RECOVER-WAIT, which do not react to it, and will
		// not be repeated: react to it now (not in ISC, where a peer
		// in SHUTDOWN or POTENTIAL-CONFLICT leaves the pair stuck).
		// The peer is told only where we end up: a RECOVER-DONE it
		// acted on (NORMAL) just before our next STATE would be stale.
		r := peerReaction(RecoverDone, m.peer, m.peer, false, m.peerStartup)
		if r.to != Unknown {
			m.setState(r.to, now, r.reason+" (reported before recover-done)")
			return
		}
		m.sendState()
		if r.askUpdates {
			m.askPeerUpdates()
		}
		return
	}
	m.sendState()

	switch to {
	case CommInterrupted:
		if m.cfg.AutoPartnerDown > 0 {
			m.autoPDDeadline = now + m.cfg.AutoPartnerDown
		}
	case Normal:
		m.act(ActPoolBalance)
		m.act(ActSendPending)
	case PotentialConflict:
		if m.cfg.Role == Primary || m.peer == ConflictDone {
			m.send(Message{Type: MsgUpdReq})
		}
	case Recover:
		m.send(Message{Type: MsgUpdReqAll})
	case RecoverWait:
		if m.stos+m.mclt <= now {
			m.setState(RecoverDone, now, fmt.Sprintf("recover-wait: mclt already passed (stos %ds ago, mclt %ds)", now-m.stos, m.mclt))
		}
	case PartnerDown:
		m.act(ActPartnerDownEntered)
	}
}

// disconnectTarget is the link-loss table (docs/protocol.md §12.2) applied to s.
func disconnectTarget(s State) State {
	switch s {
	case Normal:
		return CommInterrupted
	case PotentialConflict, Unknown:
		return ResolutionInterrupted
	}
	return s
}

// leaveStartupByDisconnectRule ends STARTUP by the docs/protocol.md §12.2 rule applied to the
// saved state (ISC dhcp_failover_state_transition "disconnect").
func (m *Machine) leaveStartupByDisconnectRule(now int64, why string) {
	to := disconnectTarget(m.saved)
	m.setState(to, now, fmt.Sprintf("%s; saved state %s, link-loss rule gives %s", why, m.saved, to))
}

// Connected reports that the CONNECT/CONNECTACK handshake completed. The
// machine sends its STATE (the saved state with the STARTUP flag while in
// STARTUP); in RECOVER (not STARTUP) it then sends UPDREQALL, because the
// request sent on an earlier link died with it (draft-12 §9.5.2: "will
// re-issue the UPDREQ or UPDREQALL when communications are re-established";
// ISC only sends STATE here and asks again when the peer's STATE arrives,
// which misses a peer in RECOVER-DONE or RECOVER-WAIT). No state changes on
// connect: ISC waits for the peer's STATE (a COMMUNICATIONS-INTERRUPTED
// server reports COMMUNICATIONS-INTERRUPTED first, capture 03).
func (m *Machine) Connected(now int64) {
	m.connected = true
	m.peerHeard = false
	m.peerStartup = false
	m.askedUpdates = false
	m.sendState()
	if m.state == Recover {
		m.send(Message{Type: MsgUpdReqAll})
	}
}

// Disconnected reports that the link was lost (TCP closed or reset, receive
// timer expired). The link-loss table (docs/protocol.md §12.2) is applied; in STARTUP it is
// applied to the saved state and ends STARTUP at once, as ISC does. In
// CONFLICT-DONE the state stays but un-acked updates are re-queued. A call
// while not connected is ignored.
func (m *Machine) Disconnected(now int64) {
	if !m.connected {
		return
	}
	m.connected = false
	m.peerHeard = false
	m.peerStartup = false
	m.askedUpdates = false // the request died with the link
	if m.effective() == ConflictDone {
		m.act(ActRequeueUnacked)
	}
	if m.state == Startup {
		m.leaveStartupByDisconnectRule(now, "link lost during startup")
		return
	}
	if to := disconnectTarget(m.state); to != m.state {
		m.setState(to, now, "link lost")
	}
}

// Tick fires the timers that are due at now: the STARTUP timeout (the
// link-loss rule applied to the saved state), the end of RECOVER-WAIT
// (stos + MCLT → RECOVER-DONE) and auto-partner-down.
func (m *Machine) Tick(now int64) {
	if m.state == Startup && now >= m.startupDeadline {
		m.leaveStartupByDisconnectRule(now, fmt.Sprintf("startup timeout: no peer state within %ds", m.startupTimeout()))
	}
	if m.state == RecoverWait && now >= m.stos+m.mclt {
		m.setState(RecoverDone, now, fmt.Sprintf("mclt passed in recover-wait (stos %ds ago, mclt %ds)", now-m.stos, m.mclt))
	}
	if m.state == CommInterrupted && m.autoPDDeadline != 0 && now >= m.autoPDDeadline {
		m.setState(PartnerDown, now, fmt.Sprintf("auto-partner-down after %ds in communications-interrupted", m.cfg.AutoPartnerDown))
	}
}

// reaction is the outcome of one cell of the docs/protocol.md §12.3 table.
type reaction struct {
	to     State   // target; Unknown = stay
	send   MsgType // 0, MsgUpdReq or MsgUpdReqAll
	act    Action  // 0 or ActPoolCheck
	reason string  // reason of the transition
	note   string  // log line when nothing else happens
	wait   string  // new Status.Reason when we stay (RECOVER)
	// askUpdates: RECOVER-DONE asks the peer, which has left
	// PARTNER-DOWN, for its unacknowledged updates (askPeerUpdates).
	askUpdates bool
}

// recoverWaitReason is what a server in RECOVER reports while the peer is
// in state peer.
func recoverWaitReason(peer State) string {
	if peer == Shutdown {
		return "waiting in recover: the peer is shutdown and may never send its bindings; recover ends only when it has sent every binding (UPDREQALL answered by UPDDONE)"
	}
	return fmt.Sprintf("waiting in recover for every binding of the peer (UPDREQALL answered by UPDDONE); peer is %s", peer)
}

// peerReaction is ISC 4.4.3 dhcp_failover_peer_state_changed (docs/protocol.md
// docs/protocol.md §12.3): what a server whose (effective) state is local does when the peer
// reports peer. prev is the peer state known before; inStartup says the
// local server is really in STARTUP; peerStartup is the peer's STARTUP flag.
func peerReaction(local, peer, prev State, inStartup, peerStartup bool) reaction {
	moved := "peer moved to " + peer.String()
	switch local {
	case Normal:
		switch peer {
		case Normal:
			return reaction{act: ActPoolCheck}
		case PartnerDown:
			if inStartup {
				return reaction{to: Recover, reason: "peer is partner-down: it ran alone while we were down"}
			}
			return reaction{to: PotentialConflict, reason: moved}
		case PotentialConflict, ResolutionInterrupted, ConflictDone:
			return reaction{to: Shutdown, reason: fmt.Sprintf("invalid state transition: peer moved from %s to %s while we are normal", prev, peer)}
		case Recover, Shutdown:
			return reaction{to: PartnerDown, reason: moved}
		case Paused:
			return reaction{to: CommInterrupted, reason: moved}
		}
	case Recover:
		// RECOVER is left only through UPDDONE (UpdateDone), whatever
		// the peer's state: our bindings are not trustworthy until the
		// peer has sent all of its own. ISC moves to POTENTIAL-CONFLICT
		// on a peer in NORMAL, POTENTIAL-CONFLICT,
		// RESOLUTION-INTERRUPTED or CONFLICT-DONE (conflict resolution
		// exchanges only pending updates: NORMAL with a partial
		// database) and to PARTNER-DOWN on a peer in SHUTDOWN (serving
		// the peer's clients' addresses MCLT later). We stay and ask
		// again; RECOVER-DONE takes those rows once we have everything.
		switch peer {
		case Recover, PartnerDown, CommInterrupted, Normal, PotentialConflict, ResolutionInterrupted, ConflictDone, Shutdown:
			r := reaction{wait: recoverWaitReason(peer)}
			if !inStartup {
				// Leaving STARTUP into RECOVER sends it anyway.
				r.send, r.note = MsgUpdReqAll, "requesting full update from peer"
			}
			return r
		}
	case PotentialConflict:
		switch peer {
		case Normal:
			return reaction{to: Shutdown, reason: "peer moved to normal during conflict resolution"}
		case ConflictDone:
			if prev == PotentialConflict {
				return reaction{send: MsgUpdReq}
			}
			return reaction{note: "unexpected peer move to conflict-done"}
		case Recover:
			// ISC moves to RECOVER here. With RECOVER's own row (peer
			// POTENTIAL-CONFLICT → POTENTIAL-CONFLICT) two STATEs that
			// cross make the pair swap states forever (found by
			// TestSimulatedPair). We follow draft-12 §9.10.3, which has
			// no such transition: stay; the peer joins us.
			return reaction{note: "peer is recover: it will join potential-conflict at recover-done (ISC would move to recover and can oscillate)"}
		case Shutdown:
			return reaction{to: PartnerDown, reason: moved}
		}
	case ConflictDone:
		switch peer {
		case Normal, Shutdown:
			return reaction{to: peer, reason: moved}
		case PotentialConflict, ResolutionInterrupted:
			return reaction{}
		case Recover, RecoverWait, RecoverDone:
			// ISC exits here. A peer that was in RECOVER when it
			// answered our UPDREQ now fetches every binding; at
			// RECOVER-DONE it joins POTENTIAL-CONFLICT and asks us
			// for our updates. We serve nothing meanwhile.
			return reaction{note: "peer is recovering: it joins potential-conflict at recover-done (ISC exits here)"}
		default:
			// ISC calls log_fatal and exits here. Serving nothing is
			// the safe equivalent.
			return reaction{to: Shutdown, reason: fmt.Sprintf("invalid attempt by peer to move from %s to %s while we are conflict-done (ISC exits here)", prev, peer)}
		}
	case PartnerDown:
		if peerStartup {
			return reaction{note: "peer is starting up: ignored in partner-down"}
		}
		switch peer {
		case RecoverDone:
			return reaction{to: Normal, reason: moved}
		case Normal, PotentialConflict, PartnerDown, CommInterrupted, ResolutionInterrupted, ConflictDone:
			return reaction{to: PotentialConflict, reason: moved}
		}
	case CommInterrupted:
		switch peer {
		case Recover, Shutdown:
			return reaction{to: PartnerDown, reason: moved}
		case Normal, CommInterrupted, RecoverDone, RecoverWait:
			return reaction{to: Normal, reason: moved}
		case PotentialConflict, PartnerDown, ResolutionInterrupted, ConflictDone:
			return reaction{to: PotentialConflict, reason: moved}
		}
	case ResolutionInterrupted:
		switch peer {
		case Normal, Recover, PotentialConflict, PartnerDown, CommInterrupted,
			ResolutionInterrupted, ConflictDone, RecoverDone, RecoverWait:
			return reaction{to: PotentialConflict, reason: moved}
		case Shutdown:
			return reaction{to: PartnerDown, reason: moved}
		}
	case RecoverDone:
		switch peer {
		case RecoverDone, Normal:
			// ISC moves to NORMAL here. A peer leaving PARTNER-DOWN
			// may still have updates of addresses it gave from our
			// pool queued behind the STATE that said so (its
			// max-unacked-updates window): NORMAL now could give
			// them again. We ask for them (UPDREQ) and move to
			// NORMAL at the UPDDONE, which follows them on the
			// link (UpdateDone).
			return reaction{askUpdates: true}
		case Shutdown:
			return reaction{to: PartnerDown, reason: moved}
		case PotentialConflict, ResolutionInterrupted, ConflictDone:
			// Not in ISC, whose RECOVER row took the peer's conflict
			// before the bindings arrived. We have every binding and
			// waited MCLT: resolving the conflict is safe now.
			return reaction{to: PotentialConflict, reason: moved}
		}
	}
	// RECOVER-WAIT, SHUTDOWN, PAUSED, unknown: nothing, ever.
	return reaction{}
}

// peerStateProcessedWhenUnchanged lists the local states in which a STATE
// repeating the known peer state is still evaluated (ISC: "if we get a peer
// state change when we're disconnected, we always process it").
func peerStateProcessedWhenUnchanged(local State) bool {
	switch local {
	case PartnerDown, CommInterrupted, ResolutionInterrupted, Recover, ConflictDone:
		return true
	case RecoverDone:
		// Not in ISC: after a reconnect, a peer that kept its state
		// repeats it, and RECOVER-DONE must react to it or wait
		// forever. Every RECOVER-DONE row leaves RECOVER-DONE or
		// sends UPDREQ at most once per link, so a repeat acts at
		// most once.
		return true
	}
	return false
}

// PeerState processes a STATE from the peer: its server-state and STARTUP
// flag (ISC ignores the peer's start-time-of-state, and so do we).
func (m *Machine) PeerState(s State, startup bool, now int64) {
	m.peerStartup = startup
	m.peerHeard = m.connected
	if !s.Valid() {
		m.note("peer sent invalid state %d", uint8(s))
		m.setState(Shutdown, now, fmt.Sprintf("peer sent invalid state %d", uint8(s)))
		return
	}
	if s == m.peer && m.state != Unknown {
		switch {
		case m.state == Startup && peerStateProcessedWhenUnchanged(m.saved) && m.saved != ResolutionInterrupted:
			// Evaluated as if in the saved state, which processes a
			// repeated peer state (ISC returns to the saved state
			// unevaluated: saved COMMUNICATIONS-INTERRUPTED or
			// PARTNER-DOWN with a peer that stayed RECOVER-DONE would
			// then wait for each other forever).
		case m.state == Startup:
			to := m.saved
			why := fmt.Sprintf("startup ended: peer state %s received, returning to saved state", s)
			if to == ResolutionInterrupted {
				to = PotentialConflict
				why = fmt.Sprintf("startup ended: peer state %s received; saved resolution-interrupted with the peer reachable means potential-conflict", s)
			}
			m.setState(to, now, why)
			return
		case !peerStateProcessedWhenUnchanged(m.state):
			return
		}
	}
	prev := m.peer
	m.peer, m.peerStos = s, now
	m.note("peer moves from %s to %s", prev, s)

	inStartup := m.state == Startup
	r := peerReaction(m.effective(), s, prev, inStartup, startup)
	if r.note != "" {
		m.note("%s", r.note)
	}
	if r.act != 0 {
		m.act(r.act)
	}
	if r.send != 0 {
		m.send(Message{Type: r.send})
	}
	if r.to != Unknown {
		m.setState(r.to, now, r.reason)
	}
	if r.askUpdates && m.state == RecoverDone {
		// In STARTUP, returning to the saved RECOVER-DONE below
		// asks, after our STATE.
		m.askPeerUpdates()
	}
	if m.state == Startup {
		m.setState(m.saved, now, fmt.Sprintf("startup ended: peer state %s received, returning to saved state", s))
	}
	if r.wait != "" && m.state == Recover {
		m.reason = r.wait
	}
}

// askPeerUpdates is RECOVER-DONE's answer to a peer that reports NORMAL or
// RECOVER-DONE, i.e. no longer serves from the whole pool: UPDREQ ("send
// me every binding I have not acknowledged"), once per link. The peer
// queues its unacknowledged updates and sends UPDDONE after them; as the
// link is ordered, that UPDDONE proves that every address it gave while
// serving ours (PARTNER-DOWN) has reached us, and UpdateDone moves to
// NORMAL. Not in ISC, which moves to NORMAL on the peer's STATE while
// that peer's updates may still wait behind its max-unacked-updates
// window (docs/protocol.md §12.3). A link lost meanwhile keeps
// RECOVER-DONE; the peer's STATE on the next link asks again.
func (m *Machine) askPeerUpdates() {
	if m.askedUpdates || !m.connected {
		if m.askedUpdates {
			m.note("peer is %s: still waiting for the update-done of our update request", m.peer)
		}
		return
	}
	m.askedUpdates = true
	m.reason = fmt.Sprintf("peer is %s: waiting for its update-done (UPDREQ sent) before normal, so that every binding it gave while partner-down has arrived", m.peer)
	m.note("peer is %s: requesting its unacknowledged updates before normal", m.peer)
	m.send(Message{Type: MsgUpdReq})
}

// UpdateDone processes an UPDDONE from the peer (docs/protocol.md §12.4).
func (m *Machine) UpdateDone(now int64) {
	m.note("peer update completed")
	switch m.state {
	case Recover:
		peerRecovering := m.peer == Recover || m.peer == RecoverDone
		if peerRecovering && m.hadState && m.peerStos > m.stos {
			// ISC skips the MCLT wait when the peer recovers too:
			// a new pair, where no one has served. A server that
			// kept its database cannot tell a new peer from one
			// that lost its own, whose clients may hold leases no
			// database knows of, granted until it stopped (at the
			// latest when we heard it recover) and running at most
			// MCLT beyond: it waits MCLT from then (kept across a
			// restart as RECOVER-WAIT's stos). The pair reaches
			// NORMAL only through both RECOVER-DONEs.
			m.stos = m.peerStos
		}
		if m.stos+m.mclt > now && (!peerRecovering || m.hadState) {
			why := fmt.Sprintf("update-done received; waiting until stos + mclt (%ds from now)", m.stos+m.mclt-now)
			if peerRecovering {
				why = fmt.Sprintf("update-done received; peer is %s and may have lost its database: waiting until mclt after we heard it (%ds from now)", m.peer, m.stos+m.mclt-now)
			}
			m.setState(RecoverWait, now, why)
			return
		}
		why := "update-done received and mclt passed"
		if peerRecovering && !m.hadState {
			why = fmt.Sprintf("update-done received; peer is %s too, no mclt wait", m.peer)
		}
		m.setState(RecoverDone, now, why)
	case PotentialConflict:
		switch {
		case m.peer == ConflictDone && m.cfg.Role == Secondary:
			m.setState(Normal, now, "update-done received from the conflict-done primary: conflict resolved")
		case m.peer == ConflictDone:
			m.setState(Shutdown, now, "update-done received while the secondary is conflict-done: illegal after conflict resolution")
		case m.cfg.Role == Primary:
			m.setState(ConflictDone, now, "update-done received: the secondary's updates are applied")
		default:
			m.note("spurious update-done message")
		}
	case ConflictDone:
		m.note("spurious update-done message")
	case RecoverDone:
		switch {
		case !m.askedUpdates:
			m.note("update-done ignored in recover-done: no update request outstanding")
		case m.peer == Normal:
			m.setState(Normal, now, "peer is normal and its update-done arrived: every binding it gave while partner-down is here")
		case m.peer == RecoverDone:
			m.setState(Normal, now, "both servers have entered recover-done and the peer's update-done arrived")
		default:
			// Its next NORMAL or RECOVER-DONE asks again.
			m.askedUpdates = false
			m.note("update-done ignored in recover-done: the peer is now %s", m.peer)
		}
	default:
		m.note("update-done ignored in %s", m.state)
	}
}

// Command is the operator's request to move to state to (ISC's OMAPI
// failover-state local-state, which accepts anything). We accept only moves
// that cannot make both servers hand out the same address:
//
//   - SHUTDOWN and RECOVER from any state: neither serves clients, and
//     RECOVER resynchronises from the peer before serving again.
//   - PAUSED from NORMAL or COMMUNICATIONS-INTERRUPTED (draft-12 §9.13: a
//     short, announced absence of a working server).
//   - NORMAL only from PAUSED, while connected, once the peer's STATE has
//     been received on this link, and only if the peer is NORMAL,
//     COMMUNICATIONS-INTERRUPTED or PAUSED (capture 06). Otherwise the
//     peer may have taken over (PARTNER-DOWN) and we must go through
//     RECOVER. SHUTDOWN is left through RECOVER (capture 06).
//   - PARTNER-DOWN, except (a) while recovering (RECOVER, RECOVER-WAIT,
//     RECOVER-DONE: our bindings are not yet trustworthy, draft-12 §9.5)
//     and (b) while connected, unless the peer's STATE on this link reports
//     PAUSED or SHUTDOWN (draft-12
//     §9.4: "If one server is in PARTNER-DOWN state, the other server MUST
//     NOT be operating", and a connected peer in NORMAL is operating). ISC
//     accepts both; the result would be a needless POTENTIAL-CONFLICT round
//     or a server serving without its bindings.
//
// While disconnected, PARTNER-DOWN is the operator's assertion that the peer
// is down: the machine cannot tell a dead peer from a cut link (draft-12
// §9.4), and MCLT is the only protection if the assertion is wrong.
//
// Commands are refused in STARTUP (at most StartupTimeout seconds). A command
// naming the current state is accepted and does nothing (ISC would re-enter
// the state and reset stos, which for PARTNER-DOWN restarts the MCLT wait).
func (m *Machine) Command(to State, now int64) error {
	return m.CommandReason(to, now, "operator command")
}

// CommandReason is Command with the reason the new state reports (for
// example "maintenance: handing the pools to the peer").
func (m *Machine) CommandReason(to State, now int64, reason string) error {
	if !to.Valid() {
		return fmt.Errorf("%w: %d", ErrInvalidState, uint8(to))
	}
	if m.state == Startup {
		return fmt.Errorf("%w (saved state %s)", ErrStartingUp, m.saved)
	}
	if to == m.state {
		return nil
	}
	switch to {
	case Shutdown, Recover:
	case Paused:
		if m.state != Normal && m.state != CommInterrupted {
			return fmt.Errorf("%w: paused can be commanded only from normal or communications-interrupted, not from %s", ErrNotFromState, m.state)
		}
	case Normal:
		switch {
		case m.state != Paused:
			return fmt.Errorf("%w: normal can be commanded only from paused, not from %s (use recover)", ErrNotFromState, m.state)
		case !m.connected || !m.peerHeard:
			return fmt.Errorf("%w: normal needs the peer's state on an established link", ErrNotFromState)
		case !peerMayTakeOver(m.peer):
			return fmt.Errorf("%w: the peer is %s; leave paused through recover", ErrNotFromState, m.peer)
		}
	case PartnerDown:
		switch m.state {
		case Recover, RecoverWait, RecoverDone:
			return fmt.Errorf("%w: in %s the server has not yet received its bindings from the peer", ErrRecovering, m.state)
		}
		if m.connected {
			switch {
			case !m.peerHeard:
				return fmt.Errorf("%w: the peer's state on this link is not yet known", ErrPartnerReachable)
			case m.peer == Paused, m.peer == Shutdown:
			default:
				return fmt.Errorf("%w: the peer reports %s", ErrPartnerReachable, m.peer)
			}
		}
	default:
		return fmt.Errorf("%w: %s (allowed: partner-down, paused, shutdown, recover, normal)", ErrNotAdministrative, to)
	}
	m.setState(to, now, reason)
	return nil
}

// The operator's commands that are more than a state (failoverctl
// maintenance-start, maintenance-stop, resync, rebalance) are checked
// here too, beside Command: which command is allowed in which state is
// decided in one place.

// peerMayTakeOver reports whether a peer in state p is serving or ready
// to, with every binding: NORMAL, COMMUNICATIONS-INTERRUPTED or PAUSED.
// Only such a peer may take the pools over at a maintenance start, or
// see us back in NORMAL straight from PAUSED.
func peerMayTakeOver(p State) bool {
	return p == Normal || p == CommInterrupted || p == Paused
}

// CheckMaintenanceStart checks the operator's maintenance start, which
// commands SHUTDOWN so that the peer takes over in PARTNER-DOWN: it
// needs the peer connected (to learn that it may take over), serving or
// ready to, and this server in NORMAL, COMMUNICATIONS-INTERRUPTED or
// PAUSED. already is set in SHUTDOWN: there is nothing to do.
func (m *Machine) CheckMaintenanceStart() (already bool, err error) {
	if !m.connected {
		return false, errors.New("maintenance start needs the peer connected, to hand it the pools; it is not (to stop serving anyway: shutdown here, then partner-down on the peer once this server is stopped)")
	}
	switch m.state {
	case Shutdown:
		return true, nil
	case Normal, CommInterrupted, Paused:
	default:
		return false, fmt.Errorf("maintenance start from %s refused: the peer must be serving or ready to (wait for normal)", m.state)
	}
	if !peerMayTakeOver(m.peer) {
		return false, fmt.Errorf("maintenance start refused: the peer is %s, not ready to take over", m.peer)
	}
	return false, nil
}

// MaintenanceStopTarget is the state the operator's maintenance stop
// commands: NORMAL straight from PAUSED while connected to a peer that
// may see us back (peerMayTakeOver), else RECOVER, from SHUTDOWN or
// PAUSED, which fetches every binding from the peer. Outside maintenance
// it is an error.
func (m *Machine) MaintenanceStopTarget() (State, error) {
	switch m.state {
	case Paused:
		if m.connected && peerMayTakeOver(m.peer) {
			return Normal, nil
		}
	case Shutdown:
	default:
		return 0, fmt.Errorf("not in maintenance: state %s (maintenance stop leaves shutdown or paused)", m.state)
	}
	return Recover, nil
}

// CheckResync checks the operator's resync (UPDREQALL): it needs the
// peer connected. The state does not change.
func (m *Machine) CheckResync() error {
	if !m.connected {
		return errors.New("resync needs the peer connected; it is not")
	}
	return nil
}

// CheckRebalance checks the operator's pool rebalance: free addresses
// move only in NORMAL, as the peer's POOLREQ (MayBalance).
func (m *Machine) CheckRebalance() error {
	if !m.MayBalance() {
		return fmt.Errorf("pool balancing runs only in normal, not in %s", m.state)
	}
	return nil
}

// MayBalance reports whether free addresses may move between the
// servers: only while both serve in NORMAL (ISC
// dhcp_failover_pool_dobalance), a POOLREQ included.
func (m *Machine) MayBalance() bool { return m.state == Normal }
