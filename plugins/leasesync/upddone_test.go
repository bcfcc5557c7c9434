package leasesync

import (
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// changingBindings is a stubBindings whose Acked reports the addresses
// in changed as changed since they were sent.
type changingBindings struct {
	*stubBindings
	changed map[lease.IP]bool
}

func (b *changingBindings) Acked(sent lease.Binding, now int64) bool {
	b.stubBindings.Acked(sent, now)
	return !b.changed[sent.IP]
}

// sendNow stands for flush sending ip's queued update (flush needs a
// link): it goes in flight under xid.
func sendNow(s *Session, ip lease.IP, xid uint32) {
	delete(s.out.queued, ip)
	s.out.queue = nil
	s.out.sends++
	s.out.inflight[ip] = inflight{xid: xid, sent: lease.Binding{IP: ip}, seq: s.out.sends}
}

func ackOf(ip lease.IP, xid uint32, reason wire.RejectReason) *wire.BindingAck {
	a := &wire.BindingAck{Header: wire.Header{XID: xid}}
	a.Addr = ip.Addr()
	a.RejectReason = reason
	return a
}

// TestUpdateDoneCoversTheBindingsAsOfTheRequest: UPDDONE owes the peer
// each address pending at its request, in the binding it had then. The
// BNDACK of an update read before the request, of a binding changed
// since, does not pay it; that of the newer update does, even if the
// binding changed once more meanwhile (a busy address must not hold
// UPDDONE back either).
func TestUpdateDoneCoversTheBindingsAsOfTheRequest(t *testing.T) {
	a, b := mustIP("192.0.2.10"), mustIP("192.0.2.11")
	db := &changingBindings{stubBindings: &stubBindings{}, changed: map[lease.IP]bool{a: true}}
	s := stubSession(t, stubSecondary, db)
	now := time.Now()
	s.out.enqueue(a)
	sendNow(s, a, 1) // read before the request; a changes after
	s.answerRequest(5, false)
	s.out.enqueue(b) // a later change: not owed
	if !s.out.owed[a] || s.out.owed[b] || len(s.out.owed) != 1 {
		t.Fatalf("owed %v, want only %v", s.out.owed, a)
	}
	s.acked(ackOf(a, 1, 0), now, now)
	if s.out.answered() {
		t.Fatal("answered by the BNDACK of a binding older than the request's")
	}
	if !s.out.queued[a] {
		t.Fatal("the changed binding was not queued again")
	}
	sendNow(s, a, 2)                  // the newer binding, read after the request
	s.acked(ackOf(a, 2, 0), now, now) // changed again meanwhile: still covers
	if !s.out.answered() {
		t.Fatalf("not answered after the BNDACK of an update read after the request: owed %v", s.out.owed)
	}
}

// TestUpdateDoneAfterRefusalsWithdrawalsAndANewRequest: a refusal to be
// retried (reason 6) keeps the address owed, a refusal for good and a
// withdrawal (the peer's copy in force) settle it; a second request
// before UPDDONE is answered with its own xid and owes both sets; a lost
// link forgets the request (the peer asks again on the new link).
func TestUpdateDoneAfterRefusalsWithdrawalsAndANewRequest(t *testing.T) {
	a, b, c := mustIP("192.0.2.10"), mustIP("192.0.2.11"), mustIP("192.0.2.12")
	db := &stubBindings{pending: []lease.IP{a, b}}
	s := stubSession(t, stubSecondary, db)
	now := time.Now()
	s.answerRequest(5, false)
	sendNow(s, a, 1)
	sendNow(s, b, 2)
	s.acked(ackOf(a, 1, wire.RejectMiscReject), now, now)
	if !s.out.owed[a] || !s.out.retry[a] {
		t.Fatalf("a refusal to retry settled the address: owed %v", s.out.owed)
	}
	s.acked(ackOf(b, 2, wire.RejectFatalConflict), now, now)
	if s.out.owed[b] {
		t.Fatalf("a refusal for good left the address owed: %v", s.out.owed)
	}
	db.pending = []lease.IP{c}
	s.answerRequest(6, false)
	if *s.out.peerReq != 6 || !s.out.owed[a] || !s.out.owed[c] || len(s.out.owed) != 2 {
		t.Fatalf("second request: xid %d, owed %v; want 6 and %v, %v", *s.out.peerReq, s.out.owed, a, c)
	}
	s.out.withdraw(a)
	s.out.withdraw(c)
	if !s.out.answered() {
		t.Fatalf("withdrawn addresses still owed: %v", s.out.owed)
	}
	s.out.enqueue(a)
	s.answerRequest(7, false)
	s.out.linkLost()
	if s.out.peerReq != nil || !s.out.answered() {
		t.Fatalf("a lost link kept the request: xid %v, owed %v", s.out.peerReq, s.out.owed)
	}
}
