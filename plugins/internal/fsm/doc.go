// Package fsm is the DHCPv4 failover state machine, pure: events and the
// current time go in, state transitions, messages to send, side effects and
// the record to persist come out (Ready), in the style of etcd-io/raft's
// RawNode. It does no I/O, reads no clock and starts no goroutines; the
// leasesync session owns a Machine, feeds it link events, peer messages and
// ticks, and carries out its Ready.
//
// The machine follows ISC dhcpd 4.4.3 (server/failover.c:
// dhcp_failover_set_state, dhcp_failover_peer_state_changed,
// dhcp_failover_state_transition, dhcp_failover_process_update_done), as
// described in docs/protocol.md §12, because a mixed pair must agree on every
// transition. Where ISC differs from draft-ietf-dhc-failover-12 we follow
// ISC, for example:
//
//   - RECOVER-WAIT is 254 on the wire;
//   - a server without stored state starts in RECOVER, and skips the MCLT
//     wait when the peer is recovering too (fresh pair);
//   - RECOVER always asks for UPDREQALL, never UPDREQ;
//   - RESOLUTION-INTERRUPTED and CONFLICT-DONE serve no clients;
//   - STARTUP ends on the first peer STATE, or after 15 s by the link-loss
//     rule applied to the saved state. (Ours: a STATE repeating the known
//     peer state is evaluated in the saved state when that state processes
//     repeats, as PARTNER-DOWN or COMMUNICATIONS-INTERRUPTED do; ISC
//     returns to the saved state unevaluated, and with a peer that stayed
//     RECOVER-DONE both then wait forever.)
//
// We deviate from ISC only where ISC crashes or is unsafe:
//
//   - in CONFLICT-DONE, a peer state other than NORMAL, SHUTDOWN,
//     POTENTIAL-CONFLICT or RESOLUTION-INTERRUPTED makes ISC call log_fatal
//     and exit; we move to SHUTDOWN with a reason (serve nothing);
//   - in RECOVER, Connected sends UPDREQALL again after the STATE
//     (draft-12 §9.5.2), where ISC waits for the peer's STATE and may never
//     ask if the peer is in RECOVER-WAIT or RECOVER-DONE;
//   - RECOVER is left only through UPDDONE (the peer has sent every
//     binding), whatever the peer's state: ISC moves to POTENTIAL-CONFLICT
//     on a peer in NORMAL, POTENTIAL-CONFLICT, RESOLUTION-INTERRUPTED or
//     CONFLICT-DONE (conflict resolution exchanges only pending updates,
//     so it reaches NORMAL with a partial database) and to PARTNER-DOWN on
//     a peer in SHUTDOWN (handing out, MCLT later, addresses the peer's
//     clients hold). We stay, send UPDREQALL again and say why in
//     Status.Reason. RECOVER-DONE takes those rows instead: peer
//     POTENTIAL-CONFLICT, RESOLUTION-INTERRUPTED or CONFLICT-DONE →
//     POTENTIAL-CONFLICT; entering RECOVER-DONE reacts at once to the
//     peer's state reported meanwhile, and a repeated peer state is
//     processed in RECOVER-DONE (otherwise both could wait forever);
//     CONFLICT-DONE waits (ISC exits) for a peer in RECOVER, RECOVER-WAIT
//     or RECOVER-DONE, which joins POTENTIAL-CONFLICT at RECOVER-DONE;
//   - in POTENTIAL-CONFLICT, a peer in RECOVER does not move us to RECOVER
//     (ISC does; together with RECOVER + peer POTENTIAL-CONFLICT →
//     POTENTIAL-CONFLICT, crossing STATEs make ISC's pair swap states
//     forever); we stay, as draft-12 §9.10.3 has it, and the peer joins
//     POTENTIAL-CONFLICT once it has every binding (RECOVER-DONE);
//   - operator commands are checked (Command): no PARTNER-DOWN while
//     connected to an operating peer or while recovering, no NORMAL except
//     out of PAUSED with a compatible peer;
//   - an invalid peer state moves us to SHUTDOWN, as in ISC, but is not
//     recorded as the peer's state.
//
// Times are Unix seconds (int64) supplied by the caller.
package fsm
