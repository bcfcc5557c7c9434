//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// ctl runs bin/failoverctl against a control socket.
func ctl(t *testing.T, socket, cmd string) map[string]any {
	t.Helper()
	bin := filepath.Join(filepath.Dir(BinaryPath(t)), "failoverctl")
	out, err := exec.Command(bin, "-s", socket, "--json", "--yes", cmd).Output()
	var reply struct {
		Error  string         `json:"error"`
		Status map[string]any `json:"status"`
	}
	if jerr := json.Unmarshal(out, &reply); jerr != nil {
		t.Fatalf("failoverctl %s: %v %v: %s", cmd, err, jerr, out)
	}
	if reply.Error != "" || err != nil {
		t.Fatalf("failoverctl %s: %s (%v)", cmd, reply.Error, err)
	}
	return reply.Status
}

// noAddressTwice checks both databases: an address active (and not ended)
// on both servers is held by the same client.
func noAddressTwice(t *testing.T, servers ...*Server) {
	t.Helper()
	now := time.Now().Unix()
	holder := map[string]string{}
	for _, s := range servers {
		for _, l := range s.Leases() {
			if l.State != "active" || l.Ends <= now {
				continue
			}
			if h, ok := holder[l.Address]; ok && h != l.HWAddr {
				t.Fatalf("%s is active for %s and for %s", l.Address, h, l.HWAddr)
			}
			holder[l.Address] = l.HWAddr
		}
	}
}

// noOverlap checks what the clients got: no address was held by two
// clients over overlapping times (a client holds its address from each
// binding event until the lease it was given ends, or until it is bound
// again).
func noOverlap(t *testing.T, clients []Client) {
	t.Helper()
	type hold struct {
		client     string
		start, end int64
	}
	byIP := map[string][]hold{}
	for _, c := range clients {
		evs := c.Events()
		for i, ev := range evs {
			if !ev.Bound() {
				continue
			}
			end := ev.At + ev.Lease
			for _, next := range evs[i+1:] {
				if next.Bound() || next.Kind == "release" || next.Kind == "deconfig" {
					end = min(end, next.At)
					break
				}
			}
			byIP[ev.IP] = append(byIP[ev.IP], hold{c.Name(), ev.At, end})
		}
	}
	for ip, hs := range byIP {
		for i, a := range hs {
			for _, b := range hs[i+1:] {
				if a.client != b.client && a.start < b.end && b.start < a.end {
					t.Fatalf("%s held by %s (%d-%d) and %s (%d-%d)", ip, a.client, a.start, a.end, b.client, b.start, b.end)
				}
			}
		}
	}
}

// stateOf returns each address's state in a server's database.
func stateOf(s *Server) map[string]string {
	out := map[string]string{}
	for _, l := range s.Leases() {
		out[l.Address] = l.State
	}
	return out
}

