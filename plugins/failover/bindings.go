package failover

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// Reject reasons of the failover protocol used here (docs/protocol.md §9).
const (
	rejectIllegalAddress = relation.RejectIllegalAddress
	rejectConflict       = relation.RejectConflict
	rejectMissingInfo    = relation.RejectMissingInfo
	rejectOther          = relation.RejectOther
	rejectLessCritical   = relation.RejectLessCritical
)

// The methods below implement relation.Bindings for the leasesync session.

// Get implements relation.Bindings. While a write of ip runs, the binding
// in memory may never reach the disk (a failed write is undone): the
// session must not tell the peer of it, nor have it acknowledged. Get then
// reports no binding, and the address is announced once the write has
// settled (writeClient, settlePeer).
func (s *Server) Get(ip lease.IP) (lease.Binding, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writing[ip] > 0 {
		s.hidden[ip] = true
		return lease.Binding{}, false
	}
	return s.table.Get(ip)
}

// Observe returns the binding of ip as memory holds it, a write under way
// included, without the hiding Get does for the session. It is for
// observers that never tell the peer (the simulation's checks).
func (s *Server) Observe(ip lease.IP) (lease.Binding, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.table.Get(ip)
}

// InPool implements relation.Bindings.
func (s *Server) InPool(ip lease.IP) bool { return s.table.InPool(ip) }

// Pending implements relation.Bindings: bindings whose change the peer has
// not acknowledged, and those waiting in EXPIRED, RELEASED or RESET for the
// peer to free them (ISC queues both on entering NORMAL).
func (s *Server) Pending(fn func(lease.IP)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.table.Range(func(b *lease.Binding) bool {
		if b.Pending || b.State == lease.Expired || b.State == lease.Released || b.State == lease.Reset {
			fn(b.IP)
		}
		return true
	})
}

// All implements relation.Bindings: every address of the pools that has a
// binding. Never-used addresses have none: they are FREE on both sides.
func (s *Server) All(fn func(lease.IP)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.table.Range(func(b *lease.Binding) bool {
		if s.table.InPool(b.IP) {
			fn(b.IP)
		}
		return true
	})
}

// ApplyPeer implements relation.Bindings: ISC's checks on a received
// BNDUPD (docs/protocol.md §13.3), then the binding is stored. The returned
// batch settles when it is durable; the BNDACK waits for it. unacked are
// our updates of the address in flight, oldest first (see duelLost).
func (s *Server) ApplyPeer(in lease.Binding, now int64, unacked ...lease.Binding) (relation.Reject, string, *lease.Batch) {
	if !s.table.InPool(in.IP) {
		return rejectIllegalAddress, "unknown IP address", nil
	}
	switch in.State {
	case lease.Active, lease.Expired, lease.Released:
		if len(in.HWAddr) == 0 {
			return rejectMissingInfo, "BNDUPD without CHADDR", nil
		}
	case lease.Abandoned:
		if len(in.HWAddr) > 0 {
			return rejectOther, "BNDUPD to ABANDONED with a CHADDR", nil
		}
		if len(in.ClientID) > 0 {
			return rejectOther, "BNDUPD to ABANDONED with client-id", nil
		}
	}
	v := s.view()
	s.mu.Lock()
	cur, had := s.table.Get(in.IP)
	if !had {
		cur = lease.Binding{IP: in.IP, State: lease.Free}
	}
	normal := v != nil && v.MyState == fsm.Normal
	// A duel whenever an update of ours for the address is in flight, a
	// change (pending) or a binding the peer had already and asked for
	// again (an update request's answer): the peer judges its own pending
	// change against whatever of ours arrives, so we must judge ours
	// against its by the same rule. Skipping the duel for a re-sent one
	// let each server take the other's copy (docs/simulation.md, seed
	// 1286705).
	dueled := cur.Pending || len(unacked) > 0
	if dueled && s.duelLost(&cur, &in, unacked) {
		s.mu.Unlock()
		return rejectLessCritical, "incoming update is less critical than outgoing update", nil
	}
	if reason, why := s.transition(&cur, &in, normal, now); reason != 0 {
		s.mu.Unlock()
		return reason, why, nil
	}
	if in.State == lease.Active && cur.State == lease.Active && cur.Key() != in.Key() && cur.Until() > now {
		if normal && !dueled {
			// In NORMAL the peer knows this lease (it is not pending
			// nor in flight; those are a duel, decided above):
			// binding the address to a second client is a peer bug
			// or an attack, and would give one address to two
			// clients (docs/invariants.md, invariant 1). ISC only logs "Lease
			// conflict"; we refuse. Outside NORMAL the peer may have
			// lost contact and resolves conflicts by its own rules.
			s.mu.Unlock()
			return rejectConflict, fmt.Sprintf("%s is bound to another client until %d: refusing to bind it to a second one", in.IP, cur.End), nil
		}
		log.WithField("address", in.IP.String()).Warnf("the peer bound an address we hold for another client (%s, ours %s)", in, cur)
	}
	b := in
	// Expired, released and reset addresses are free once both servers
	// know it: acknowledging frees ours too (ISC stores them as FREE).
	switch b.State {
	case lease.Expired, lease.Released, lease.Reset:
		b.State = lease.Free
	}
	b.Hostname = cur.Hostname
	// As ISC, the peer's cltt is not stored: it is the time the peer, not
	// this server, last heard from the client.
	b.CLTT = 0
	if b.Key() == cur.Key() && b.Key() != "" {
		b.CLTT = cur.CLTT
	}
	b.SentExpiry = cur.SentExpiry
	b.Pending = false
	s.table.ClearHold(b.IP)
	w := s.put(b, cur, had, true)
	batch := w.batch
	// Updates that share a commit share one watcher: a goroutine per
	// update would be one per BNDUPD in flight.
	pc := s.peerCommit
	first := pc == nil || pc.batch != batch
	if first {
		pc = &peerCommit{batch: batch, done: lease.NewPending()}
		s.peerCommit = pc
	}
	pc.writes = append(pc.writes, w)
	s.mu.Unlock()
	if first {
		if settled(batch) {
			// Already written: nothing more joins it.
			s.settlePeer(pc)
		} else {
			go s.settlePeer(pc)
		}
	}
	return 0, "", pc.done
}

