package fsm

import (
	"fmt"
	"strconv"
	"strings"
)

// State is a failover server state, numbered as on the wire (server-state
// option, docs/protocol.md §7). RecoverWait is 254, as ISC sends it; draft-12 gives
// it no number.
type State uint8

// Failover states (docs/protocol.md §7).
const (
	Unknown               State = 0
	Startup               State = 1
	Normal                State = 2
	CommInterrupted       State = 3
	PartnerDown           State = 4
	PotentialConflict     State = 5
	Recover               State = 6
	Paused                State = 7
	Shutdown              State = 8
	RecoverDone           State = 9
	ResolutionInterrupted State = 10
	ConflictDone          State = 11
	RecoverWait           State = 254
)

// stateNames are ISC's names (dhcp_failover_state_name_print), which are
// also the keywords of its lease file.
var stateNames = map[State]string{
	Unknown:               "unknown-state",
	Startup:               "startup",
	Normal:                "normal",
	CommInterrupted:       "communications-interrupted",
	PartnerDown:           "partner-down",
	PotentialConflict:     "potential-conflict",
	Recover:               "recover",
	Paused:                "paused",
	Shutdown:              "shutdown",
	RecoverDone:           "recover-done",
	ResolutionInterrupted: "resolution-interrupted",
	ConflictDone:          "conflict-done",
	RecoverWait:           "recover-wait",
}

// AllStates lists every valid state in wire order.
var AllStates = []State{
	Unknown, Startup, Normal, CommInterrupted, PartnerDown, PotentialConflict,
	Recover, Paused, Shutdown, RecoverDone, ResolutionInterrupted, ConflictDone,
	RecoverWait,
}

// String returns ISC's log name of the state ("normal",
// "communications-interrupted", "recover-wait", "unknown-state", ...).
// Values outside the protocol print as "invalid-state-N".
func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return "invalid-state-" + strconv.Itoa(int(s))
}

// Valid reports whether s is one of the 13 states ISC accepts (0..11, 254).
// A peer that reports anything else is answered with SHUTDOWN (docs/protocol.md §6.3).
func (s State) Valid() bool {
	_, ok := stateNames[s]
	return ok
}

// ErrUnknownStateName is returned by ParseState.
var ErrUnknownStateName = fmt.Errorf("unknown failover state name")

// ParseState accepts ISC's names ("partner-down"), the same in upper case or
// with underscores ("PARTNER_DOWN"), the short forms "unknown" and
// "comm-interrupted", and the wire number ("4", "254").
func ParseState(name string) (State, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.ReplaceAll(n, "_", "-")
	switch n {
	case "unknown":
		return Unknown, nil
	case "comm-interrupted", "communications-int", "comm-int":
		return CommInterrupted, nil
	}
	for s, sn := range stateNames {
		if sn == n {
			return s, nil
		}
	}
	if v, err := strconv.ParseUint(n, 10, 8); err == nil && State(v).Valid() {
		return State(v), nil
	}
	return Unknown, fmt.Errorf("%w: %q", ErrUnknownStateName, name)
}

// ServesClients reports whether a server in state s answers DHCP clients
// (docs/protocol.md §7: NORMAL, COMMUNICATIONS-INTERRUPTED, PARTNER-DOWN). It does
// not consider the peer's state; see MayServe.
//
// Draft-12 also lets RESOLUTION-INTERRUPTED and CONFLICT-DONE respond; ISC
// does not (dhcp_failover_set_service_state), and neither do we.
func (s State) ServesClients() bool {
	switch s {
	case Normal, CommInterrupted, PartnerDown:
		return true
	}
	return false
}

// PeerForbidsService reports whether a peer in state peer forbids this server
// to answer clients even in a serving state: PARTNER-DOWN ("peer demands:
// recovering"), POTENTIAL-CONFLICT, CONFLICT-DONE and RESOLUTION-INTERRUPTED
// ("peer demands: resolving conflicts"); ISC dhcp_failover_set_service_state,
// docs/protocol.md §7. The last known peer state counts, connected or not.
func PeerForbidsService(peer State) bool {
	switch peer {
	case PartnerDown, PotentialConflict, ConflictDone, ResolutionInterrupted:
		return true
	}
	return false
}

// Role is the server's failover role.
type Role uint8

// Roles.
const (
	Primary Role = iota
	Secondary
)

func (r Role) String() string {
	switch r {
	case Primary:
		return "primary"
	case Secondary:
		return "secondary"
	}
	return "invalid-role-" + strconv.Itoa(int(r))
}
