package wire

import "strconv"

// MessageType is the failover message type (header byte 2).
type MessageType uint8

// Message types (draft-12 §6, ISC includes/failover.h FTM_*).
const (
	MsgPoolReq    MessageType = 1  // POOLREQ: ask the peer for free leases
	MsgPoolResp   MessageType = 2  // POOLRESP: answer to POOLREQ
	MsgBndUpd     MessageType = 3  // BNDUPD: binding update
	MsgBndAck     MessageType = 4  // BNDACK: binding acknowledgement
	MsgConnect    MessageType = 5  // CONNECT: primary → secondary handshake
	MsgConnectAck MessageType = 6  // CONNECTACK: secondary → primary handshake
	MsgUpdReqAll  MessageType = 7  // UPDREQALL: send me every binding (tshark 4.0 calls this "Update request")
	MsgUpdDone    MessageType = 8  // UPDDONE: all requested updates sent
	MsgUpdReq     MessageType = 9  // UPDREQ: send me unacknowledged bindings (tshark 4.0 calls this "Update request all")
	MsgState      MessageType = 10 // STATE: server state
	MsgContact    MessageType = 11 // CONTACT: keep-alive
	MsgDisconnect MessageType = 12 // DISCONNECT: closing with a reason

	maxMessageType = MsgDisconnect
)

var messageTypeNames = [...]string{
	MsgPoolReq:    "POOLREQ",
	MsgPoolResp:   "POOLRESP",
	MsgBndUpd:     "BNDUPD",
	MsgBndAck:     "BNDACK",
	MsgConnect:    "CONNECT",
	MsgConnectAck: "CONNECTACK",
	MsgUpdReqAll:  "UPDREQALL",
	MsgUpdDone:    "UPDDONE",
	MsgUpdReq:     "UPDREQ",
	MsgState:      "STATE",
	MsgContact:    "CONTACT",
	MsgDisconnect: "DISCONNECT",
}

// Known reports whether t is one of the twelve defined message types.
func (t MessageType) Known() bool { return t >= MsgPoolReq && t <= maxMessageType }

