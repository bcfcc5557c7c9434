package failover

// Reservations changed under a running lease (found by review, each test
// failed while a reserved address was answered without a lease record):
// whatever changes who the reservation names (the file edited between
// restarts, another client identifier on the same hardware address) must
// not give the address out again while the first client's lease runs.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func withReservations(t *testing.T, line, text string) Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(line)
	if text != "" {
		fields = append(fields, "reservations="+path)
	}
	cfg, err := parse(fields, lanAddrs)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A reservation taken out of the file: the address goes back to the pool
// and to the next new client, while its client's lease (1h) runs on.
func TestARemovedReservationIsNotAllocatedWhileItsClientHoldsIt(t *testing.T) {
	line := "db=/unused pool=192.0.2.100-192.0.2.103 lease-time=1h"
	h := newHarness(t, reservationsLine(t, line))
	if ip := h.dora(1); ip != "192.0.2.101" {
		t.Fatalf("client 1 got %s, want its reserved 192.0.2.101", ip)
	}
	h.s.cfg = withReservations(t, line, "")
	h.restart()
	for n := 10; n < 13; n++ {
		if ip := h.dora(n); ip == "192.0.2.101" {
			t.Fatalf("client %d got 192.0.2.101 while client 1's lease of it runs for another hour", n)
		}
	}
}

// A reservation moved to another client: the new one gets the address at
// once, while the old one's lease runs on.
func TestAMovedReservationWaitsForTheOldClientsLease(t *testing.T) {
	line := "db=/unused pool=192.0.2.100-192.0.2.103 lease-time=1h"
	h := newHarness(t, reservationsLine(t, line))
	if ip := h.dora(1); ip != "192.0.2.101" {
		t.Fatalf("client 1 got %s, want its reserved 192.0.2.101", ip)
	}
	h.s.cfg = withReservations(t, line, mac(3).String()+" 192.0.2.101\n")
	h.restart()
	if ip := h.dora(3); ip == "192.0.2.101" {
		t.Fatal("client 3 got 192.0.2.101 while client 1's lease of it runs for another hour")
	}
}

// Two clients on one hardware address told apart by their client
// identifiers (ipvlan containers share their parent's MAC; a lease is
// keyed by option 61): a reservation by hardware address gives both the
// same address at once. Kea, which records reserved leases, gives the
// second a dynamic address ("reserved address in use by another client").
func TestAHardwareReservationGoesToOneClientAtATime(t *testing.T) {
	h := newHarness(t, reservationsLine(t, "db=/unused pool=192.0.2.100-192.0.2.103 lease-time=1h"))
	idA := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{0xff, 0xa}))
	idB := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{0xff, 0xb}))
	if ip := h.offer(1, idA); ip != "192.0.2.101" {
		t.Fatalf("client 1/A offered %s, want 192.0.2.101", ip)
	}
	h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, idA, serverIdent("192.0.2.1"), requested("192.0.2.101")))
	resp, _ := h.do(packet(t, 1, dhcpv4.MessageTypeDiscover, idB))
	if resp != nil && resp.YourIPAddr.String() == "192.0.2.101" {
		t.Fatal("client 1/B was offered 192.0.2.101, which client 1/A holds")
	}
	resp, _ = h.do(packet(t, 1, dhcpv4.MessageTypeRequest, idB, requested("192.0.2.101")))
	if resp != nil && resp.MessageType() == dhcpv4.MessageTypeAck {
		t.Fatal("client 1/B was ACKed 192.0.2.101, which client 1/A holds")
	}
}

// A lease of an address reserved after it was given is not renewed: its
// holder is NAKed at T1 and goes back to DISCOVER, and the reserved client
// gets the address only once that lease has ended. Answering the renewal
// would keep the lease to its end; the NAK is kept because, if the peer
// never learnt of this lease (given while the two were apart, before the
// reservation), it may already have given the address to the reserved
// client, and the NAK ends that overlap at T1 (README, Reservations).
func TestALeaseOfANewlyReservedAddressEndsAtItsHoldersNextRenewal(t *testing.T) {
	line := "db=/unused pool=192.0.2.100-192.0.2.103 lease-time=1h"
	h := newHarness(t, line)
	h.dora(10)
	if ip := h.dora(11); ip != "192.0.2.101" {
		t.Fatalf("client 11 got %s, want 192.0.2.101", ip)
	}
	h.s.cfg = withReservations(t, line, mac(1).String()+" 192.0.2.101\n")
	h.restart()
	h.clock.Advance(30 * time.Minute) // T1
	h.mustNak(packet(t, 11, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.101")))
	if ip := h.dora(1); ip == "192.0.2.101" {
		t.Fatal("the reserved client got 192.0.2.101 while client 11's lease of it runs")
	}
}
