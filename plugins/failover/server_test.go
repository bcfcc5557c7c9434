package failover

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredhcp/coredhcp/logger"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

func init() { logger.WithNoStdOutErr(logger.GetLogger("test")) }

var serverID = net.IPv4(192, 0, 2, 1).To4()

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t     *testing.T
	s     *Server
	store *lease.MemoryStore
	clock *clock
	line  string
}

// newHarness starts a server for a plugin line over a memory store.
func newHarness(t *testing.T, line string) *harness {
	t.Helper()
	h := &harness{t: t, store: lease.NewMemoryStore(), clock: &clock{now: time.Unix(1_800_000_000, 0)}, line: line}
	h.start()
	return h
}

func (h *harness) start() {
	h.t.Helper()
	cfg, err := parse(strings.Fields(h.line), lanAddrs)
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := LoadServer(cfg, h.store, h.clock.Now, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.s = s
	h.t.Cleanup(func() { s.commit.Close() })
}

// restart drops the server's memory and loads it again from the store.
func (h *harness) restart() {
	h.t.Helper()
	cfg := h.s.cfg
	s, err := LoadServer(cfg, h.store, h.clock.Now, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.s = s
}

// do runs req through the handler as CoreDHCP does after server_id.
func (h *harness) do(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
	h.t.Helper()
	resp, err := dhcpv4.NewReplyFromRequest(req)
	if err != nil {
		h.t.Fatal(err)
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
	}
	resp.ServerIPAddr = serverID
	resp.UpdateOption(dhcpv4.OptServerIdentifier(serverID))
	return h.s.Handler4(req, resp)
}

func mac(n int) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, byte(n >> 8), byte(n)} }

func packet(t *testing.T, n int, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	p, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac(n)), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func requested(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
}

func serverIdent(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(ip)))
}

func (h *harness) offer(n int, mods ...dhcpv4.Modifier) string {
	h.t.Helper()
	resp, stop := h.do(packet(h.t, n, dhcpv4.MessageTypeDiscover, mods...))
	if resp == nil || stop || resp.MessageType() != dhcpv4.MessageTypeOffer {
		h.t.Fatalf("DISCOVER from client %d: resp %v stop %v, want an OFFER", n, resp, stop)
	}
	return resp.YourIPAddr.String()
}

// dora runs DISCOVER and REQUEST (SELECTING) and returns the ACKed address.
func (h *harness) dora(n int) string {
	h.t.Helper()
	ip := h.offer(n)
	resp := h.mustAck(packet(h.t, n, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip)))
	if got := resp.YourIPAddr.String(); got != ip {
		h.t.Fatalf("ACK of client %d for %s, offered %s", n, got, ip)
	}
	return ip
}

func (h *harness) mustAck(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	h.t.Helper()
	resp, stop := h.do(req)
	if resp == nil || stop || resp.MessageType() != dhcpv4.MessageTypeAck {
		h.t.Fatalf("%s: resp %v stop %v, want an ACK", req.MessageType(), summary(resp), stop)
	}
	return resp
}

func (h *harness) mustNak(req *dhcpv4.DHCPv4) {
	h.t.Helper()
	resp, stop := h.do(req)
	if resp == nil || !stop || resp.MessageType() != dhcpv4.MessageTypeNak {
		h.t.Fatalf("%s: resp %v stop %v, want a NAK", req.MessageType(), summary(resp), stop)
	}
	if !resp.YourIPAddr.IsUnspecified() || !resp.ServerIdentifier().Equal(serverID) {
		h.t.Fatalf("NAK with yiaddr %s and server id %s", resp.YourIPAddr, resp.ServerIdentifier())
	}
}

func (h *harness) mustDrop(req *dhcpv4.DHCPv4) {
	h.t.Helper()
	resp, stop := h.do(req)
	if resp != nil || !stop {
		h.t.Fatalf("%s: resp %v stop %v, want it dropped", req.MessageType(), summary(resp), stop)
	}
}

func summary(p *dhcpv4.DHCPv4) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s yiaddr=%s", p.MessageType(), p.YourIPAddr)
}

