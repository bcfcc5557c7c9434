package failover

import (
	"errors"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// The tests here hold rules of ApplyPeer, the check and storage of the
// peer's binding updates, that mutants of make mutate showed no test held
// (see "Mutation testing" in the README).

// applied runs ApplyPeer and waits for the update to be durable; it
// returns the reject reason (0: stored).
func applied(t *testing.T, h *harness, in lease.Binding) relation.Reject {
	t.Helper()
	r, _, done := h.s.ApplyPeer(in, h.clock.Now().Unix())
	if r == 0 {
		if err := done.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// TestAbandonedFromThePeerCarriesNoClient: ISC refuses an update to
// ABANDONED that names a client (a hardware address or a client
// identifier) and accepts one that does not.
func TestAbandonedFromThePeerCarriesNoClient(t *testing.T) {
	h, _ := newPairHarness(t, false, 128, fsm.Normal)
	ip := mustIP("192.0.2.100")
	if r := applied(t, h, lease.Binding{IP: ip, State: lease.Abandoned}); r != 0 {
		t.Fatalf("ABANDONED without a client rejected: %d", r)
	}
	if r := applied(t, h, lease.Binding{IP: ip, State: lease.Abandoned, HWAddr: []byte{1, 2, 0, 0, 0, 0, 1}}); r != rejectOther {
		t.Fatalf("ABANDONED with a CHADDR: reason %d, want %d", r, rejectOther)
	}
	if r := applied(t, h, lease.Binding{IP: ip, State: lease.Abandoned, ClientID: []byte{1}}); r != rejectOther {
		t.Fatalf("ABANDONED with a client-id: reason %d, want %d", r, rejectOther)
	}
}

// TestThePeersCLTTIsNotStored: the cltt of a binding is when this server
// last heard from the client, and it decides later duels. The peer's cltt
// is not stored: the same client's binding keeps ours, another client's
// has none.
func TestThePeersCLTTIsNotStored(t *testing.T) {
	h, _ := newPairHarness(t, false, 128, fsm.Normal)
	now := h.clock.Now().Unix()
	hw := []byte{1, 2, 0, 0, 0, 0, 1}
	ip := mustIP("192.0.2.100")
	h.s.setLocked(lease.Binding{IP: ip, State: lease.Active, HWAddr: hw, Start: now - 50, End: now + 550, CLTT: now - 50})
	if r := applied(t, h, lease.Binding{IP: ip, State: lease.Active, HWAddr: hw, Start: now - 10, End: now + 590, CLTT: now - 10}); r != 0 {
		t.Fatalf("The same client's renewal by the peer rejected: %d", r)
	}
	if b, _ := h.s.table.Get(ip); b.CLTT != now-50 || b.End != now+590 {
		t.Fatalf("After the peer's renewal: cltt %d, end %d; want our cltt %d and the peer's end %d", b.CLTT, b.End, now-50, now+590)
	}
	other := mustIP("192.0.2.101")
	if r := applied(t, h, lease.Binding{IP: other, State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 2}, End: now + 600, CLTT: now - 10}); r != 0 {
		t.Fatalf("A new client's lease from the peer rejected: %d", r)
	}
	if b, _ := h.s.table.Get(other); b.CLTT != 0 {
		t.Fatalf("A new client's lease from the peer stored with cltt %d, want none", b.CLTT)
	}
}

// TestTheSecondaryTakesThePrimarysExpiryWithin65s: in NORMAL the
// secondary accepts EXPIRED for a running lease from the primary only when
// the lease ends within 65 s (ISC's allowance for the clocks); earlier, it
// would free an address the client still holds.
func TestTheSecondaryTakesThePrimarysExpiryWithin65s(t *testing.T) {
	hw := []byte{1, 2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		left int64
		want relation.Reject
	}{{65, 0}, {66, rejectConflict}} {
		h, _ := newPairHarness(t, false, 128, fsm.Normal)
		now := h.clock.Now().Unix()
		ip := mustIP("192.0.2.100")
		h.s.setLocked(lease.Binding{IP: ip, State: lease.Active, HWAddr: hw, Start: now - 500, End: now + c.left})
		if r := applied(t, h, lease.Binding{IP: ip, State: lease.Expired, HWAddr: hw, End: now + c.left}); r != c.want {
			t.Errorf("EXPIRED for a lease ending in %ds: reason %d, want %d", c.left, r, c.want)
		}
	}
}

// TestAPeerUpdateIsAcknowledgedOnlyWhenItsOwnCommitIsDurable: the peer's
// updates that share a commit share one watcher, and an update in a later
// commit gets its own. Two updates in two commits, the first written and
// the second failed: the second's BNDACK must carry the failure (the peer
// sends it again), not the first commit's success. While an update is
// being written its address counts as being written (so no client is
// answered from it).
func TestAPeerUpdateIsAcknowledgedOnlyWhenItsOwnCommitIsDurable(t *testing.T) {
	hba, err := lbhash.FromSplit(128)
	if err != nil {
		t.Fatal(err)
	}
	rel := relation.New("lan1", &relation.View{MyState: fsm.Normal, PeerState: fsm.Normal,
		Connected: true, Contacted: true, MCLT: 30, HBA: hba, LBMaxSecs: 3, MayServe: true})
	h, gs := newGatedHarness(t, "name=lan1 db=/unused pool=192.0.2.100-192.0.2.103 lease-time=600", rel)
	now := h.clock.Now().Unix()
	u1 := lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 1}, End: now + 600}
	u2 := lease.Binding{IP: mustIP("192.0.2.101"), State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 2}, End: now + 600}

	r, msg, done1 := h.s.ApplyPeer(u1, now)
	if r != 0 {
		t.Fatalf("First update rejected: %d %s", r, msg)
	}
	<-gs.entered // the first commit is being written
	h.s.mu.Lock()
	writing := h.s.writing[u1.IP]
	h.s.mu.Unlock()
	if writing <= 0 {
		t.Errorf("While the peer's update is written its address counts %d writes, want 1", writing)
	}
	r, msg, done2 := h.s.ApplyPeer(u2, now)
	if r != 0 {
		t.Fatalf("Second update rejected: %d %s", r, msg)
	}
	gs.release <- nil
	if err := done1.Wait(); err != nil {
		t.Fatalf("First update: %v", err)
	}
	<-gs.entered // the second commit
	gs.release <- errors.New("disk full")
	if err := done2.Wait(); err == nil {
		t.Fatal("The second update would be acknowledged although its commit failed")
	}
	if b, ok := h.s.table.Get(u2.IP); ok && b.State == lease.Active {
		t.Fatalf("The failed update stays in memory: %s", b)
	}
}

