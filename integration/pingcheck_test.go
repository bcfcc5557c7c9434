//go:build integration

package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// ping-check: a host that squats on the first address of the pool answers
// the server's ICMP echo, so that address is ABANDONED and the client is
// offered the next one.
func TestPingCheckSkipsAnAddressInUse(t *testing.T) {
	netlab.RequireTools(t, "ip", "sqlite3", "dhclient")
	BinaryPath(t)
	lab := netlab.NewLab(t, prefix)
	srv := StartServer(lab.AddNode("srv", "192.0.2.1/24"), ServerOptions{
		Failover: "pool=192.0.2.100-192.0.2.109 lease-time=1h ping-check=500ms",
		Plugins:  LANPlugins,
	})
	lab.AddNode("squat", "192.0.2.100/24")
	c := NewDhclient(lab.AddNode("d1"), "dh1")
	c.Start()
	got := c.WaitBound(0, 30*time.Second)
	if got.IP == "192.0.2.100" {
		t.Fatalf("the client was given 192.0.2.100, which another host answers on")
	}
	err := netlab.Eventually(5*time.Second, func() error {
		row, ok := ByAddress(srv.Leases())["192.0.2.100"]
		if !ok || row.State != "abandoned" {
			return fmt.Errorf("192.0.2.100 is %+v (%v), want abandoned", row, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
