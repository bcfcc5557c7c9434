package failover

import (
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// policy is the ownership and MCLT rules (docs/protocol.md §16, §18) for
// one view of the relationship at one time: who may give which address,
// and for how long. Every decision on whether an address is usable is
// taken here: the lease table keeps the bindings and their queues, and
// asks.
type policy struct {
	v       *relation.View // nil for a single server
	primary bool           // our role in the relationship (true alone)
	now     int64
}

// policyAt is the policy of the relationship's current view at now.
func (s *Server) policyAt(now int64) policy {
	return policy{v: s.view(), primary: s.primary, now: now}
}

// reusable is the ownership rule: which existing bindings may go to a new
// client. A single server owns every free, expired or released address;
// in a relationship the primary allocates FREE addresses and the secondary
// BACKUP ones, and an expired or released address becomes free only when
// the peer has acknowledged it (docs/protocol.md §18).
func (p policy) reusable(b *lease.Binding) bool {
	if p.v == nil {
		return lease.DefaultReusable(b)
	}
	own := lease.Backup
	if p.primary {
		own = lease.Free
	}
	if b.State == own && !stale(p.v) {
		return true
	}
	if p.v.MyState != fsm.PartnerDown {
		return false
	}
	switch b.State {
	case lease.Free, lease.Backup, lease.Expired, lease.Released, lease.Reset:
		return p.now >= partnerDownReuse(p.v, b)
	}
	return false
}

// partnerDownReuse is when, in PARTNER-DOWN, an address that is not ours
// may be given to a new client (docs/protocol.md §18; docs/invariants.md, invariant 5): MCLT
// after PARTNER-DOWN began, after the binding's end, and after every
// expiry the peer may hold -- the peer, if it is in fact alive, cannot have
// granted past that bound plus MCLT. The peer holds what it acknowledged
// (PeerExpiry) or what it received since, which it adopts before its
// BNDACK leaves; that ack may be lost with the link, so the wait covers
// what was sent (SentExpiry, never lowered: see request) as well.
func partnerDownReuse(v *relation.View, b *lease.Binding) int64 {
	return max(pdStart(v), b.End, b.PeerExpiry, b.SentExpiry) + v.MCLT
}

// pdStart is when PARTNER-DOWN began for the reuse rules
// (relation.View.PartnerDownStart, which failoverctl status shows too).
func pdStart(v *relation.View) int64 { return v.PartnerDownStart() }

// partnerDownOpen is true when the peer's never-used addresses may be used:
// in PARTNER-DOWN, MCLT after entering it, once the peer has been heard or
// the operator has declared partner-down since this process started.
func (p policy) partnerDownOpen() bool {
	v := p.v
	return v != nil && v.MyState == fsm.PartnerDown && (v.Contacted || v.OperatorPartnerDown) &&
		p.now >= pdStart(v)+v.MCLT
}

// stale is true in PARTNER-DOWN when the peer has not been heard since this
// process started: while we were away the peer may have given our own free
// addresses too, so they wait for MCLT like the peer's.
func stale(v *relation.View) bool {
	return v.MyState == fsm.PartnerDown && !v.Contacted
}

// stale is stale for the policy's view (false for a single server): then
// even an expired or released address that never left for the peer may
// have been taken by it, in PARTNER-DOWN while we were away, and goes to
// no one, its old client included, before the reuse rules allow it.
func (p policy) stale() bool {
	return p.v != nil && stale(p.v)
}

// judge is the policy's word on the candidates the table finds for a new
// client with key (lease.Table.Allocate): a binding reusable does not
// accept leaves the table's queue; any other candidate usableBy refuses
// waits where it is (a never-used one stays its pool's next). With
// offerLocked, the one place that decides whether an address is usable:
// the table keeps no rule of its own.
func (p policy) judge(t *lease.Table, key string) lease.Judge {
	return func(ip lease.IP, b *lease.Binding) lease.Verdict {
		if b != nil && !p.reusable(b) {
			return lease.Skip
		}
		if p.usableBy(t, ip, key) {
			return lease.Take
		}
		return lease.Wait
	}
}

// setLocked puts b in the table, and among the table's candidates for a
// new client if the policy makes it reusable now. Every binding enters
// the table through it. Call with s.mu held (or while loading, before
// the server is shared).
func (s *Server) setLocked(b lease.Binding) {
	s.table.Put(b)
	if s.policyAt(s.now().Unix()).reusable(&b) {
		s.table.Offer(b.IP)
	}
}

// offerLocked offers ip, whose offer hold has ended, to new clients if
// the policy makes its binding reusable now. Call with s.mu held.
func (s *Server) offerLocked(ip lease.IP) {
	if b, ok := s.table.Get(ip); ok && s.policyAt(s.now().Unix()).reusable(&b) {
		s.table.Offer(ip)
	}
}

// unholdLocked ends the offer hold of the client with key, if any, and
// offers its address to others. Call with s.mu held.
func (s *Server) unholdLocked(key string) {
	if ip, ok := s.table.Unhold(key); ok {
		s.offerLocked(ip)
	}
}

// usableBy reports whether the client with key may be given ip: it is
// in a pool, no other client holds an offer of it, and it is either the
// client's own (bound, expired or released, so that a returning client
// keeps its address) or a free address this server owns (docs/protocol.md §18).
// t is the table, read only.
func (p policy) usableBy(t *lease.Table, ip lease.IP, key string) bool {
	if !t.InPool(ip) || t.HeldByOther(ip, key, p.now) {
		return false
	}
	b, ok := t.Get(ip)
	if p.renewOnly() {
		return ok && b.State == lease.Active && b.Key() == key && b.Until() > p.now
	}
	if !ok {
		return p.ownsNew()
	}
	if b.Key() == key && (b.State == lease.Active && (b.Until() > p.now || !p.stale()) || returnable(&b) && !p.stale()) {
		// The client's own lease, or its own ended one that never left
		// for the peer. Stale (PARTNER-DOWN, the peer not heard since
		// this process started), an ended lease is the client's no more
		// than an expired one: the peer, in PARTNER-DOWN while we were
		// away, may have given the address to another client once the
		// lease's end and MCLT had passed (docs/simulation.md, seed
		// 1235449).
		return true
	}
	return p.reusable(&b)
}

// returnable reports whether an expired or released address may go back
// to its last client outside the ownership rules: only until its EXPIRED
// or RELEASED has been transmitted. From then the peer may store it as
// free and give it to another client, ack or no ack (ISC's rewind rule
// applies from transmission too), so only reusable decides. A pending
// change loaded from disk counts as transmitted (see load).
func returnable(b *lease.Binding) bool {
	return (b.State == lease.Expired || b.State == lease.Released) && !b.Transmitted
}

// ownsNew is the rule for never-used addresses, which are FREE and so the
// primary's: the primary's unless it restarted in PARTNER-DOWN and has not
// heard its peer since; the secondary's only in PARTNER-DOWN once MCLT has
// passed; no one's while renewing only. usableBy asks it for each
// never-used candidate the table finds (judge): a refused one stays its
// pool's next.
func (p policy) ownsNew() bool {
	if p.renewOnly() {
		return false
	}
	return p.primary && !p.stale() || p.partnerDownOpen()
}

// renewOnly is true while a server restarted without reaching its peer
// is in COMMUNICATIONS-INTERRUPTED or PARTNER-DOWN: while it was down the
// peer may have declared it down (PARTNER-DOWN) and be taking its free
// addresses -- and a PARTNER-DOWN saved before the restart may no longer
// hold. Renewals stay within the MCLT rule, which keeps them inside what
// such a peer waits for; new allocations wait for contact, or for the
// operator to declare partner-down again. (ISC serves as usual here, which
// lets both servers give the same address.)
func (p policy) renewOnly() bool {
	v := p.v
	return v != nil && !v.Contacted && !v.OperatorPartnerDown &&
		(v.MyState == fsm.CommInterrupted || v.MyState == fsm.PartnerDown)
}

// renewOnlyCap bounds a lease time g granted now for the binding b
// while renewing only: the lease never runs past what the peer can know of
// it, the stored end or the potential expiry it acknowledged
// (PeerExpiry), whichever is later. A peer that declared us down while we
// were away waits for no more than that plus MCLT; the MCLT rule alone
// lets each renewal go MCLT past the last, ever further beyond. A potential
// expiry sent but not acknowledged may never have reached the peer and
// does not count. Outside renewals-only, g is returned as is.
func (p policy) renewOnlyCap(g int64, b *lease.Binding) int64 {
	if !p.renewOnly() {
		return g
	}
	return max(min(g, max(b.Until(), b.PeerExpiry)-p.now), 0)
}

// grant applies the MCLT rule to a desired lease time L (docs/protocol.md §16,
// as ISC): a lease may run at most MCLT past the expiry the peer has
// acknowledged (peerExpiry). It returns the lease to give and the potential
// expiry to announce to the peer, which lets the next renewal have L.
func grant(desired, now, peerExpiry, mclt int64) (granted, potential int64) {
	switch {
	case desired <= mclt:
		granted = desired
	case peerExpiry <= now:
		granted = mclt
	case now+desired > peerExpiry+mclt:
		granted = peerExpiry + mclt - now
	default:
		granted = desired
	}
	return granted, now + desired + granted/2
}

// reopen re-examines the bindings when the state makes more of them
// usable: when the peer is first heard after a restart in PARTNER-DOWN
// (our own free addresses, which the reuse rule refused until then, and
// which an allocation may have taken off the free queue meanwhile), and in
// PARTNER-DOWN, from MCLT after entering it and then every reuseScan as
// more leases pass their end plus MCLT. Never-used addresses need nothing
// here: judge asks ownsNew at each allocation. Call with s.mu held.
func (s *Server) reopen(now int64) {
	p := s.policyAt(now)
	if p.v != nil {
		st := stale(p.v)
		if s.wasStale && !st {
			s.table.RequeueAll(p.reusable)
		}
		s.wasStale = st
	}
	if !p.partnerDownOpen() {
		s.pdOpen = false
		return
	}
	if !s.pdOpen || now >= s.pdScan+reuseScan {
		s.pdOpen, s.pdScan = true, now
		s.table.RequeueAll(p.reusable)
	}
}

// reuseScan is how often, in PARTNER-DOWN, the addresses of the peer are
// re-examined for reuse, in seconds.
const reuseScan = 10
