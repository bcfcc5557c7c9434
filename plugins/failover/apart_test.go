package failover

import (
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// A DECLINE heard while the peer is out of reach makes the address
// ABANDONED; it becomes FREE after decline-hold only once the peer has
// acknowledged the ABANDONED binding: until then the peer may still hold
// the client's lease as ACTIVE and give the address back to it
// (simulation, fault kind decline, seed 3896).
func TestAbandonedIsFreedOnlyOnceThePeerAcknowledgedIt(t *testing.T) {
	h, _ := newPairHarness(t, true, 256, fsm.CommInterrupted)
	ip := h.dora(1)
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDecline, requested(ip)))
	b, _ := h.s.Get(mustIP(ip))
	if b.State != lease.Abandoned || !b.Pending {
		t.Fatalf("Declined address is %+v; want ABANDONED, pending", b)
	}
	h.clock.Advance(defaultDeclineHold + time.Hour)
	h.s.Sweep()
	if b, _ := h.s.Get(mustIP(ip)); b.State != lease.Abandoned {
		t.Fatalf("After decline-hold, before the peer's ack, the address is %v; want ABANDONED", b.State)
	}
	if !h.s.Acked(b, h.clock.Now().Unix()) {
		t.Fatal("Acked refused the ABANDONED binding as sent")
	}
	h.s.Sweep()
	if b, _ := h.s.Get(mustIP(ip)); b.State != lease.Free {
		t.Fatalf("After the peer's ack and decline-hold the address is %v; want FREE", b.State)
	}
}

// A server restarted while cut off renews only, and a renewal never takes
// the lease past its stored end or the potential expiry the peer
// acknowledged: the MCLT rule alone let each renewal run MCLT past the
// last, beyond what a peer that declared us down waits for (simulation,
// fault kind restartapart).
func TestRenewalsOnlyNeverRunPastWhatThePeerKnows(t *testing.T) {
	h, rel := newPairHarness(t, true, 256, fsm.CommInterrupted)
	t0 := h.clock.Now().Unix()
	ip := mustIP("192.0.2.100")
	h.s.setLocked(lease.Binding{IP: ip, State: lease.Active, HWAddr: append([]byte{1}, mac(1)...), Start: t0 - 500, End: t0 + 100,
		CLTT: t0 - 500, PeerExpiry: t0 + 100, SentExpiry: t0 + 100})
	v := *rel.View()
	v.Contacted, v.Connected = false, false
	rel.SetView(&v)
	renew := packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(ip.Net()))
	for _, at := range []int64{0, 50, 75, 90} {
		h.clock.Advance(time.Duration(t0+at-h.clock.Now().Unix()) * time.Second)
		if lt := leaseOf(t, h.mustAck(renew)); lt != time.Duration(100-at)*time.Second {
			t.Fatalf("Renewal at t0+%d while renewing only got %v, want %ds (to the stored end)", at, lt, 100-at)
		}
		if b, _ := h.s.Get(ip); b.End != t0+100 {
			t.Fatalf("Renewal at t0+%d stored end t0%+d, want t0+100", at, b.End-t0)
		}
	}
	// Once the peer is reached, the MCLT rule alone applies again.
	v.Contacted, v.Connected = true, true
	rel.SetView(&v)
	if lt := leaseOf(t, h.mustAck(renew)); lt != 40*time.Second {
		t.Fatalf("Renewal after contact got %v, want 40s (the peer's expiry plus MCLT)", lt)
	}
}
