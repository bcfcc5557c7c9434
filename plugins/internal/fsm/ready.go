package fsm

import (
	"fmt"
	"strconv"
)

// Transition is one change of the local state.
type Transition struct {
	From, To State
	// At is the time of the transition (Unix seconds).
	At int64
	// Stos is the start time of state To after the transition. It equals
	// At except when To is RECOVER-WAIT, when the transition leaves
	// STARTUP (both keep the previous stos, as ISC does) and for the
	// SHUTDOWN → RECOVER shortcut (now − MCLT).
	Stos int64
	// Reason says why, in words an operator can act on.
	Reason string
}

func (t Transition) String() string {
	return fmt.Sprintf("%s -> %s at %d stos %d: %s", t.From, t.To, t.At, t.Stos, t.Reason)
}

// MsgType is the type of a message the state machine asks the session to send.
type MsgType uint8

// Message types. The session builds the wire messages (STATE = 10,
// UPDREQALL = 7, UPDREQ = 9).
const (
	MsgState     MsgType = iota + 1 // STATE with server-state, server-flags, start-time-of-state
	MsgUpdReq                       // UPDREQ: send me what I have not acknowledged
	MsgUpdReqAll                    // UPDREQALL: send me every binding
)

func (t MsgType) String() string {
	switch t {
	case MsgState:
		return "STATE"
	case MsgUpdReq:
		return "UPDREQ"
	case MsgUpdReqAll:
		return "UPDREQALL"
	}
	return "msgtype-" + strconv.Itoa(int(t))
}

// Message is a message to send to the peer on the established link.
type Message struct {
	Type MsgType
	// State, Startup and Stos are set for MsgState only: the current state
	// (the saved state while in STARTUP, never Startup itself), the STARTUP
	// flag (server-flags bit 0) and the start time of the state.
	State   State
	Startup bool
	Stos    int64
}

func (m Message) String() string {
	if m.Type != MsgState {
		return m.Type.String()
	}
	f := 0
	if m.Startup {
		f = 1
	}
	return fmt.Sprintf("STATE %s flags=%d stos=%d", m.State, f, m.Stos)
}

// Action is a side effect the session and binding layer must carry out.
// Actions are emitted in the order in which ISC performs them.
type Action uint8

// Actions (docs/protocol.md §12.3, §12.5).
const (
	// ActRequeueUnacked: put every BNDUPD that is still waiting for its
	// BNDACK back on the front of the update queue, so that it is sent
	// again (and answered to a later UPDREQ). Emitted when leaving NORMAL,
	// POTENTIAL-CONFLICT or PARTNER-DOWN, and on link loss in
	// CONFLICT-DONE (ISC dhcp_failover_rescind_updates).
	ActRequeueUnacked Action = iota + 1
	// ActPoolBalance: on entering NORMAL, rebalance FREE/BACKUP between
	// the servers (docs/protocol.md §15) without sending a POOLREQ, and restart the
	// rebalance timer (ISC dhcp_failover_pool_balance).
	ActPoolBalance
	// ActSendPending: on entering NORMAL, queue every binding whose last
	// announcement was not acknowledged or that is EXPIRED, RELEASED or
	// RESET, and send the queue (ISC dhcp_failover_generate_update_queue
	// + "Sending updates to R.").
	ActSendPending
	// ActPoolCheck: the peer has (again) reported NORMAL while we are
	// NORMAL: schedule a pool balance check (ISC
	// dhcp_failover_state_pool_check).
	ActPoolCheck
	// ActPartnerDownEntered: PARTNER-DOWN was entered; every EXPIRED,
	// RELEASED or RESET binding gets tsfp := Transition.Stos + MCLT, i.e.
	// it becomes reusable MCLT after entering PARTNER-DOWN (docs/protocol.md §12.5, §16).
	// The peer's FREE/BACKUP addresses become usable at stos + MCLT too
	// (docs/protocol.md §18); the binding layer reads stos from the transition or Status.
	ActPartnerDownEntered
)

func (a Action) String() string {
	switch a {
	case ActRequeueUnacked:
		return "requeue-unacked"
	case ActPoolBalance:
		return "pool-balance"
	case ActSendPending:
		return "send-pending"
	case ActPoolCheck:
		return "pool-check"
	case ActPartnerDownEntered:
		return "partner-down-entered"
	}
	return "action-" + strconv.Itoa(int(a))
}

// Ready holds the outputs accumulated since the last call to Machine.Ready.
type Ready struct {
	// Transitions of the local state, in order.
	Transitions []Transition
	// Send lists messages for the peer, in order. Messages are only
	// produced while connected.
	Send []Message
	// Actions lists side effects, in order.
	Actions []Action
	// Notes are log-worthy events that are not transitions, e.g. "peer
	// moves from normal to partner-down" or "spurious update-done
	// message", worded like ISC's log lines.
	Notes []string
	// Persist is non-nil when the durable state changed. The session must
	// write it before sending Send (draft-12 §9.2: record the state, then
	// tell the peer). ISC abandons a transition it cannot record; a
	// session that cannot write should stop serving and drop the link.
	Persist *Persistent
	// NextTimer is the earliest pending deadline (0 = none). Call Tick at
	// or after it.
	NextTimer int64
}

// Empty reports whether r carries no output besides NextTimer.
func (r Ready) Empty() bool {
	return len(r.Transitions) == 0 && len(r.Send) == 0 && len(r.Actions) == 0 &&
		len(r.Notes) == 0 && r.Persist == nil
}
