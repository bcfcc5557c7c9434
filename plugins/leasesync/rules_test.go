package leasesync

import (
	"strings"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// The tests here hold single rules of the session, each against a one-line
// change that once passed every test (issue 15, "tests that cannot catch
// their feature"). They call the session's methods directly on a stub
// store, without a link or a run goroutine.

// stubBindings is a relation.Bindings whose All and Pending sets the test
// chooses and which records what the session asked of it. Methods a test
// does not expect panic (the embedded nil interface).
type stubBindings struct {
	relation.Bindings
	all, pending []lease.IP
	acked        []lease.Binding
}

func (b *stubBindings) All(fn func(lease.IP)) {
	for _, ip := range b.all {
		fn(ip)
	}
}

func (b *stubBindings) Pending(fn func(lease.IP)) {
	for _, ip := range b.pending {
		fn(ip)
	}
}

func (b *stubBindings) Acked(sent lease.Binding, now int64) bool {
	b.acked = append(b.acked, sent)
	return true
}

// stubSession is a session of cfgLine over db, not started.
func stubSession(t *testing.T, cfgLine string, db relation.Bindings) *Session {
	t.Helper()
	cfg, err := parse(strings.Fields(cfgLine))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSession(cfg, relation.New(cfg.Name, nil), nil)
	s.db = db
	return s
}

const stubSecondary = "name=lan1 role=secondary address=127.0.0.1 peer=127.0.0.2"

func queuedSet(s *Session) map[lease.IP]bool {
	out := map[lease.IP]bool{}
	for ip, q := range s.out.queued {
		if q {
			out[ip] = true
		}
	}
	return out
}

// TestUpdateRequestIsAnsweredWithThePendingBindingsOnly: UPDREQ asks for
// what the peer has not acknowledged (draft-12 §7.7), UPDREQALL for every
// binding. Answering UPDREQ with every binding is not wrong on the wire,
// but it resends the whole database at each POTENTIAL-CONFLICT and hides
// which updates were missing; the set queued must be the pending one.
func TestUpdateRequestIsAnsweredWithThePendingBindingsOnly(t *testing.T) {
	a, b, c := mustIP("192.0.2.10"), mustIP("192.0.2.11"), mustIP("192.0.2.12")
	db := &stubBindings{all: []lease.IP{a, b, c}, pending: []lease.IP{b}}

	s := stubSession(t, stubSecondary, db)
	s.answerRequest(7, false)
	if got := queuedSet(s); len(got) != 1 || !got[b] {
		t.Errorf("UPDREQ queued %v, want only the pending %v", got, b)
	}
	if s.out.peerReq == nil || *s.out.peerReq != 7 {
		t.Errorf("UPDDONE will answer xid %v, want 7", s.out.peerReq)
	}

	s = stubSession(t, stubSecondary, db)
	s.answerRequest(8, true)
	if got := queuedSet(s); len(got) != 3 {
		t.Errorf("UPDREQALL queued %v, want all three bindings", got)
	}
}

// TestAStaleBindingAckIsIgnored: a BNDACK counts only if its xid is the
// one of the update in flight for that address. An ack of an earlier
// update (sent, then superseded and sent again under a new xid) must not
// settle the newer one: the store would mark the newer binding as known to
// the peer (PeerExpiry raised to what was sent) while the peer has not
// received it.
func TestAStaleBindingAckIsIgnored(t *testing.T) {
	ip := mustIP("192.0.2.20")
	db := &stubBindings{}
	s := stubSession(t, stubSecondary, db)
	sent := lease.Binding{IP: ip, State: lease.Active, End: 1000, SentExpiry: 1500}
	s.out.inflight[ip] = inflight{xid: 5, sent: sent, at: time.Unix(100, 0)}

	ack := func(xid uint32) *wire.BindingAck {
		a := &wire.BindingAck{Header: wire.Header{XID: xid}}
		a.Addr = ip.Addr()
		return a
	}
	s.acked(ack(4), time.Unix(101, 0), time.Unix(101, 0))
	if len(db.acked) != 0 {
		t.Fatalf("A BNDACK with xid 4 settled the update in flight with xid 5: %v", db.acked)
	}
	if _, ok := s.out.inflight[ip]; !ok {
		t.Fatal("A stale BNDACK removed the update in flight")
	}

	s.acked(ack(5), time.Unix(101, 0), time.Unix(101, 0))
	if len(db.acked) != 1 || db.acked[0].SentExpiry != 1500 {
		t.Fatalf("The matching BNDACK settled %v, want the update sent", db.acked)
	}
	if _, ok := s.out.inflight[ip]; ok {
		t.Fatal("The matching BNDACK left the update in flight")
	}
}

// TestTheBNDACKOfASupersededUpdateEndsItsDuel: an update of an address
// superseded before its BNDACK stays among those the peer's updates must
// beat (ApplyPeer) until its own BNDACK comes; that BNDACK settles nothing
// else. A peer update that arrives after it was sent after the peer had
// handled ours, so duelling it with ours would refuse it for nothing.
func TestTheBNDACKOfASupersededUpdateEndsItsDuel(t *testing.T) {
	ip := mustIP("192.0.2.20")
	db := &stubBindings{}
	s := stubSession(t, stubSecondary, db)
	first := lease.Binding{IP: ip, State: lease.Active, End: 1000, SentExpiry: 1500}
	second := lease.Binding{IP: ip, State: lease.Abandoned, End: 1100, SentExpiry: 1500}
	s.out.inflight[ip] = inflight{xid: 6, sent: second, at: time.Unix(100, 0), earlier: []sentUpdate{{xid: 5, sent: first}}}
	in := s.out.inflight[ip]
	if got := in.unacked(); len(got) != 2 || got[0].State != lease.Active || got[1].State != lease.Abandoned {
		t.Fatalf("Unacknowledged updates %v, want the ACTIVE then the ABANDONED", got)
	}
	ack := &wire.BindingAck{Header: wire.Header{XID: 5}}
	ack.Addr = ip.Addr()
	s.acked(ack, time.Unix(101, 0), time.Unix(101, 0))
	in, ok := s.out.inflight[ip]
	if !ok || in.xid != 6 || len(in.earlier) != 0 || len(db.acked) != 0 {
		t.Fatalf("After the BNDACK of the superseded update: in flight %v %+v, settled %v", ok, in, db.acked)
	}
}

// TestSecondaryKeepsItsMaxLeaseOwnership: the secondary gives back only
// what it holds beyond max-lease-ownership percent of the free addresses
// (ISC dhcp_failover_pool_dobalance): it keeps a reserve to serve new
// clients from if the link breaks. The primary gives half the difference.
func TestSecondaryKeepsItsMaxLeaseOwnership(t *testing.T) {
	for _, c := range []struct {
		name      string
		role      Role
		mode      balanceMode
		own, peer int
		give      int
		ask       bool
	}{
		// 100 free, ownership 10 %: the secondary holds 10 back.
		{"secondary at its reserve", Secondary, balanceAsked, 60, 40, 0, false},
		{"secondary beyond its reserve", Secondary, balanceAsked, 80, 20, 20, false},
		{"secondary entering normal", Secondary, balanceOnNormal, 100, 0, 40, false},
		{"primary asked", Primary, balanceAsked, 60, 40, 10, false},
		// On the timer the primary tolerates misbalance (15 %).
		{"primary within misbalance", Primary, balanceTimer, 60, 40, 0, false},
		{"primary beyond misbalance", Primary, balanceTimer, 90, 10, 40, false},
		{"starved secondary asks", Secondary, balanceTimer, 10, 90, 0, true},
		{"operator rebalance asks on any shortfall", Primary, balanceOperator, 48, 52, 0, true},
		{"never asked outside the timer and the operator", Primary, balanceAsked, 0, 100, 0, false},
		// The edges of the primary's tolerance on the timer: 15 of 100.
		{"primary at the misbalance edge", Primary, balanceTimer, 65, 35, 0, false},
		{"primary just beyond the misbalance edge", Primary, balanceTimer, 66, 34, 16, false},
		{"primary entering normal never asks", Primary, balanceOnNormal, 0, 100, 0, false},
		{"secondary rebalanced by the operator keeps its reserve", Secondary, balanceOperator, 70, 30, 10, false},
		// A pool too small for a threshold asks at a real shortfall.
		{"empty pools", Primary, balanceTimer, 0, 0, 0, false},
		{"small pool, one short", Primary, balanceTimer, 2, 4, 0, false},
		{"small pool, two short", Primary, balanceTimer, 1, 5, 0, true},
	} {
		give, ask := balanceGive(c.role, c.mode, c.own, c.peer, defaultMaxLeaseMisbalance, defaultMaxLeaseOwnership)
		if give != c.give || ask != c.ask {
			t.Errorf("%s: own %d, peer %d: gives %d (ask %v), want %d (ask %v)", c.name, c.own, c.peer, give, ask, c.give, c.ask)
		}
	}
}

// TestTheHandshakeRefusesAClockMoreThan60sAway: ISC refuses a CONNECT and
// a CONNECTACK whose time is more than 60 s from its own clock (reject
// reason TIME-MISMATCH); at 60 s it still accepts. Both directions, both
// messages.
func TestTheHandshakeRefusesAClockMoreThan60sAway(t *testing.T) {
	sec, err := parse(strings.Fields(stubSecondary + " mclt=30"))
	if err != nil {
		t.Fatal(err)
	}
	pri := primaryCfg(t)
	const now = 1_700_000_000
	for _, off := range []int64{-61, -60, 0, 60, 61} {
		refused := off > maxSkew || off < -maxSkew
		c := connectMsg(&pri, now+off)
		p, rej := checkConnect(&sec, c, now)
		if refused != (rej != nil) || rej != nil && rej.reason != wire.RejectTimeMismatch {
			t.Errorf("CONNECT from a clock %+ds away: rejection %v, want refused %v (TIME-MISMATCH)", off, rej, refused)
		}
		if rej == nil && p.skew != off {
			t.Errorf("CONNECT from a clock %+ds away: skew %d", off, p.skew)
		}
		a := connectAckMsg(&sec, c, nil, now+off)
		p, rej = checkConnectAck(&pri, a, now)
		if refused != (rej != nil) || rej != nil && rej.reason != wire.RejectTimeMismatch {
			t.Errorf("CONNECTACK from a clock %+ds away: rejection %v, want refused %v (TIME-MISMATCH)", off, rej, refused)
		}
		if rej == nil && p.skew != off {
			t.Errorf("CONNECTACK from a clock %+ds away: skew %d", off, p.skew)
		}
	}
}