// stored returns the durable binding of ip.
func (h *harness) stored(ip string) (lease.Binding, bool) {
	h.t.Helper()
	want, _ := lease.IPFromNet(net.ParseIP(ip))
	var found lease.Binding
	var ok bool
	h.store.Load(func(b lease.Binding) error {
		if b.IP == want {
			found, ok = b, true
		}
		return nil
	})
	return found, ok
}

const smallPool = "db=/unused pool=192.0.2.100-192.0.2.103 lease-time=1h offer-hold=10s decline-hold=1h"

func TestDiscoverOffersFirstFreeAddressWithLeaseTimes(t *testing.T) {
	h := newHarness(t, smallPool)
	resp, stop := h.do(packet(t, 1, dhcpv4.MessageTypeDiscover))
	if resp == nil || stop {
		t.Fatal("No OFFER")
	}
	if resp.YourIPAddr.String() != "192.0.2.100" {
		t.Fatalf("Offered %s", resp.YourIPAddr)
	}
	if lt := resp.IPAddressLeaseTime(0); lt != time.Hour {
		t.Fatalf("Lease time %v", lt)
	}
	if t1, t2 := resp.IPAddressRenewalTime(0), resp.IPAddressRebindingTime(0); t1 != 30*time.Minute || t2 != 52*time.Minute+30*time.Second {
		t.Fatalf("T1 %v T2 %v", t1, t2)
	}
	if _, ok := h.stored("192.0.2.100"); ok {
		t.Fatal("An OFFER was written to the store")
	}
	// The same client asking again gets the same offer.
	if ip := h.offer(1); ip != "192.0.2.100" {
		t.Fatalf("Second DISCOVER offered %s", ip)
	}
}

func TestDiscoverPrefersRequestedAddressWhenFree(t *testing.T) {
	h := newHarness(t, smallPool)
	if ip := h.offer(1, requested("192.0.2.102")); ip != "192.0.2.102" {
		t.Fatalf("Offered %s, want the requested 192.0.2.102", ip)
	}
	// Held for client 1: client 2 asking for it gets another.
	if ip := h.offer(2, requested("192.0.2.102")); ip == "192.0.2.102" {
		t.Fatal("Two clients were offered the same address")
	}
	// Outside the pool: ignored.
	if ip := h.offer(3, requested("192.0.2.50")); ip == "192.0.2.50" {
		t.Fatal("Offered an address outside the pool")
	}
}

func TestDiscoverOffersTheClientsCurrentLease(t *testing.T) {
	h := newHarness(t, smallPool)
	h.offer(9) // takes .100
	ip := h.dora(1)
	if got := h.offer(1, requested("192.0.2.103")); got != ip {
		t.Fatalf("A bound client was offered %s, not its lease %s", got, ip)
	}
}

func TestConcurrentDiscoversNeverShareAnAddress(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.10-192.0.2.209")
	var wg sync.WaitGroup
	got := make([]string, 200)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := h.do(packet(t, i, dhcpv4.MessageTypeDiscover))
			if resp != nil {
				got[i] = resp.YourIPAddr.String()
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for i, ip := range got {
		if ip == "" {
			t.Fatalf("Client %d got no offer", i)
		}
		if j, dup := seen[ip]; dup {
			t.Fatalf("Clients %d and %d were both offered %s", j, i, ip)
		}
		seen[ip] = i
	}
	// The pool is now fully held: a 201st client gets nothing.
	h.mustDrop(packet(t, 999, dhcpv4.MessageTypeDiscover))
}

func TestConcurrentDORAsAreDurableAndDistinct(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.10-192.0.2.109")
	var wg sync.WaitGroup
	got := make([]string, 100)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, _ := h.do(packet(t, i, dhcpv4.MessageTypeDiscover))
			if d == nil {
				return
			}
			a, _ := h.do(packet(t, i, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(d.YourIPAddr))))
			if a != nil && a.MessageType() == dhcpv4.MessageTypeAck {
				got[i] = a.YourIPAddr.String()
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, ip := range got {
		if ip == "" || seen[ip] {
			t.Fatalf("Client %d: ACK %q (duplicate or missing)", i, ip)
		}
		seen[ip] = true
		b, ok := h.stored(ip)
		if !ok || b.State != lease.Active || lease.HWString(b.HWAddr) != mac(i).String() {
			t.Fatalf("Client %d's lease %s is not durable: %v", i, ip, b)
		}
	}
	if w := h.store.Writes(); w >= 100 {
		t.Logf("Note: %d transactions for 100 concurrent ACKs", w)
	}
}

func TestRequestSelectingOurOfferIsACKedOnlyAfterItIsStored(t *testing.T) {
	h := newHarness(t, smallPool)
	ip := h.offer(1)
	resp := h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip),
		dhcpv4.WithOption(dhcpv4.OptHostName("alpha"))))
	if resp.YourIPAddr.String() != ip {
		t.Fatalf("ACKed %s, offered %s", resp.YourIPAddr, ip)
	}
	b, ok := h.stored(ip)
	now := h.clock.Now().Unix()
	if !ok || b.State != lease.Active || b.Hostname != "alpha" || b.Start != now || b.End != now+3600 || b.CLTT != now {
		t.Fatalf("Stored %+v", b)
	}
}

