package failover

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// backupFromPeer gives the secondary of h one address, as the primary's
// pool balancing does.
func backupFromPeer(t *testing.T, h *harness, ip string) {
	t.Helper()
	r, msg, done := h.s.ApplyPeer(lease.Binding{IP: mustIP(ip), State: lease.Backup}, h.clock.Now().Unix())
	if r != 0 {
		t.Fatalf("ApplyPeer(BACKUP) rejected: %d %s", r, msg)
	}
	if err := done.Wait(); err != nil {
		t.Fatal(err)
	}
}

// Issue 15, path 2: once the EXPIRED or RELEASED of an address has been
// transmitted, the primary may store it as FREE and give it to another
// client before its BNDACK comes back. From then the secondary must not
// give it back to its old client: only the ownership rules decide. Before
// the transmission the old client gets it back.
func TestExpiredOrReleasedAddressIsNotReturnedOnceTransmitted(t *testing.T) {
	const ip = "192.0.2.102"
	reboot := func(t *testing.T) *dhcpv4.DHCPv4 { return packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip)) }
	for _, tc := range []struct {
		name string
		end  func(h *harness)
	}{
		{"released", func(h *harness) {
			h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP(ip))))
		}},
		{"expired", func(h *harness) {
			setState(h.s.rel, fsm.CommInterrupted, h.clock.Now().Unix())
			h.clock.Advance(time.Minute)
			h.s.Sweep()
		}},
	} {
		setup := func(t *testing.T) *harness {
			h, _ := newPairHarness(t, false, 0, fsm.Normal) // the secondary, serving every bucket
			backupFromPeer(t, h, ip)
			if got := h.dora(1); got != ip {
				t.Fatalf("The secondary gave %s", got)
			}
			tc.end(h)
			if b, _ := h.s.Get(mustIP(ip)); b.State == lease.Active || !b.Pending {
				t.Fatalf("After the end of the lease: %+v", b)
			}
			return h
		}
		t.Run(tc.name+", not yet sent", func(t *testing.T) {
			h := setup(t)
			h.mustAck(reboot(t))
		})
		t.Run(tc.name+", sent", func(t *testing.T) {
			h := setup(t)
			b, _ := h.s.Get(mustIP(ip))
			h.s.Sent(b) // no BNDACK yet
			h.mustDrop(reboot(t))
			h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
		})
		t.Run(tc.name+", loaded from disk", func(t *testing.T) {
			h := setup(t)
			// A crash after the update may have been sent.
			s, err := LoadServer(h.s.cfg, h.store, h.clock.Now, h.s.rel)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.commit.Close() })
			h.s = s
			h.mustDrop(reboot(t))
			h.mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover))
		})
	}
}

