package failover

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// newPairHarness starts a server in a relationship whose view the test
// sets (no session: the test plays the peer through the Bindings methods).
func newPairHarness(t *testing.T, primary bool, split int, state fsm.State) (*harness, *relation.Relationship) {
	t.Helper()
	return newPairHarnessOver(t, primary, split, state, func(m *lease.MemoryStore) lease.Store { return m })
}

// newPairHarnessOver is newPairHarness over the store wrap makes of
// h.store.
func newPairHarnessOver(t *testing.T, primary bool, split int, state fsm.State, wrap func(*lease.MemoryStore) lease.Store) (*harness, *relation.Relationship) {
	t.Helper()
	return newPairHarnessLine(t, primary, split, state, wrap, "name=lan1 db=/unused pool=192.0.2.100-192.0.2.103 lease-time=600")
}

// newPairHarnessLine is newPairHarnessOver for a plugin line of the
// relationship lan1.
func newPairHarnessLine(t *testing.T, primary bool, split int, state fsm.State, wrap func(*lease.MemoryStore) lease.Store, line string) (*harness, *relation.Relationship) {
	t.Helper()
	hba, err := lbhash.FromSplit(split)
	if err != nil {
		t.Fatal(err)
	}
	rel := relation.New("lan1", &relation.View{Primary: primary, MyState: state, PeerState: fsm.Normal,
		Connected: true, Contacted: true, MCLT: 30, HBA: hba, LBMaxSecs: 3, MayServe: state.ServesClients()})
	h := &harness{t: t, store: lease.NewMemoryStore(), clock: &clock{now: time.Unix(1_800_000_000, 0)},
		line: line}
	cfg, err := parse(strings.Fields(h.line), lanAddrs)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadServer(cfg, wrap(h.store), h.clock.Now, rel)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	t.Cleanup(func() { s.commit.Close() })
	return h, rel
}

func leaseOf(t *testing.T, resp *dhcpv4.DHCPv4) time.Duration {
	t.Helper()
	return resp.IPAddressLeaseTime(0)
}

// The MCLT walk-through of docs/protocol.md §16 (as ISC does it with MCLT 30 and
// a 600 s lease): the first lease is MCLT; the update tells the peer
// now+600+15; once the peer acknowledged it, the renewal at half the short
// lease gets the full 600 s and announces now+900.
func TestMCLTWalkThrough(t *testing.T) {
	h, _ := newPairHarness(t, true, 256, fsm.Normal)
	t0 := h.clock.Now().Unix()
	ip := h.offer(1)
	ack := h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip)))
	if lt := leaseOf(t, ack); lt != 30*time.Second {
		t.Fatalf("First lease %v, want the MCLT (30s)", lt)
	}
	b, _ := h.s.Get(mustIP(ip))
	if b.End != t0+30 || b.SentExpiry != t0+615 || !b.Pending {
		t.Fatalf("First lease stored as %+v; want end now+30, potential expiry now+615, pending", b)
	}
	// Before the peer acknowledges, a renewal is still held to MCLT.
	h.clock.Advance(10 * time.Second)
	renew := packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip)))
	if lt := leaseOf(t, h.mustAck(renew)); lt != 30*time.Second {
		t.Fatalf("Renewal before the peer's ack got %v, want 30s", lt)
	}
	b, _ = h.s.Get(mustIP(ip))
	if !h.s.Acked(b, h.clock.Now().Unix()) {
		t.Fatal("Acked refused the binding as sent")
	}
	if b, _ = h.s.Get(mustIP(ip)); b.PeerExpiry != t0+10+615 || b.Pending {
		t.Fatalf("After the ack: %+v", b)
	}
	// Renewal at half the short lease: the full time.
	h.clock.Advance(5 * time.Second)
	now := h.clock.Now().Unix()
	if lt := leaseOf(t, h.mustAck(renew)); lt != 600*time.Second {
		t.Fatalf("Renewal after the ack got %v, want the full 600s", lt)
	}
	if b, _ = h.s.Get(mustIP(ip)); b.End != now+600 || b.SentExpiry != now+900 {
		t.Fatalf("Renewed lease %+v; want end now+600, potential expiry now+900", b)
	}
}