func TestRequestSelectingAnotherServerDropsOurOffer(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.100-192.0.2.100")
	ip := h.offer(1)
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.2"), requested(ip)))
	// The single address is free again for someone else at once.
	if got := h.offer(2); got != ip {
		t.Fatalf("Client 2 offered %s", got)
	}
}

func TestRequestSelectingWithoutRequestedAddressIsDropped(t *testing.T) {
	h := newHarness(t, smallPool)
	h.offer(1)
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1")))
}

func TestRequestSelectingAnAddressHeldForAnotherClientIsNAKed(t *testing.T) {
	h := newHarness(t, smallPool)
	ip := h.offer(1)
	h.mustNak(packet(t, 2, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip)))
}

func TestInitReboot(t *testing.T) {
	h := newHarness(t, smallPool)
	ip := h.dora(1)
	other := h.dora(2)
	t.Run("Own lease is ACKed", func(t *testing.T) {
		h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip)))
	})
	t.Run("Another client's lease is NAKed", func(t *testing.T) {
		h.mustNak(packet(t, 1, dhcpv4.MessageTypeRequest, requested(other)))
	})
	t.Run("Another network is NAKed", func(t *testing.T) {
		h.mustNak(packet(t, 1, dhcpv4.MessageTypeRequest, requested("203.0.113.5")))
	})
	t.Run("Our network but not our pool is ignored", func(t *testing.T) {
		h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRequest, requested("192.0.2.50")))
	})
	t.Run("A free address we own is ACKed, as after a lost database", func(t *testing.T) {
		resp := h.mustAck(packet(t, 3, dhcpv4.MessageTypeRequest, requested("192.0.2.103")))
		if resp.YourIPAddr.String() != "192.0.2.103" {
			t.Fatalf("ACKed %s", resp.YourIPAddr)
		}
	})
}

func TestRenewingExtendsTheLease(t *testing.T) {
	h := newHarness(t, smallPool)
	ip := h.dora(1)
	h.clock.Advance(30 * time.Minute)
	h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip))))
	b, _ := h.stored(ip)
	if want := h.clock.Now().Unix() + 3600; b.End != want {
		t.Fatalf("Renewed lease ends %d, want %d", b.End, want)
	}
	// Renewing someone else's address is refused.
	other := h.dora(2)
	h.mustNak(packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(other))))
}

func TestClientIdentifierIsTheIdentityWhenPresent(t *testing.T) {
	h := newHarness(t, smallPool)
	id := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{0xff, 1, 2, 3}))
	ip := h.offer(1, id)
	h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip), id))
	// The same identifier from another NIC is the same client.
	h.mustAck(packet(t, 77, dhcpv4.MessageTypeRequest, requested(ip), id))
	// The same NIC without the identifier is another client.
	h.mustNak(packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip)))
}

