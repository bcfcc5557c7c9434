package failover

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// fakePinger answers for the addresses in alive; err fails every probe.
type fakePinger struct {
	mu     sync.Mutex
	alive  map[string]bool
	err    error
	probed []string
}

func (f *fakePinger) Alive(_ context.Context, ip netip.Addr) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probed = append(f.probed, ip.String())
	return f.alive[ip.String()], f.err
}

func pingHarness(t *testing.T, f *fakePinger) *harness {
	t.Helper()
	h := newHarness(t, smallPool+" ping-check=300ms")
	if h.s.pinger == nil {
		t.Fatal("ping-check=300ms set no pinger")
	}
	h.s.pinger = f
	return h
}

func TestAnAddressThatAnswersAPingIsAbandonedAndAnotherOffered(t *testing.T) {
	f := &fakePinger{alive: map[string]bool{"192.0.2.100": true}}
	h := pingHarness(t, f)
	if ip := h.offer(1); ip != "192.0.2.101" {
		t.Fatalf("offered %s, want 192.0.2.101 (192.0.2.100 answered a ping)", ip)
	}
	b, ok := h.stored("192.0.2.100")
	if !ok || b.State != lease.Abandoned {
		t.Fatalf("192.0.2.100 stored as %+v (%v), want ABANDONED", b, ok)
	}
	if got := strings.Join(f.probed, " "); got != "192.0.2.100 192.0.2.101" {
		t.Errorf("probed %s", got)
	}
	// The client's own lease is not probed again: no wait on a renewal
	// or on a client that comes back.
	ip := h.dora(2)
	f.probed = nil
	h.mustAck(packet(t, 2, dhcpv4.MessageTypeRequest, ciaddr(ip)))
	if ip2 := h.offer(2); ip2 != ip || len(f.probed) != 0 {
		t.Fatalf("client 2 offered %s (holds %s), probes %v: want its own lease, unprobed", ip2, ip, f.probed)
	}
}

func TestEveryProbedAddressAnsweringDropsTheDiscover(t *testing.T) {
	f := &fakePinger{alive: map[string]bool{"192.0.2.100": true, "192.0.2.101": true, "192.0.2.102": true, "192.0.2.103": true}}
	h := pingHarness(t, f)
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	if len(f.probed) != maxPingTries || h.s.Dropped("ping_answered") != 1 {
		t.Fatalf("probed %v, ping_answered drops %v: want %d probes and one drop", f.probed, h.s.Dropped("ping_answered"), maxPingTries)
	}
}

func TestAProbeThatCannotBeSentLetsTheOfferGo(t *testing.T) {
	f := &fakePinger{err: errors.New("operation not permitted")}
	h := pingHarness(t, f)
	if ip := h.offer(1); ip != "192.0.2.100" {
		t.Fatalf("offered %s, want 192.0.2.100 unchecked", ip)
	}
}

func TestThePeerIsToldOfAnAddressAbandonedByAPing(t *testing.T) {
	h, _ := newPairHarnessLine(t, true, 255, fsm.Normal, func(m *lease.MemoryStore) lease.Store { return m },
		"name=lan1 db=/unused pool=192.0.2.100-192.0.2.103 lease-time=600 ping-check=250")
	f := &fakePinger{alive: map[string]bool{"192.0.2.100": true}}
	h.s.pinger = f
	if h.s.cfg.PingCheck != 250*time.Millisecond {
		t.Fatalf("ping-check=250 is %v, want 250ms", h.s.cfg.PingCheck)
	}
	d := packet(t, 1, dhcpv4.MessageTypeDiscover)
	d.NumSeconds = 10
	if resp, _ := h.do(d); resp == nil || resp.YourIPAddr.String() != "192.0.2.101" {
		t.Fatalf("offer %v, want 192.0.2.101", resp)
	}
	var pending bool
	h.s.Pending(func(ip lease.IP) { pending = pending || ip.String() == "192.0.2.100" })
	if !pending {
		t.Fatal("the ABANDONED 192.0.2.100 is not pending for the peer")
	}
}

func TestPingCheckBounds(t *testing.T) {
	for _, bad := range []string{"ping-check=0", "ping-check=10s", "ping-check=soon"} {
		if _, err := parse(strings.Fields(smallPool+" "+bad), lanAddrs); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: error %v, want one naming it", bad, err)
		}
	}
}
