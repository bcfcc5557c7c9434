//go:build integration

package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// A DHCPRELEASE (dhclient -r; udhcpc on SIGUSR2) ends the client's lease:
// its address turns released (or free) and the client has no active lease
// left, while the other client keeps its own.
func TestReleaseFreesLease(t *testing.T) {
	lab, srv := newLAN(t)
	cs, bound := startClients(lab, 2, 2)
	checkDB(t, srv, cs, bound)

	kept := map[string]bool{}
	for i, c := range cs {
		if i%2 == 1 { // keep dh2 and ud2, release dh1 and ud1
			kept[c.Name()] = true
			continue
		}
		c.Release()
	}
	for _, c := range cs {
		if kept[c.Name()] {
			continue
		}
		ip, hw := bound[c.Name()].IP, c.HW().String()
		var last []Lease
		err := netlab.Eventually(5*time.Second, func() error {
			last = srv.Leases()
			row, ok := ByAddress(last)[ip]
			switch {
			case !ok:
				return fmt.Errorf("address %s is missing from the leases view", ip)
			case row.State != "released" && row.State != "free":
				return fmt.Errorf("address %s is %s, want released or free", ip, row.State)
			}
			if a, err := ActiveByHW(last); err != nil {
				return err
			} else if l, has := a[hw]; has {
				return fmt.Errorf("client still has an active lease: %v", l)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s %s (%s) released %s: %v; rows:%s", c.Kind(), c.Name(), hw, ip, err, rowsOf(last, hw, ip))
		}
	}
	active, err := ActiveByHW(srv.Leases())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if !kept[c.Name()] {
			continue
		}
		if l, ok := active[c.HW().String()]; !ok || l.Address != bound[c.Name()].IP {
			t.Errorf("%s %s did not release, but its lease of %s is gone: %v", c.Kind(), c.Name(), bound[c.Name()].IP, l)
		}
	}
}
