//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// exampleServer starts the repository's example configuration file on
// node n, with only what cannot be the same in a lab replaced: the
// interface (eth0), and the database and control socket paths (into the
// lab directory). Everything else -- addresses, pools, arguments -- is the
// example's own.
func exampleServer(t *testing.T, n *netlab.Node, file string) *Server {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", file))
	if err != nil {
		t.Fatal(err)
	}
	l := n.Lab
	s := &Server{
		Node:   n,
		Bin:    BinaryPath(t),
		Config: filepath.Join(l.Dir, n.Name+".yaml"),
		DB:     filepath.Join(l.Dir, n.Name, "leases.db"), // a directory the server must create
		Level:  "info",
	}
	conf := string(b)
	for _, r := range [][2]string{
		{"0.0.0.0%eth0", "0.0.0.0%" + n.Iface},
		{"/var/lib/coredhcp-failover/leases.db", s.DB},
		{"/var/lib/coredhcp-failover/lan1.db", s.DB},
		{"/run/coredhcp-failover/lan1.sock", filepath.Join(l.Dir, n.Name+".sock")},
	} {
		conf = strings.ReplaceAll(conf, r[0], r[1])
	}
	var settings strings.Builder // the lines that are not comments
	for _, line := range strings.Split(conf, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			settings.WriteString(line + "\n")
		}
	}
	for _, left := range []string{"eth0", "/var/lib/", "/run/"} {
		if strings.Contains(settings.String(), left) {
			t.Fatalf("%s: %q is left after the substitutions; update exampleServer:\n%s", file, left, conf)
		}
	}
	if err := os.WriteFile(s.Config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	l.OnFailure(s.dumpDB)
	s.Start()
	return s
}

// The shipped examples start as they are and serve: the single server
// gives a client an address; the pair reaches NORMAL and serves one.
func TestExamplesStart(t *testing.T) {
	netlab.RequireTools(t, "udhcpc", "sqlite3")
	t.Run("single", func(t *testing.T) {
		l := netlab.NewLab(t, "cfe")
		exampleServer(t, l.AddNode("srv", "192.0.2.1/24"), "coredhcp-failover.yaml")
		c := NewUdhcpc(l.AddNode("c1"), "c1")
		c.Start()
		if ev := c.WaitBound(0, 20*time.Second); ev.ServerID != "192.0.2.1" {
			t.Fatalf("The client was bound by %q, want the example server 192.0.2.1", ev.ServerID)
		}
	})
	t.Run("pair", func(t *testing.T) {
		l := netlab.NewLab(t, "cfe")
		p := exampleServer(t, l.AddNode("p", "192.0.2.1/24"), "examples/primary.yaml")
		s := exampleServer(t, l.AddNode("s", "192.0.2.2/24"), "examples/secondary.yaml")
		waitStates(t, 30*time.Second, "the example pair in NORMAL", map[*Server]string{p: "normal", s: "normal"})
		c := NewUdhcpc(l.AddNode("c1"), "c1")
		c.Start()
		ev := c.WaitBound(0, 20*time.Second)
		if ev.ServerID != "192.0.2.1" && ev.ServerID != "192.0.2.2" {
			t.Fatalf("The client was bound by %q, want one of the pair", ev.ServerID)
		}
		if ev.Lease > 3600 {
			t.Errorf("A first lease of %d s from the pair; the example's MCLT is 1h", ev.Lease)
		}
	})
}