// TestThePeersStateTransitions: ISC's check of the binding changes the
// peer announces (docs/protocol.md §13.3), case by case. Outside NORMAL the
// peer may have served alone: any change of a binding that is not ACTIVE
// is taken; of an ACTIVE one, not FREE or BACKUP, and EXPIRED only within
// 65 s of its end. In NORMAL the secondary takes FREE or BACKUP for an
// ACTIVE lease only once the peer's potential expiry has passed, and
// never FREE or BACKUP for an EXPIRED or RESET address the peer may still
// hold.
func TestThePeersStateTransitions(t *testing.T) {
	const now = 1_800_000_000
	hw := []byte{1, 2, 0, 0, 0, 0, 1}
	active := func(until int64) lease.Binding {
		return lease.Binding{State: lease.Active, HWAddr: hw, End: until}
	}
	to := func(st lease.State, peerExpiry int64) lease.Binding {
		return lease.Binding{State: st, HWAddr: hw, PeerExpiry: peerExpiry}
	}
	for _, c := range []struct {
		name    string
		primary bool
		normal  bool
		cur, in lease.Binding
		refused bool
	}{
		{"apart: a free address becomes anything", false, false, lease.Binding{State: lease.Free}, to(lease.Active, 0), false},
		{"apart: an active lease is not freed", false, false, active(now + 600), to(lease.Free, 0), true},
		{"apart: an active lease is not given back", true, false, active(now + 600), to(lease.Backup, 0), true},
		{"apart: expired 66 s early", false, false, active(now + 66), to(lease.Expired, 0), true},
		{"apart: expired 65 s early", false, false, active(now + 65), to(lease.Expired, 0), false},
		{"apart: released", false, false, active(now + 600), to(lease.Released, 0), false},
		{"normal: the secondary frees an active lease the peer no longer promises", false, true, active(now + 600), to(lease.Free, now), false},
		{"normal: the secondary keeps an active lease the peer still promises", false, true, active(now + 600), to(lease.Free, now+1), true},
		{"normal: the primary keeps its active lease", true, true, active(now + 600), to(lease.Free, now), true},
		{"normal: expired, freed once the peer's promise passed", false, true, lease.Binding{State: lease.Expired}, to(lease.Free, now), false},
		{"normal: expired, not freed while the peer may hold it", true, true, lease.Binding{State: lease.Expired}, to(lease.Backup, now+1), true},
		{"normal: reset, not freed while the peer may hold it", false, true, lease.Binding{State: lease.Reset}, to(lease.Free, now+1), true},
	} {
		h, _ := newPairHarness(t, c.primary, 128, fsm.Normal)
		r, why := h.s.transition(&c.cur, &c.in, c.normal, now)
		if refused := r != 0; refused != c.refused {
			t.Errorf("%s: reason %d (%s), want refused %v", c.name, r, why, c.refused)
		}
	}
}

// TestThePeersUpdateMustBeatEachOfOursInFlight: a secondary whose
// renewal (ACTIVE) and then ABANDONED of an address are both in flight
// refuses the primary's BACKUP of it with reason 16: at the primary our
// ACTIVE beats that BACKUP, and our ABANDONED follows without a duel.
// Judged against the ABANDONED alone, the primary's copy would win here
// and the servers would part (docs/simulation.md, seed 40775). With only
// the ABANDONED in flight the primary's copy wins, as in ISC.
func TestThePeersUpdateMustBeatEachOfOursInFlight(t *testing.T) {
	h, _ := newPairHarness(t, false, 128, fsm.Normal)
	now := h.clock.Now().Unix()
	ip := mustIP("192.0.2.100")
	renewed := lease.Binding{IP: ip, State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 1}, Start: now - 1, End: now + 59, CLTT: now - 1, SentExpiry: now + 330, Pending: true}
	abandoned := lease.Binding{IP: ip, State: lease.Abandoned, Start: now, End: now + 120, CLTT: now, SentExpiry: now + 330, Pending: true}
	backup := lease.Binding{IP: ip, State: lease.Backup, PeerExpiry: now - 2}
	h.s.setLocked(abandoned)
	if r, _, _ := h.s.ApplyPeer(backup, now, renewed, abandoned); r != rejectLessCritical {
		t.Fatalf("The primary's BACKUP crossing our ACTIVE: reason %d, want %d", r, rejectLessCritical)
	}
	if b, _ := h.s.table.Get(ip); b.State != lease.Abandoned {
		t.Fatalf("After the refused BACKUP the address is %s", b.State)
	}
	r, _, done := h.s.ApplyPeer(backup, now, abandoned)
	if r != 0 {
		t.Fatalf("The primary's BACKUP against our ABANDONED alone: reason %d, want it accepted", r)
	}
	if err := done.Wait(); err != nil {
		t.Fatal(err)
	}
}
