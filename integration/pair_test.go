//go:build integration

package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// startPair starts a primary (192.0.2.1) and a secondary (192.0.2.2) on the
// lab LAN as two processes, in a failover relationship over TCP 647.
func startPair(t *testing.T, l *netlab.Lab) (p, s *Server) {
	t.Helper()
	pn := l.AddNode("p", "192.0.2.1/24")
	sn := l.AddNode("s", "192.0.2.2/24")
	const pool = "name=lan1 pool=192.0.2.100-192.0.2.199 lease-time=600"
	p = StartServer(pn, ServerOptions{
		Before:   []string{"leasesync: name=lan1 role=primary address=192.0.2.1 peer=192.0.2.2 mclt=30 split=128 max-response-delay=5"},
		Failover: pool, Plugins: LANPlugins})
	s = StartServer(sn, ServerOptions{
		Before:   []string{"leasesync: name=lan1 role=secondary address=192.0.2.2 peer=192.0.2.1 max-response-delay=5"},
		Failover: pool, Plugins: LANPlugins})
	waitStates(t, 20*time.Second, "both servers in NORMAL", map[*Server]string{p: "normal", s: "normal"})
	return p, s
}

func waitStates(t *testing.T, timeout time.Duration, what string, want map[*Server]string) {
	t.Helper()
	err := netlab.Eventually(timeout, func() error {
		for srv, st := range want {
			if mine, _ := srv.FailoverState(); mine != st {
				return fmt.Errorf("%s is %q, want %q", srv.Node.Name, mine, st)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Waiting for %s: %v", what, err)
	}
}

// activeOn returns the address each MAC holds as active on a server.
func activeOn(srv *Server) map[string]string {
	out := map[string]string{}
	for _, l := range srv.Leases() {
		if l.State == "active" {
			out[l.HWAddr] = l.Address
		}
	}
	return out
}

func TestPairOfProcessesSharesClientsAndSurvivesAKill(t *testing.T) {
	netlab.RequireTools(t, "dhclient", "udhcpc", "sqlite3")
	l := netlab.NewLab(t, "cfp")
	p, s := startPair(t, l)

	var clients []Client
	for i := 0; i < 6; i++ {
		n := l.AddNode(fmt.Sprintf("c%d", i))
		var c Client
		if i%2 == 0 {
			c = NewDhclient(n, fmt.Sprintf("c%d", i))
		} else {
			c = NewUdhcpc(n, fmt.Sprintf("c%d", i))
		}
		c.Start()
		clients = append(clients, c)
	}
	servedBy := map[string]int{}
	bound := map[string]string{}
	for _, c := range clients {
		ev := c.WaitBound(0, 20*time.Second)
		bound[c.HW().String()] = ev.IP
		servedBy[ev.ServerID]++
		if ev.Lease > 30 {
			t.Errorf("%s got a first lease of %ds; the MCLT is 30s", c.Name(), ev.Lease)
		}
	}
	// Every lease is in both databases within a second of its ACK.
	err := netlab.Eventually(time.Second, func() error {
		for _, srv := range []*Server{p, s} {
			got := activeOn(srv)
			for mac, ip := range bound {
				if got[mac] != ip {
					return fmt.Errorf("%s has %s for %s, the client holds %s", srv.Node.Name, got[mac], mac, ip)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Leases did not reach both servers: %v (served by %v)", err, servedBy)
	}
	t.Logf("Six clients served: %v", servedBy)

	// kill -9 of the primary: the secondary notices at once (the kernel
	// closes the connection) and at the latest within max-response-delay.
	p.Kill9()
	killed := time.Now()
	waitStates(t, 6*time.Second, "the secondary to notice", map[*Server]string{s: "communications-interrupted"})
	t.Logf("The secondary noticed the kill after %v", time.Since(killed).Round(time.Millisecond))
	// The secondary keeps serving: a new client gets an address.
	n := l.AddNode("late")
	late := NewUdhcpc(n, "late")
	late.Start()
	lateEv := late.WaitBound(0, 20*time.Second)
	if lateEv.ServerID != "192.0.2.2" {
		t.Fatalf("With the primary down the new client was served by %q", lateEv.ServerID)
	}
	// The primary comes back with its database: both return to NORMAL and
	// the lease granted meanwhile reaches the primary.
	p.Start()
	waitStates(t, 20*time.Second, "both back in NORMAL", map[*Server]string{p: "normal", s: "normal"})
	lateIP := lateEv.IP
	err = netlab.Eventually(5*time.Second, func() error {
		if got := activeOn(p)[late.HW().String()]; got != lateIP {
			return fmt.Errorf("the primary has %q for the late client, which holds %s", got, lateIP)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Stop()
	s.Stop()
}
