package leasesync

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// racingDB is the failover plugin's bindings as the session sees them
// when a DHCP handler changes an address at the worst moment: Get hides
// an address once, as while its write runs, or returns a copy read just
// before a change. Only the session goroutine uses it.
type racingDB struct {
	relation.Bindings
	hide, stale map[lease.IP]bool
}

func (r *racingDB) Get(ip lease.IP) (lease.Binding, bool) {
	b, ok := r.Bindings.Get(ip)
	switch {
	case r.hide[ip]:
		delete(r.hide, ip)
		return lease.Binding{}, false
	case r.stale[ip] && ok:
		delete(r.stale, ip)
		b.End-- // what the binding was before the change
	}
	return b, ok
}

// race installs a racingDB in tg's session.
func race(tg *target, hide, stale lease.IP) {
	tg.s.inspect(func() {
		tg.s.db = &racingDB{Bindings: tg.s.db, hide: map[lease.IP]bool{hide: true}, stale: map[lease.IP]bool{stale: true}}
	})
}

// An address whose write is under way when an UPDREQALL is answered is
// sent once the write settles, and UPDDONE waits for it: the peer leaves
// RECOVER only with every binding. Before the fix the hidden address was
// dropped and UPDDONE went without it.
func TestUpdateDoneWaitsForABindingBeingWritten(t *testing.T) {
	tg, p := normalTarget(t)
	written := mustIP("192.0.2.150")
	race(tg, written, 0)
	p.send(&wire.UpdateRequestAll{})
	// The marker's BNDACK comes after the target has handled our acks
	// of everything it sent, and with UPDDONE if it thinks it is done.
	marker := netip.MustParseAddr("198.51.100.1")
	sentMarker, announced, sawWritten := false, false, false
	others := map[netip.Addr]bool{}
	for {
		b, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		switch m := b.(type) {
		case *wire.BindingUpdate:
			if m.Addr == written.Addr() {
				sawWritten = true
			} else {
				others[m.Addr] = true
			}
			sentMarker = ackThenMark(p, m, len(others) == 10 && !sentMarker, marker) || sentMarker
		case *wire.BindingAck:
			if m.Addr == marker && !announced {
				// The write settles: the failover plugin announces.
				tg.s.Relationship().Changed(written)
				announced = true
			}
		case *wire.UpdateDone:
			if !sawWritten {
				t.Fatalf("UPDDONE before the binding that was being written (%d others sent)", len(others))
			}
			return
		}
	}
}

// An update read just before its binding changed is not sent: Sent
// refuses it and the newer binding goes instead. Before the fix the stale
// copy went, and was recorded as transmitted.
func TestAnUpdateReadBeforeAChangeIsNotSent(t *testing.T) {
	tg, p := normalTarget(t)
	ip := mustIP("192.0.2.150")
	cur, _ := tg.srv.Get(ip)
	race(tg, 0, ip)
	tg.s.Relationship().Changed(ip)
	for {
		u := expect[*wire.BindingUpdate](p)
		if u.Addr != ip.Addr() {
			continue
		}
		if u.LeaseExpiry != uint32(cur.End) {
			t.Fatalf("BNDUPD with lease expiry %d, the binding ends at %d", u.LeaseExpiry, cur.End)
		}
		return
	}
}

// An UPDDONE that does not echo our latest update request answers an
// earlier one (or none): in RECOVER it must not end the wait for every
// binding. The peer echoes the xid of the latest request it received.
func TestAStaleUpdateDoneDoesNotEndRecover(t *testing.T) {
	clk := &fakeClock{now: time.Now()}
	tg := startTarget(t, targetOpts{clk: clk}) // no stored state: RECOVER
	p := dialFrom(t, tg, peerIP)
	p.connect()
	p.send(&wire.State{ServerState: wire.StateNormal, StartTimeOfState: uint32(clk.Now().Unix() - 100)})
	waitTarget(t, tg, "the peer's state to be processed", func() bool {
		return tg.s.Relationship().View().PeerState == fsm.Normal
	})
	var xid uint32
	var out bool
	tg.s.inspect(func() { xid, out = tg.s.updReqXID, tg.s.updReqOut })
	if !out || tg.s.Relationship().View().MyState != fsm.Recover {
		t.Fatalf("In %s, update request outstanding %t", tg.s.Relationship().View().MyState, out)
	}
	// handled sends a message the target answers: once answered, what
	// was sent before has been handled.
	handled := func() {
		u := &wire.BindingUpdate{}
		u.Addr, u.Status = netip.MustParseAddr("198.51.100.1"), wire.StatusFree
		p.send(u)
		expect[*wire.BindingAck](p)
	}
	// The view is published after the BNDACK is sent: the state is read
	// on the session goroutine, which has handled the UPDDONE by then.
	state := func() (st fsm.State) {
		tg.s.inspect(func() { st = tg.s.m.State() })
		return st
	}
	p.send(&wire.UpdateDone{Header: wire.Header{XID: xid - 1}})
	handled()
	if st := state(); st != fsm.Recover {
		t.Fatalf("A stale UPDDONE moved the target from recover to %s", st)
	}
	p.send(&wire.UpdateDone{Header: wire.Header{XID: xid}})
	handled()
	if st := state(); st == fsm.Recover {
		t.Fatal("The UPDDONE answering our UPDREQALL left the target in recover")
	}
}