func TestGrantNeverRunsPastMCLTBeyondWhatThePeerKnows(t *testing.T) {
	for _, tc := range []struct {
		desired, now, peer, mclt int64
		want                     int64
	}{
		{desired: 20, now: 100, peer: 0, mclt: 30, want: 20},    // shorter than MCLT
		{desired: 600, now: 100, peer: 0, mclt: 30, want: 30},   // the peer knows nothing
		{desired: 600, now: 100, peer: 100, mclt: 30, want: 30}, // what it knows has ended
		{desired: 600, now: 100, peer: 400, mclt: 30, want: 330},
		{desired: 600, now: 100, peer: 800, mclt: 30, want: 600},
	} {
		got, potential := grant(tc.desired, tc.now, tc.peer, tc.mclt)
		if got != tc.want || potential != tc.now+tc.desired+got/2 {
			t.Errorf("grant(%d at %d, peer %d, mclt %d) = %d, %d; want %d", tc.desired, tc.now, tc.peer, tc.mclt, got, potential, tc.want)
		}
		if got > tc.mclt && tc.now+got > tc.peer+tc.mclt {
			t.Errorf("grant(%+v) runs past peer expiry + MCLT", tc)
		}
	}
}

func TestSecondaryAllocatesOnlyBackupAddresses(t *testing.T) {
	h, _ := newPairHarness(t, false, 0, fsm.Normal) // split 0: the secondary serves every bucket
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	// The primary hands it one address.
	if r, msg, done := h.s.ApplyPeer(lease.Binding{IP: mustIP("192.0.2.102"), State: lease.Backup}, h.clock.Now().Unix()); r != 0 {
		t.Fatalf("ApplyPeer(BACKUP) rejected: %d %s", r, msg)
	} else if err := done.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := h.offer(1); got != "192.0.2.102" {
		t.Fatalf("The secondary offered %s", got)
	}
	// A free address of the primary's is not its to give, even when asked:
	// the primary answers for it.
	h.mustDrop(packet(t, 2, dhcpv4.MessageTypeRequest, requested("192.0.2.100")))
}

func TestLoadBalancingAnswersOnlyOurBuckets(t *testing.T) {
	h, _ := newPairHarness(t, true, 128, fsm.Normal)
	// The secondary has free addresses of its own (else the primary
	// answers its bucket too: TestThePeersBucketIsServedWhenThePeerHasNoFreeAddress).
	if moved := h.s.Transfer(2, h.clock.Now().Unix()); len(moved) != 2 {
		t.Fatalf("Transfer moved %v", moved)
	}
	var mine, theirs int
	for i := 0; i < 64; i++ {
		b := lbhash.Bucket(lbhash.PacketKey(nil, mac(i)))
		resp, _ := h.do(packet(t, i, dhcpv4.MessageTypeDiscover))
		if (resp != nil) != (b < 128) {
			t.Fatalf("Client %d (bucket %d): offered %v", i, b, resp != nil)
		}
		if resp != nil {
			mine++
			// Free the offer: the pool has four addresses.
			h.s.mu.Lock()
			h.s.unholdLocked(clientOf(packet(t, i, dhcpv4.MessageTypeDiscover)).key)
			h.s.mu.Unlock()
		} else {
			theirs++
		}
	}
	if mine == 0 || theirs == 0 {
		t.Fatalf("split=128 answered %d and left %d", mine, theirs)
	}
	// A client that has waited longer than load-balance-max-seconds is
	// answered whatever its bucket.
	for i := 0; i < 64; i++ {
		if lbhash.Bucket(lbhash.PacketKey(nil, mac(i))) >= 128 {
			slow := packet(t, i, dhcpv4.MessageTypeDiscover)
			slow.NumSeconds = 4
			if resp, _ := h.do(slow); resp == nil {
				t.Fatal("A DISCOVER with secs 4 > 3 was not answered")
			}
			break
		}
	}
}

func TestNoServiceInStatesThatServeNoClient(t *testing.T) {
	for _, st := range []fsm.State{fsm.Startup, fsm.Recover, fsm.RecoverWait, fsm.RecoverDone, fsm.PotentialConflict,
		fsm.ResolutionInterrupted, fsm.ConflictDone, fsm.Paused, fsm.Shutdown} {
		h, _ := newPairHarness(t, true, 256, st)
		h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
		h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRequest, requested("192.0.2.100")))
	}
}

