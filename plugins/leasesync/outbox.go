package leasesync

import (
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// inflight is an update sent and not yet acknowledged.
type inflight struct {
	xid  uint32
	sent lease.Binding
	at   time.Time
	// seq orders the BNDUPDs of the session (outbox.sends): an update
	// sent after the peer's request carries a binding at least as new as
	// the one the request asked for.
	seq uint64
	// earlier are the updates of the same address sent on this link
	// before sent, oldest first, whose BNDACKs have not come. An update
	// the peer sends meanwhile duels at the peer with each of them in
	// turn, and loses to the peer's copy of ours if any of them wins:
	// ApplyPeer must judge it against them all, not against the latest
	// alone (docs/protocol.md §13.4).
	earlier []sentUpdate
	// withdrawn: the peer's copy of the address has been taken since
	// (applyUpdate). The update stays here until its BNDACK, for the
	// duels of the peer's later updates of the address: the peer judges
	// those against it when it arrives there. It is not sent again.
	withdrawn bool
}

// sentUpdate is one update of an address superseded by a later one
// before its BNDACK came.
type sentUpdate struct {
	xid  uint32
	sent lease.Binding
}

// unacked returns the bindings of every update of in not yet
// acknowledged, oldest first.
func (in *inflight) unacked() []lease.Binding {
	out := make([]lease.Binding, 0, len(in.earlier)+1)
	for _, e := range in.earlier {
		out = append(out, e.sent)
	}
	return append(out, in.sent)
}

// pendingAck is a BNDACK waiting for the binding it acknowledges to be
// durable.
type pendingAck struct {
	ack  *wire.BindingAck
	done *lease.Batch
}

// rejectRetry is how long an update the peer refused for a failed write
// waits before it goes again.
const rejectRetry = time.Second

// outbox is what the session owes the peer: the BNDUPDs of our changes
// (queued, in flight, deferred, refused for a retry), the BNDACKs of the
// peer's updates, and the UPDDONE of the peer's update request. It does
// no I/O: the session's flush sends what it holds. Owned by the run
// goroutine.
type outbox struct {
	queue    []lease.IP
	queued   map[lease.IP]bool
	inflight map[lease.IP]inflight
	// deferred holds the queued addresses the bindings hid while they
	// were written (relation.Bindings.Get): each comes back through
	// notify, and UPDDONE waits for them.
	deferred map[lease.IP]bool
	// retry holds the updates the peer refused with reject reason 6
	// (its write failed, or a miscellaneous refusal): they stay pending
	// and are queued again at retryAt, not at once (a peer whose store
	// fails would refuse them as fast as they go). UPDDONE waits for them.
	retry   map[lease.IP]bool
	retryAt time.Time
	// peerReq is the peer's UPDREQ/UPDREQALL being answered: UPDDONE
	// (with its xid) goes when owed is empty.
	peerReq *uint32
	// owed are the addresses the answer to peerReq must cover: those
	// queued, in flight, deferred or to retry when the request's
	// bindings were queued (the queue's tail as it stood then, as ISC
	// has it). An address leaves when an update of it that carries the
	// binding as of the request is acknowledged (settled), when the
	// peer refuses it for good, or when it is withdrawn. Changes of
	// other addresses made later do not delay UPDDONE: a busy server
	// would otherwise never send it (docs/protocol.md §14).
	owed map[lease.IP]bool
	// sends counts the BNDUPDs sent; reqSeq is its value at the latest
	// request: an update with a later seq was read after the request.
	sends, reqSeq uint64
	acks          []pendingAck
	// acksHigh is the most BNDACKs ever held at once (bounded by
	// maxEventsPerRound).
	acksHigh int
}

func newOutbox() outbox {
	return outbox{
		queued:   map[lease.IP]bool{},
		inflight: map[lease.IP]inflight{},
		deferred: map[lease.IP]bool{},
		retry:    map[lease.IP]bool{},
		owed:     map[lease.IP]bool{},
	}
}

// enqueue queues ip's binding for a BNDUPD. The queue holds each address
// at most once plus the entries withdrawn since (a peer's update
// supersedes ours); when those outnumber the live ones it is compacted,
// so that it stays within twice the addresses of the pools however the
// peer interleaves updates and update requests.
func (o *outbox) enqueue(ip lease.IP) {
	delete(o.deferred, ip)
	if o.queued[ip] {
		return
	}
	o.queued[ip] = true
	o.queue = append(o.queue, ip)
	if len(o.queue) > 2*len(o.queued)+64 {
		live := o.queue[:0]
		seen := make(map[lease.IP]bool, len(o.queued))
		for _, q := range o.queue {
			if o.queued[q] && !seen[q] {
				seen[q] = true
				live = append(live, q)
			}
		}
		clear(o.queue[len(live):])
		o.queue = live
	}
}

// withdraw forgets our update of ip, queued, in flight or refused: the
// peer's copy is in force (its ack would be ignored).
func (o *outbox) withdraw(ip lease.IP) {
	delete(o.inflight, ip)
	delete(o.queued, ip)
	delete(o.retry, ip)
	delete(o.owed, ip)
}

// supersede forgets our update of ip, queued or refused, when the peer's
// copy is taken: only an update in flight stays, withdrawn, until its
// BNDACK (see inflight.withdrawn).
func (o *outbox) supersede(ip lease.IP) {
	delete(o.queued, ip)
	delete(o.retry, ip)
	delete(o.owed, ip)
	if in, ok := o.inflight[ip]; ok {
		in.withdrawn = true
		o.inflight[ip] = in
	}
}

// unackedUpdates counts the BNDUPDs sent and not yet acknowledged, the
// superseded ones included: max-unacked-updates bounds messages, not
// addresses (docs/protocol.md §11), and it bounds each address's list of
// superseded updates, none of which may be dropped before its BNDACK.
func (o *outbox) unackedUpdates() int {
	n := 0
	for _, in := range o.inflight {
		n += 1 + len(in.earlier)
	}
	return n
}

// pending reports whether an update is queued or waiting for its BNDACK.
func (o *outbox) pending() bool { return len(o.queued) > 0 || len(o.inflight) > 0 }

// answered reports whether every update the peer's request asked for has
// been settled (owed is empty).
func (o *outbox) answered() bool { return len(o.owed) == 0 }

// request records the peer's request xid once its bindings are queued:
// what is queued, in flight, deferred or to retry now is owed. A request
// that comes while an older one is being answered replaces it (the peer
// waits for the UPDDONE of its latest request only: ISC discards the old
// one, and so do we, docs/protocol.md §12.4) but its set is added to the older one's:
// what the older request was still owed is then pending and so in the new
// set anyway, and the union keeps an UPDDONE from ever covering less than
// a request it answers asked for.
func (o *outbox) request(xid uint32) {
	for ip := range o.queued {
		o.owed[ip] = true
	}
	for _, m := range []map[lease.IP]bool{o.deferred, o.retry} {
		for ip := range m {
			o.owed[ip] = true
		}
	}
	for ip := range o.inflight {
		o.owed[ip] = true
	}
	o.reqSeq = o.sends
	o.peerReq = &xid
}

// settled records that the peer acknowledged in: its address is no
// longer owed if in was read after the request, or if the binding has
// not changed since (current is the store's answer, Acked). An update
// read before the request of a binding changed since does not cover it:
// the newer one, queued again, does.
func (o *outbox) settled(ip lease.IP, in inflight, current bool) {
	if current || in.seq > o.reqSeq {
		delete(o.owed, ip)
	}
}

// refused keeps ip for a retry after rejectRetry: the peer's write failed.
func (o *outbox) refused(ip lease.IP, now time.Time) {
	o.retry[ip] = true
	if o.retryAt.IsZero() {
		o.retryAt = now.Add(rejectRetry)
	}
}

// requeueInflight queues again every update waiting for its BNDACK.
func (o *outbox) requeueInflight() {
	for _, ip := range sortedIPs(o.inflight) {
		if !o.inflight[ip].withdrawn {
			o.enqueue(ip)
		}
	}
	clear(o.inflight)
	o.requeueRefused()
}

// requeueRefused queues again the updates the peer refused (retry).
func (o *outbox) requeueRefused() {
	for _, ip := range sortedIPs(o.retry) {
		o.enqueue(ip)
	}
	clear(o.retry)
	o.retryAt = time.Time{}
}

// linkLost drops what only the lost link could carry (BNDACKs, UPDDONE)
// and queues again the updates in flight and the deferred ones (in
// address order, so that a simulated run replays exactly).
func (o *outbox) linkLost() {
	o.acks = nil
	o.peerReq = nil
	clear(o.owed)
	o.requeueInflight()
	for _, ip := range sortedIPs(o.deferred) {
		o.enqueue(ip)
	}
}

// sortedIPs are the keys of m in address order: updates queued from a
// map go out in the same order every time, so that a run of the
// simulation of the pair replays exactly.
func sortedIPs[V any](m map[lease.IP]V) []lease.IP {
	ips := make([]lease.IP, 0, len(m))
	for ip := range m {
		ips = append(ips, ip)
	}
	slices.Sort(ips)
	return ips
}

// answerRequest queues what the peer asked for; UPDDONE follows when it,
// and whatever else was pending then, has been acknowledged (not later
// changes of other addresses).
func (s *Session) answerRequest(xid uint32, all bool) {
	if all {
		s.db.All(func(ip lease.IP) { s.out.enqueue(ip) })
	} else {
		s.db.Pending(func(ip lease.IP) { s.out.enqueue(ip) })
	}
	s.out.request(xid)
}

// applyUpdate stores a binding the peer announced (durably, through the
// failover plugin's store) and queues the BNDACK.
func (s *Session) applyUpdate(u *wire.BindingUpdate, now time.Time) {
	s.met.updatesReceived.Inc()
	b, err := bindingFromWire(&u.Binding, s.link.clock.correction())
	ack := &wire.BindingAck{Header: wire.Header{XID: u.XID}}
	ack.Addr = u.Addr
	if err != nil {
		ack.RejectReason, ack.Message = wire.RejectMissingBindInfo, err.Error()
	} else {
		// A binding we announced and the peer changed at the same time:
		// the peer's copy is now the one in force (ISC's duel rules are
		// applied by ApplyPeer against the stored binding and against
		// each of our updates of it still in flight).
		var unacked []lease.Binding
		if in, ok := s.out.inflight[b.IP]; ok {
			unacked = in.unacked()
		}
		reason, msg, done := s.db.ApplyPeer(b, now.Unix(), unacked...)
		if reason != 0 {
			ack.RejectReason, ack.Message = rejectToWire(reason), msg
		} else {
			// The peer's copy is in force: ours, if queued, is not
			// sent; one in flight stays for the duels of the peer's
			// next updates of the address (docs/simulation.md, seed
			// 1164889).
			s.out.supersede(b.IP)
			s.out.acks = append(s.out.acks, pendingAck{ack: ack, done: done})
			return
		}
	}
	s.logReject(ack)
	s.out.acks = append(s.out.acks, pendingAck{ack: ack})
}

// logReject logs a rejected update, at most once per period: a peer
// flooding bad updates must not flood the log.
func (s *Session) logReject(ack *wire.BindingAck) {
	s.met.rejectedByUs.Inc()
	s.rejectLog.Do(s.clk.Now(), func(n int) {
		log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "address": ack.Addr.String(),
			"reason": ack.RejectReason.String(), "rejected": n}).Warnf("rejected the peer's binding update: %s", ack.Message)
	})
}

