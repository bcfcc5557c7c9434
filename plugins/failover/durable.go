package failover

import (
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// The durability rule (docs/invariants.md, invariant 2) has one owner,
// this file. A change of a binding that must reach the disk is put in
// memory and submitted to the store together, under s.mu (put); its
// writer waits for the commit without s.mu; a failed write is undone in
// memory, so that memory goes back to what the disk holds, and the
// addresses Get hid while they were written are released (settleLocked);
// then the session is told of them (announce), and reads what the disk
// holds.
//
// Every writer goes through put; they differ in what they wait for and
// what a failure undoes, each for a reason given where it is:
//
//   - a client's change (writeClient: REQUEST, RELEASE, DECLINE) is
//     hidden from the session while written, undone on failure, and
//     announced either way;
//   - a peer's update (ApplyPeer, settlePeer) too, its writes grouped per
//     commit, announced only if the session asked for it meanwhile: the
//     peer sent it and needs only its BNDACK;
//   - pool balancing (Transfer) is undone on failure, not hidden: the
//     session asked for the move and announces only what is on disk;
//   - an expiry (Sweep, settleSweep) is hidden, undone on failure and
//     announced either way, as a client's change: an EXPIRED the peer
//     acknowledged but our disk never held let it free the address and
//     give it to another client, while we, restarted from the disk, still
//     renewed the ended lease (docs/simulation.md, seed 402780);
//   - an acknowledgement (Acked) is neither hidden nor undone: it
//     records what the peer now holds, memory keeps it, and resaveAcks
//     writes it again until a write succeeds (see watchAcks).

// Committer queues bindings for durable writes. The server uses a
// lease.Committer, which writes in groups from a goroutine of its own; a
// driver that must decide when each write ends (the deterministic
// simulation of a pair, in the leasesync tests) gives its own to NewDriven.
type Committer interface {
	// Submit queues b and returns the batch that settles once b is
	// durable or its write has failed.
	Submit(b lease.Binding) *lease.Batch
	// Close writes what is queued and closes the store.
	Close() error
}

// write is one change of a binding submitted to the store: b replaced
// old (had: old existed), and batch settles when b is durable or has
// failed.
type write struct {
	b, old lease.Binding
	had    bool
	batch  *lease.Batch
	// hide: the address counts in writing until the write settles, so
	// that the session does not see b (Get) and a failed write is not
	// answered from it (request).
	hide bool
}

// put puts b in the table, replacing old (had: old existed), and submits
// it for writing. Call with s.mu held; the caller waits for the write
// without it, then settles it (settleLocked).
func (s *Server) put(b, old lease.Binding, had, hide bool) write {
	s.setLocked(b)
	w := write{b: b, old: old, had: had, batch: s.commit.Submit(b), hide: hide}
	if hide {
		s.writing[b.IP]++
	}
	return w
}

// settleLocked ends writes whose batches have settled: failed(i) tells
// whether ws[i] failed. The failed ones are undone, newest first (a
// second change of an address replaced the first, which must come off
// after it), then the hidden ones stop being hidden. It returns the
// addresses the session asked for while they were hidden: they must be
// announced. Call with s.mu held.
func (s *Server) settleLocked(ws []write, failed func(i int) bool) (asked []lease.IP) {
	for i := len(ws) - 1; i >= 0; i-- {
		if failed(i) {
			w := &ws[i]
			s.undoLocked(w.b, w.old, w.had)
		}
	}
	for i := range ws {
		if ws[i].hide && s.doneWriting(ws[i].b.IP) {
			asked = append(asked, ws[i].b.IP)
		}
	}
	return asked
}

// writeClient stores b, a client's change of its address (a lease, a
// release, a decline) that replaces old (had: old existed). Call with s.mu
// held; it returns with s.mu released, once the write has settled.
//
// While the write runs, b is in memory but maybe never on disk: it is
// hidden (write.hide). A failed write puts old back. Either way the
// session is then told of the address, and reads what the disk holds: the
// peer hears of b only once it is durable, and of old again if b failed,
// so that its view matches our disk.
func (s *Server) writeClient(b, old lease.Binding, had bool, what string) error {
	w := []write{s.put(b, old, had, true)}
	s.mu.Unlock()
	err := s.wrote(w[0].batch.Wait(), what)
	s.mu.Lock()
	s.settleLocked(w, func(int) bool { return err != nil })
	s.mu.Unlock()
	s.announce(b.IP)
	return err
}

// settleSweep waits for the sweep's writes ws (submitted hidden, under
// s.mu, which the caller has released) and settles them as writeClient
// does: a failed expiry goes back to the ended binding the disk holds,
// which the next sweep, on its own period, expires again; then the
// session is told of every address, and reads what the disk holds.
func (s *Server) settleSweep(ws []write) {
	if len(ws) == 0 {
		return
	}
	// Several commits may hold them: each write is judged by its own.
	failed := make([]bool, len(ws))
	var err error
	for i := range ws {
		err = ws[i].batch.Wait()
		failed[i] = err != nil
	}
	// The commits settle in order: the last says how the store fares
	// now.
	s.wrote(err, "expired leases")
	ips := make([]lease.IP, len(ws))
	s.mu.Lock()
	s.settleLocked(ws, func(i int) bool { return failed[i] })
	for i := range ws {
		ips[i] = ws[i].b.IP
	}
	s.mu.Unlock()
	s.announce(ips...)
}

// doneWriting ends one write of ip counted in writing. It reports whether
// the session asked for ip while it was hidden (Get): the address must be
// announced. Call with s.mu held.
func (s *Server) doneWriting(ip lease.IP) (asked bool) {
	if s.writing[ip]--; s.writing[ip] <= 0 {
		delete(s.writing, ip)
		// No write of ip is under way: no failure can come to use
		// the record of a failed change it replaced. Left behind
		// (the change that replaced it was stored), such records
		// would pile up until maxSuperseded clears them all, the
		// record of a chain still under way with them.
		delete(s.superseded, ip)
		asked = s.hidden[ip]
		delete(s.hidden, ip)
	}
	return asked
}

// undoLocked puts back the binding a failed write replaced, unless it has
// changed again since. Call with s.mu held.
func (s *Server) undoLocked(b, old lease.Binding, had bool) {
	if !had {
		old = lease.Binding{IP: b.IP, State: lease.Free}
	}
	cur, ok := s.table.Get(b.IP)
	if !ok || !sameBinding(&cur, &b) {
		// Replaced before its write failed: if the write of what
		// replaced it fails too, memory must go back to old, which the
		// disk may hold, rather than to b, which it never did.
		if len(s.superseded) >= maxSuperseded {
			clear(s.superseded)
		}
		s.superseded[b.IP] = undoRecord{b: b, old: old}
		return
	}
	if sup, ok := s.superseded[b.IP]; ok {
		if sameBinding(&old, &sup.b) {
			old = sup.old
		}
		delete(s.superseded, b.IP)
	}
	s.setLocked(old)
}

// undoRecord is a failed change that had been replaced in memory, and
// what it replaced (Server.superseded).
type undoRecord struct {
	b, old lease.Binding
}

// maxSuperseded bounds Server.superseded: it only grows while writes fail
// and one address changes twice before its first write has failed.
const maxSuperseded = 4096

// sameBinding reports whether a and b are the same change of an address.
func sameBinding(a, b *lease.Binding) bool {
	return a.End == b.End && a.State == b.State && a.Key() == b.Key()
}

// settled reports whether b has been written (or has failed) already.
func settled(b *lease.Batch) bool {
	select {
	case <-b.Done():
		return true
	default:
		return false
	}
}