func TestPeerUpdatesAreCheckedAsISCChecksThem(t *testing.T) {
	hw := []byte{1, 2, 0, 0, 0, 0, 9}
	for _, tc := range []struct {
		name    string
		primary bool
		local   *lease.Binding
		in      lease.Binding
		want    relation.Reject
	}{
		{name: "Outside the pools", in: lease.Binding{IP: mustIP("192.0.2.50"), State: lease.Active, HWAddr: hw}, want: 1},
		{name: "Active without chaddr", in: lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active}, want: 3},
		{name: "Abandoned with chaddr", in: lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Abandoned, HWAddr: hw}, want: 6},
		{name: "Free to active", primary: true, in: lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: hw, End: 1_800_000_600}},
		{name: "Primary's active lease cannot be expired by the secondary", primary: true,
			local: &lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: hw, End: 1_800_000_600},
			in:    lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Expired, HWAddr: hw}, want: 2},
		{name: "Primary accepts a release", primary: true,
			local: &lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: hw, End: 1_800_000_600},
			in:    lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Released, HWAddr: hw}},
		{name: "Secondary accepts the primary's expiry once the lease has ended",
			local: &lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: hw, End: 1_800_000_000},
			in:    lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Expired, HWAddr: hw}},
		{name: "An address bound to one client is not bound to a second one in NORMAL", primary: true,
			local: &lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: hw, End: 1_800_000_600},
			in:    lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 10}, End: 1_800_000_900}, want: 2},
		{name: "Secondary refuses an early expiry",
			local: &lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: hw, End: 1_800_000_600},
			in:    lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Expired, HWAddr: hw}, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newPairHarness(t, tc.primary, 128, fsm.Normal)
			if tc.local != nil {
				h.s.setLocked(*tc.local)
			}
			r, msg, done := h.s.ApplyPeer(tc.in, h.clock.Now().Unix())
			if r != tc.want {
				t.Fatalf("ApplyPeer = %d (%s), want %d", r, msg, tc.want)
			}
			if r != 0 {
				return
			}
			if err := done.Wait(); err != nil {
				t.Fatal(err)
			}
			b, ok := h.stored(tc.in.IP.String())
			want := tc.in.State
			if want == lease.Expired || want == lease.Released {
				want = lease.Free // both servers agree it is free
			}
			if !ok || b.State != want || b.Pending {
				t.Fatalf("Stored %+v, want state %s and not pending", b, want)
			}
		})
	}
}

