package wire

import (
	"bytes"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
)

func hexBytes(s string) []byte {
	var b []byte
	if _, err := fmt.Sscanf(s, "%x", &b); err != nil {
		panic(err)
	}
	return b
}

// pick returns the typed form of the message of type typ and the given xid
// sent at transcript time ts (as printed, e.g. "2.080") from the given
// address in a capture.
func pick(t *testing.T, capture, ts, from string, typ MessageType, xid uint32) Body {
	t.Helper()
	frames, _, err := failoverFrames(filepath.Join("testdata", "captures", capture+".pcap"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		f := &frames[i]
		if fmt.Sprintf("%.3f", f.ts) == ts && f.src.Addr().String() == from &&
			MessageType(f.frame[2]) == typ && be32(f.frame[8:]) == xid {
			body, err := DecodeBody(f.frame)
			if err != nil {
				t.Fatalf("%s@%s: %v", capture, ts, err)
			}
			return body
		}
	}
	t.Fatalf("%s: no message at %s from %s", capture, ts, from)
	return nil
}

var (
	primary   = "192.0.2.1"
	secondary = "192.0.2.2"
	split128  = hexBytes("ffffffffffffffffffffffffffffffff00000000000000000000000000000000")
	connOpts  = optionSet(OptRelationshipName, OptMaxUnackedBndUpd, OptReceiveTimer, OptVendorClassIdentifier, OptProtocolVersion)
	bndIP     = func(s string) netip.Addr { return netip.MustParseAddr(s) }
)

// TestGoldenTypedFields checks the typed values of representative captured
// messages, one of each kind ISC sent.
func TestGoldenTypedFields(t *testing.T) {
	for _, tc := range []struct {
		capture, ts, from string
		want              Body
	}{
		{"01-startup", "2.080", primary, &Connect{
			Header:           Header{Time: 1795554707, XID: 0, Present: connOpts.With(OptTLSRequest).With(OptMCLT).With(OptHashBucketAssignment)},
			RelationshipName: "isc-fo", MaxUnacked: 10, ReceiveTimer: 10, VendorClass: "isc-4.4.3-P1",
			ProtocolVersion: 1, TLSRequest: 0, MCLT: 30, HBA: split128}},
		{"01-startup", "2.086", secondary, &ConnectAck{
			Header:           Header{Time: 1795554707, XID: 0, Present: connOpts.With(OptTLSReply)},
			RelationshipName: "isc-fo", MaxUnacked: 10, ReceiveTimer: 10, VendorClass: "isc-4.4.3-P1", ProtocolVersion: 1}},
		{"01-startup", "2.104", primary, &State{ // the first of two in the segment
			Header:      Header{Time: 1795554707, XID: 1, Present: stateAlways},
			ServerState: StateRecover, Flags: FlagStartup, StartTimeOfState: 1795554707}},
		{"01-startup", "2.115", secondary, &UpdateRequestAll{Header{Time: 1795554707, XID: 2}}},
		{"01-startup", "2.121", primary, &BindingAck{ // dueling FREE updates: reason 16
			Header:       Header{Time: 1795554707, XID: 4, Present: optionSet(OptAssignedIPAddress, OptRejectReason, OptMessage)},
			Binding:      Binding{Addr: bndIP("192.0.2.100")},
			RejectReason: RejectLessCritBindInfo, Message: "incoming update is less critical than outgoing update"}},
		{"02-leases", "11.715", primary, &BindingUpdate{ // first lease: MCLT-limited
			Header: Header{Time: 1795554731, XID: 164, Present: bndupdAlways.With(OptClientIdentifier).With(OptClientHardwareAddress).With(OptCLTT)},
			Binding: Binding{Addr: bndIP("192.0.2.150"), Status: StatusActive,
				ClientID: hexBytes("01020000000001"), HWAddr: hexBytes("01020000000001"),
				LeaseExpiry: 1795554761, PotentialExpiry: 1795555346, StartTimeOfState: 1795554731, CLTT: 1795554731}}},
		{"04-secondary-amnesia", "2.849", secondary, &State{
			Header:      Header{Time: 1795554885, XID: 4, Present: stateAlways},
			ServerState: StateRecoverWait, StartTimeOfState: 1795554885}},
		{"09-probes-vs-primary", "1.473", primary, &Disconnect{
			Header:       Header{Time: 1795555143, XID: 1, Present: optionSet(OptRejectReason, OptMessage)},
			RejectReason: RejectInvalidPartner, Message: "remote failover relationship name other does not match"}},
		{"08-probes-vs-secondary", "0.003", secondary, &ConnectAck{ // refusal echoing the unknown name
			Header:           Header{Time: 1795555056, XID: 1001, Present: optionSet(OptRelationshipName, OptVendorClassIdentifier, OptProtocolVersion, OptTLSReply, OptRejectReason, OptMessage)},
			RelationshipName: "wrong-name", VendorClass: "isc-4.4.3-P1", ProtocolVersion: 1,
			RejectReason: RejectInvalidPartner, Message: "unknown failover relationship name"}},
		{"08-probes-vs-secondary", "46.076", secondary, &PoolResponse{
			Header: Header{Time: 1795555102, XID: 1010, Present: optionSet(OptAddressesTransferred)}}},
		{"08-probes-vs-secondary", "49.092", secondary, &UpdateDone{Header{Time: 1795555105, XID: 1011}}},
		{"10-hba-pattern", "0.001", primary, &Connect{
			Header:           Header{Time: 1795555013, XID: 0, Present: connOpts.With(OptTLSRequest).With(OptMCLT).With(OptHashBucketAssignment)},
			RelationshipName: "isc-fo", MaxUnacked: 10, ReceiveTimer: 10, VendorClass: "isc-4.4.3-P1",
			ProtocolVersion: 1, MCLT: 30, HBA: bytes.Repeat([]byte{0xaa}, 32)}},
	} {
		t.Run(tc.capture+"@"+tc.ts, func(t *testing.T) {
			got := pick(t, tc.capture, tc.ts, tc.from, tc.want.Type(), tc.want.Head().XID)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decoded\n%+v\nwant\n%+v", got, tc.want)
			}
			enc, err := tc.want.AppendTo(nil)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := DecodeBody(enc); err != nil || !reflect.DeepEqual(again, tc.want) {
				t.Errorf("Round trip gives %+v (%v)", again, err)
			}
		})
	}
}

