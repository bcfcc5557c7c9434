package failover

import (
	"fmt"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Offers held are bounded by the pool, not by the clients: a flood of
// DISCOVERs from ever new clients, or from one client again and again,
// keeps at most one hold per address and one queued expiry per address
// and second of offer-hold.
func TestOffersHeldAreBoundedByThePool(t *testing.T) {
	// 4 addresses, offer-hold=10s; no sweeper runs: the test sweeps every
	// third second of its clock.
	h := newHarness(t, smallPool)
	for i := 0; i < 5000; i++ {
		// Asking for an address takes it as soon as its hold lapses,
		// before the sweep.
		h.do(packet(t, 1000+i, dhcpv4.MessageTypeDiscover, requested(fmt.Sprintf("192.0.2.%d", 100+i%4))))
		h.do(packet(t, 7, dhcpv4.MessageTypeDiscover))
		if i%10 == 9 {
			h.clock.Advance(time.Second)
		}
		if i%30 == 29 {
			// Late: meanwhile lapsed offers went to other clients.
			h.s.Sweep()
		}
	}
	h.s.mu.Lock()
	holds, heldBy, queued := h.s.table.HoldCounts()
	err := h.s.table.Validate()
	h.s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if holds > 4 || heldBy > 4 || queued > 4*13 {
		t.Fatalf("After 10000 DISCOVERs on 4 addresses: %d holds, %d clients indexed, %d expiries queued; want at most 4, 4, 52", holds, heldBy, queued)
	}
}
