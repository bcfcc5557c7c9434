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

// One server, three subnets, a failover line each: its own link
// (192.0.2.0/24, real dhclient and udhcpc clients), a network behind a
// relay listed with relay= (203.0.113.0/25), and one behind a relay that
// names it with option 82's link selection (203.0.113.128/25, RFC 3527),
// its own giaddr on no line's subnet. Every client gets an address of its
// own subnet with that subnet's mask and router; no address twice; a
// relay that names no served network gets nothing.
func TestEachSubnetIsServedByItsLine(t *testing.T) {
	netlab.RequireTools(t, "ip", "sqlite3", "dhclient", "udhcpc")
	BinaryPath(t)
	lab := netlab.NewLab(t, prefix)
	srv := StartServer(lab.AddNode("srv", "192.0.2.1/24", "198.51.100.1/24"), ServerOptions{
		Failover: "pool=192.0.2.100-192.0.2.199 router=192.0.2.1 lease-time=1h",
		Plugins: []string{
			"failover: db=" + filepath.Join(lab.Dir, "relayed.db") + " subnet=203.0.113.0/25 relay=198.51.100.2 pool=203.0.113.10-203.0.113.60 router=203.0.113.1 lease-time=30m",
			"failover: db=" + filepath.Join(lab.Dir, "linksel.db") + " subnet=203.0.113.128/25 pool=203.0.113.140-203.0.113.190 router=203.0.113.129 lease-time=20m",
			"dns: 192.0.2.53",
		},
	})
	relayed := StartSimRelay(lab.AddNode("r1", "198.51.100.2/24"), "198.51.100.2", []string{"198.51.100.1"}, 8, 0, 11)
	linked := StartSimRelay(lab.AddNode("r2", "198.51.100.3/24"), "198.51.100.3", []string{"198.51.100.1"}, 8, 0, 12,
		WithLinkSelection("203.0.113.129"))
	stray := StartSimRelay(lab.AddNode("r3", "198.51.100.4/24"), "198.51.100.4", []string{"198.51.100.1"}, 2, 0, 13)
	cs, bound := startClients(lab, 4, 4)

	seen := map[string]string{} // address: client
	claim := func(ip, who string) {
		if other, dup := seen[ip]; dup {
			t.Errorf("%s was given to %s and to %s", ip, other, who)
		}
		seen[ip] = who
	}
	lan := netip4(t, "192.0.2.0/24")
	for _, c := range cs {
		ev := bound[c.Name()]
		// dhclient reports the mask dotted, udhcpc as a prefix length.
		if !lan.Contains(net.ParseIP(ev.IP)) || ev.Mask != "255.255.255.0" && ev.Mask != "24" {
			t.Errorf("LAN client %s bound %s mask %s, want an address of 192.0.2.0/24 with mask 255.255.255.0", c.Name(), ev.IP, ev.Mask)
		}
		claim(ev.IP, c.Name())
	}
	for _, r := range []struct {
		name   string
		relay  *SimRelay
		subnet string
		router string
		lease  time.Duration
	}{
		{"relay= 198.51.100.2", relayed, "203.0.113.0/25", "203.0.113.1", 30 * time.Minute},
		{"link selection 203.0.113.129", linked, "203.0.113.128/25", "203.0.113.129", 20 * time.Minute},
	} {
		var acks []SimRecord
		err := netlab.Eventually(20*time.Second, func() error {
			if acks = r.relay.FirstAcks(); len(acks) < 8 {
				return fmt.Errorf("%d of 8 clients acknowledged", len(acks))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		sn := netip4(t, r.subnet)
		ones, _ := sn.Mask.Size()
		for _, a := range acks {
			mOnes, _ := a.Mask.Size()
			if !sn.Contains(net.ParseIP(a.IP)) || mOnes != ones || len(a.Router) != 1 || a.Router[0].String() != r.router || a.Lease != r.lease {
				t.Errorf("%s: %s got %s mask /%d routers %v lease %v, want an address of %s, /%d, router %s, lease %v",
					r.name, a.Client, a.IP, mOnes, a.Router, a.Lease, r.subnet, ones, r.router, r.lease)
			}
			claim(a.IP, a.Client)
		}
	}
	if acks := stray.FirstAcks(); len(acks) > 0 {
		t.Errorf("a relay on no served network was answered: %v", acks)
	}
	if len(srv.Leases()) == 0 {
		t.Error("the LAN line's database holds no lease")
	}
}

func netip4(t *testing.T, cidr string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
