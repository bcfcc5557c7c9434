//go:build integration

package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A mixed failover pair: coredhcp-failover and ISC dhcpd 4.4 (Debian's
// isc-dhcp-server) on the lab LAN, the primary at 192.0.2.1 and the
// secondary at 192.0.2.2, relationship "isc", TCP 647 between them.
const (
	iscRel      = "isc"
	iscPrimary  = "192.0.2.1"
	iscSecond   = "192.0.2.2"
	iscFirst    = "192.0.2.100"
	iscLast     = "192.0.2.139"
	iscMCLT     = 30
	iscLease    = 600
	iscMaxDelay = 10
)

type iscPair struct {
	t        *testing.T
	lab      *Lab
	ours     *Server
	isc      *Dhcpd
	oursRole string // "primary" or "secondary"
	sock     string // our control socket
	clients  []Client
}

// iscOptions tunes a pair; the zero value is the standard one.
type iscOptions struct {
	leasesync string // extra leasesync arguments for our server
	dhcpd     func(*DhcpdOptions)
}

// newISCPair starts our server in role oursRole and dhcpd in the other one,
// and waits until both are NORMAL.
func newISCPair(t *testing.T, prefix, oursRole string, o iscOptions) *iscPair {
	t.Helper()
	RequireTools(t, "dhcpd", "sqlite3", "udhcpc", "dhclient")
	lab := NewLab(t, prefix)
	pn := lab.AddNode("p", iscPrimary+"/24")
	sn := lab.AddNode("s", iscSecond+"/24")
	p := &iscPair{t: t, lab: lab, oursRole: oursRole, sock: filepath.Join(lab.Dir, "ours.sock")}
	ourNode, iscNode := pn, sn
	me, peer, iscRole := iscPrimary, iscSecond, "secondary"
	if oursRole == "secondary" {
		ourNode, iscNode = sn, pn
		me, peer, iscRole = iscSecond, iscPrimary, "primary"
	}
	ls := fmt.Sprintf("leasesync: name=%s role=%s address=%s peer=%s max-response-delay=%d max-unacked-updates=10 load-balance-max-seconds=3 control=%s",
		iscRel, oursRole, me, peer, iscMaxDelay, p.sock)
	if oursRole == "primary" {
		ls += fmt.Sprintf(" mclt=%d split=128", iscMCLT)
	}
	if o.leasesync != "" {
		ls += " " + o.leasesync
	}
	do := DhcpdOptions{Name: iscRel, Role: iscRole, Address: peer, Peer: me, MCLT: iscMCLT, Split: 128,
		MaxResponseDelay: iscMaxDelay, MaxUnacked: 10, LBMaxSeconds: 3, First: iscFirst, Last: iscLast,
		DefaultLease: iscLease}
	if o.dhcpd != nil {
		o.dhcpd(&do)
	}
	// dhcpd first: our server finds its peer listening and the handshake
	// starts at once.
	p.isc = StartDhcpd(iscNode, do)
	p.ours = StartServer(ourNode, ServerOptions{
		Before:   []string{ls},
		Failover: fmt.Sprintf("name=%s pool=%s-%s lease-time=%d", iscRel, iscFirst, iscLast, iscLease),
		Plugins:  LANPlugins,
	})
	lab.OnFailure(func() {
		for _, c := range p.clients {
			t.Logf("--- events of %s %s (%s):\n%s", c.Kind(), c.Name(), c.HW(), formatEvents(c.Events()))
		}
		t.Logf("--- dhcpd state moves: %v; peer moves: %v", p.isc.Moves(), p.isc.PeerMoves())
	})
	p.waitNormal(30 * time.Second)
	return p
}

// waitNormal waits until both servers say they are NORMAL.
func (p *iscPair) waitNormal(timeout time.Duration) {
	p.t.Helper()
	p.waitStates(timeout, "normal", "normal")
}

// waitStates waits until our server is in ours and dhcpd in isc ("" for
// either: don't care).
func (p *iscPair) waitStates(timeout time.Duration, ours, isc string) {
	p.t.Helper()
	start := time.Now()
	err := Eventually(timeout, func() error {
		if ours != "" {
			if mine, _ := p.ours.FailoverState(); mine != ours {
				return fmt.Errorf("our server is %q, want %q", mine, ours)
			}
		}
		if isc != "" {
			if st := p.isc.State(); st != isc {
				return fmt.Errorf("dhcpd is %q, want %q", st, isc)
			}
		}
		return nil
	})
	if err != nil {
		p.t.Fatalf("Waiting %v for ours=%q dhcpd=%q: %v\ndhcpd moves: %v", timeout, ours, isc, err, p.isc.Moves())
	}
	p.t.Logf("ours=%q dhcpd=%q after %v", ours, isc, time.Since(start).Round(time.Millisecond))
}

// serverOf names the server that has address sid ("ours" or "dhcpd").
func (p *iscPair) serverOf(sid string) string {
	if (sid == iscPrimary) == (p.oursRole == "primary") {
		return "ours"
	}
	return "dhcpd"
}

// addClients starts nu udhcpc and nd dhclient clients and waits until each
// is bound; it returns their binding events.
func (p *iscPair) addClients(tag string, nu, nd int) map[Client]Event {
	p.t.Helper()
	var cs []Client
	for i := 0; i < nu+nd; i++ {
		name := fmt.Sprintf("%s%d", tag, i)
		n := p.lab.AddNode(name)
		if i < nu {
			cs = append(cs, NewUdhcpc(n, name))
		} else {
			cs = append(cs, NewDhclient(n, name))
		}
	}
	for _, c := range cs {
		c.Start()
	}
	p.clients = append(p.clients, cs...)
	out := map[Client]Event{}
	for _, c := range cs {
		out[c] = c.WaitBound(0, 30*time.Second)
	}
	return out
}

// checkLeasesOnBoth waits until every client's binding is ACTIVE in our
// database and in dhcpd's lease file, for its hardware address, and both
// agree on its end (within 2 s). That end is at least the one the client
// was told and at most a full lease time after it was bound: a broadcast
// REQUEST can be ACKed by both servers (dhcpd answers one that names the
// other server when the binding is already ACTIVE for that client, see
// dhcprequest() in ISC's server/dhcp.c), and the client keeps the first
// ACK while the databases keep the later one.
func (p *iscPair) checkLeasesOnBoth(bound map[Client]Event) {
	p.t.Helper()
	err := Eventually(10*time.Second, func() error {
		ours, err := ReadDBRecords(p.ours.DB)
		if err != nil {
			return err
		}
		theirs, err := ReadISCLeases(p.isc.Leases)
		if err != nil {
			return err
		}
		o, i := RecordsByIP(ours), RecordsByIP(theirs)
		for c, ev := range bound {
			for _, side := range []struct {
				name string
				recs map[string]LeaseRecord
			}{{"our DB", o}, {"dhcpd's lease file", i}} {
				r, ok := side.recs[ev.IP]
				switch {
				case !ok:
					return fmt.Errorf("%s has no record of %s, bound by %s %s", side.name, ev.IP, c.Kind(), c.Name())
				case r.State != "active" || r.HWAddr != c.HW().String():
					return fmt.Errorf("%s has %v; %s %s (%s) is bound to it", side.name, r, c.Kind(), c.Name(), c.HW())
				case r.End < ev.Ends().Unix()-3 || r.End > ev.At+iscLease+3:
					return fmt.Errorf("%s has %v; %s was told %v", side.name, r, c.Name(), ev)
				case r.Start > ev.At+1 || r.Start < ev.At-3:
					return fmt.Errorf("%s has %v starting at %d; %s was bound at %d", side.name, r, r.Start, c.Name(), ev.At)
				}
			}
			if d := o[ev.IP].End - i[ev.IP].End; abs(d) > 2 {
				return fmt.Errorf("the ends of %s differ by %ds:\n  ours:  %v\n  dhcpd: %v", ev.IP, d, o[ev.IP], i[ev.IP])
			}
		}
		return nil
	})
	if err != nil {
		p.t.Fatalf("Leases on both sides: %v", err)
	}
}

// checkNoDoubleBinding fails if an address is bound to two clients across
// our database and dhcpd's lease file.
func (p *iscPair) checkNoDoubleBinding() {
	p.t.Helper()
	ours, err := ReadDBRecords(p.ours.DB)
	if err != nil {
		p.t.Fatal(err)
	}
	theirs, err := ReadISCLeases(p.isc.Leases)
	if err != nil {
		p.t.Fatal(err)
	}
	if bad := BoundTwice(time.Now().Unix(), ours, theirs); len(bad) > 0 {
		p.t.Fatalf("Addresses bound twice:\n%s", strings.Join(bad, "\n"))
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// Both role combinations reach NORMAL; a lease granted by either server is
// in the other's database with its state and times; dhcpd never complains
// about what we send.
func TestISCPeerNormalAndLeases(t *testing.T) {
	for _, tc := range []struct{ prefix, ours string }{{"isa", "primary"}, {"isb", "secondary"}} {
		t.Run("ours_"+tc.ours, func(t *testing.T) {
			p := newISCPair(t, tc.prefix, tc.ours, iscOptions{})
			bound := p.addClients("c", 4, 2)
			by := map[string]int{}
			for _, ev := range bound {
				by[p.serverOf(ev.ServerID)]++
			}
			t.Logf("Clients served: %v", by)
			p.checkLeasesOnBoth(bound)
			p.checkNoDoubleBinding()
			p.isc.CheckNoComplaints(t)
		})
	}
}