// Dueling updates (docs/protocol.md §13.4): both servers changed a binding and
// neither has the other's acknowledgement.
func TestDuelingUpdates(t *testing.T) {
	hw := []byte{1, 2, 0, 0, 0, 0, 9}
	other := []byte{1, 2, 0, 0, 0, 0, 8}
	const now = 1_800_000_000
	for _, tc := range []struct {
		name    string
		primary bool
		local   lease.Binding
		in      lease.Binding
		want    relation.Reject
	}{
		{name: "Our running lease beats the peer's pool transfer",
			local: lease.Binding{State: lease.Active, HWAddr: hw, End: now + 30, Pending: true},
			in:    lease.Binding{State: lease.Backup}, want: 16},
		{name: "Our running lease beats the peer's expiry",
			local: lease.Binding{State: lease.Active, HWAddr: hw, End: now + 30, Pending: true},
			in:    lease.Binding{State: lease.Expired, HWAddr: hw}, want: 16},
		{name: "The peer's lease beats our pool transfer", primary: true,
			local: lease.Binding{State: lease.Backup, Pending: true},
			in:    lease.Binding{State: lease.Active, HWAddr: hw, End: now + 30}},
		{name: "The later client transaction wins", primary: true,
			local: lease.Binding{State: lease.Active, HWAddr: other, End: now + 30, CLTT: now - 5, Pending: true},
			in:    lease.Binding{State: lease.Active, HWAddr: hw, End: now + 30, CLTT: now - 1}},
		{name: "The earlier client transaction loses", primary: true,
			local: lease.Binding{State: lease.Active, HWAddr: other, End: now + 30, CLTT: now - 1, Pending: true},
			in:    lease.Binding{State: lease.Active, HWAddr: hw, End: now + 30, CLTT: now - 5}, want: 16},
		{name: "Both free: the primary's copy wins on the primary", primary: true,
			local: lease.Binding{State: lease.Free, Pending: true},
			in:    lease.Binding{State: lease.Backup}, want: 16},
		{name: "Both free: the primary's copy wins on the secondary",
			local: lease.Binding{State: lease.Backup, Pending: true},
			in:    lease.Binding{State: lease.Free}},
		{name: "One client transaction time: the primary's copy wins on the primary", primary: true,
			local: lease.Binding{State: lease.Active, HWAddr: other, End: now + 30, CLTT: now, Pending: true},
			in:    lease.Binding{State: lease.Active, HWAddr: hw, End: now + 30, CLTT: now}, want: 16},
		{name: "One client transaction time: the primary's copy wins on the secondary",
			local: lease.Binding{State: lease.Active, HWAddr: other, End: now + 30, CLTT: now, Pending: true},
			in:    lease.Binding{State: lease.Active, HWAddr: hw, End: now + 30, CLTT: now}},
		{name: "Our lease ending now beats the peer's expiry (the peer takes our ACTIVE over its EXPIRED)",
			local: lease.Binding{State: lease.Active, HWAddr: hw, End: now, Pending: true},
			in:    lease.Binding{State: lease.Expired, HWAddr: hw}, want: 16},
		{name: "Our ended lease beats the peer's release on the secondary (the primary takes our ACTIVE)",
			local: lease.Binding{State: lease.Active, HWAddr: hw, End: now - 1, Pending: true},
			in:    lease.Binding{State: lease.Released, HWAddr: hw}, want: 16},
		{name: "Our ended lease beats the peer's release on the primary", primary: true,
			local: lease.Binding{State: lease.Active, HWAddr: hw, End: now - 1, Pending: true},
			in:    lease.Binding{State: lease.Released, HWAddr: hw}, want: 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newPairHarness(t, tc.primary, 128, fsm.Normal)
			ip := mustIP("192.0.2.100")
			tc.local.IP, tc.in.IP = ip, ip
			h.s.setLocked(tc.local)
			r, msg, done := h.s.ApplyPeer(tc.in, now)
			if r != tc.want {
				t.Fatalf("ApplyPeer = %d (%s), want %d", r, msg, tc.want)
			}
			if r == 0 {
				if err := done.Wait(); err != nil {
					t.Fatal(err)
				}
				want := tc.in.State
				if want == lease.Expired || want == lease.Released {
					want = lease.Free // both servers agree it is free
				}
				if b, _ := h.s.Get(ip); b.State != want || b.Pending {
					t.Fatalf("After accepting the peer's copy: %+v", b)
				}
			} else if b, _ := h.s.Get(ip); b.State != tc.local.State || !b.Pending {
				t.Fatalf("After refusing the peer's copy: %+v", b)
			}
		})
	}
}

// setState moves the test relationship's view to state, entered at stos.
func setState(rel *relation.Relationship, state fsm.State, stos int64) {
	v := *rel.View()
	v.MyState, v.MyStos, v.MayServe = state, stos, state.ServesClients()
	rel.SetView(&v)
}