// Issue 15, path 3: the peer adopts the potential expiry it receives
// before its BNDACK leaves, and may renew the client up to it plus MCLT.
// If that ack is lost with the link, the survivor in PARTNER-DOWN must
// still wait for what it sent, not only for what was acknowledged.
func TestPartnerDownWaitsForThePotentialExpirySentNotOnlyAcknowledged(t *testing.T) {
	const ip = "192.0.2.100"
	for _, tc := range []struct {
		name string
		// lease runs the first client's leases and returns the latest
		// potential expiry the peer may hold.
		lease func(t *testing.T, h *harness) int64
	}{
		{"first lease, ack lost", func(t *testing.T, h *harness) int64 {
			if got := h.dora(1); got != ip {
				t.Fatalf("Leased %s", got)
			}
			b, _ := h.s.Get(mustIP(ip))
			h.s.Sent(b) // its BNDACK never comes
			return b.SentExpiry
		}},
		{"a shorter renewal after an acknowledged one", func(t *testing.T, h *harness) int64 {
			h.dora(1)
			b, _ := h.s.Get(mustIP(ip))
			if !h.s.Acked(b, h.clock.Now().Unix()) {
				t.Fatal("Acked refused the binding")
			}
			h.clock.Advance(15 * time.Second)
			h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip))))
			b, _ = h.s.Get(mustIP(ip))
			if !h.s.Acked(b, h.clock.Now().Unix()) {
				t.Fatal("Acked refused the binding")
			}
			held := b.SentExpiry // the peer holds this one
			// The client asks for a minute: a shorter potential
			// expiry, whose update is lost.
			h.clock.Advance(5 * time.Minute)
			h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip)),
				dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Minute))))
			return held
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, rel := newPairHarness(t, true, 256, fsm.Normal)
			held := tc.lease(t, h)
			b, _ := h.s.Get(mustIP(ip))
			if held <= b.End {
				t.Fatalf("The test needs a potential expiry (%d) past the lease's end (%d)", held, b.End)
			}
			// The link goes; the operator declares partner-down.
			setState(rel, fsm.CommInterrupted, h.clock.Now().Unix())
			setState(rel, fsm.PartnerDown, h.clock.Now().Unix())
			reuse := held + 30 // the peer may have renewed the client until then
			want := requested(ip)
			for h.clock.Now().Unix() < reuse {
				h.s.Sweep()
				if got := h.offer(2, want); got == ip {
					t.Fatalf("At %d the address went to a new client; the peer's client may hold it until %d",
						h.clock.Now().Unix(), reuse)
				}
				h.s.mu.Lock()
				h.s.unholdLocked(clientOf(packet(t, 2, dhcpv4.MessageTypeDiscover)).key)
				h.s.mu.Unlock()
				h.clock.Advance(10 * time.Second)
			}
			h.clock.Advance(10 * time.Second)
			h.s.Sweep()
			if got := h.offer(2, want); got != ip {
				t.Fatalf("After %d the address was not reused (offered %s)", reuse, got)
			}
		})
	}
}

// gatedStore holds every write until the test lets it go, with the
// error it must fail with (nil: write).
type gatedStore struct {
	lease.Store
	entered chan struct{}
	release chan error
}

func (g *gatedStore) Write(rows []lease.Binding) error {
	g.entered <- struct{}{}
	if err := <-g.release; err != nil {
		return err
	}
	return g.Store.Write(rows)
}

// Issue 15, path 4: a retransmitted REQUEST arrives while the first
// copy's write is still under way (sqlite busy for its 5 s timeout, the
// client retransmitting at about 4 s), and both writes fail. The second
// must not be answered from the first's binding, which was never stored:
// every ACK the server sends is for a binding on disk at that moment.
func TestAFailedWriteIsNeverAnsweredFromABindingNotOnDisk(t *testing.T) {
	h, gs := newGatedHarness(t, smallPool, nil)
	ip := h.offer(1)
	req := packet(t, 1, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip))
	type answer struct {
		resp *dhcpv4.DHCPv4
		at   int
	}
	answers := make(chan answer, 2)
	send := func(copy int) {
		go func() {
			resp, _ := h.do(req)
			answers <- answer{resp, copy}
		}()
	}
	send(1)
	<-gs.entered // the first copy's write is under way
	h.clock.Advance(4 * time.Second)
	send(2)
	// The retransmission's binding is in memory, so its write is queued.
	h.waitInMemory(mustIP(ip), h.clock.Now().Unix()+3600)
	busy := errors.New("database is locked")
	gs.release <- busy
	<-gs.entered
	gs.release <- busy
	for range 2 {
		a := <-answers
		if a.resp == nil {
			continue
		}
		b, ok := h.stored(ip)
		t.Fatalf("Copy %d of the REQUEST got %s %s; on disk: %v %+v", a.at, a.resp.MessageType(), a.resp.YourIPAddr, ok, b)
	}
}