// peerCommit is the peer's updates that went into one commit.
type peerCommit struct {
	batch *lease.Batch
	// done settles after batch, once a failed commit has been undone in
	// memory: the BNDACK waits for it.
	done   *lease.Batch
	writes []write // guarded by Server.mu
}

// settlePeer waits for the commit of pc. Updates that were not stored are
// rejected in their BNDACK (the peer sends them again), and memory goes
// back to what the disk holds before that BNDACK leaves.
func (s *Server) settlePeer(pc *peerCommit) {
	err := s.wrote(pc.batch.Wait(), "peer update")
	s.mu.Lock()
	asked := s.settleLocked(pc.writes, func(int) bool { return err != nil })
	if s.peerCommit == pc {
		s.peerCommit = nil
	}
	s.mu.Unlock()
	// The session asked for these while they were written (an update
	// request being answered): it gets them now, before the BNDACKs go.
	s.announce(asked...)
	pc.done.Finish(err)
}

// duelLost reports whether the peer's update in loses the duel with our
// unacknowledged change of its address: with the binding we hold now
// (cur), or with any update of ours still in flight. The peer judges its
// pending update against each of ours as they arrive, and once one of
// ours wins there, it takes that one and every later one without a duel:
// it ends with our binding. Judged against our latest binding alone, a
// stale update of the peer could win here and lose there, and the two
// servers would part: a BACKUP the primary had re-sent after a restart
// beat our ABANDONED here, while our ACTIVE, sent before it, had beaten
// that BACKUP at the primary; we then gave the address as ours while the
// primary held it ABANDONED, then FREE, and gave it too (docs/simulation.md,
// seed 40775).
func (s *Server) duelLost(cur, in *lease.Binding, unacked []lease.Binding) bool {
	if !s.peerWinsDuel(cur, in) {
		return true
	}
	for i := range unacked {
		// A copy of the peer's own update (it took ours, or both
		// answered one client alike) is no duel: neither may lose
		// to the other, else a stale copy of ours would beat the
		// peer's newer change at the peer, and here too (seed 1164889).
		if !sameBinding(&unacked[i], in) && !s.peerWinsDuel(&unacked[i], in) {
			return true
		}
	}
	return false
}

// peerWinsDuel decides between our change of a binding, not yet
// acknowledged by the peer, and the peer's change of the same binding
// (ISC's dueling updates, docs/protocol.md §13.4): both ACTIVE, the later client
// transaction wins, the primary's copy on a tie -- but for one client the
// later end wins, stricter than ISC: the client may hold either ACK; of an
// ACTIVE and a binding that is not, the ACTIVE wins, on either side and
// whether or not it has ended; otherwise the primary's copy wins. The rule
// is antisymmetric: the peer, judging our copy against its own, picks the
// same winner. ISC lets an incoming EXPIRED beat an ACTIVE, and the
// primary's copy beat an ACTIVE that is not incoming, while an incoming
// ACTIVE beats anything: both servers could each take the other's copy
// (an ended ACTIVE of ours against the peer's EXPIRED, or against the
// primary's BACKUP on the secondary), and part.
func (s *Server) peerWinsDuel(cur, in *lease.Binding) bool {
	switch {
	case cur.State == lease.Active && in.State == lease.Active:
		if cur.Key() == in.Key() && in.Until() != cur.Until() {
			// One client, answered by both servers (a broadcast
			// REQUEST): it kept either ACK, so the later end.
			return in.Until() > cur.Until()
		}
		if in.CLTT != cur.CLTT {
			return in.CLTT > cur.CLTT
		}
		return !s.primary
	case cur.State == lease.Active:
		return false
	case in.State == lease.Active:
		return true
	}
	return !s.primary
}

