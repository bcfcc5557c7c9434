package leasesync

import (
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// An update the peer refused because its write failed (reject reason 6)
// goes again, after rejectRetry and not at once. Before the fix it was
// never sent again: both servers reached NORMAL and the refusing one gave
// the address, believed FREE, to another client (the simulation's
// storefail finding).
func TestAnUpdateRefusedForAFailedWriteIsSentAgain(t *testing.T) {
	clk := &fakeClock{now: time.Now()}
	tg, p := normalTargetWith(t, targetOpts{clk: clk})
	const ip = "192.0.2.150" // bound to client 10
	release(t, tg, 10, ip)
	u := expectReleased(p, ip)
	ack := &wire.BindingAck{Header: wire.Header{XID: u.XID}, RejectReason: wire.RejectMiscReject, Message: "database update failed"}
	ack.Addr = u.Binding.Addr
	p.send(ack)
	var retry time.Time
	// Handled, and the session's wake-up armed for it: the clock may
	// move only then, or the timer is set after the move and waits for
	// another.
	waitTarget(t, tg, "the refusal to be handled", func() bool {
		var wake time.Time
		tg.s.inspect(func() { retry, wake = tg.s.out.retryAt, tg.s.wakeAt })
		return !retry.IsZero() && !wake.IsZero() && !wake.After(retry)
	})
	if d := retry.Sub(clk.Now()); d <= 0 {
		t.Fatalf("The refused update is due again %v from now: it would go in a loop", d)
	}
	clk.Advance(rejectRetry)
	again := expectReleased(p, ip)
	if again.XID == u.XID {
		t.Fatalf("The update went again with the refused xid %d", u.XID)
	}
	if v, ok := tg.srv.Get(mustIP(ip)); !ok || !v.Pending {
		t.Fatalf("The refused binding is not pending any more: %+v", v)
	}
}