// acked completes an update of ours; the BNDACK arrived at at.
func (s *Session) acked(a *wire.BindingAck, now, at time.Time) {
	ip, ok := lease.IPFromAddr(a.Addr)
	in, sent := s.out.inflight[ip]
	if ok && sent && in.xid != a.XID {
		// An update superseded before its BNDACK: the peer has
		// handled it, and those before it (it takes ours in order).
		for i, e := range in.earlier {
			if e.xid == a.XID {
				in.earlier = slices.Delete(in.earlier, 0, i+1)
				s.out.inflight[ip] = in
				break
			}
		}
	}
	if !ok || !sent || in.xid != a.XID {
		log.WithField("address", a.Addr.String()).Debugf("ignoring a BNDACK with xid %d: no update of ours waits for it", a.XID)
		if s.link != nil {
			s.link.clock.oneWay(a.Time, at)
		}
		return
	}
	if s.link != nil {
		// It answers the update sent at in.at: a round trip.
		s.link.clock.roundTrip(a.Time, in.at, at)
		s.checkSkew(now)
	}
	delete(s.out.inflight, ip)
	s.met.rtt.Observe(at.Sub(in.at).Seconds())
	if in.withdrawn {
		// The peer's copy was taken here since: whatever the peer
		// answers, there is nothing to record, retry or send again.
		return
	}
	if a.RejectReason != 0 {
		s.met.rejectedByPeer.Inc()
		log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "address": ip.String(), "status": in.sent.State.String(),
			"reason": a.RejectReason.String()}).Warnf("the peer rejected our binding update: %s", a.Message)
		if a.RejectReason == wire.RejectMiscReject {
			// The peer's answer when its write failed: the binding
			// stays pending and goes again after rejectRetry (and
			// an UPDDONE owing it waits).
			s.out.refused(ip, now)
		} else {
			delete(s.out.owed, ip) // refused for good
		}
		return
	}
	s.met.updatesAcked.Inc()
	current := s.db.Acked(in.sent, now.Unix())
	if !current {
		s.out.enqueue(ip) // changed since it was sent
	}
	s.out.settled(ip, in, current)
}