// docs/invariants.md, invariant 5: in PARTNER-DOWN the peer's free addresses are used
// only after MCLT has passed since entering it, and the peer's expired
// leases only after their end (and what the peer was promised) plus MCLT.
func TestPartnerDownTakesThePeersAddressesOnlyAfterMCLT(t *testing.T) {
	h, rel := newPairHarness(t, false, 0, fsm.CommInterrupted) // the secondary, with no BACKUP address
	t0 := h.clock.Now().Unix()
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	// An expired lease of the primary's, known to us.
	h.s.setLocked(lease.Binding{IP: mustIP("192.0.2.103"), State: lease.Expired, HWAddr: []byte{1, 2, 0, 0, 0, 0, 7},
		Start: t0 - 100, End: t0 + 40, PeerExpiry: t0 + 50})
	setState(rel, fsm.PartnerDown, t0)
	h.s.Sweep()
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	h.clock.Advance(29 * time.Second)
	h.s.Sweep()
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	// MCLT after entering PARTNER-DOWN: the primary's never-used addresses.
	h.clock.Advance(time.Second)
	h.s.Sweep()
	var got []string
	for i := 1; i <= 3; i++ {
		ip := h.offer(i)
		h.mustAck(packet(t, i, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip)))
		got = append(got, ip)
	}
	if got[0] != "192.0.2.100" || got[2] != "192.0.2.102" {
		t.Fatalf("In PARTNER-DOWN after MCLT the secondary gave %v", got)
	}
	// The expired lease: not before max(end, promised) + MCLT = t0+80.
	want := requested("192.0.2.103")
	h.mustDrop(packet(t, 4, dhcpv4.MessageTypeDiscover, want))
	h.clock.Advance(49 * time.Second) // t0+79
	h.s.Sweep()
	h.mustDrop(packet(t, 4, dhcpv4.MessageTypeDiscover, want))
	h.clock.Advance(time.Second) // t0+80
	h.s.Sweep()
	if ip := h.offer(4, want); ip != "192.0.2.103" {
		t.Fatalf("After end+MCLT the expired lease's address was not reused (offered %s)", ip)
	}
	// Back to COMMUNICATIONS-INTERRUPTED: the primary's addresses close.
	setState(rel, fsm.CommInterrupted, h.clock.Now().Unix())
	h.s.Sweep()
	h.s.mu.Lock()
	h.s.unholdLocked(clientOf(packet(t, 4, dhcpv4.MessageTypeDiscover)).key)
	h.s.mu.Unlock()
	h.mustDrop(packet(t, 5, dhcpv4.MessageTypeDiscover))
}

// docs/invariants.md, invariant 4: in COMMUNICATIONS-INTERRUPTED a server allocates only
// its own addresses, however long it waits.
func TestCommunicationsInterruptedAllocatesOnlyOwnAddresses(t *testing.T) {
	h, _ := newPairHarness(t, true, 256, fsm.CommInterrupted)
	for _, ip := range []string{"192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103"} {
		h.s.setLocked(lease.Binding{IP: mustIP(ip), State: lease.Backup})
	}
	h.clock.Advance(24 * time.Hour)
	h.s.Sweep()
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRequest, requested("192.0.2.100")))
}

// A server restarted while its peer is unreachable may have been declared
// down by the peer: until it reaches the peer it renews its clients'
// leases (within the MCLT rule) but gives no address to a new client.
func TestRestartedWithoutContactOnlyRenews(t *testing.T) {
	h, rel := newPairHarness(t, true, 256, fsm.CommInterrupted)
	ip := h.dora(1)
	v := *rel.View()
	v.Contacted, v.Connected = false, false
	rel.SetView(&v)
	h.mustDrop(packet(t, 2, dhcpv4.MessageTypeDiscover))
	h.mustDrop(packet(t, 2, dhcpv4.MessageTypeRequest, requested("192.0.2.103")))
	h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip))))
	v.Contacted = true
	rel.SetView(&v)
	h.offer(2)
}

// A PARTNER-DOWN saved before a restart may no longer hold: the peer may
// have come back and declared us down. Until contact (or the operator
// declares partner-down again) the server only renews, and does not take
// the peer's addresses.
func TestRestartedInPartnerDownWaitsForContactOrOperator(t *testing.T) {
	h, rel := newPairHarness(t, false, 0, fsm.PartnerDown)
	t0 := h.clock.Now().Unix()
	v := *rel.View()
	v.MyStos, v.Contacted, v.Connected = t0-3600, false, false
	rel.SetView(&v)
	h.s.Sweep()
	h.s.setLocked(lease.Binding{IP: mustIP("192.0.2.103"), State: lease.Backup})
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	// The operator declares partner-down again (a no-op for the state
	// machine: the state's start stays an hour ago). MCLT must pass from
	// the declaration before any address, even our own BACKUP one (the
	// peer may have given it while we were away).
	v.OperatorPartnerDown, v.OperatorPartnerDownAt = true, h.clock.Now().Unix()
	rel.SetView(&v)
	h.s.Sweep()
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	h.clock.Advance(30 * time.Second)
	h.s.Sweep()
	if ip := h.offer(1); ip != "192.0.2.100" && ip != "192.0.2.103" {
		t.Fatalf("MCLT after the operator's word the secondary offered %s", ip)
	}
}