func TestRequestedLeaseTimeIsCappedByMaxLeaseTime(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.100-192.0.2.103 lease-time=1h max-lease-time=2h")
	short := dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(10 * time.Minute))
	long := dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(24 * time.Hour))
	ip := h.offer(1)
	if lt := h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip), short)).IPAddressLeaseTime(0); lt != 10*time.Minute {
		t.Fatalf("Asked 10m, got %v", lt)
	}
	if lt := h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip), long)).IPAddressLeaseTime(0); lt != 2*time.Hour {
		t.Fatalf("Asked 24h with max 2h, got %v", lt)
	}
}

func TestReleaseFreesTheLease(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.100-192.0.2.100")
	ip := h.dora(1)
	// A release from another client changes nothing.
	h.mustDrop(packet(t, 2, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP(ip))))
	if b, _ := h.stored(ip); b.State != lease.Active {
		t.Fatalf("A stranger's RELEASE changed the lease to %v", b)
	}
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP(ip))))
	if b, _ := h.stored(ip); b.State != lease.Released {
		t.Fatalf("After RELEASE the lease is %v", b)
	}
	if got := h.offer(2); got != ip {
		t.Fatalf("The released address was not offered again (got %s)", got)
	}
}

func TestDeclineAbandonsTheAddressForDeclineHold(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.100-192.0.2.101 decline-hold=1h")
	ip := h.offer(1)
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDecline, requested(ip)))
	b, ok := h.stored(ip)
	if !ok || b.State != lease.Abandoned || b.End != h.clock.Now().Unix()+3600 || b.Key() != "" {
		t.Fatalf("Declined address stored as %+v", b)
	}
	// It is not offered while abandoned.
	if second := h.dora(2); second == ip {
		t.Fatal("An abandoned address was bound")
	}
	h.mustDrop(packet(t, 3, dhcpv4.MessageTypeDiscover))
	// After decline-hold the sweeper frees it.
	h.clock.Advance(time.Hour)
	h.s.Sweep()
	if b, _ := h.stored(ip); b.State != lease.Free {
		t.Fatalf("After decline-hold the address is %v", b)
	}
	if got := h.offer(3); got != ip {
		t.Fatalf("After decline-hold client 3 got %s", got)
	}
}

func TestDeclineOfABoundLeaseAndOfAStrangersAddress(t *testing.T) {
	h := newHarness(t, smallPool)
	ip := h.dora(1)
	other := h.dora(2)
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDecline, requested(other)))
	if b, _ := h.stored(other); b.State != lease.Active {
		t.Fatalf("A DECLINE of another client's lease changed it: %v", b)
	}
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDecline, requested(ip)))
	if b, _ := h.stored(ip); b.State != lease.Abandoned {
		t.Fatalf("DECLINE of the client's own lease left %v", b)
	}
}

func TestInformIsACKedWithoutAnAddress(t *testing.T) {
	h := newHarness(t, smallPool)
	resp, stop := h.do(packet(t, 1, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.ParseIP("192.0.2.50"))))
	if resp == nil || stop || resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("INFORM: %v stop %v", summary(resp), stop)
	}
	if !resp.YourIPAddr.IsUnspecified() || resp.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Fatalf("INFORM reply carries an address or lease: %s", resp.Summary())
	}
}

func TestLeasesExpireAndComeBackToTheirClientFirst(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.100-192.0.2.101 lease-time=1h")
	a := h.dora(1)
	b := h.dora(2)
	h.clock.Advance(time.Hour)
	h.s.Sweep()
	for _, ip := range []string{a, b} {
		if st, _ := h.stored(ip); st.State != lease.Expired {
			t.Fatalf("Lease %s past its end is %v", ip, st)
		}
	}
	// The client returning finds its old address.
	if got := h.offer(2); got != b {
		t.Fatalf("Client 2 came back to %s, its old address was %s", got, b)
	}
	// A new client takes the one that expired first.
	if got := h.offer(3); got != a {
		t.Fatalf("Client 3 was offered %s, want %s", got, a)
	}
}

func TestOfferHoldLapses(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.100-192.0.2.100 offer-hold=10s")
	ip := h.offer(1)
	h.mustDrop(packet(t, 2, dhcpv4.MessageTypeDiscover))
	h.clock.Advance(10 * time.Second)
	h.s.Sweep()
	if got := h.offer(2); got != ip {
		t.Fatalf("After the hold lapsed client 2 got %s", got)
	}
}

