package failover

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// TestTheSweepAnnouncesWhatItExpired: an ACTIVE lease past its end becomes
// EXPIRED on the primary's sweep, and once that is on disk the session is
// told, so that the peer hears of it.
func TestTheSweepAnnouncesWhatItExpired(t *testing.T) {
	h, rel := newPairHarness(t, true, 128, fsm.Normal)
	var mu sync.Mutex
	var told []lease.IP
	rel.SetNotify(func(ip lease.IP) { mu.Lock(); told = append(told, ip); mu.Unlock() })
	t0 := h.clock.Now().Unix()
	ip := mustIP("192.0.2.101")
	h.s.setLocked(lease.Binding{IP: ip, State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 7}, Start: t0 - 100, End: t0 - 1})
	h.s.Sweep()
	if b, _ := h.stored("192.0.2.101"); b.State != lease.Expired {
		t.Fatalf("On disk after the sweep: %s, want expired", b)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(told) != 1 || told[0] != ip {
		t.Fatalf("The session was told of %v, want %v", told, ip)
	}
}

// TestOwnFreeAddressesRefusedBeforeTheFirstSweepAreNotLost: a primary
// restarted in PARTNER-DOWN without contact refuses its own FREE addresses
// (the peer may have used them meanwhile). A DISCOVER refused before the
// first sweep takes them off the free queue; once the peer is heard they
// must all be allocatable again (ownership decides, not MCLT). The server assumes the view stale until
// its first sweep has seen it.
func TestOwnFreeAddressesRefusedBeforeTheFirstSweepAreNotLost(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	t0 := clk.Now().Unix()
	hba, err := lbhash.FromSplit(256)
	if err != nil {
		t.Fatal(err)
	}
	rel := relation.New("lan1", &relation.View{Primary: true, MyState: fsm.PartnerDown, MyStos: t0 - 3600,
		PeerState: fsm.Normal, MCLT: 30, HBA: hba, LBMaxSecs: 3, MayServe: true})
	store := lease.NewMemoryStore()
	var rows []lease.Binding
	for ip := mustIP("192.0.2.100"); ip <= mustIP("192.0.2.103"); ip++ {
		rows = append(rows, lease.Binding{IP: ip, State: lease.Free})
	}
	if err := store.Write(rows); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, store: store, clock: clk, line: "name=lan1 db=/unused pool=192.0.2.100-192.0.2.103 lease-time=600"}
	cfg, err := parse(strings.Fields(h.line), lanAddrs)
	if err != nil {
		t.Fatal(err)
	}
	if h.s, err = LoadServer(cfg, store, clk.Now, rel); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.s.commit.Close() })
	// The operator declares partner-down: new clients are served, from
	// MCLT after the declaration; a DISCOVER before is refused.
	v := *rel.View()
	v.OperatorPartnerDown, v.OperatorPartnerDownAt = true, t0
	rel.SetView(&v)
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	// The peer is heard and the state leaves PARTNER-DOWN (so that the
	// peer's addresses are not reopened: only our own come back).
	v = *rel.View()
	v.Contacted, v.Connected = true, true
	v.MyState, v.MyStos, v.MayServe = fsm.CommInterrupted, t0, true
	rel.SetView(&v)
	h.s.Sweep()
	if n := h.allocatable(); n != 4 {
		t.Fatalf("%d of the pool's 4 addresses are allocatable once the peer is heard", n)
	}
}

// TestALateReleaseDoesNotUndoATransmittedExpiry: once the EXPIRED of an
// address has been transmitted, the peer may give it to another client.
// A RELEASE from the old client arriving after that is not about a lease
// it holds: it is ignored, and in particular does not make the change
// "not yet sent" again, which would let the old client have the address
// back (issue 15, path 2).
func TestALateReleaseDoesNotUndoATransmittedExpiry(t *testing.T) {
	const ip = "192.0.2.102"
	h, _ := newPairHarness(t, false, 0, fsm.Normal) // the secondary, serving every bucket
	backupFromPeer(t, h, ip)
	if got := h.dora(1); got != ip {
		t.Fatalf("The secondary gave %s", got)
	}
	setState(h.s.rel, fsm.CommInterrupted, h.clock.Now().Unix())
	h.clock.Advance(time.Minute)
	h.s.Sweep()
	b, _ := h.s.Get(mustIP(ip))
	if b.State != lease.Expired {
		t.Fatalf("After the sweep: %s", b)
	}
	h.s.Sent(b) // no BNDACK yet
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP(ip))))
	if b, _ := h.s.Get(mustIP(ip)); b.State != lease.Expired || !b.Transmitted {
		t.Fatalf("After a late RELEASE: %s (transmitted %v), want the transmitted expiry kept", b, b.Transmitted)
	}
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip)))
}

// TestALocalChangeOfAnAcknowledgedLeaseIsPendingAgain: once the peer has
// acknowledged a lease, a change of it here (a RELEASE, an expiry) is
// marked pending and not yet transmitted, so that it is sent again after
// a restart until the peer acknowledges it.
func TestALocalChangeOfAnAcknowledgedLeaseIsPendingAgain(t *testing.T) {
	const ip = "192.0.2.102"
	h, _ := newPairHarness(t, false, 0, fsm.Normal)
	backupFromPeer(t, h, ip)
	if got := h.dora(1); got != ip {
		t.Fatalf("The secondary gave %s", got)
	}
	b, _ := h.s.Get(mustIP(ip))
	h.s.Sent(b)
	if !h.s.Acked(b, h.clock.Now().Unix()) {
		t.Fatal("The acknowledgement of the lease was not taken")
	}
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP(ip))))
	if b, _ := h.s.Get(mustIP(ip)); b.State != lease.Released || !b.Pending || b.Transmitted {
		t.Fatalf("After the RELEASE: %s (pending %v, transmitted %v), want released, pending, not transmitted", b, b.Pending, b.Transmitted)
	}
}