// String returns the draft's abbreviation (e.g. "BNDUPD"), or
// "MessageType(N)" for an undefined value.
func (t MessageType) String() string {
	if t.Known() {
		return messageTypeNames[t]
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// ServerState is the value of the server-state option.
type ServerState uint8

// Server states (draft-12 §12.24 plus ISC's RECOVER-WAIT = 254).
const (
	StateUnknown                   ServerState = 0 // ISC "unknown-state": no STATE received yet
	StateStartup                   ServerState = 1 // never sent by ISC (it sends the saved state with FlagStartup)
	StateNormal                    ServerState = 2
	StateCommunicationsInterrupted ServerState = 3
	StatePartnerDown               ServerState = 4
	StatePotentialConflict         ServerState = 5
	StateRecover                   ServerState = 6
	StatePaused                    ServerState = 7
	StateShutdown                  ServerState = 8
	StateRecoverDone               ServerState = 9
	StateResolutionInterrupted     ServerState = 10
	StateConflictDone              ServerState = 11
	StateRecoverWait               ServerState = 254 // not in the draft's table; ISC's wire value
)

var serverStateNames = [...]string{
	StateUnknown:                   "UNKNOWN",
	StateStartup:                   "STARTUP",
	StateNormal:                    "NORMAL",
	StateCommunicationsInterrupted: "COMMUNICATIONS-INTERRUPTED",
	StatePartnerDown:               "PARTNER-DOWN",
	StatePotentialConflict:         "POTENTIAL-CONFLICT",
	StateRecover:                   "RECOVER",
	StatePaused:                    "PAUSED",
	StateShutdown:                  "SHUTDOWN",
	StateRecoverDone:               "RECOVER-DONE",
	StateResolutionInterrupted:     "RESOLUTION-INTERRUPTED",
	StateConflictDone:              "CONFLICT-DONE",
}

// Valid reports whether ISC accepts s in a STATE message (0–11 and 254);
// any other value makes ISC log "Invalid state" and move to SHUTDOWN.
func (s ServerState) Valid() bool { return s <= StateConflictDone || s == StateRecoverWait }

// String returns the draft's state name (e.g. "COMMUNICATIONS-INTERRUPTED"),
// "RECOVER-WAIT" for 254, or "ServerState(N)".
func (s ServerState) String() string {
	switch {
	case s <= StateConflictDone:
		return serverStateNames[s]
	case s == StateRecoverWait:
		return "RECOVER-WAIT"
	}
	return "ServerState(" + strconv.Itoa(int(s)) + ")"
}

// ServerFlags is the value of the server-flags option.
type ServerFlags uint8

// FlagStartup is set while the sender is in STARTUP; the server-state option
// then carries the state it remembered from before the restart.
const FlagStartup ServerFlags = 1

// BindingStatus is the value of the binding-status option. ISC uses the same
// numbers for its internal lease states.
type BindingStatus uint8

// Binding states (draft-12 §12.3).
const (
	StatusFree      BindingStatus = 1 // available to the primary
	StatusActive    BindingStatus = 2
	StatusExpired   BindingStatus = 3
	StatusReleased  BindingStatus = 4
	StatusAbandoned BindingStatus = 5
	StatusReset     BindingStatus = 6
	StatusBackup    BindingStatus = 7 // available to the secondary
)

var bindingStatusNames = [...]string{
	StatusFree:      "FREE",
	StatusActive:    "ACTIVE",
	StatusExpired:   "EXPIRED",
	StatusReleased:  "RELEASED",
	StatusAbandoned: "ABANDONED",
	StatusReset:     "RESET",
	StatusBackup:    "BACKUP",
}

// Valid reports whether s is one of the seven defined binding states.
func (s BindingStatus) Valid() bool { return s >= StatusFree && s <= StatusBackup }

// String returns the draft's name (e.g. "ACTIVE") or "BindingStatus(N)".
func (s BindingStatus) String() string {
	if s.Valid() {
		return bindingStatusNames[s]
	}
	return "BindingStatus(" + strconv.Itoa(int(s)) + ")"
}

// IPFlags is the value of the 2-byte IP-flags option.
type IPFlags uint16

// IP-flags bits (ISC FTF_IP_FLAG_*).
const (
	IPFlagReserved IPFlags = 0x0001 // the address is reserved (fixed) on the sender
	IPFlagBOOTP    IPFlags = 0x0002 // the address is allocated to a BOOTP client
)

// RejectReason is the value of the reject-reason option.
type RejectReason uint8

// Reject reasons (draft-12 §12.21, ISC FTR_*).
const (
	RejectIllegalIPAddr      RejectReason = 1
	RejectFatalConflict      RejectReason = 2
	RejectMissingBindInfo    RejectReason = 3
	RejectTimeMismatch       RejectReason = 4
	RejectInvalidMCLT        RejectReason = 5
	RejectMiscReject         RejectReason = 6
	RejectDupConnection      RejectReason = 7
	RejectInvalidPartner     RejectReason = 8
	RejectTLSUnsupported     RejectReason = 9
	RejectTLSUnconfigured    RejectReason = 10
	RejectTLSRequired        RejectReason = 11
	RejectDigestUnsupported  RejectReason = 12
	RejectDigestUnconfigured RejectReason = 13
	RejectVersionMismatch    RejectReason = 14
	RejectOutdatedBindInfo   RejectReason = 15
	RejectLessCritBindInfo   RejectReason = 16
	RejectNoTraffic          RejectReason = 17
	RejectHBAConflict        RejectReason = 18
	RejectIPNotReserved      RejectReason = 19
	RejectIPDigestFailure    RejectReason = 20
	RejectIPMissingDigest    RejectReason = 21
	RejectUnknown            RejectReason = 254
)

var rejectReasonNames = [...]string{
	RejectIllegalIPAddr:      "ILLEGAL-IP-ADDR",
	RejectFatalConflict:      "FATAL-CONFLICT",
	RejectMissingBindInfo:    "MISSING-BINDINFO",
	RejectTimeMismatch:       "TIME-MISMATCH",
	RejectInvalidMCLT:        "INVALID-MCLT",
	RejectMiscReject:         "MISC-REJECT",
	RejectDupConnection:      "DUP-CONNECTION",
	RejectInvalidPartner:     "INVALID-PARTNER",
	RejectTLSUnsupported:     "TLS-UNSUPPORTED",
	RejectTLSUnconfigured:    "TLS-UNCONFIGURED",
	RejectTLSRequired:        "TLS-REQUIRED",
	RejectDigestUnsupported:  "DIGEST-UNSUPPORTED",
	RejectDigestUnconfigured: "DIGEST-UNCONFIGURED",
	RejectVersionMismatch:    "VERSION-MISMATCH",
	RejectOutdatedBindInfo:   "OUTDATED-BIND-INFO",
	RejectLessCritBindInfo:   "LESS-CRIT-BIND-INFO",
	RejectNoTraffic:          "NO-TRAFFIC",
	RejectHBAConflict:        "HBA-CONFLICT",
	RejectIPNotReserved:      "IP-NOT-RESERVED",
	RejectIPDigestFailure:    "IP-DIGEST-FAILURE",
	RejectIPMissingDigest:    "IP-MISSING-DIGEST",
}

// rejectReasonTexts are the texts ISC prints (dhcp_failover_reject_reason_print).
var rejectReasonTexts = [...]string{
	RejectIllegalIPAddr:      "Illegal IP address (not part of any address pool).",
	RejectFatalConflict:      "Fatal conflict exists: address in use by other client.",
	RejectMissingBindInfo:    "Missing binding information.",
	RejectTimeMismatch:       "Connection rejected, time mismatch too great.",
	RejectInvalidMCLT:        "Connection rejected, invalid MCLT.",
	RejectMiscReject:         "Connection rejected, unknown reason.",
	RejectDupConnection:      "Connection rejected, duplicate connection.",
	RejectInvalidPartner:     "Connection rejected, invalid failover partner.",
	RejectTLSUnsupported:     "TLS not supported.",
	RejectTLSUnconfigured:    "TLS supported but not configured.",
	RejectTLSRequired:        "TLS required but not supported by partner.",
	RejectDigestUnsupported:  "Message digest not supported.",
	RejectDigestUnconfigured: "Message digest not configured.",
	RejectVersionMismatch:    "Protocol version mismatch.",
	RejectOutdatedBindInfo:   "Outdated binding information.",
	RejectLessCritBindInfo:   "Less critical binding information.",
	RejectNoTraffic:          "No traffic within sufficient time.",
	RejectHBAConflict:        "Hash bucket assignment conflict.",
	RejectIPNotReserved:      "IP not reserved on this server.",
	RejectIPDigestFailure:    "Message digest failed to compare.",
	RejectIPMissingDigest:    "Missing message digest.",
}

// String returns a short constant-style name (e.g. "LESS-CRIT-BIND-INFO"),
// "UNKNOWN" for 254, "NONE" for 0, or "RejectReason(N)".
func (r RejectReason) String() string {
	switch {
	case r == 0:
		return "NONE"
	case int(r) < len(rejectReasonNames):
		return rejectReasonNames[r]
	case r == RejectUnknown:
		return "UNKNOWN"
	}
	return "RejectReason(" + strconv.Itoa(int(r)) + ")"
}

// Text returns the sentence ISC prints for the reason, which is also what ISC
// puts in the message option when it has no more specific text.
func (r RejectReason) Text() string {
	switch {
	case r >= 1 && int(r) < len(rejectReasonTexts):
		return rejectReasonTexts[r]
	case r == RejectUnknown:
		return "Unknown Error."
	}
	return "Undefined-" + strconv.Itoa(int(r)) + ": This reason code is not defined in the protocol standard."
}

// OptionCode is a failover option code.
type OptionCode uint16

// Option codes (draft-12 §12, ISC FTO_*).
const (
	OptAddressesTransferred  OptionCode = 1  // uint32, POOLRESP
	OptAssignedIPAddress     OptionCode = 2  // IPv4 address
	OptBindingStatus         OptionCode = 3  // uint8, BindingStatus
	OptClientIdentifier      OptionCode = 4  // bytes: DHCP option 61 data, type byte included
	OptClientHardwareAddress OptionCode = 5  // bytes: htype + hardware address
	OptCLTT                  OptionCode = 6  // uint32 time: client-last-transaction-time
	OptClientReplyOptions    OptionCode = 7  // bytes, never sent by ISC
	OptClientRequestOptions  OptionCode = 8  // bytes, never sent by ISC
	OptDDNS                  OptionCode = 9  // 2-byte flags + FQDN; ISC 4.4 cannot parse it
	OptDelayedService        OptionCode = 10 // uint8, never used by ISC
	OptHashBucketAssignment  OptionCode = 11 // 32 bytes, CONNECT
	OptIPFlags               OptionCode = 12 // uint16, IPFlags
	OptLeaseExpirationTime   OptionCode = 13 // uint32 time
	OptMaxUnackedBndUpd      OptionCode = 14 // uint32
	OptMCLT                  OptionCode = 15 // uint32 seconds
	OptMessage               OptionCode = 16 // text, no NUL
	OptMessageDigest         OptionCode = 17 // bytes, never used by ISC
	OptPotentialExpiration   OptionCode = 18 // uint32 time
	OptReceiveTimer          OptionCode = 19 // uint32 seconds
	OptProtocolVersion       OptionCode = 20 // uint8
	OptRejectReason          OptionCode = 21 // uint8, RejectReason
	OptRelationshipName      OptionCode = 22 // bytes, no NUL
	OptServerFlags           OptionCode = 23 // uint8, ServerFlags
	OptServerState           OptionCode = 24 // uint8, ServerState
	OptStartTimeOfState      OptionCode = 25 // uint32 time
	OptTLSReply              OptionCode = 26 // uint8
	OptTLSRequest            OptionCode = 27 // uint8
	OptVendorClassIdentifier OptionCode = 28 // bytes, e.g. "isc-4.4.3-P1"
	OptVendorSpecificOptions OptionCode = 29 // bytes, ignored by ISC

	maxOptionCode = OptVendorSpecificOptions
)

// optionInfo describes one option as ISC's option table (server/stables.c
// ft_options) does: its name and the exact length ISC requires, if any.
type optionInfo struct {
	name string
	size int // required length; 0 = variable; sizeDDNS = ISC cannot parse it
}

const sizeDDNS = -1

var optionInfos = [...]optionInfo{
	OptAddressesTransferred:  {"addresses-transferred", 4},
	OptAssignedIPAddress:     {"assigned-IP-address", 4},
	OptBindingStatus:         {"binding-status", 1},
	OptClientIdentifier:      {"client-identifier", 0},
	OptClientHardwareAddress: {"client-hardware-address", 0},
	OptCLTT:                  {"client-last-transaction-time", 4},
	OptClientReplyOptions:    {"client-reply-options", 0},
	OptClientRequestOptions:  {"client-request-options", 0},
	OptDDNS:                  {"DDNS", sizeDDNS},
	OptDelayedService:        {"delayed-service-parameter", 1},
	OptHashBucketAssignment:  {"hash-bucket-assignment", 0},
	OptIPFlags:               {"IP-flags", 2},
	OptLeaseExpirationTime:   {"lease-expiration-time", 4},
	OptMaxUnackedBndUpd:      {"max-unacked-bndupd", 4},
	OptMCLT:                  {"MCLT", 4},
	OptMessage:               {"message", 0},
	OptMessageDigest:         {"message-digest", 0},
	OptPotentialExpiration:   {"potential-expiration-time", 4},
	OptReceiveTimer:          {"receive-timer", 4},
	OptProtocolVersion:       {"protocol-version", 1},
	OptRejectReason:          {"reject-reason", 1},
	OptRelationshipName:      {"relationship-name", 0},
	OptServerFlags:           {"server-flags", 1},
	OptServerState:           {"server-state", 1},
	OptStartTimeOfState:      {"start-time-of-state", 4},
	OptTLSReply:              {"TLS-reply", 1},
	OptTLSRequest:            {"TLS-request", 1},
	OptVendorClassIdentifier: {"vendor-class-identifier", 0},
	OptVendorSpecificOptions: {"vendor-specific-options", 0},
}

// Known reports whether c is one of the 29 defined option codes.
func (c OptionCode) Known() bool { return c >= 1 && c <= maxOptionCode }

// String returns the draft's option name (e.g. "assigned-IP-address") or
// "OptionCode(N)".
func (c OptionCode) String() string {
	if c.Known() {
		return optionInfos[c].name
	}
	return "OptionCode(" + strconv.Itoa(int(c)) + ")"
}

// Size returns the exact data length ISC requires for a fixed-size option,
// or 0 for a variable-length or unknown option.
func (c OptionCode) Size() int {
	if c.Known() && optionInfos[c].size > 0 {
		return optionInfos[c].size
	}
	return 0
}

// OptionSet is a set of known option codes (1–29), one bit per code.
type OptionSet uint32

// optionSet builds a set from codes.
func optionSet(codes ...OptionCode) OptionSet {
	var s OptionSet
	for _, c := range codes {
		s = s.With(c)
	}
	return s
}

// Has reports whether c is in the set.
func (s OptionSet) Has(c OptionCode) bool { return c.Known() && s&(1<<c) != 0 }

// With returns the set plus c (unchanged if c is not a known code).
func (s OptionSet) With(c OptionCode) OptionSet {
	if !c.Known() {
		return s
	}
	return s | 1<<c
}

// allowed lists, per message type, the options ISC parses (server/stables.c
// fto_allowed). Every other option is skipped by ISC without any check.
var allowed = [...]OptionSet{
	MsgPoolResp: optionSet(OptAddressesTransferred),
	MsgBndUpd:   bindingOptions,
	MsgBndAck:   bindingOptions.With(OptRejectReason).With(OptMessage),
	MsgConnect: optionSet(OptRelationshipName, OptMaxUnackedBndUpd, OptReceiveTimer,
		OptVendorClassIdentifier, OptProtocolVersion, OptTLSRequest, OptMCLT, OptHashBucketAssignment),
	MsgConnectAck: optionSet(OptRelationshipName, OptMaxUnackedBndUpd, OptReceiveTimer,
		OptVendorClassIdentifier, OptProtocolVersion, OptTLSReply, OptRejectReason, OptMessage),
	MsgState:      optionSet(OptServerState, OptServerFlags, OptStartTimeOfState),
	MsgDisconnect: optionSet(OptRejectReason, OptMessage),
}

var bindingOptions = optionSet(OptAssignedIPAddress, OptBindingStatus, OptClientIdentifier,
	OptClientHardwareAddress, OptDDNS, OptIPFlags, OptLeaseExpirationTime,
	OptPotentialExpiration, OptStartTimeOfState, OptCLTT, OptClientRequestOptions,
	OptClientReplyOptions)

// Parsed returns the options ISC parses in a message of type t; all other
// options are skipped by ISC (and by the typed decoders of this package).
func (t MessageType) Parsed() OptionSet {
	if int(t) < len(allowed) {
		return allowed[t]
	}
	return 0
}