func TestRestartLoadsEveryBindingBack(t *testing.T) {
	h := newHarness(t, smallPool)
	var ips []string
	for i := 1; i <= 3; i++ {
		ips = append(ips, h.dora(i))
	}
	h.restart()
	for i, ip := range ips {
		// Renewal after the restart keeps the address.
		resp := h.mustAck(packet(t, i+1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip))))
		if resp.YourIPAddr.String() != ip {
			t.Fatalf("Client %d renewed to %s, had %s", i+1, resp.YourIPAddr, ip)
		}
	}
	// The remaining address goes to a new client; the bound ones do not.
	if got := h.offer(10); got != "192.0.2.103" {
		t.Fatalf("New client after restart offered %s", got)
	}
}

func TestNoACKWhenTheLeaseCannotBeStored(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.100-192.0.2.100")
	ip := h.offer(1)
	h.store.SetFail(errors.New("disk full"))
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip)))
	if _, ok := h.stored(ip); ok {
		t.Fatal("A failed write left a stored lease")
	}
	// The disk recovers: the address is still available and is ACKed.
	h.store.SetFail(nil)
	h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip)))
}

func TestRelayedRequestsAreServedOnlyForOurNetworkOrListedRelays(t *testing.T) {
	h := newHarness(t, "db=/unused pool=198.18.0.10-198.18.0.20 subnet=198.18.0.0/15 relay=198.51.100.2")
	gw := func(ip string) dhcpv4.Modifier { return dhcpv4.WithGatewayIP(net.ParseIP(ip)) }
	h.offer(1, gw("198.51.100.2"))
	h.offer(2, gw("198.18.0.1"))
	h.mustDrop(packet(t, 3, dhcpv4.MessageTypeDiscover, gw("203.0.113.1")))
}

func TestPoolExhaustionDropsDiscover(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.100-192.0.2.101")
	h.dora(1)
	h.dora(2)
	h.mustDrop(packet(t, 3, dhcpv4.MessageTypeDiscover))
}

func TestRequestsBeyondTheInFlightBoundAreDropped(t *testing.T) {
	h := newHarness(t, smallPool)
	for i := 0; i < maxInFlight; i++ {
		h.s.slots <- struct{}{}
	}
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	<-h.s.slots
	h.offer(1)
}

func TestUnknownMessageTypesAreDropped(t *testing.T) {
	h := newHarness(t, smallPool)
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeAck))
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeNak))
}

func TestMillionAddressPoolServes(t *testing.T) {
	// A million addresses do not fit in the documentation and benchmark
	// ranges; these are values in memory only, never sent anywhere.
	h := newHarness(t, "db=/unused pool=100.64.0.1-100.79.66.64 subnet=100.64.0.0/10")
	if size := h.s.cfg.Pools[0].Size(); size != 1_000_000 {
		t.Fatalf("Pool size %d", size)
	}
	for i := 0; i < 1000; i++ {
		h.dora(i)
	}
	if got := h.offer(5000); got != "100.64.3.233" {
		t.Fatalf("Client 1001 offered %s", got)
	}
}

func BenchmarkHandlerDORAMemory(b *testing.B) {
	benchmarkDORA(b, lease.NewMemoryStore())
}

func BenchmarkHandlerDORASQLite(b *testing.B) {
	s, err := lease.OpenSQLite(b.TempDir() + "/leases.db")
	if err != nil {
		b.Fatal(err)
	}
	benchmarkDORA(b, s)
}

func benchmarkDORA(b *testing.B, store lease.Store) {
	// Values in memory only: the benchmark needs more than a /15.
	cfg, err := parse(strings.Fields("db=/unused pool=100.64.0.1-100.127.255.254 subnet=100.64.0.0/10"), lanAddrs)
	if err != nil {
		b.Fatal(err)
	}
	s, err := LoadServer(cfg, store, time.Now, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	b.SetParallelism(32)
	var mu sync.Mutex
	n := 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			i := n
			mu.Unlock()
			hw := net.HardwareAddr{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
			d, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
			resp, _ := dhcpv4.NewReplyFromRequest(d)
			resp.UpdateOption(dhcpv4.OptServerIdentifier(serverID))
			o, _ := s.Handler4(d, resp)
			if o == nil {
				b.Fatal("no offer")
			}
			r, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverID)),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(o.YourIPAddr)))
			resp, _ = dhcpv4.NewReplyFromRequest(r)
			resp.UpdateOption(dhcpv4.OptServerIdentifier(serverID))
			if a, _ := s.Handler4(r, resp); a == nil {
				b.Fatal("no ack")
			}
		}
	})
}

