package failover

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// TestWhatEachStateDoesForClients is the table of issue 5: for both roles,
// every failover state, and each client situation, what the server does.
// The pool is .100-.103: .100 is bound to client "bound"; .101 and .102 are
// this server's free addresses; .103 is a free address of the peer's.
func TestWhatEachStateDoesForClients(t *testing.T) {
	// Two new clients: ours hashes into the primary's half of split=128,
	// theirs into the secondary's.
	ours, theirs := -1, -1
	for i := 10; ours < 0 || theirs < 0; i++ {
		switch primaryHalf := lbhash.Bucket(lbhash.PacketKey(nil, mac(i))) < 128; {
		case primaryHalf && ours < 0:
			ours = i
		case !primaryHalf && theirs < 0:
			theirs = i
		}
	}
	const bound = 1
	type situation struct {
		name string
		// want: "offer", "ack", "nak", "drop"
		want func(st fsm.State, primary, afterMCLT bool) string
		do   func(h *harness, primary bool) *dhcpv4.DHCPv4
	}
	serving := func(st fsm.State) bool { return st.ServesClients() }
	situations := []situation{
		{name: "DISCOVER from a new client of our hash bucket",
			want: func(st fsm.State, _, _ bool) string {
				return map[bool]string{true: "offer", false: "drop"}[serving(st)]
			},
			do: func(h *harness, primary bool) *dhcpv4.DHCPv4 {
				return packet(h.t, clientFor(primary, ours, theirs), dhcpv4.MessageTypeDiscover)
			}},
		{name: "DISCOVER from a new client of the peer's hash bucket",
			want: func(st fsm.State, _, _ bool) string {
				if serving(st) && st != fsm.Normal {
					return "offer" // outside NORMAL every client that reaches us
				}
				return "drop"
			},
			do: func(h *harness, primary bool) *dhcpv4.DHCPv4 {
				return packet(h.t, clientFor(!primary, ours, theirs), dhcpv4.MessageTypeDiscover)
			}},
		{name: "RENEWING of the client's lease",
			want: func(st fsm.State, _, _ bool) string { return map[bool]string{true: "ack", false: "drop"}[serving(st)] },
			do: func(h *harness, _ bool) *dhcpv4.DHCPv4 {
				return packet(h.t, bound, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("192.0.2.100")))
			}},
		{name: "INIT-REBOOT of a new client for the peer's free address",
			want: func(st fsm.State, _, afterMCLT bool) string {
				if st == fsm.PartnerDown && afterMCLT {
					return "ack"
				}
				return "drop" // not ours to give, nobody's to refuse
			},
			do: func(h *harness, primary bool) *dhcpv4.DHCPv4 {
				return packet(h.t, clientFor(primary, ours, theirs), dhcpv4.MessageTypeRequest, requested("192.0.2.103"))
			}},
		{name: "INIT-REBOOT of a new client for the bound address",
			want: func(st fsm.State, _, _ bool) string { return map[bool]string{true: "nak", false: "drop"}[serving(st)] },
			do: func(h *harness, primary bool) *dhcpv4.DHCPv4 {
				return packet(h.t, clientFor(primary, ours, theirs), dhcpv4.MessageTypeRequest, requested("192.0.2.100"))
			}},
	}
	states := []fsm.State{fsm.Startup, fsm.Normal, fsm.CommInterrupted, fsm.PartnerDown, fsm.PotentialConflict,
		fsm.Recover, fsm.RecoverWait, fsm.RecoverDone, fsm.ResolutionInterrupted, fsm.ConflictDone, fsm.Paused, fsm.Shutdown}
	for _, primary := range []bool{true, false} {
		for _, st := range states {
			for _, afterMCLT := range []bool{false, true} {
				if afterMCLT && st != fsm.PartnerDown {
					continue
				}
				for _, sit := range situations {
					name := fmt.Sprintf("%s/%s/after-MCLT=%v/%s", map[bool]string{true: "primary", false: "secondary"}[primary], st, afterMCLT, sit.name)
					t.Run(name, func(t *testing.T) {
						h, rel := newPairHarness(t, primary, 128, fsm.Normal)
						now := h.clock.Now().Unix()
						ownFree, peerFree := lease.Backup, lease.Free
						if primary {
							ownFree, peerFree = lease.Free, lease.Backup
						}
						h.s.setLocked(lease.Binding{IP: mustIP("192.0.2.100"), State: lease.Active, HWAddr: append([]byte{1}, mac(bound)...),
							Start: now, End: now + 600, PeerExpiry: now + 900})
						h.s.setLocked(lease.Binding{IP: mustIP("192.0.2.101"), State: ownFree})
						h.s.setLocked(lease.Binding{IP: mustIP("192.0.2.102"), State: ownFree})
						h.s.setLocked(lease.Binding{IP: mustIP("192.0.2.103"), State: peerFree})
						stos := now
						if afterMCLT {
							stos = now - 60
						}
						setState(rel, st, stos)
						h.s.Sweep()
						req := sit.do(h, primary)
						resp, _ := h.do(req)
						got := "drop"
						if resp != nil {
							switch resp.MessageType() {
							case dhcpv4.MessageTypeOffer:
								got = "offer"
							case dhcpv4.MessageTypeAck:
								got = "ack"
							case dhcpv4.MessageTypeNak:
								got = "nak"
							}
						}
						if want := sit.want(st, primary, afterMCLT); got != want {
							t.Fatalf("Got %s, want %s", got, want)
						}
						if got == "offer" || got == "ack" {
							// Whatever is given is ours to give, and held to MCLT.
							b, _ := h.s.table.Get(mustIP(resp.YourIPAddr.String()))
							if resp.YourIPAddr.String() == "192.0.2.103" && !(st == fsm.PartnerDown && afterMCLT) {
								t.Fatalf("Gave the peer's free address %s in %s", resp.YourIPAddr, st)
							}
							if lt := resp.IPAddressLeaseTime(0); lt > 30*time.Second && lt > time.Duration(b.PeerExpiry+30-now)*time.Second {
								t.Fatalf("Lease of %v for %s runs past the MCLT bound (peer knows %d, now %d)", lt, resp.YourIPAddr, b.PeerExpiry, now)
							}
						}
					})
				}
			}
		}
	}
}

// clientFor picks the new client whose hash bucket the given role serves.
func clientFor(primary bool, ours, theirs int) int {
	if primary {
		return ours
	}
	return theirs
}
