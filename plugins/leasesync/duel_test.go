package leasesync

import (
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// nextUpdateOf reads the target's frames until its BNDUPD of addr, and
// returns it unacknowledged; it acknowledges the updates of other addresses
// (pool balancing) and fails on a BNDACK.
func nextUpdateOf(t *testing.T, p *rawPeer, addr string) *wire.BindingUpdate {
	t.Helper()
	for {
		b, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := b.(*wire.BindingAck); ok {
			t.Fatalf("BNDACK of %s before our update of %s", a.Addr, addr)
		}
		if m, ok := b.(*wire.BindingUpdate); ok && m.Addr.String() == addr {
			return m
		} else if ok {
			ackThenMark(p, m, false, m.Addr)
		}
	}
}

// The peer's update crosses two of ours for the same address: our renewal
// (ACTIVE), then the client's DECLINE (ABANDONED), both unacknowledged. At
// the peer our ACTIVE beats its pending update, and our ABANDONED then
// comes without a duel: the peer ends with ABANDONED. So must we: judged
// against our ABANDONED alone, the primary's stale BACKUP won here (the
// primary's copy wins between two free states), the secondary held the
// address BACKUP, as its own to give, while the primary held it ABANDONED
// and soon FREE, as its own to give (docs/simulation.md, seed 40775).
func TestAPeerUpdateMustWinAgainstEveryUpdateOfOursInFlight(t *testing.T) {
	tg, p := normalTarget(t)
	const ip = "192.0.2.150" // bound to client 10
	renew, err := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(10)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP(ip)))
	if err != nil {
		t.Fatal(err)
	}
	if a := tg.dhcp(renew); a == nil || a.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("The renewal got %v", a)
	}
	if u := nextUpdateOf(t, p, ip); u.Status != wire.StatusActive {
		t.Fatalf("The renewal was announced as %d", u.Status)
	}
	decline, err := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(10)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(tg.id)))
	if err != nil {
		t.Fatal(err)
	}
	tg.dhcp(decline)
	if u := nextUpdateOf(t, p, ip); u.Status != wire.StatusAbandoned {
		t.Fatalf("The decline was announced as %d", u.Status)
	}
	// The primary's update, sent before it heard of either.
	u := &wire.BindingUpdate{}
	u.Addr, u.Status = netip.MustParseAddr(ip), wire.StatusBackup
	p.send(u)
	for {
		b, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		a, ok := b.(*wire.BindingAck)
		if !ok || a.Addr.String() != ip {
			continue
		}
		if a.RejectReason != wire.RejectLessCritBindInfo {
			t.Errorf("The primary's BACKUP, crossing our ACTIVE, was answered %s, want %s", a.RejectReason, wire.RejectLessCritBindInfo)
		}
		break
	}
	if b, _ := tg.srv.Get(mustIP(ip)); b.State != lease.Abandoned {
		t.Fatalf("The declined address is %s here, ABANDONED at the peer", b.State)
	}
}