// heldStore holds every write from the first until release is closed.
type heldStore struct {
	lease.Store
	release chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (h *heldStore) Write(rows []lease.Binding) error {
	h.once.Do(func() { close(h.entered) })
	<-h.release
	return h.Store.Write(rows)
}

// End to end, with the failover plugin: a renewal whose write is under
// way when the peer asks for every binding is not sent until it is on
// disk, and UPDDONE follows it.
func TestARenewalBeingWrittenReachesThePeerOnlyOnceStored(t *testing.T) {
	hs := &heldStore{release: make(chan struct{}), entered: make(chan struct{})}
	tg, p := normalTargetWith(t, targetOpts{wrap: func(st lease.Store) lease.Store { hs.Store = st; return hs }})
	const ip = "192.0.2.150" // bound to client 10
	before, _ := tg.srv.Get(mustIP(ip))
	req, err := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(10)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP(ip)))
	if err != nil {
		t.Fatal(err)
	}
	renewed := make(chan *dhcpv4.DHCPv4, 1)
	go func() { renewed <- tg.dhcp(req) }()
	<-hs.entered
	p.send(&wire.UpdateRequestAll{})
	marker := netip.MustParseAddr("198.51.100.1")
	released, sentMarker := false, false
	others := map[netip.Addr]bool{}
	for {
		b, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		switch m := b.(type) {
		case *wire.BindingUpdate:
			if m.Addr.String() == ip {
				if !released {
					close(hs.release)
					t.Fatalf("BNDUPD of %s (lease expiry %d, stored %d) while its write was under way", ip, m.LeaseExpiry, before.End)
				}
				stored, ok := storedIn(hs.Store, mustIP(ip))
				if !ok || uint32(stored.End) != m.LeaseExpiry {
					t.Fatalf("BNDUPD with lease expiry %d; on disk %v %s", m.LeaseExpiry, ok, stored)
				}
			} else {
				others[m.Addr] = true
			}
			sentMarker = ackThenMark(p, m, len(others) == 10 && !sentMarker, marker) || sentMarker
		case *wire.BindingAck:
			if m.Addr == marker && !released {
				close(hs.release) // the write completes
				released = true
				if resp := <-renewed; resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck {
					t.Fatalf("The renewal got %v", resp)
				}
			}
		case *wire.UpdateDone:
			if !released {
				close(hs.release)
				t.Fatal("UPDDONE while a binding was being written")
			}
			if b, _ := tg.srv.Get(mustIP(ip)); b.End == before.End {
				t.Fatal("The renewal did not change the lease")
			}
			return
		}
	}
}

// storedIn reads ip's row from st.
func storedIn(st lease.Store, ip lease.IP) (lease.Binding, bool) {
	var found lease.Binding
	ok := false
	st.Load(func(b lease.Binding) error {
		if b.IP == ip {
			found, ok = b, true
		}
		return nil
	})
	return found, ok
}

// ackThenMark acknowledges m and, if mark, sends an update of marker (an
// address outside the pools): its BNDACK comes once the target has
// handled everything sent before it. It returns mark.
func ackThenMark(p *rawPeer, m *wire.BindingUpdate, mark bool, marker netip.Addr) bool {
	ack := &wire.BindingAck{Header: wire.Header{XID: m.XID}}
	ack.Addr = m.Addr
	p.send(ack)
	if mark {
		u := &wire.BindingUpdate{}
		u.Addr, u.Status = marker, wire.StatusFree
		p.send(u)
	}
	return mark
}
