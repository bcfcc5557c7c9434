package leasesync

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

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

// versionedBindings serves the current binding of each address from b.
type versionedBindings struct {
	*stubBindings
	b map[lease.IP]lease.Binding
}

func (v *versionedBindings) Get(ip lease.IP) (lease.Binding, bool) {
	b, ok := v.b[ip]
	return b, ok
}

func (v *versionedBindings) Sent(lease.Binding) bool { return true }

// TestNoUpdateInFlightIsForgottenBeforeItsBNDACK: a peer that acknowledges
// slowly while one address changes again and again (a renewal, a DECLINE,
// the re-sends an UPDREQ asks for). Every update of ours it has not
// acknowledged must stay among those its own update is judged against
// (ApplyPeer): if the oldest, an ACTIVE, beat its pending BACKUP there, it
// takes our ACTIVE and the rest without a duel, while here the BACKUP,
// judged against our later ABANDONED copies alone, would win -- the
// two servers part as in seed 40775. The list was cut to
// max-unacked-updates entries, dropping the oldest, and the peer's limit
// was counted in addresses, so a single address could have any number of
// BNDUPDs in flight. Now the limit counts messages: the third update of
// the address waits for a BNDACK.
func TestNoUpdateInFlightIsForgottenBeforeItsBNDACK(t *testing.T) {
	ip := mustIP("192.0.2.20")
	db := &versionedBindings{stubBindings: &stubBindings{}, b: map[lease.IP]lease.Binding{}}
	s := stubSession(t, stubSecondary, db)
	c, peer := net.Pipe()
	t.Cleanup(func() { c.Close(); peer.Close() })
	go io.Copy(io.Discard, peer)
	const maxUnacked = 2
	s.link = &link{conn: c, params: peerParams{maxUnacked: maxUnacked}, fed: true}
	now := time.Unix(1_800_000_000, 0)
	sent := map[uint32]bool{}
	versions := []lease.Binding{
		{IP: ip, State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 1}, Start: now.Unix(), End: now.Unix() + 60, CLTT: now.Unix()},
		{IP: ip, State: lease.Abandoned, Start: now.Unix() + 1, End: now.Unix() + 120, CLTT: now.Unix() + 1},
		{IP: ip, State: lease.Abandoned, Start: now.Unix() + 1, End: now.Unix() + 120, CLTT: now.Unix() + 1},
		{IP: ip, State: lease.Abandoned, Start: now.Unix() + 1, End: now.Unix() + 120, CLTT: now.Unix() + 1},
	}
	var first uint32
	for i, b := range versions {
		db.b[ip] = b
		s.out.enqueue(ip)
		if err := s.flush(now.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
		in := s.out.inflight[ip]
		sent[in.xid] = true
		if i == 0 {
			first = in.xid
		}
		if got := len(in.unacked()); got != len(sent) {
			t.Fatalf("After change %d: %d updates sent unacknowledged, %d judged against the peer's", i+1, len(sent), got)
		}
		if len(sent) > maxUnacked {
			t.Fatalf("After change %d: %d updates in flight, the peer accepts %d", i+1, len(sent), maxUnacked)
		}
	}
	if !s.out.queued[ip] {
		t.Fatal("The latest change is neither in flight nor queued")
	}
	// The BNDACK of the first frees a slot: the latest goes.
	ack := &wire.BindingAck{Header: wire.Header{XID: first}}
	ack.Addr = ip.Addr()
	s.acked(ack, now.Add(5*time.Second), now.Add(5*time.Second))
	if err := s.flush(now.Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if in := s.out.inflight[ip]; s.out.queued[ip] || sent[in.xid] || len(in.unacked()) != maxUnacked {
		t.Fatalf("After the first BNDACK: queued %t, in flight %+v", s.out.queued[ip], in)
	}
}