// The pair loses its primary: the secondary serves from its own share with
// leases held to MCLT; the operator declares the primary down; after MCLT
// the secondary gives the primary's free addresses too; the primary comes
// back, recovers its bindings and the pair returns to NORMAL. No address is
// ever held by two clients.
func TestPartnerDownTakeoverAndRecovery(t *testing.T) {
	netlab.RequireTools(t, "udhcpc", "sqlite3")
	l := netlab.NewLab(t, "cfk")
	pn := l.AddNode("p", "192.0.2.1/24")
	sn := l.AddNode("s", "192.0.2.2/24")
	sock := filepath.Join(l.Dir, "s.sock")
	const fo = "name=lan1 pool=192.0.2.100-192.0.2.119 lease-time=600"
	p := StartServer(pn, ServerOptions{Failover: fo, Plugins: LANPlugins,
		Before: []string{"leasesync: name=lan1 role=primary address=192.0.2.1 peer=192.0.2.2 mclt=10 split=128 max-response-delay=5"}})
	s := StartServer(sn, ServerOptions{Failover: fo, Plugins: LANPlugins,
		Before: []string{"leasesync: name=lan1 role=secondary address=192.0.2.2 peer=192.0.2.1 max-response-delay=5 control=" + sock}})
	waitStates(t, 20*time.Second, "both servers in NORMAL", map[*Server]string{p: "normal", s: "normal"})
	n := 0
	var all []Client
	client := func() Event {
		c := NewUdhcpc(l.AddNode(fmt.Sprintf("c%d", n)), fmt.Sprintf("c%d", n))
		n++
		all = append(all, c)
		c.Start()
		return c.WaitBound(0, 20*time.Second)
	}
	// dhclient clients until the primary serves at least two (the hash
	// decides which server answers).
	var primarys []*Dhclient
	held := map[*Dhclient]string{}
	for i := 0; len(primarys) < 2; i++ {
		if i == 12 {
			t.Fatal("Twelve clients and the primary served fewer than two")
		}
		d := NewDhclient(l.AddNode(fmt.Sprintf("d%d", i)), fmt.Sprintf("d%d", i))
		all = append(all, d)
		d.Start()
		ev := d.WaitBound(0, 20*time.Second)
		if ev.ServerID == "192.0.2.1" {
			primarys = append(primarys, d)
			held[d] = ev.IP
		}
	}
	noAddressTwice(t, p, s)

	p.Kill9()
	waitStates(t, 6*time.Second, "the secondary to notice", map[*Server]string{s: "communications-interrupted"})
	// The primary's clients come back (INIT-REBOOT): the secondary, which
	// has their bindings, confirms their addresses.
	for _, d := range primarys {
		ev := d.Renew()
		if ev.ServerID != "192.0.2.2" || ev.IP != held[d] {
			t.Fatalf("The primary's client %s renewed %s from %s; it held %s", d.Name(), ev.IP, ev.ServerID, held[d])
		}
	}
	// New clients get the secondary's own (BACKUP) addresses, held to MCLT.
	before := stateOf(s)
	backups := 0
	for _, st := range before {
		if st == "backup" {
			backups++
		}
	}
	if backups == 0 {
		t.Fatal("The secondary owns no BACKUP address")
	}
	for i := 0; i < backups; i++ {
		ev := client()
		if ev.ServerID != "192.0.2.2" || before[ev.IP] != "backup" || ev.Lease > 10 {
			t.Fatalf("With the primary down a client got %s (%s in the secondary's DB) for %ds from %s",
				ev.IP, before[ev.IP], ev.Lease, ev.ServerID)
		}
	}
	noAddressTwice(t, p, s)

	// The operator declares the primary down; MCLT later the secondary
	// gives the primary's free addresses.
	st := ctl(t, sock, "partner-down")
	if st["state"] != "partner-down" {
		t.Fatalf("After partner-down the state is %v", st["state"])
	}
	free := stateOf(s)
	takeover := time.Unix(int64(st["since"].(float64))+10, 0)
	if err := netlab.Eventually(30*time.Second, func() error {
		if time.Now().Before(takeover.Add(2 * time.Second)) { // the sweeper opens them within a second
			return fmt.Errorf("MCLT has not passed")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ev := client()
	if ev.ServerID != "192.0.2.2" || (free[ev.IP] != "" && free[ev.IP] != "free") {
		t.Fatalf("In PARTNER-DOWN after MCLT a client got %s (%q in the secondary's DB) from %s", ev.IP, free[ev.IP], ev.ServerID)
	}
	noAddressTwice(t, p, s)

	// The primary returns: it recovers its bindings from the secondary
	// (RECOVER, then RECOVER-WAIT for MCLT) and both return to NORMAL.
	p.Start()
	waitStates(t, 60*time.Second, "both back in NORMAL", map[*Server]string{p: "normal", s: "normal"})
	if err := netlab.Eventually(5*time.Second, func() error {
		if got := stateOf(p)[ev.IP]; got != "active" {
			return fmt.Errorf("the primary has %s as %q", ev.IP, got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	noAddressTwice(t, p, s)
	noOverlap(t, all)
}