// flush sends the queued BNDACKs, then as many BNDUPDs as the peer
// accepts in flight, then UPDDONE if an update request is answered, then
// CONTACT if the link has been quiet.
func (s *Session) flush(now time.Time) error {
	// What flush sends goes out in one write.
	s.link.hold()
	err := s.flushHeld(now)
	if rerr := s.link.release(time.Now().Add(s.cfg.MaxResponseDelay)); err == nil && rerr != nil {
		err = fmt.Errorf("sending: %w", rerr)
	}
	return err
}

func (s *Session) flushHeld(now time.Time) error {
	o := &s.out
	// The updates were submitted together: they share one commit.
	o.acksHigh = max(o.acksHigh, len(o.acks))
	for _, a := range o.acks {
		if a.done != nil {
			if err := a.done.Wait(); err != nil {
				a.ack.RejectReason, a.ack.Message = wire.RejectMiscReject, "database update failed"
				s.logReject(a.ack)
			}
		}
		if err := s.send(a.ack, now); err != nil {
			return err
		}
	}
	o.acks = o.acks[:0]
	if !o.retryAt.IsZero() && !now.Before(o.retryAt) {
		o.requeueRefused()
	}
	var stale []lease.IP
	unacked := o.unackedUpdates()
	for len(o.queue) > 0 && unacked < s.link.params.maxUnacked {
		ip := o.queue[0]
		o.queue = o.queue[1:]
		if !o.queued[ip] {
			continue // withdrawn since it was queued
		}
		delete(o.queued, ip)
		b, ok := s.db.Get(ip)
		if !ok {
			// Being written: the failover plugin announces it
			// when the write settles. An update request is not
			// done until then.
			o.deferred[ip] = true
			continue
		}
		wb, err := bindingToWire(&b)
		if err != nil {
			// Not loaded from the store, which checks states: a
			// bug. The peer must not be told a wrong state.
			log.WithField("relationship", s.cfg.Name).Errorf("cannot announce a binding: %v", err)
			delete(o.owed, ip) // never sent: an UPDDONE must not wait for it
			continue
		}
		u := &wire.BindingUpdate{}
		u.Binding = wb
		// Before the write: a write that fails may still have
		// reached the peer.
		if !s.db.Sent(b) {
			// Changed since Get read it: the newer binding goes,
			// at the next flush (not in this loop, which would
			// spin while the change is written).
			stale = append(stale, ip)
			continue
		}
		if err := s.send(u, now); err != nil {
			o.enqueue(ip)
			return err
		}
		// Taken after the update is encoded: it leaves no earlier.
		o.sends++
		next := inflight{xid: u.XID, sent: b, at: s.clk.Now(), seq: o.sends}
		if prev, ok := o.inflight[ip]; ok {
			next.earlier = append(slices.Clip(prev.earlier), sentUpdate{xid: prev.xid, sent: prev.sent})
		}
		o.inflight[ip] = next
		unacked++
		s.met.updatesSent.Inc()
	}
	for _, ip := range stale {
		o.enqueue(ip)
	}
	if len(stale) > 0 {
		// Flush again soon. A full queue of events means a flush
		// follows anyway.
		select {
		case s.events <- event{kind: evTick}:
		default:
		}
	}
	if len(o.queue) == 0 {
		o.queue = nil // let the backing array go
	}
	if o.peerReq != nil && o.answered() {
		if err := s.send(&wire.UpdateDone{Header: wire.Header{XID: *o.peerReq}}, now); err != nil {
			return err
		}
		o.peerReq = nil
	}
	if every := s.contactInterval(); now.Sub(s.lastSend) >= every {
		if err := s.send(&wire.Contact{}, now); err != nil {
			return err
		}
	}
	return nil
}
