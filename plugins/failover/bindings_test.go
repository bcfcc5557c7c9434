package failover

import (
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
			s, err := NewServer(h.s.cfg, h.store, h.clock.Now, h.s.rel)
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
