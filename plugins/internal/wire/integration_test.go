//go:build integration

package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// This test checks the encoder against an independent decoder: it writes
// one message of every type, as this package encodes them, into a pcap as
// a TCP conversation on port 647 and has tshark's dhcpfo dissector decode
// it. Run with: go test -tags integration ./plugins/internal/wire/
// It needs tshark (apt-get install tshark) and fails without it.

// tsharkName is how tshark 4.0 names each type. It swaps 7 and 9: per the
// draft and ISC, 7 is UPDREQALL and 9 is UPDREQ.
var tsharkName = map[MessageType]string{
	MsgPoolReq: "Pool request", MsgPoolResp: "Pool response", MsgBndUpd: "Binding update",
	MsgBndAck: "Binding acknowledge", MsgConnect: "Connect", MsgConnectAck: "Connect acknowledge",
	MsgUpdReqAll: "Update request", MsgUpdDone: "Update done", MsgUpdReq: "Update request all",
	MsgState: "State", MsgContact: "Contact", MsgDisconnect: "Disconnect",
}

// pcapWriter writes an Ethernet/IPv4/TCP pcap of one TCP connection.
type pcapWriter struct {
	buf      bytes.Buffer
	ts       uint32 // microseconds since the first packet
	a, b     netip.AddrPort
	seqA     uint32
	seqB     uint32
	ipID     uint16
	segments int
}

func newPcapWriter(a, b netip.AddrPort) *pcapWriter {
	w := &pcapWriter{a: a, b: b, seqA: 1000, seqB: 5000}
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // Ethernet
	w.buf.Write(hdr)
	return w
}

func checksum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// packet writes one TCP segment; fromA selects the direction.
func (w *pcapWriter) packet(fromA bool, flags uint8, payload []byte) {
	src, dst, seq, ack := w.a, w.b, &w.seqA, w.seqB
	if !fromA {
		src, dst, seq, ack = w.b, w.a, &w.seqB, w.seqA
	}
	tcp := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], *seq)
	if flags&0x10 != 0 {
		binary.BigEndian.PutUint32(tcp[8:], ack)
	}
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	tcp = append(tcp, payload...)
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	pseudo := append(append(append([]byte{}, s4[:]...), d4[:]...), 0, 6, byte(len(tcp)>>8), byte(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], fold(checksum(checksum(0, pseudo), tcp)))

	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
	w.ipID++
	binary.BigEndian.PutUint16(ip[4:], w.ipID)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], fold(checksum(0, ip)))

	eth := []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00}
	if !fromA {
		copy(eth[0:6], []byte{0x02, 0, 0, 0, 0, 1})
		copy(eth[6:12], []byte{0x02, 0, 0, 0, 0, 2})
	}
	frame := append(append(eth, ip...), tcp...)
	rec := make([]byte, 16)
	w.ts += 1000
	binary.LittleEndian.PutUint32(rec[0:], 1795554707+w.ts/1000000)
	binary.LittleEndian.PutUint32(rec[4:], w.ts%1000000)
	binary.LittleEndian.PutUint32(rec[8:], uint32(len(frame)))
	binary.LittleEndian.PutUint32(rec[12:], uint32(len(frame)))
	w.buf.Write(rec)
	w.buf.Write(frame)

	*seq += uint32(len(payload))
	if flags&0x03 != 0 { // SYN and FIN take a sequence number
		*seq++
	}
	if len(payload) > 0 {
		w.segments++
	}
}

// sent is one message put on the wire and what tshark must show for it.
type sent struct {
	fromPrimary bool
	body        Body
	fields      map[string]string // tshark -T fields values
}