// TestPoolResponseNonZero: the POOLRESP of 02-leases moved 19 leases.
func TestPoolResponseNonZero(t *testing.T) {
	got := pick(t, "02-leases", "58.829", primary, MsgPoolResp, 162)
	if p, ok := got.(*PoolResponse); !ok || p.AddressesTransferred != 19 {
		t.Errorf("POOLRESP = %+v, want 19 addresses transferred", got)
	}
}

func TestStrings(t *testing.T) {
	for got, want := range map[fmt.Stringer]string{
		MsgUpdReqAll: "UPDREQALL", MsgUpdReq: "UPDREQ", MessageType(13): "MessageType(13)",
		StateCommunicationsInterrupted: "COMMUNICATIONS-INTERRUPTED", StateRecoverWait: "RECOVER-WAIT",
		StateUnknown: "UNKNOWN", ServerState(12): "ServerState(12)",
		StatusFree: "FREE", StatusBackup: "BACKUP", StatusReset: "RESET", BindingStatus(0): "BindingStatus(0)",
		RejectLessCritBindInfo: "LESS-CRIT-BIND-INFO", RejectUnknown: "UNKNOWN", RejectReason(0): "NONE", RejectReason(30): "RejectReason(30)",
		OptIPFlags: "IP-flags", OptHashBucketAssignment: "hash-bucket-assignment", OptionCode(99): "OptionCode(99)",
	} {
		if got.String() != want {
			t.Errorf("String() = %q, want %q", got.String(), want)
		}
	}
	if got := RejectInvalidPartner.Text(); got != "Connection rejected, invalid failover partner." {
		t.Errorf("Text() = %q", got)
	}
	if got := RejectReason(30).Text(); got != "Undefined-30: This reason code is not defined in the protocol standard." {
		t.Errorf("Text() = %q", got)
	}
	if !StateRecoverWait.Valid() || ServerState(12).Valid() || !StateUnknown.Valid() {
		t.Error("ServerState.Valid disagrees with ISC's 0–11 and 254")
	}
	if OptIPFlags.Size() != 2 || OptTLSRequest.Size() != 1 || OptHashBucketAssignment.Size() != 0 {
		t.Error("Option sizes disagree with ISC's option table")
	}
}
