//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// BinaryPath returns the server binary: $COREDHCP_FAILOVER_BIN, else
// ../bin/coredhcp-failover relative to this directory. It fails the test if
// the file is missing.
func BinaryPath(t netlab.T) string {
	t.Helper()
	p := os.Getenv("COREDHCP_FAILOVER_BIN")
	if p == "" {
		p = filepath.Join("..", "bin", "coredhcp-failover")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if st, err := os.Stat(abs); err != nil || st.IsDir() {
		t.Fatalf("server binary %s not found: run make build first (or set COREDHCP_FAILOVER_BIN)", abs)
	}
	return abs
}

// ServerOptions describe one coredhcp-failover instance.
type ServerOptions struct {
	ServerID string   // server_id; default: the node's first address
	Before   []string // plugin lines between server_id and failover, e.g. a leasesync line
	Failover string   // arguments of the failover plugin after db= (added here)
	Plugins  []string // plugin lines after failover, e.g. "router: 192.0.2.1"
	LogLevel string   // -L; default "debug"
	Bin      string   // the server binary; default BinaryPath
	Env      []string // extra environment ("KEY=value")
}

// LANPlugins are the option plugins for the 192.0.2.0/24 lab LAN.
var LANPlugins = []string{"router: 192.0.2.1", "netmask: 255.255.255.0", "dns: 192.0.2.53"}

// Server is a coredhcp-failover process in a node's namespace, with its
// config and lease database in the lab directory. Start, Kill9 and Start
// again reuse the same database.
type Server struct {
	Node   *netlab.Node
	Bin    string
	Config string
	DB     string
	Level  string
	Env    []string
	Proc   *netlab.Proc
	starts int
}

// StartServer writes the config, starts the server and waits until it has
// bound UDP port 67. On failure of the test the lab prints the server's log
// and the non-free rows of its database.
func StartServer(n *netlab.Node, o ServerOptions) *Server {
	l := n.Lab
	l.T.Helper()
	s := &Server{
		Node:   n,
		Bin:    BinaryPath(l.T),
		Config: filepath.Join(l.Dir, n.Name+".yaml"),
		DB:     filepath.Join(l.Dir, n.Name+".leases.db"),
		Level:  o.LogLevel,
		Env:    o.Env,
	}
	if o.Bin != "" {
		s.Bin = o.Bin
	}
	if s.Level == "" {
		s.Level = "debug"
	}
	sid := o.ServerID
	if sid == "" {
		sid = n.Addr()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "server4:\n  listen: [\"0.0.0.0%%%s\"]\n  plugins:\n", n.Iface)
	fmt.Fprintf(&b, "    - server_id: %s\n", sid)
	for _, p := range o.Before {
		fmt.Fprintf(&b, "    - %s\n", p)
	}
	fmt.Fprintf(&b, "    - failover: db=%s %s\n", s.DB, o.Failover)
	for _, p := range o.Plugins {
		fmt.Fprintf(&b, "    - %s\n", p)
	}
	if err := os.WriteFile(s.Config, []byte(b.String()), 0o644); err != nil {
		l.T.Fatalf("%v", err)
	}
	netlab.RequireTools(l.T, "sqlite3")
	l.OnFailure(s.dumpDB)
	s.Start()
	return s
}

// Start (re)starts the process and waits until it is ready.
func (s *Server) Start() {
	t := s.Node.Lab.T
	t.Helper()
	if s.Proc != nil && s.Proc.Running() {
		t.Fatalf("server %s is already running (pid %d)", s.Node.Name, s.Proc.PID())
	}
	s.starts++
	s.Proc = s.Node.StartEnv("server-"+s.Node.Name, s.Env, s.Bin, "-c", s.Config, "-L", s.Level)
	if err := s.Proc.WaitUDP(67, 10*time.Second); err != nil {
		t.Fatalf("server %s (start #%d, config %s): %v\nconfig:\n%s\nlog:\n%s",
			s.Node.Name, s.starts, s.Config, err, readFile(s.Config), s.Proc.Tail(30))
	}
}

// Kill9 kills the server with SIGKILL: no chance to flush or close anything.
func (s *Server) Kill9() {
	s.Proc.Kill()
	if code := s.Proc.ExitCode(); code != -1 {
		s.Node.Lab.T.Fatalf("server %s exited with status %d before SIGKILL reached it", s.Node.Name, code)
	}
}

// Stop sends SIGTERM and fails the test unless the server exits with status
// 0 within 10 s.
func (s *Server) Stop() {
	t := s.Node.Lab.T
	t.Helper()
	if err := s.Proc.Stop(10 * time.Second); err != nil {
		t.Fatalf("server %s did not shut down cleanly on SIGTERM: %v\n%s", s.Node.Name, err, s.Proc.Tail(20))
	}
}

// Leases reads the leases view of the server's database (works while the
// server runs and after kill -9; opened read-only, so a crashed server's WAL
// is left for it to recover).
func (s *Server) Leases() []Lease {
	t := s.Node.Lab.T
	t.Helper()
	ls, err := ReadLeases(s.DB)
	if err != nil {
		t.Fatalf("reading leases of server %s: %v", s.Node.Name, err)
	}
	return ls
}

// FailoverState reads the relationship's stored state (the failover_state
// table): my state and the peer's, as ISC's names; "" before any is stored.
func (s *Server) FailoverState() (mine, peer string) {
	out, err := exec.Command("sqlite3", "-readonly", s.DB,
		"SELECT my_state, peer_state FROM failover_state WHERE id = 1").Output()
	if err != nil {
		return "", ""
	}
	f := strings.Split(strings.TrimSpace(string(out)), "|")
	if len(f) != 2 {
		return "", ""
	}
	return stateName(f[0]), stateName(f[1])
}

// stateName is ISC's name of a failover state's wire value.
func stateName(v string) string {
	names := map[string]string{"0": "unknown-state", "2": "normal", "3": "communications-interrupted",
		"4": "partner-down", "5": "potential-conflict", "6": "recover", "7": "paused", "8": "shutdown",
		"9": "recover-done", "10": "resolution-interrupted", "11": "conflict-done", "254": "recover-wait"}
	if n, ok := names[v]; ok {
		return n
	}
	return "state-" + v
}

func (s *Server) dumpDB() {
	ls, err := ReadLeases(s.DB)
	if err != nil {
		s.Node.Lab.T.Logf("--- DB %s: %v", s.DB, err)
		return
	}
	s.Node.Lab.T.Logf("--- DB %s of server %s: %s; rows not free:\n%s",
		s.DB, s.Node.Name, CountStates(ls), FormatLeases(NotFree(ls), 60))
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
