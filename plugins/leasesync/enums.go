package leasesync

import (
	"fmt"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// The enums the other packages share with the wire are translated here,
// and only here, value by value: lease.State and fsm.State are numbered as
// the wire numbers them, but a cast would carry any byte the peer sends
// into a state, and would silently go wrong if either side gained a value.
// TestBindingStatusMapping, TestServerStateMapping and TestRejectMapping
// pin every pair.

// codeMap is a one-to-one mapping between the values of an enum of ours
// (A) and the codes of a wire option (B).
type codeMap[A, B ~uint8] struct {
	what, option string // names for errors: "binding state", "binding-status"
	pairs        []codePair[A, B]
}

// codePair is one value of ours and its code.
type codePair[A, B ~uint8] struct {
	ours A
	wire B
}

// toWire returns the code paired with a; it fails for a value no pair
// names.
func (m *codeMap[A, B]) toWire(a A) (B, error) {
	for _, p := range m.pairs {
		if p.ours == a {
			return p.wire, nil
		}
	}
	return 0, fmt.Errorf("%s %d has no %s", m.what, uint8(a), m.option)
}

// fromWire returns the value paired with code b; it fails for a code no
// pair names.
func (m *codeMap[A, B]) fromWire(b B) (A, error) {
	for _, p := range m.pairs {
		if p.wire == b {
			return p.ours, nil
		}
	}
	return 0, fmt.Errorf("unknown %s %d", m.option, uint8(b))
}

// bindingStatuses pairs each binding state with its binding-status code.
var bindingStatuses = codeMap[lease.State, wire.BindingStatus]{
	what: "binding state", option: "binding-status",
	pairs: []codePair[lease.State, wire.BindingStatus]{
		{lease.Free, wire.StatusFree},
		{lease.Active, wire.StatusActive},
		{lease.Expired, wire.StatusExpired},
		{lease.Released, wire.StatusReleased},
		{lease.Abandoned, wire.StatusAbandoned},
		{lease.Reset, wire.StatusReset},
		{lease.Backup, wire.StatusBackup},
	},
}

// serverStates pairs each failover state with its server-state code.
var serverStates = codeMap[fsm.State, wire.ServerState]{
	what: "failover state", option: "server-state",
	pairs: []codePair[fsm.State, wire.ServerState]{
		{fsm.Unknown, wire.StateUnknown},
		{fsm.Startup, wire.StateStartup},
		{fsm.Normal, wire.StateNormal},
		{fsm.CommInterrupted, wire.StateCommunicationsInterrupted},
		{fsm.PartnerDown, wire.StatePartnerDown},
		{fsm.PotentialConflict, wire.StatePotentialConflict},
		{fsm.Recover, wire.StateRecover},
		{fsm.Paused, wire.StatePaused},
		{fsm.Shutdown, wire.StateShutdown},
		{fsm.RecoverDone, wire.StateRecoverDone},
		{fsm.ResolutionInterrupted, wire.StateResolutionInterrupted},
		{fsm.ConflictDone, wire.StateConflictDone},
		{fsm.RecoverWait, wire.StateRecoverWait},
	},
}

// rejectToWire is the reject-reason of r, which must not be 0 (accepted).
// A reason this table lacks (a failover plugin newer than it) goes out as
// MISC-REJECT, the draft's "unknown reason", rather than as a number the
// peer may read differently.
func rejectToWire(r relation.Reject) wire.RejectReason {
	switch r {
	case relation.RejectIllegalAddress:
		return wire.RejectIllegalIPAddr
	case relation.RejectConflict:
		return wire.RejectFatalConflict
	case relation.RejectMissingInfo:
		return wire.RejectMissingBindInfo
	case relation.RejectOther:
		return wire.RejectMiscReject
	case relation.RejectLessCritical:
		return wire.RejectLessCritBindInfo
	}
	return wire.RejectMiscReject
}

// relStateOf is the stored form of p: its states as server-state codes
// (lease.RelState).
func relStateOf(p *fsm.Persistent) (lease.RelState, error) {
	my, err := serverStates.toWire(p.MyState)
	if err != nil {
		return lease.RelState{}, err
	}
	peer, err := serverStates.toWire(p.PeerState)
	if err != nil {
		return lease.RelState{}, err
	}
	return lease.RelState{MyState: uint8(my), MyStos: p.MyStos,
		PeerState: uint8(peer), PeerStos: p.PeerStos, MCLT: p.MCLT}, nil
}

// persistentOf reads a stored state. A state that is no failover state
// is logged and read as unknown-state, with no start time: the machine
// then recovers (our state) or waits to hear the peer's (docs/protocol.md
// §12.1).
func persistentOf(rel string, saved *lease.RelState) fsm.Persistent {
	p := fsm.Persistent{MyStos: saved.MyStos, PeerStos: saved.PeerStos, MCLT: saved.MCLT}
	var err error
	if p.MyState, err = serverStates.fromWire(wire.ServerState(saved.MyState)); err != nil {
		log.WithField("relationship", rel).Warnf("stored failover state unusable: %v", err)
	}
	if p.PeerState, err = serverStates.fromWire(wire.ServerState(saved.PeerState)); err != nil {
		log.WithField("relationship", rel).Warnf("stored state of the peer unusable: %v", err)
		p.PeerStos = 0
	}
	return p
}