// A secondary that resynchronises (RECOVER, RECOVER-WAIT, RECOVER-DONE)
// does not expire ACTIVE leases: the primary does, and tells it. Found with
// a live ISC primary: our secondary expired the primary's leases during
// RECOVER-WAIT and announced EXPIRED on reaching NORMAL, which dhcpd
// refuses for a lease it still holds ACTIVE ("invalid state transition:
// active to expired", reason 2). In COMMUNICATIONS-INTERRUPTED and
// PARTNER-DOWN, where it may be serving alone, it does expire them.
func TestSecondaryExpiresActiveLeasesOnlyWhenItMayServeAlone(t *testing.T) {
	for _, tc := range []struct {
		state  fsm.State
		expire bool
	}{
		{fsm.Recover, false}, {fsm.RecoverWait, false}, {fsm.RecoverDone, false}, {fsm.Normal, false},
		{fsm.PotentialConflict, false}, {fsm.CommInterrupted, true}, {fsm.PartnerDown, true},
	} {
		t.Run(tc.state.String(), func(t *testing.T) {
			h, _ := newPairHarness(t, false, 128, tc.state)
			t0 := h.clock.Now().Unix()
			ip := mustIP("192.0.2.101")
			h.s.setLocked(lease.Binding{IP: ip, State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 7},
				Start: t0 - 100, End: t0 - 1, PeerExpiry: t0 + 50})
			h.s.Sweep()
			b, _ := h.s.Get(ip)
			if got := b.State == lease.Expired; got != tc.expire {
				t.Fatalf("In %v a secondary's ACTIVE lease past its end is %v after a sweep", tc.state, b.State)
			}
		})
	}
}

// allocatable counts the addresses the server offers to new clients, one
// client each, until it offers none (clients from 1000 up).
func (h *harness) allocatable() int {
	h.t.Helper()
	n := 0
	for ; ; n++ {
		resp, _ := h.do(packet(h.t, 1000+n, dhcpv4.MessageTypeDiscover))
		if resp == nil {
			return n
		}
		if n > 1000 {
			h.t.Fatal("the pool never runs out")
		}
	}
}

// Issue 15, path 5: a primary restarted in PARTNER-DOWN that has not
// reached its peer may not allocate its never-used addresses until MCLT
// after the operator's declaration. A DISCOVER (or a pool-balancing
// transfer) refused in that window must not use up the never-used
// addresses: once the policy allows them, the whole pool is allocatable.
func TestRefusedNeverUsedAddressesAreNotLost(t *testing.T) {
	// The operator declares partner-down; a DISCOVER in the MCLT that
	// follows is refused.
	discover := func(h *harness, rel *relation.Relationship) {
		v := *rel.View()
		v.OperatorPartnerDown, v.OperatorPartnerDownAt = true, h.clock.Now().Unix()
		rel.SetView(&v)
		h.s.Sweep()
		h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
	}
	// Renewals only: pool balancing moves nothing.
	transfer := func(h *harness, rel *relation.Relationship) {
		if moved := h.s.Transfer(4, h.clock.Now().Unix()); len(moved) != 0 {
			t.Fatalf("Renewals only, yet %v were moved to the peer", moved)
		}
	}
	mclt := func(h *harness, rel *relation.Relationship) {
		h.clock.Advance(30 * time.Second)
		h.s.Sweep()
	}
	contact := func(h *harness, rel *relation.Relationship) {
		v := *rel.View()
		v.Contacted, v.Connected = true, true
		rel.SetView(&v)
		h.s.Sweep()
	}
	// Contact, and the state leaves PARTNER-DOWN (the peer's addresses
	// never open).
	contactAndLeave := func(h *harness, rel *relation.Relationship) {
		setState(rel, fsm.CommInterrupted, h.clock.Now().Unix())
		contact(h, rel)
	}
	for _, tc := range []struct {
		name      string
		secondary bool
		// free stores the pool as FREE bindings (used before) rather
		// than never-used addresses.
		free bool
		// refuse runs while the policy refuses never-used addresses;
		// open then makes them allowed.
		refuse, open func(h *harness, rel *relation.Relationship)
	}{
		{"discover-until-mclt", false, false, discover, mclt},
		{"discover-until-contact", false, false, discover, contact},
		{"free-bindings-until-contact", false, true, discover, contactAndLeave},
		{"transfer-until-contact", false, false, transfer, contact},
		{"secondary-discover-until-mclt", true, false, discover, mclt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, rel := newPairHarness(t, !tc.secondary, 256, fsm.PartnerDown)
			t0 := h.clock.Now().Unix()
			if tc.free {
				for ip := mustIP("192.0.2.100"); ip <= mustIP("192.0.2.103"); ip++ {
					h.s.setLocked(lease.Binding{IP: ip, State: lease.Free})
				}
			}
			v := *rel.View()
			v.MyStos, v.Contacted, v.Connected = t0-3600, false, false
			rel.SetView(&v)
			h.s.Sweep()
			tc.refuse(h, rel)
			tc.open(h, rel)
			if n := h.allocatable(); n != 4 {
				t.Fatalf("%d of the pool's 4 addresses are allocatable once the policy allows them", n)
			}
		})
	}
}