func TestTsharkDecodesEveryMessage(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatalf("This test needs tshark to check the encoder against an independent decoder; install it with `apt-get install tshark`: %v", err)
	}
	const now = 1795554707
	hba := append(bytes.Repeat([]byte{0xff}, 16), make([]byte, 16)...)
	addr := netip.MustParseAddr("192.0.2.150")
	mac := []byte{1, 2, 0, 0, 0, 0, 1}
	h := func(xid uint32) Header { return Header{Time: now, XID: xid} }
	msgs := []sent{
		{true, &Connect{Header: h(0), RelationshipName: "isc-fo", MaxUnacked: 10, ReceiveTimer: 10,
			VendorClass: "coredhcp-failover", ProtocolVersion: 1, MCLT: 30, HBA: hba},
			map[string]string{"dhcpfo.relationshipname": "isc-fo", "dhcpfo.mclt": "30", "dhcpfo.maxunackedbndupd": "10",
				"dhcpfo.receivetimer": "10", "dhcpfo.tls_request": "0", "dhcpfo.protocolversion": "1",
				"dhcpfo.hashbucketassignment": "ffffffffffffffffffffffffffffffff00000000000000000000000000000000"}},
		{false, &ConnectAck{Header: Header{Time: now, XID: 0, Present: OptionSet(0).With(OptTLSReply)},
			RelationshipName: "isc-fo", MaxUnacked: 10, ReceiveTimer: 10, VendorClass: "isc-4.4.3-P1", ProtocolVersion: 1},
			map[string]string{"dhcpfo.relationshipname": "isc-fo", "dhcpfo.tls_reply": "0", "dhcpfo.vendorclass": "isc-4.4.3-P1"}},
		{false, &State{Header: h(0), ServerState: StateRecover, Flags: FlagStartup, StartTimeOfState: now - 2},
			map[string]string{"dhcpfo.serverstatus": "6", "dhcpfo.serverflag": "1", "dhcpfo.starttimeofstate": fmt.Sprint(now - 2)}},
		{true, &State{Header: h(1), ServerState: StateNormal, StartTimeOfState: now},
			map[string]string{"dhcpfo.serverstatus": "2", "dhcpfo.serverflag": "0"}},
		{true, &UpdateRequestAll{Header: h(2)}, nil},
		{false, &BindingUpdate{Header: h(1), Binding: Binding{Addr: addr, Status: StatusActive, ClientID: mac, HWAddr: mac,
			LeaseExpiry: now + 30, PotentialExpiry: now + 615, StartTimeOfState: now, CLTT: now, IPFlags: IPFlagBOOTP}},
			map[string]string{"dhcpfo.assignedipaddress": "192.0.2.150", "dhcpfo.bindingstatus": "2",
				"dhcpfo.leaseexpirationtime": fmt.Sprint(now + 30), "dhcpfo.potentialexpirationtime": fmt.Sprint(now + 615),
				"dhcpfo.clientlasttransactiontime": fmt.Sprint(now), "dhcpfo.ipflags": "0x0002", "dhcpfo.clienthardwaretype": "0x01"}},
		{true, &BindingAck{Header: h(1), Binding: Binding{Addr: addr}},
			map[string]string{"dhcpfo.assignedipaddress": "192.0.2.150"}},
		{true, &BindingAck{Header: h(2), Binding: Binding{Addr: netip.MustParseAddr("192.0.2.100")},
			RejectReason: RejectLessCritBindInfo, Message: "incoming update is less critical than outgoing update"},
			map[string]string{"dhcpfo.rejectreason": "16", "dhcpfo.message": "incoming update is less critical than outgoing update"}},
		{false, &UpdateDone{Header: h(2)}, nil},
		{true, &UpdateRequest{Header: h(3)}, nil},
		{false, &PoolRequest{Header: h(2)}, nil},
		{true, &PoolResponse{Header: h(2), AddressesTransferred: 19}, map[string]string{"dhcpfo.addressestransferred": "19"}},
		{false, &Contact{Header: h(3)}, nil},
		{false, &State{Header: h(4), ServerState: StateRecoverWait, StartTimeOfState: now}, map[string]string{"dhcpfo.serverstatus": "254"}},
		{true, &Disconnect{Header: h(4), RejectReason: RejectInvalidPartner, Message: "remote failover relationship name other does not match"},
			map[string]string{"dhcpfo.rejectreason": "8"}},
	}
	seen := map[MessageType]bool{}
	for _, m := range msgs {
		seen[m.body.Type()] = true
	}
	for typ := MsgPoolReq; typ <= MsgDisconnect; typ++ {
		if !seen[typ] {
			t.Fatalf("No %v in the test conversation", typ)
		}
	}

	w := newPcapWriter(netip.MustParseAddrPort("192.0.2.1:49195"), netip.MustParseAddrPort("192.0.2.2:647"))
	w.packet(true, 0x02, nil)  // SYN
	w.packet(false, 0x12, nil) // SYN-ACK
	w.packet(true, 0x10, nil)  // ACK
	var wantTypes []MessageType
	for _, m := range msgs {
		b, err := m.body.AppendTo(nil)
		if err != nil {
			t.Fatalf("Encoding %v: %v", m.body.Type(), err)
		}
		w.packet(m.fromPrimary, 0x18, b) // PSH-ACK, one message per segment
		wantTypes = append(wantTypes, m.body.Type())
	}
	// A burst as ISC sends it: several BNDUPDs in one segment.
	var burst []byte
	for i := range 5 {
		u := BindingUpdate{Header: h(uint32(10 + i)), Binding: Binding{
			Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}), Status: StatusBackup, PotentialExpiry: now, StartTimeOfState: now}}
		if burst, err = u.AppendTo(burst); err != nil {
			t.Fatal(err)
		}
		wantTypes = append(wantTypes, MsgBndUpd)
	}
	w.packet(true, 0x18, burst)
	w.packet(true, 0x11, nil)  // FIN-ACK
	w.packet(false, 0x11, nil) // FIN-ACK
	w.packet(true, 0x10, nil)  // ACK

	path := filepath.Join(t.TempDir(), "codec.pcap")
	if err := os.WriteFile(path, w.buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// Our own reader must see the same conversation.
	frames, _, err := failoverFrames(path)
	if err != nil || len(frames) != len(wantTypes) {
		t.Fatalf("Own pcap reader found %d messages (%v), want %d", len(frames), err, len(wantTypes))
	}

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(tshark, append([]string{"-r", path, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("Running tshark %v: %v\n%s", args, err, stderr.Bytes())
		}
		return string(out)
	}

	verbose := run("-Y", "dhcpfo", "-V")
	for _, bad := range []string{"Malformed", "Expert Info (Error", "[Checksum Status: Bad]", "Bad length", "is not"} {
		if i := strings.Index(verbose, bad); i >= 0 {
			t.Errorf("Tshark reports %q:\n%s", bad, verbose[max(0, i-600):min(len(verbose), i+200)])
		}
	}
	typeRE := regexp.MustCompile(`(?m)^    Message Type: (.*) \((\d+)\)$`)
	got := typeRE.FindAllStringSubmatch(verbose, -1)
	if len(got) != len(wantTypes) {
		t.Fatalf("Tshark decoded %d failover messages, want %d", len(got), len(wantTypes))
	}
	for i, g := range got {
		want := wantTypes[i]
		if g[2] != fmt.Sprint(uint8(want)) || g[1] != tsharkName[want] {
			t.Errorf("Message %d: tshark says %s (%s), want %s (%d), i.e. %v", i, g[1], g[2], tsharkName[want], want, want)
		}
	}
	if n := strings.Count(verbose, "[Checksum Status: Good]"); n != w.segments {
		t.Errorf("Tshark found %d good TCP checksums, want %d", n, w.segments)
	}
	if n := strings.Count(verbose, "[Header checksum status: Good]"); n != w.segments {
		t.Errorf("Tshark found %d good IPv4 header checksums, want %d", n, w.segments)
	}

	// Field values, one single-message segment at a time.
	names := []string{"dhcpfo.type", "dhcpfo.xid"}
	for _, m := range msgs {
		for f := range m.fields {
			if !strings.Contains(strings.Join(names, " "), f) {
				names = append(names, f)
			}
		}
	}
	args := []string{"-Y", "dhcpfo", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-E", "header=n"}
	for _, n := range names {
		args = append(args, "-e", n)
	}
	rows := strings.Split(strings.TrimRight(run(args...), "\n"), "\n")
	if len(rows) != len(msgs)+1 {
		t.Fatalf("Tshark -T fields gave %d rows, want %d", len(rows), len(msgs)+1)
	}
	for i, m := range msgs {
		cols := strings.Split(rows[i], "\t")
		if len(cols) != len(names) {
			t.Fatalf("Row %d has %d columns, want %d: %q", i, len(cols), len(names), rows[i])
		}
		vals := map[string]string{}
		for j, n := range names {
			vals[n] = cols[j]
		}
		if vals["dhcpfo.type"] != fmt.Sprint(uint8(m.body.Type())) {
			t.Errorf("Row %d: type %s, want %d", i, vals["dhcpfo.type"], m.body.Type())
		}
		if want := fmt.Sprintf("0x%08x", m.body.Head().XID); vals["dhcpfo.xid"] != want {
			t.Errorf("Row %d (%v): xid %s, want %s", i, m.body.Type(), vals["dhcpfo.xid"], want)
		}
		for f, want := range m.fields {
			if vals[f] != want {
				t.Errorf("%v: tshark shows %s = %q, want %q", m.body.Type(), f, vals[f], want)
			}
		}
	}
	if testing.Verbose() {
		t.Logf("Tshark decoded %d messages in %d segments:\n%s", len(got), w.segments, strings.Join(rows, "\n"))
	}
}