// transition is ISC's check of a binding change the peer announces
// (docs/protocol.md §13.3): 0 if it is allowed, else the reject reason.
func (s *Server) transition(cur, in *lease.Binding, normal bool, now int64) (relation.Reject, string) {
	refuse := func() (relation.Reject, string) {
		return rejectConflict, fmt.Sprintf("%s: invalid state transition: %s to %s", in.IP, cur.State, in.State)
	}
	to := in.State
	if !normal {
		if cur.State != lease.Active {
			return 0, ""
		}
		switch to {
		case lease.Free, lease.Backup:
			return refuse()
		case lease.Expired:
			if cur.Until()-65 > now {
				return refuse()
			}
		}
		return 0, ""
	}
	if cur.State == to {
		return 0, ""
	}
	switch cur.State {
	case lease.Free, lease.Abandoned, lease.Released, lease.Backup:
		return 0, ""
	case lease.Active:
		switch to {
		case lease.Released, lease.Abandoned:
			return 0, ""
		}
		if s.primary {
			return refuse()
		}
		switch to {
		case lease.Reset:
			return 0, ""
		case lease.Free, lease.Backup:
			if in.PeerExpiry <= now {
				return 0, ""
			}
		case lease.Expired:
			if cur.Until()-65 <= now {
				return 0, ""
			}
		}
		return refuse()
	case lease.Expired, lease.Reset:
		if (to == lease.Free || to == lease.Backup) && in.PeerExpiry > now {
			return refuse()
		}
		return 0, ""
	}
	return 0, ""
}

// Acked implements relation.Bindings (docs/protocol.md §13.5): the peer now
// knows sent; it returns false if the binding changed since it was sent.
func (s *Server) Acked(sent lease.Binding, now int64) bool {
	s.mu.Lock()
	cur, ok := s.table.Get(sent.IP)
	if !ok || !sameUpdate(&cur, &sent) {
		s.mu.Unlock()
		return false
	}
	old := cur
	cur.Pending = false
	cur.PeerExpiry = cur.SentExpiry
	switch cur.State {
	case lease.Expired, lease.Released, lease.Reset:
		cur.State = lease.Free // both servers now agree it is free
	}
	// Not hidden nor undone if the write fails (see watchAcks).
	ac := s.joinAcks(cur.IP, s.put(cur, old, true, false).batch)
	s.mu.Unlock()
	s.watchAcks(ac)
	return true
}

// ackCommit is the acknowledged bindings that went into one commit.
// Acknowledgements that share a commit share one watcher: a goroutine per
// acknowledgement would be max-unacked-updates of them.
type ackCommit struct {
	batch *lease.Batch
	ips   []lease.IP // guarded by Server.mu
}

// joinAcks records that the binding of ip, acknowledged by the peer, went
// into batch. It returns the commit to watch (watchAcks), nil if an
// earlier call returned it. The caller holds s.mu.
func (s *Server) joinAcks(ip lease.IP, batch *lease.Batch) *ackCommit {
	ac := s.acks
	first := ac == nil || ac.batch != batch
	if first {
		ac = &ackCommit{batch: batch}
		s.acks = ac
	}
	ac.ips = append(ac.ips, ip)
	if !first {
		return nil
	}
	return ac
}

// watchAcks waits for the commit of ac (nil: watched already). The
// acknowledgement may have lowered PeerExpiry, which limits what we grant
// (grant): a failed write would bring the higher value back from the
// disk at a restart, and we would renew a client up to MCLT past an
// expiry the peer no longer knows. Memory keeps the lower value, which
// is the safe one, and the binding is written again by the next Sweep
// until a write succeeds (resaveAcks). A restart before that still
// reads the higher value: the window is the store's failure.
func (s *Server) watchAcks(ac *ackCommit) {
	if ac == nil {
		return
	}
	done := func() {
		if s.wrote(ac.batch.Err(), "peer acknowledgement") != nil {
			s.mu.Lock()
			for _, ip := range ac.ips {
				s.unsaved[ip] = true
			}
			s.mu.Unlock()
		}
	}
	if settled(ac.batch) {
		done()
		return
	}
	go func() {
		ac.batch.Wait()
		done()
	}()
}