// Issue 15, path 6, from the peer: a binding whose chaddr option holds only
// the hardware type, with no client identifier, identifies no client. It
// is stored (the address stays in use until it ends: refusing it would
// leave us thinking the address free) but keyed to no one, so no client of
// ours can take it as its own, before or after a restart.
func TestPeerBindingWithoutClientIdentityBelongsToNoClient(t *testing.T) {
	h, _ := newPairHarness(t, false, 0, fsm.Normal)
	now := h.clock.Now().Unix()
	ip := mustIP("192.0.2.100")
	in := lease.Binding{IP: ip, State: lease.Active, HWAddr: []byte{1}, Start: now, End: now + 600, CLTT: now, PeerExpiry: now + 900}
	r, msg, done := h.s.ApplyPeer(in, now)
	if r != 0 {
		t.Fatalf("ApplyPeer rejected a binding without client identity: %d %s", r, msg)
	}
	if err := done.Wait(); err != nil {
		t.Fatal(err)
	}
	if b, _ := h.s.Get(ip); b.Key() != "" || b.State != lease.Active {
		t.Fatalf("Stored as %v with client key %q, want ACTIVE and no key", b, b.Key())
	}
	h.mustDrop(anonymous(t, 1, dhcpv4.MessageTypeRequest, requested("192.0.2.100")))
	h.mustNak(packet(t, 1, dhcpv4.MessageTypeRequest, requested("192.0.2.100")))
}

// The secondary's never-used addresses are the primary's FREE ones, open to
// it in PARTNER-DOWN only. An offer of one that lapses after PARTNER-DOWN
// ended must not be lost: the next PARTNER-DOWN gives the whole pool
// again (issue 15, path 5, the secondary's side).
func TestSecondaryKeepsALapsedOfferOfThePrimarysAddress(t *testing.T) {
	h, rel := newPairHarness(t, false, 0, fsm.PartnerDown)
	h.clock.Advance(30 * time.Second) // MCLT after entering PARTNER-DOWN
	h.s.Sweep()
	if ip := h.offer(1); ip != "192.0.2.100" {
		t.Fatalf("In PARTNER-DOWN after MCLT the secondary offered %s", ip)
	}
	setState(rel, fsm.CommInterrupted, h.clock.Now().Unix())
	h.s.Sweep()
	h.clock.Advance(time.Minute) // the offer lapses
	h.s.Sweep()
	setState(rel, fsm.PartnerDown, h.clock.Now().Unix())
	h.clock.Advance(30 * time.Second)
	h.s.Sweep()
	if n := h.allocatable(); n != 4 {
		t.Fatalf("%d of the pool's 4 addresses are allocatable in the next PARTNER-DOWN", n)
	}
}

// TestTheOfferOfANewClientIsMCLT: in a relationship a new client's first
// lease is at most MCLT (the peer knows nothing of it yet), and the OFFER
// says so, as the ACK does.
func TestTheOfferOfANewClientIsMCLT(t *testing.T) {
	h, _ := newPairHarness(t, true, 256, fsm.Normal)
	resp, _ := h.do(packet(t, 1, dhcpv4.MessageTypeDiscover))
	if resp == nil || resp.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER answered %v", resp)
	}
	if lt := resp.IPAddressLeaseTime(0); lt != 30*time.Second {
		t.Fatalf("OFFER of %v to a new client, want the MCLT (30s)", lt)
	}
}

