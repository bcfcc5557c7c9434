package leasesync

import (
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// The enums the other packages share with the wire are translated here,
// value by value, and only here. TestRejectMapping pins every pair.

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