// resaveAcks writes again the acknowledged bindings whose write failed
// (see watchAcks). One being written now is left for the next round: its
// own write carries the acknowledged fields if it succeeds.
func (s *Server) resaveAcks() {
	s.mu.Lock()
	if len(s.unsaved) == 0 {
		s.mu.Unlock()
		return
	}
	var watch []*ackCommit
	// In address order, so that a simulated run replays exactly.
	for _, ip := range slices.Sorted(maps.Keys(s.unsaved)) {
		if s.writing[ip] > 0 {
			continue
		}
		delete(s.unsaved, ip)
		if cur, ok := s.table.Get(ip); ok {
			// Memory holds it already: only the write is redone.
			if ac := s.joinAcks(ip, s.commit.Submit(cur)); ac != nil {
				watch = append(watch, ac)
			}
		}
	}
	s.mu.Unlock()
	for _, ac := range watch {
		s.watchAcks(ac)
	}
}

// Sent implements relation.Bindings: sent, read by Get, is about to be
// written to the link, and the peer may hold it from now on (returnable).
// It returns false, and records nothing, if the binding has changed since
// it was read or is being written: the update is stale and must not go.
func (s *Server) Sent(sent lease.Binding) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.table.Get(sent.IP)
	if !ok || s.writing[sent.IP] > 0 || !sameUpdate(&cur, &sent) {
		return false
	}
	if cur.Pending && !cur.Transmitted {
		cur.Transmitted = true
		s.setLocked(cur)
	}
	return true
}

// sameUpdate reports whether a and b would make the same BNDUPD: every
// field the peer is told of. Acked and Sent compare with it.
func sameUpdate(a, b *lease.Binding) bool {
	return a.State == b.State && a.Start == b.Start && a.End == b.End && a.CLTT == b.CLTT &&
		a.SentExpiry == b.SentExpiry && bytes.Equal(a.ClientID, b.ClientID) && bytes.Equal(a.HWAddr, b.HWAddr)
}

// Transfer implements relation.Bindings: pool balancing moves up to n of
// our free addresses to the peer (never-used ones first), durably.
func (s *Server) Transfer(n int, now int64) []lease.IP {
	to := lease.Backup
	if !s.primary {
		to = lease.Free
	}
	var moves []write
	// A candidate the policy refuses stays in the table (Allocate).
	// A candidate the policy refuses stays in the table (Allocate).
	judge := s.policyAt(now).judge(s.table, "")
	s.mu.Lock()
	for len(moves) < n {
		ip, ok := s.table.Allocate(now, judge)
		if !ok {
			break
		}
		b, had := s.table.Get(ip)
		old := b
		b.IP, b.State, b.Start, b.SentExpiry, b.Pending, b.Transmitted = ip, to, now, now, true, false
		// Not hidden: the session, which asked for the move, announces
		// only what is returned, what is on disk.
		moves = append(moves, s.put(b, old, had, false))
	}
	s.mu.Unlock()
	// Only what is on disk is announced. An address whose write failed
	// stays ours in memory as on disk: left pending in memory, it would
	// reach the peer at the next resync while the disk still had it as
	// ours.
	var moved []lease.IP
	var failed []write
	var err error
	for _, m := range moves {
		if werr := m.batch.Wait(); werr != nil {
			failed = append(failed, m)
			err = cmp.Or(err, werr)
			continue
		}
		moved = append(moved, m.b.IP)
	}
	if len(moves) > 0 {
		s.wrote(err, "pool balance")
	}
	if len(failed) > 0 {
		// Undone oldest first (settleLocked undoes the last first):
		// the addresses, all distinct, go back to the free queue in
		// the order they left it.
		slices.Reverse(failed)
		s.mu.Lock()
		s.settleLocked(failed, func(int) bool { return true })
		s.mu.Unlock()
	}
	return moved
}

// FreeCounts implements relation.Bindings.
func (s *Server) FreeCounts() (own, peer int) {
	s.mu.Lock()
	c := s.table.Counts()
	s.mu.Unlock()
	free, backup := int(c[lease.Free]), int(c[lease.Backup])
	if s.primary {
		return free, backup
	}
	return backup, free
}

// PoolCounts implements relation.Bindings.
func (s *Server) PoolCounts() []lease.PoolCount {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.table.PoolCounts()
}

// PartnerDownEntered implements relation.Bindings. The reuse rule of
// PARTNER-DOWN is computed from the state's start time (partnerDownReuse)
// rather than written into each binding as ISC does; the sweeper opens the
// peer's addresses when MCLT has passed.
func (s *Server) PartnerDownEntered(stos int64) {
	s.mu.Lock()
	s.reopen(s.now().Unix())
	s.mu.Unlock()
}

// LoadState implements relation.Bindings.
func (s *Server) LoadState() (lease.RelState, bool, error) { return s.store.LoadState() }

// SaveState implements relation.Bindings.
func (s *Server) SaveState(st lease.RelState) error { return s.store.SaveState(st) }
