//go:build integration

package integration

import (
	"strings"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// A lease file as dhcpd 4.4.3 writes it (records appended on every change;
// the last one of an address wins), with the failover state block.
const iscLeaseFile = `# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1

# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;

failover peer "isc" state {
  my state normal at 3 2026/11/25 00:14:29;
  partner state normal at 3 2026/11/25 00:14:29;
  mclt 30;
}

lease 192.0.2.117 {
  starts 3 2026/11/25 00:14:29;
  ends 3 2026/11/25 00:14:59;
  tstp 3 2026/11/25 00:24:44;
  cltt 3 2026/11/25 00:14:29;
  binding state active;
  next binding state expired;
  hardware ethernet 02:cf:00:00:00:06;
  uid "\001\002\317\000\000\000\006";
  set vendor-class-identifier = "udhcp 1.35.0";
  client-hostname "c3";
}
lease 192.0.2.118 {
  starts epoch 1795566869; # Wed Nov 25 00:34:29 2026
  ends never;
  binding state active;
  hardware ethernet 02:CF:00:00:00:07;
  uid 01:02:cf:00:00:00:07;
  on expiry {
    set x = "y";
  }
}
lease 192.0.2.119 {
  binding state backup;
}
lease 192.0.2.117 {
  starts 3 2026/11/25 00:14:29;
  ends 3 2026/11/25 00:24:29;
  tstp 3 2026/11/25 00:29:29;
  tsfp 3 2026/11/25 00:29:29;
  cltt 3 2026/11/25 00:14:29;
  binding state active;
  next binding state expired;
  hardware ethernet 02:cf:00:00:00:06;
  uid "\001\002\317\000\000\000\006";
  client-hostname "c3";
}
`

func TestParseISCLeases(t *testing.T) {
	recs, err := parseISCLeases("test", iscLeaseFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("Got %d records, want 3: %v", len(recs), recs)
	}
	r := recs[0]
	want := LeaseRecord{Source: "test", IP: "192.0.2.117", State: "active", HWAddr: "02:cf:00:00:00:06",
		ClientID: "0102cf00000006", Hostname: "c3", Start: 1795565669, End: 1795566269,
		TSTP: 1795566569, TSFP: 1795566569, CLTT: 1795565669}
	if r != want {
		t.Errorf("The last record of 192.0.2.117:\n got %+v\nwant %+v", r, want)
	}
	if r := recs[1]; r.Start != 1795566869 || r.End != 1<<63-1 || r.ClientID != "0102cf00000007" || r.HWAddr != "02:cf:00:00:00:07" {
		t.Errorf("Epoch time, never, hex uid, upper-case MAC: got %+v", r)
	}
	if r := recs[2]; r.State != "backup" || r.HWAddr != "" || r.End != 0 {
		t.Errorf("A BACKUP address: got %+v", r)
	}
	for _, bad := range []string{"lease 192.0.2.1 {\n  starts 3 yesterday;\n}\n", "lease nowhere {\n}\n",
		"lease 192.0.2.1 {\n  uid \"\\0\";\n}\n", "lease 192.0.2.1 {\n  binding state active;\n"} {
		if _, err := parseISCLeases("bad", bad); err == nil {
			t.Errorf("No error for %q", bad)
		}
	}
}

func TestBoundTwice(t *testing.T) {
	now := int64(1000)
	a := LeaseRecord{Source: "ours", IP: "192.0.2.100", State: "active", HWAddr: "02:00:00:00:00:01", End: 2000}
	b := LeaseRecord{Source: "dhcpd", IP: "192.0.2.100", State: "active", HWAddr: "02:00:00:00:00:01", ClientID: "01020000000001", End: 1900}
	if bad := BoundTwice(now, []LeaseRecord{a}, []LeaseRecord{b}); bad != nil {
		t.Errorf("One client on both sides: %v", bad)
	}
	c := b
	c.HWAddr = "02:00:00:00:00:02"
	if bad := BoundTwice(now, []LeaseRecord{a}, []LeaseRecord{c}); len(bad) != 1 || !strings.Contains(bad[0], "two clients") {
		t.Errorf("Two clients on one address: %v", bad)
	}
	c.End = now
	if bad := BoundTwice(now, []LeaseRecord{a}, []LeaseRecord{c}); bad != nil {
		t.Errorf("An ended lease is no binding: %v", bad)
	}
	d := a
	d.IP = "192.0.2.101"
	if bad := BoundTwice(now, []LeaseRecord{a, d}); len(bad) != 1 || !strings.Contains(bad[0], "two addresses") {
		t.Errorf("One client on two addresses: %v", bad)
	}
}

// The complaint patterns catch what dhcpd logs about a bad peer (lines
// as listed in docs/protocol.md §23) and not its normal course.
func TestISCComplaints(t *testing.T) {
	bad := []string{
		"FAILOVER: option size (2:4), option max-unacked-bndupd",
		"message length wait: protocol error",
		"FAILOVER: duplicate option assigned-IP-address",
		"FAILOVER: message overflow at data.",
		"FAILOVER: invalid message type: 200",
		"Failover CONNECT from isc: unknown failover relationship name",
		"failover: disconnect: unknown failover relationship name",
		"Failover CONNECT from isc: time offset too large",
		"Failover CONNECT from isc: invalid HBA",
		"Failover CONNECT to isc rejected: Connection rejected, invalid failover partner.",
		"Failover CONNECTACK from isc: remote failover relationship name other does not match",
		"failover: link startup timeout",
		"timeout waiting for failover peer isc",
		"Failover DISCONNECT from isc: Connection rejected, unknown reason.",
		"bind update on 192.0.2.166 from isc rejected: probe rejects this one",
		"bind update on 192.0.2.165 got ack from isc: xid mismatch.",
		"failover peer isc: Invalid state: 77",
		"failover: listener: no matching state",
		"Spurious update-done message.",
	}
	good := []string{
		"failover peer isc: I move from recover to startup",
		"failover peer isc: peer moves from potential-conflict to conflict-done",
		"Both servers have entered recover-done!",
		"balancing pool 5638ee8eb100 192.0.2.0/24  total 40  free 40  backup 0  lts -20  max-own (+/-)4",
		"DHCPDISCOVER from 02:cf:00:00:00:07 via lan: load balance to peer isc",
		"Update request all from isc: sending update",
		"Sent update done message to isc",
		"Failover CONNECT to isc rejected: Connection rejected, duplicate connection.",
	}
	got := complaints(strings.Join(append(append([]string{}, good...), bad...), "\n"), iscNotComplaints)
	if strings.Join(got, "\n") != strings.Join(bad, "\n") {
		t.Errorf("Complaints:\n got %q\nwant %q", got, bad)
	}
}

// The capture checker against ISC's own captures: a clean ISC pair's start
// decodes with no problem; the deliberate bad probes of 08 are found.
func TestDecodeFailoverPcap(t *testing.T) {
	netlab.RequireTools(t, "tshark")
	dir := "../plugins/internal/wire/testdata/captures/"
	d, err := DecodeFailoverPcap(dir + "01-startup.pcap")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Problems) > 0 || d.Types["5"] != 1 || d.Types["3"] < 200 {
		t.Errorf("01-startup: %d messages (%s), problems %v", d.Messages, d.TypeList(), d.Problems)
	}
	d, err = DecodeFailoverPcap(dir + "08-probes-vs-secondary.pcap")
	if err != nil {
		t.Fatal(err)
	}
	found := strings.Join(d.Problems, "\n")
	for _, want := range []string{"IP flags is not 2 bytes long", "Max unacked BNDUPD is not 4 bytes long", "TLS request is not 1 bytes long"} {
		if !strings.Contains(found, want) {
			t.Errorf("08-probes-vs-secondary: %q not reported; problems:\n%s", want, found)
		}
	}
}
