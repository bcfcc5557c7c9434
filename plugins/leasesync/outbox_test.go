package leasesync

import (
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// When the peer's copy of an address is taken, our update of it still in
// flight stays (withdrawn) until its BNDACK: the peer judges its own next
// updates against it when it arrives there, so ApplyPeer must judge them
// against it here (simulation seed 1164889). It is not sent again after
// a lost link; one merely queued is dropped.
func TestASupersededUpdateInFlightStaysForTheDuels(t *testing.T) {
	o := newOutbox()
	ip := mustIP("192.0.2.19")
	queued := mustIP("192.0.2.20")
	sent := lease.Binding{IP: ip, State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 3}, End: 509}
	o.inflight[ip] = inflight{xid: 63, sent: sent}
	o.enqueue(queued)
	o.supersede(ip)
	o.supersede(queued)
	in, ok := o.inflight[ip]
	if !ok || !in.withdrawn || len(in.unacked()) != 1 || in.unacked()[0].End != 509 {
		t.Fatalf("in flight after supersede: %+v (%v), want the update kept, withdrawn", in, ok)
	}
	if o.queued[queued] {
		t.Error("a queued update of a superseded address is still queued")
	}
	if o.unackedUpdates() != 1 {
		t.Errorf("unacked %d, want the withdrawn update still counted until its BNDACK", o.unackedUpdates())
	}
	o.linkLost()
	if o.queued[ip] || len(o.inflight) != 0 {
		t.Errorf("after a lost link: queued %v, in flight %d; want the withdrawn update neither queued again nor kept", o.queued[ip], len(o.inflight))
	}
}