func TestLeasesSurviveARestartOnSQLite(t *testing.T) {
	path := t.TempDir() + "/leases.db"
	cfg, err := parse(strings.Fields("db="+path+" pool=192.0.2.100-192.0.2.109 lease-time=1h"), lanAddrs)
	if err != nil {
		t.Fatal(err)
	}
	open := func() *harness {
		st, err := lease.OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		clk := &clock{now: time.Unix(1_800_000_000, 0)}
		s, err := LoadServer(cfg, st, clk.Now, nil)
		if err != nil {
			t.Fatal(err)
		}
		return &harness{t: t, s: s, clock: clk}
	}
	h := open()
	got := map[int]string{}
	for i := 1; i <= 5; i++ {
		got[i] = h.dora(i)
	}
	h.release(5, got[5])
	// Close without the sweeper: what was ACKed is already on disk.
	if err := h.s.Close(); err != nil {
		t.Fatal(err)
	}
	h = open()
	defer h.s.Close()
	for i := 1; i <= 4; i++ {
		resp := h.mustAck(packet(t, i, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(got[i]))))
		if resp.YourIPAddr.String() != got[i] {
			t.Fatalf("Client %d renewed to %s after restart, had %s", i, resp.YourIPAddr, got[i])
		}
	}
	b, ok := h.s.table.Get(mustIP(got[5]))
	if !ok || b.State != lease.Released {
		t.Fatalf("The released lease came back as %v", b)
	}
}

func (h *harness) release(n int, ip string) {
	h.t.Helper()
	h.mustDrop(packet(h.t, n, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP(ip))))
}

func mustIP(s string) lease.IP {
	ip, ok := lease.IPFromNet(net.ParseIP(s))
	if !ok {
		panic(s)
	}
	return ip
}

// anonymous is a packet from client n with no hardware address (hlen 0).
func anonymous(t *testing.T, n int, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	p := packet(t, n, mt, mods...)
	p.ClientHWAddr = nil
	return p
}

// Issue 15, path 6: a client with no hardware address and no client
// identifier has no identity: every such client looked like one client
// (the second was given the first one's address), keyed by its hardware
// type alone, which the database did not keep (its renewal after a restart
// got a NAK). Such packets are dropped and counted, as Kea drops them. With
// a client identifier (InfiniBand, RFC 4390: hlen 0) it is a client.
func TestClientsWithoutIdentityAreDropped(t *testing.T) {
	h := newHarness(t, smallPool)
	h.mustDrop(anonymous(t, 1, dhcpv4.MessageTypeDiscover))
	h.mustDrop(anonymous(t, 2, dhcpv4.MessageTypeDiscover))
	h.mustDrop(anonymous(t, 2, dhcpv4.MessageTypeRequest, requested("192.0.2.100")))
	h.mustDrop(anonymous(t, 3, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP("192.0.2.100"))))
	h.mustDrop(anonymous(t, 3, dhcpv4.MessageTypeDecline, requested("192.0.2.101")))
	if got := testutil.ToFloat64(h.s.met.drops[dropIndex(t, "no_client_identity")]); got != 5 {
		t.Errorf("drops{reason=\"no_client_identity\"} = %v, want 5", got)
	}
	if n := h.s.table.Len(); n != 0 {
		t.Errorf("%d bindings after requests from clients without identity", n)
	}
	id := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{0xff, 0, 0, 0, 1}))
	resp := h.mustAck(anonymous(t, 4, dhcpv4.MessageTypeRequest, requested("192.0.2.102"), id))
	if got := resp.YourIPAddr.String(); got != "192.0.2.102" {
		t.Fatalf("A client with an identifier and no hardware address was given %s", got)
	}
}