// Issue 15, suspicion: a broadcast REQUEST answered by both servers with
// different lease times. The client keeps whichever ACK came first, so
// the binding both servers agree on must run to the later end, whatever
// the order of the client transactions. On each side, the duel keeps the
// later end.
func TestADuelOverOneClientKeepsTheLaterEnd(t *testing.T) {
	hw := []byte{1, 2, 0, 0, 0, 0, 9}
	const now = 1_800_000_000
	long := lease.Binding{State: lease.Active, HWAddr: hw, End: now + 600, CLTT: now, Pending: true}
	short := lease.Binding{State: lease.Active, HWAddr: hw, End: now + 300, CLTT: now + 1, Pending: true}
	for _, primary := range []bool{true, false} {
		for _, side := range []struct {
			name      string
			local, in lease.Binding
		}{
			{"this server gave the longer lease", long, short},
			{"the peer gave the longer lease", short, long},
		} {
			t.Run(fmt.Sprintf("primary %v, %s", primary, side.name), func(t *testing.T) {
				h, _ := newPairHarness(t, primary, 128, fsm.Normal)
				ip := mustIP("192.0.2.100")
				side.local.IP, side.in.IP = ip, ip
				side.in.Pending = false
				h.s.setLocked(side.local)
				if r, _, done := h.s.ApplyPeer(side.in, now); r == 0 {
					if err := done.Wait(); err != nil {
						t.Fatal(err)
					}
				}
				if b, _ := h.s.Get(ip); b.End != now+600 {
					t.Fatalf("Kept %s (end %d); the client may hold a lease until %d", b, b.End, now+600)
				}
			})
		}
	}
}

// Issue 15, suspicion: an ACTIVE lease with End 0 is ISC's infinite
// lease. It must not count as ended: not in the check that refuses a
// second client in NORMAL, nor in the secondary's check of the
// primary's EXPIRED.
func TestAnInfiniteLeaseNeverCountsAsEnded(t *testing.T) {
	hw := []byte{1, 2, 0, 0, 0, 0, 9}
	infinite := lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: hw}
	for _, tc := range []struct {
		name    string
		primary bool
		in      lease.Binding
	}{
		{"a second client in NORMAL", true,
			lease.Binding{IP: infinite.IP, State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 10}, End: 1_800_000_600}},
		{"the primary's expiry, on the secondary", false,
			lease.Binding{IP: infinite.IP, State: lease.Expired, HWAddr: hw}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newPairHarness(t, tc.primary, 128, fsm.Normal)
			h.s.setLocked(infinite)
			if r, msg, _ := h.s.ApplyPeer(tc.in, h.clock.Now().Unix()); r != rejectConflict {
				t.Fatalf("ApplyPeer = %d (%s), want %d: the lease never ends", r, msg, rejectConflict)
			}
		})
	}
}

// A server restarted in PARTNER-DOWN that has not heard its peer since
// (stale) must not give an expired lease back to its old client at once,
// even though the EXPIRED never left: while it was away the peer, in
// PARTNER-DOWN itself, may have given the address to another client (it
// never heard of this lease: the update was lost with the link). Only the
// reuse rules decide, MCLT after the operator's declaration. Found by the
// simulation of the pair (docs/simulation.md).
func TestAStaleServerGivesAnExpiredLeaseBackOnlyByTheReuseRules(t *testing.T) {
	h, rel := newPairHarness(t, true, 256, fsm.Normal)
	ip := h.dora(1)
	// The lease runs out while the link is down, then the process
	// restarts and the operator declares partner-down: stale.
	h.clock.Advance(time.Hour)
	now := h.clock.Now().Unix()
	v := *rel.View()
	v.MyState, v.MyStos, v.MayServe = fsm.PartnerDown, now, true
	v.Contacted, v.Connected = false, false
	v.OperatorPartnerDown, v.OperatorPartnerDownAt = true, now
	rel.SetView(&v)
	h.s.Sweep()
	if b, _ := h.s.Get(mustIP(ip)); b.State != lease.Expired || b.Transmitted {
		t.Fatalf("After the sweep: %+v", b)
	}
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip)))
	h.clock.Advance(time.Duration(v.MCLT+1) * time.Second)
	h.s.Sweep()
	h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip)))
}
