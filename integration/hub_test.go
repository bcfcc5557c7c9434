//go:build integration

package integration

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// Hub and spoke: one standby server (h, 192.0.2.3) in two relationships,
// secondary of site-a (primary a, 192.0.2.1, network 198.51.100.0/24) and
// of site-b (primary b, 192.0.2.2, network 203.0.113.0/24), both on one
// TCP port 647. Both reach NORMAL; a is killed: only site-a leaves NORMAL
// on the standby, site-b stays NORMAL throughout; after partner-down the
// standby serves site-a's network to a relayed client.
func TestHubAndSpokeRelationshipsFailApart(t *testing.T) {
	netlab.RequireTools(t, "ip", "sqlite3")
	BinaryPath(t)
	lab := netlab.NewLab(t, prefix)
	const (
		poolA = "subnet=198.51.100.0/24 pool=198.51.100.10-198.51.100.50 lease-time=600"
		poolB = "subnet=203.0.113.0/24 pool=203.0.113.10-203.0.113.50 lease-time=600"
	)
	a := StartServer(lab.AddNode("a", "192.0.2.1/24"), ServerOptions{
		Before:   []string{"leasesync: name=site-a role=primary address=192.0.2.1 peer=192.0.2.3 mclt=5 split=128 max-response-delay=3"},
		Failover: "name=site-a " + poolA})
	b := StartServer(lab.AddNode("b", "192.0.2.2/24"), ServerOptions{
		Before:   []string{"leasesync: name=site-b role=primary address=192.0.2.2 peer=192.0.2.3 mclt=5 split=128 max-response-delay=3"},
		Failover: "name=site-b " + poolB})
	sockA := filepath.Join(lab.Dir, "h-site-a.sock")
	dbB := filepath.Join(lab.Dir, "h-site-b.db")
	hn := lab.AddNode("h", "192.0.2.3/24", "198.51.100.1/24")
	h := StartServer(hn, ServerOptions{
		Before: []string{
			"leasesync: name=site-a role=secondary address=192.0.2.3 peer=192.0.2.1 max-response-delay=3 control=" + sockA,
			"leasesync: name=site-b role=secondary address=192.0.2.3 peer=192.0.2.2 max-response-delay=3",
		},
		Failover: "name=site-a " + poolA,
		Plugins:  []string{"failover: name=site-b db=" + dbB + " " + poolB},
	})
	hB := &Server{Node: hn, DB: dbB} // reads the standby's site-b state
	waitStates(t, 20*time.Second, "both relationships in NORMAL", map[*Server]string{a: "normal", b: "normal", h: "normal", hB: "normal"})

	a.Kill9()
	waitStates(t, 15*time.Second, "site-a interrupted on the standby", map[*Server]string{h: "communications-interrupted"})
	// site-b is NORMAL on both sides while site-a is interrupted, and
	// again once site-a is in PARTNER-DOWN (below).
	for _, srv := range []*Server{b, hB} {
		if mine, _ := srv.FailoverState(); mine != "normal" {
			t.Fatalf("%s's site-b state is %q after site-a's primary died, want normal", srv.DB, mine)
		}
	}
	if out, err := failoverctl(t, sockA, "--yes", "partner-down"); err != nil {
		t.Fatalf("failoverctl partner-down: %v: %s", err, out)
	}
	waitStates(t, 10*time.Second, "site-a in PARTNER-DOWN on the standby", map[*Server]string{h: "partner-down", hB: "normal"})

	relay := StartSimRelay(lab.AddNode("r", "198.51.100.2/24"), "198.51.100.2", []string{"198.51.100.1"}, 2, 0, 21)
	var acks []SimRecord
	err := netlab.Eventually(20*time.Second, func() error {
		if acks = relay.FirstAcks(); len(acks) < 2 {
			return fmt.Errorf("%d of 2 relayed clients of site-a acknowledged", len(acks))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, siteA, _ := net.ParseCIDR("198.51.100.0/24")
	for _, ack := range acks {
		if !siteA.Contains(net.ParseIP(ack.IP)) || ack.Server != "192.0.2.3" {
			t.Errorf("%s got %s from %s, want an address of site-a from the standby", ack.Client, ack.IP, ack.Server)
		}
	}
}
