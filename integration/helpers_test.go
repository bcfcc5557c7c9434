//go:build integration

package integration

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// Prefix of every namespace this suite creates.
const prefix = "cfi"

const (
	lanPool   = "192.0.2.100-192.0.2.199"
	leaseTime = time.Hour
)

// newLAN builds the standard lab: a server node "srv" (192.0.2.1/24) on the
// LAN, running coredhcp-failover with one pool and a one-hour lease time.
func newLAN(t *testing.T) (*netlab.Lab, *Server) {
	t.Helper()
	netlab.RequireTools(t, "ip", "sqlite3", "dhclient", "udhcpc", "perfdhcp")
	BinaryPath(t)
	lab := netlab.NewLab(t, prefix)
	srv := StartServer(lab.AddNode("srv", "192.0.2.1/24"), ServerOptions{
		Failover: "pool=" + lanPool + " lease-time=" + leaseTime.String(),
		Plugins:  LANPlugins,
	})
	return lab, srv
}

// startClients adds nd dhclient and nu udhcpc nodes, starts them all at
// once and waits until each is bound; it returns the clients and their
// binding events, by client name.
func startClients(lab *netlab.Lab, nd, nu int) ([]Client, map[string]Event) {
	var cs []Client
	for i := 1; i <= nd; i++ {
		cs = append(cs, NewDhclient(lab.AddNode(fmt.Sprintf("d%d", i)), fmt.Sprintf("dh%d", i)))
	}
	for i := 1; i <= nu; i++ {
		cs = append(cs, NewUdhcpc(lab.AddNode(fmt.Sprintf("u%d", i)), fmt.Sprintf("ud%d", i)))
	}
	for _, c := range cs {
		c.Start()
	}
	bound := map[string]Event{}
	for _, c := range cs {
		bound[c.Name()] = c.WaitBound(0, 30*time.Second)
	}
	lab.OnFailure(func() {
		for _, c := range cs {
			lab.T.Logf("--- events of %s %s (%s):\n%s", c.Kind(), c.Name(), c.HW(), formatEvents(c.Events()))
		}
	})
	return cs, bound
}

// inPool reports whether ip is inside the START-END range.
func inPool(ip, pool string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	lo, hi, _ := strings.Cut(pool, "-")
	return !a.Less(netip.MustParseAddr(lo)) && !netip.MustParseAddr(hi).Less(a)
}

// checkDB fails unless every client's binding is in the DB as an active
// lease of that client (hwaddr) at that address, with the client's hostname
// and identifier, and lease times matching what the client was told.
// It returns the DB rows, by hwaddr.
func checkDB(t *testing.T, srv *Server, cs []Client, bound map[string]Event) map[string]Lease {
	t.Helper()
	ls := srv.Leases()
	active, err := ActiveByHW(ls)
	if err != nil {
		t.Errorf("DB: %v", err)
	}
	for _, c := range cs {
		e := bound[c.Name()]
		hw := c.HW().String()
		l, ok := active[hw]
		if !ok {
			t.Errorf("%s %s (%s) is bound to %s but the DB has no active lease for its hwaddr; its rows: %v",
				c.Kind(), c.Name(), hw, e.IP, rowsOf(ls, hw, e.IP))
			continue
		}
		if l.Address != e.IP {
			t.Errorf("%s %s (%s): DB says %s, client is bound to %s", c.Kind(), c.Name(), hw, l.Address, e.IP)
		}
		if l.Hostname != c.Name() {
			t.Errorf("%s %s: DB hostname %q, client sent %q", c.Kind(), c.Name(), l.Hostname, c.Name())
		}
		wantCID := ""
		if c.Kind() == "udhcpc" { // udhcpc sends 01 + MAC, dhclient sends none
			wantCID = "01" + strings.ReplaceAll(hw, ":", "")
		}
		if got := strings.ToLower(strings.ReplaceAll(l.ClientID, ":", "")); got != wantCID {
			t.Errorf("%s %s: DB client_id %q, want %q", c.Kind(), c.Name(), l.ClientID, wantCID)
		}
		// The client's expiry (its clock when the ACK came, plus the lease
		// time it was given) must match the DB's ends within a few seconds.
		if d := l.Ends - (e.At + e.Lease); d < -3 || d > 3 {
			t.Errorf("%s %s: DB ends %d but client expects expiry %d (lease %ds at %d): off by %ds",
				c.Kind(), c.Name(), l.Ends, e.At+e.Lease, e.Lease, e.At, d)
		}
		if l.Starts > l.Ends || l.Starts < time.Now().Add(-time.Hour).Unix() {
			t.Errorf("%s %s: implausible DB starts %d (ends %d)", c.Kind(), c.Name(), l.Starts, l.Ends)
		}
	}
	return active
}

// rowsOf returns the rows of a client or an address, for error messages.
func rowsOf(ls []Lease, hw, addr string) string {
	var out []Lease
	for _, l := range ls {
		if strings.EqualFold(l.HWAddr, hw) || l.Address == addr {
			out = append(out, l)
		}
	}
	if out == nil {
		return "none"
	}
	return "\n" + FormatLeases(out, 10)
}