// peersClient returns a client number whose hash bucket the secondary
// serves at split=128.
func peersClient(t *testing.T) int {
	t.Helper()
	for i := 0; i < 256; i++ {
		if lbhash.Bucket(lbhash.PacketKey(nil, mac(i))) >= 128 {
			return i
		}
	}
	t.Fatal("no client hashes to the secondary")
	return 0
}

// ISC's exception to load balancing for new clients: when the peer has no
// free address left (pool balancing has not given it any yet), this
// server answers the peer's hash bucket too.
func TestThePeersBucketIsServedWhenThePeerHasNoFreeAddress(t *testing.T) {
	h, _ := newPairHarness(t, true, 128, fsm.Normal)
	n := peersClient(t)
	if resp, _ := h.do(packet(t, n, dhcpv4.MessageTypeDiscover)); resp == nil {
		t.Fatal("the primary, holding every free address, left a client of the secondary's bucket unanswered")
	}
	h.s.mu.Lock()
	h.s.unholdLocked(clientOf(packet(t, n, dhcpv4.MessageTypeDiscover)).key)
	h.s.mu.Unlock()
	h.s.Transfer(1, h.clock.Now().Unix())
	h.mustDrop(packet(t, n, dhcpv4.MessageTypeDiscover))
}

// Lease affinity as ISC applies it: a client of the peer's bucket that
// holds a lease from this server gets its DISCOVER answered here, with
// that lease.
func TestAClientIsAnsweredByTheServerThatHoldsItsLease(t *testing.T) {
	h, _ := newPairHarness(t, true, 128, fsm.Normal)
	h.s.Transfer(2, h.clock.Now().Unix()) // the secondary has free addresses
	n := peersClient(t)
	late := packet(t, n, dhcpv4.MessageTypeDiscover)
	late.NumSeconds = 10 // past load-balance-max-seconds: any server answers
	resp, _ := h.do(late)
	if resp == nil {
		t.Fatal("no OFFER past load-balance-max-seconds")
	}
	ip := resp.YourIPAddr.String()
	h.mustAck(packet(t, n, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip)))
	again, _ := h.do(packet(t, n, dhcpv4.MessageTypeDiscover))
	if again == nil || again.YourIPAddr.String() != ip {
		t.Fatalf("the client's DISCOVER got %v, want an OFFER of its lease %s from the server that holds it", again, ip)
	}
	// A client of the secondary's bucket without a lease here is left
	// to the secondary.
	for m := n + 1; m < 256; m++ {
		if lbhash.Bucket(lbhash.PacketKey(nil, mac(m))) >= 128 {
			h.mustDrop(packet(t, m, dhcpv4.MessageTypeDiscover))
			break
		}
	}
}

// A server restarted while its peer was in PARTNER-DOWN and declared
// partner-down itself, the peer not heard since (stale): a client's lease
// that ended long ago is not the client's any more (the peer may have
// given the address to another client once its end and MCLT had passed),
// as an expired one would not be (simulation seed 1235449).
func TestAStaleServerDoesNotReturnAnEndedLeaseToItsClient(t *testing.T) {
	h, rel := newPairHarness(t, false, 128, fsm.PartnerDown)
	now := h.clock.Now().Unix()
	v := *rel.View()
	v.Contacted, v.OperatorPartnerDown, v.OperatorPartnerDownAt, v.MyStos = false, true, now, now
	rel.SetView(&v)
	c := clientOf(packet(t, 8, dhcpv4.MessageTypeDiscover))
	h.s.mu.Lock()
	h.s.setLocked(lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: c.hwaddr, Start: now - 1200, End: now - 900, CLTT: now - 1200, PeerExpiry: now - 850})
	h.s.mu.Unlock()
	if resp, _ := h.do(packet(t, 8, dhcpv4.MessageTypeDiscover)); resp != nil && resp.YourIPAddr.String() == "192.0.2.100" {
		t.Fatal("the stale server offered the client its lease that ended 900 s ago; the peer may have given it away")
	}
	// Not stale (the peer heard since the restart), the client gets its
	// ended lease back: the peer knows it.
	v.Contacted = true
	rel.SetView(&v)
	if resp, _ := h.do(packet(t, 8, dhcpv4.MessageTypeDiscover)); resp == nil || resp.YourIPAddr.String() != "192.0.2.100" {
		t.Fatalf("offer %v, want 192.0.2.100 back once the peer has been heard", resp)
	}
}
