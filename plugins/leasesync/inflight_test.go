package leasesync

import (
	"net/netip"
	"testing"
	"time"

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
			ack := &wire.BindingAck{Header: wire.Header{XID: m.XID}}
			ack.Addr = m.Addr
			p.send(ack)
			if len(others) == 10 && !sentMarker {
				u := &wire.BindingUpdate{}
				u.Addr, u.Status = marker, wire.BindingStatus(lease.Free)
				p.send(u)
				sentMarker = true
			}
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
		u.Addr, u.Status = netip.MustParseAddr("198.51.100.1"), wire.BindingStatus(lease.Free)
		p.send(u)
		expect[*wire.BindingAck](p)
	}
	p.send(&wire.UpdateDone{Header: wire.Header{XID: xid - 1}})
	handled()
	if st := tg.s.Relationship().View().MyState; st != fsm.Recover {
		t.Fatalf("A stale UPDDONE moved the target from recover to %s", st)
	}
	p.send(&wire.UpdateDone{Header: wire.Header{XID: xid}})
	handled()
	if st := tg.s.Relationship().View().MyState; st == fsm.Recover {
		t.Fatal("The UPDDONE answering our UPDREQALL left the target in recover")
	}
}
