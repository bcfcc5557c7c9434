//go:build integration

package integration

import "testing"

// Three dhclient and three udhcpc clients, each on its own MAC, start at
// once; each must get its own address from the pool, with the server's
// identifier and the configured lease time, and the DB must hold each as an
// active lease of that client. Then the server must stop cleanly on SIGTERM
// and keep the leases.
func TestRealClientsGetDistinctLeases(t *testing.T) {
	lab, srv := newLAN(t)
	cs, bound := startClients(lab, 3, 3)

	owner := map[string]string{}
	for _, c := range cs {
		e := bound[c.Name()]
		t.Logf("%-8s %-5s %s  %-13s lease %ds", c.Kind(), c.Name(), c.HW(), e.IP, e.Lease)
		if !inPool(e.IP, lanPool) {
			t.Errorf("%s %s got %s, outside the pool %s", c.Kind(), c.Name(), e.IP, lanPool)
		}
		if prev, dup := owner[e.IP]; dup {
			t.Errorf("address %s given to both %s and %s", e.IP, prev, c.Name())
		}
		owner[e.IP] = c.Name()
		if e.ServerID != "192.0.2.1" {
			t.Errorf("%s %s: server identifier %q, want 192.0.2.1", c.Kind(), c.Name(), e.ServerID)
		}
		if e.Lease != int64(leaseTime.Seconds()) {
			t.Errorf("%s %s: lease time %ds, want %ds", c.Kind(), c.Name(), e.Lease, int64(leaseTime.Seconds()))
		}
	}
	active := checkDB(t, srv, cs, bound)
	if len(active) != len(cs) {
		t.Errorf("DB has %d active leases, want exactly %d (one per client):\n%s",
			len(active), len(cs), FormatLeases(NotFree(srv.Leases()), 20))
	}

	srv.Stop()
	after, err := ActiveByHW(srv.Leases())
	if err != nil {
		t.Fatal(err)
	}
	for hw, l := range active {
		if a, ok := after[hw]; !ok || a.Address != l.Address {
			t.Errorf("after a clean shutdown the lease %v is gone or changed: %v", l, a)
		}
	}

	// Restarted on the same DB, the server serves again.
	srv.Start()
	c := cs[0]
	if e := c.Renew(); e.IP != bound[c.Name()].IP {
		t.Errorf("%s %s: after the restart got %s, had %s", c.Kind(), c.Name(), e.IP, bound[c.Name()].IP)
	}
}
