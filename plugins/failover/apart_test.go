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
