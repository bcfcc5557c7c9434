package failover

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

func TestReservationFilesAreCheckedLineByLine(t *testing.T) {
	lan := netip.MustParsePrefix("192.0.2.0/24")
	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"a client reserved twice", "02:00:00:00:00:01 192.0.2.10\n02:00:00:00:00:01 192.0.2.11\n", "r:2: hardware address 02:00:00:00:00:01 is reserved twice"},
		{"an identifier reserved twice", "id:01:02:03 192.0.2.10\nid:010203 192.0.2.11\n", "r:2: client identifier 010203 is reserved twice"},
		{"an address reserved twice", "02:00:00:00:00:01 192.0.2.10\nid:0102 192.0.2.10 # again\n", "r:2: 192.0.2.10 is reserved for hardware address 02:00:00:00:00:01 already"},
		{"outside the subnet", "02:00:00:00:00:01 198.51.100.10\n", "r:1: 198.51.100.10 is outside this line's subnet 192.0.2.0/24"},
		{"not an address", "02:00:00:00:00:01 host7\n", `r:1: "host7" is not an IPv4 address`},
		{"not a client", "eth0 192.0.2.10\n", `r:1: "eth0" is neither a hardware address nor id:HEX`},
		{"a short identifier", "id:01 192.0.2.10\n", `r:1: client identifier "id:01": want at least two hexadecimal bytes`},
		{"three fields", "02:00:00:00:00:01 192.0.2.10 12h\n", "r:1: want \"HWADDR ADDRESS\" or \"id:HEX ADDRESS\", got 3 fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseReservations(strings.NewReader(tc.text), "r", lan, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	rs, err := parseReservations(strings.NewReader("# hosts\n\n02:00:00:00:00:01 192.0.2.150\n  id:01:02:00:00:00:00:02   192.0.2.10 # printer\n"), "r", lan, nil)
	if err != nil || rs.len() != 2 {
		t.Fatalf("valid file: %v, %d reservations", err, rs.len())
	}
}

// reservationsLine writes a reservation file and returns a plugin line
// (lineFmt with %s for its path). Client 1 (by hardware address) has
// 192.0.2.101, inside the pool; client 2 (by client identifier) has
// 192.0.2.10, outside it.
func reservationsLine(t *testing.T, line string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hosts")
	text := mac(1).String() + " 192.0.2.101\nid:ff:00:02 192.0.2.10\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return line + " reservations=" + path
}

var client2ID = dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{0xff, 0, 2}))

func TestReservedAddressesGoOnlyToTheirClients(t *testing.T) {
	h := newHarness(t, reservationsLine(t, "db=/unused pool=192.0.2.100-192.0.2.103 lease-time=1h"))
	// Other clients exhaust the pool around the reserved address.
	var got []string
	for n := 10; n < 13; n++ {
		got = append(got, h.dora(n))
	}
	if strings.Contains(strings.Join(got, " "), "192.0.2.101") {
		t.Fatalf("other clients got %v, which holds the reserved 192.0.2.101", got)
	}
	h.mustDrop(packet(t, 13, dhcpv4.MessageTypeDiscover))
	// A client asking for either reserved address is refused.
	h.mustNak(packet(t, 13, dhcpv4.MessageTypeRequest, requested("192.0.2.101")))
	h.mustNak(packet(t, 13, dhcpv4.MessageTypeRequest, requested("192.0.2.10")))
	if resp, _ := h.do(packet(t, 13, dhcpv4.MessageTypeDiscover, requested("192.0.2.101"))); resp != nil {
		t.Fatalf("a DISCOVER asking for the reserved address was answered: %v", summary(resp))
	}
	// Their clients get them, whether or not the pool has room, without
	// a lease record.
	if ip := h.dora(1); ip != "192.0.2.101" {
		t.Fatalf("client 1 got %s, want its reserved 192.0.2.101", ip)
	}
	if ip := h.offer(2, client2ID); ip != "192.0.2.10" {
		t.Fatalf("client 2 was offered %s, want its reserved 192.0.2.10", ip)
	}
	ack := h.mustAck(packet(t, 2, dhcpv4.MessageTypeRequest, client2ID, ciaddr("192.0.2.10")))
	if lt := ack.IPAddressLeaseTime(0); lt.Hours() != 1 {
		t.Errorf("reserved lease %v, want the line's 1h", lt)
	}
	// Inside the pool the lease is recorded (and, in a pair, announced):
	// who holds the address is known whatever the file says later.
	// Outside, as a fixed address, it has no record.
	if b, ok := h.stored("192.0.2.101"); !ok || b.State != lease.Active || b.Key() != clientOf(packet(t, 1, dhcpv4.MessageTypeRequest)).key {
		t.Errorf("192.0.2.101 stored as %+v (%v), want client 1's active lease", b, ok)
	}
	if b, ok := h.stored("192.0.2.10"); ok {
		t.Errorf("the reserved address outside the pools has a lease record: %+v", b)
	}
	// A reserved client renewing another address is sent back to its own.
	h.mustNak(packet(t, 1, dhcpv4.MessageTypeRequest, ciaddr(got[0])))
}

func TestAReservedAddressInUseWaitsForItsLeaseToEnd(t *testing.T) {
	line := "db=/unused pool=192.0.2.100-192.0.2.103 lease-time=1h"
	h := newHarness(t, line)
	h.dora(10)
	taken := h.dora(11) // 192.0.2.101, before the reservation was made
	if taken != "192.0.2.101" {
		t.Fatalf("client 11 got %s, want 192.0.2.101", taken)
	}
	// The reservation is added and the server restarted.
	cfg, err := parse(strings.Fields(reservationsLine(t, line)), lanAddrs)
	if err != nil {
		t.Fatal(err)
	}
	h.s.cfg = cfg
	h.restart()
	ip := h.dora(1)
	if ip == "192.0.2.101" {
		t.Fatal("the reserved address went to its client while another client's lease runs")
	}
	h.mustNak(packet(t, 1, dhcpv4.MessageTypeRequest, requested("192.0.2.101")))
	// Client 11 keeps its lease until it ends... and releases it.
	h.do(packet(t, 11, dhcpv4.MessageTypeRelease, ciaddr(taken)))
	if got := h.dora(1); got != "192.0.2.101" {
		t.Fatalf("after the release client 1 got %s, want its reserved 192.0.2.101", got)
	}
	// The released address is excluded from the pools for good: client
	// 20 gets the last free one, and client 21 none.
	if got := h.dora(20); got != "192.0.2.103" {
		t.Fatalf("client 20 got %s, want 192.0.2.103", got)
	}
	h.mustDrop(packet(t, 21, dhcpv4.MessageTypeDiscover))
}

func TestReservedClientsAreServedByEitherServerInEveryServingState(t *testing.T) {
	for _, tc := range []struct {
		primary bool
		state   fsm.State
	}{
		{true, fsm.Normal}, {false, fsm.Normal},
		{true, fsm.CommInterrupted}, {false, fsm.CommInterrupted},
		{true, fsm.PartnerDown}, {false, fsm.PartnerDown},
	} {
		role := map[bool]string{true: "primary", false: "secondary"}[tc.primary]
		t.Run(role+" in "+tc.state.String(), func(t *testing.T) {
			// split=128: half the clients hash to each server in NORMAL;
			// a DISCOVER with secs past load-balance-max-seconds is
			// answered by either.
			h, _ := newPairHarnessLine(t, tc.primary, 128, tc.state, func(m *lease.MemoryStore) lease.Store { return m },
				reservationsLine(t, "name=lan1 db=/unused pool=192.0.2.100-192.0.2.103 lease-time=600"))
			for _, c := range []struct {
				n    int
				want string
				mods []dhcpv4.Modifier
			}{{1, "192.0.2.101", nil}, {2, "192.0.2.10", []dhcpv4.Modifier{client2ID}}} {
				d := packet(t, c.n, dhcpv4.MessageTypeDiscover, c.mods...)
				d.NumSeconds = 10
				resp, _ := h.do(d)
				if resp == nil || resp.YourIPAddr.String() != c.want {
					t.Fatalf("client %d: %v, want an OFFER of %s", c.n, resp, c.want)
				}
				h.mustAck(packet(t, c.n, dhcpv4.MessageTypeRequest, append(c.mods, requested(c.want))...))
			}
		})
	}
}

func TestExcludedAddressesAreNeverAllocated(t *testing.T) {
	r := lease.Range{Start: ipOf("192.0.2.100"), End: ipOf("192.0.2.102")}
	tb := lease.NewTable([]lease.Range{r})
	tb.Exclude(ipOf("192.0.2.101"))
	tb.Put(lease.Binding{IP: ipOf("192.0.2.101"), State: lease.Expired})
	tb.Offer(ipOf("192.0.2.101"))
	var got []lease.IP
	for {
		ip, ok := tb.Allocate(0, nil)
		if !ok {
			break
		}
		got = append(got, ip)
		tb.Put(lease.Binding{IP: ip, State: lease.Active, HWAddr: []byte{1, byte(ip)}})
	}
	if len(got) != 2 || got[0] != ipOf("192.0.2.100") || got[1] != ipOf("192.0.2.102") {
		t.Fatalf("allocated %v, want 192.0.2.100 and 192.0.2.102 only", got)
	}
}

func ipOf(s string) lease.IP {
	ip, _ := lease.IPFromNet(net.ParseIP(s))
	return ip
}

// An address that something other than a DHCP client holds is never
// reserved: the client given it would share it (the pools refuse the
// network and broadcast addresses too).
func TestAddressesInUseOutsideDHCPCannotBeReserved(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.0", "192.0.2.0 is the network address 192.0.2.0"},
		{"192.0.2.255", "192.0.2.255 is the broadcast address 192.0.2.255"},
		{"192.0.2.254", "192.0.2.254 is a router of this subnet (router=)"},
		{"192.0.2.1", "192.0.2.1 is an address of this host"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hosts")
			if err := os.WriteFile(path, []byte(mac(1).String()+" "+tc.addr+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := parse(strings.Fields("db=/unused pool=192.0.2.100-192.0.2.103 router=192.0.2.254 reservations="+path), lanAddrs)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "reservations=") {
				t.Fatalf("error %v, want it to name reservations= and contain %q", err, tc.want)
			}
		})
	}
}
