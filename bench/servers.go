package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// The pool: 65,521 addresses of the RFC 2544 benchmarking range, the
// same for every server.
const (
	poolStart = "198.18.0.10"
	poolEnd   = "198.18.255.250"
	subnet    = "198.18.0.0/16"
	router    = "198.18.0.1"
	netmask   = "255.255.0.0"
)

// kind is one of the five servers compared.
type kind struct {
	key   string
	label string
	pair  bool
	// first is the first offered rate of the first round's search.
	first int
}

var kinds = []kind{
	{"stock", "stock CoreDHCP `range` (sqlite)", false, 200},
	{"ours", "coredhcp-failover, single server", false, 2000},
	{"ours-pair", "coredhcp-failover, load-balanced pair", true, 2000},
	{"isc-pair", "ISC dhcpd 4.4 failover pair", true, 300},
	{"kea", "Kea dhcp4, memfile persist", false, 2000},
}

// instance is a running server (or pair) under test.
type instance struct {
	kind     kind
	procs    []*netlab.Proc
	controls []string // ours-pair: control sockets, primary first
	pprof    string   // ours: pprof socket of the (primary) server
	leases   []string // isc-pair: lease files, primary first
	dir      string
}

func (in *instance) pids() []int {
	var p []int
	for _, pr := range in.procs {
		p = append(p, pr.PID())
	}
	return p
}

// waitUDP waits until every process has bound UDP port 67.
func (in *instance) waitUDP() error {
	for _, p := range in.procs {
		if err := waitUDP(p, 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func (in *instance) stop() {
	for _, p := range in.procs {
		p.Stop(5 * time.Second)
	}
}

// serverOpts vary a start: the pool, and a storm's shorter max-response-delay.
type serverOpts struct {
	poolEnd  string
	mrd      string // leasesync max-response-delay
	pprofAll bool
}

func (b *bench) start(k kind, dir string, o serverOpts) (*instance, error) {
	if o.poolEnd == "" {
		o.poolEnd = poolEnd
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	in := &instance{kind: k, dir: dir}
	var err error
	switch k.key {
	case "stock":
		err = b.startStock(in, o)
	case "ours":
		err = b.startOurs(in, o)
	case "ours-pair":
		err = b.startOursPair(in, o)
	case "isc-pair":
		err = b.startISCPair(in, o)
	case "kea":
		err = b.startKea(in, o)
	default:
		err = fmt.Errorf("unknown server %q", k.key)
	}
	if err != nil {
		in.stop()
		return nil, fmt.Errorf("%s: %w", k.key, err)
	}
	return in, nil
}

func write(path, text string) error { return os.WriteFile(path, []byte(text), 0o644) }

func (b *bench) startStock(in *instance, o serverOpts) error {
	conf := filepath.Join(in.dir, "config.yaml")
	if err := write(conf, fmt.Sprintf(`server4:
  listen: ["0.0.0.0%%%s"]
  plugins:
    - server_id: %s
    - router: %s
    - netmask: %s
    - lease_time: 3600s
    - range: %s %s %s 3600s
`, lanName, s1LAN, router, netmask, filepath.Join(in.dir, "leases.sqlite3"), poolStart, o.poolEnd)); err != nil {
		return err
	}
	p := b.startIn(b.s1, nil, filepath.Join(in.dir, "server.log"), b.stockBin, "-c", conf, "-L", "warning")
	in.procs = append(in.procs, p)
	return waitUDP(p, 30*time.Second)
}

func oursConfig(sid, leasesync, db, pEnd string) string {
	name := ""
	if leasesync != "" {
		name = "name=bench "
		leasesync = "    - leasesync: " + leasesync + "\n"
	}
	return fmt.Sprintf(`server4:
  listen: ["0.0.0.0%%%s"]
  plugins:
    - server_id: %s
%s    - failover: %sdb=%s subnet=%s pool=%s-%s relay=%s lease-time=1h
    - router: %s
    - netmask: %s
`, lanName, sid, leasesync, name, db, subnet, poolStart, pEnd, cliLAN, router, netmask)
}

func (b *bench) startOurs(in *instance, o serverOpts) error {
	conf := filepath.Join(in.dir, "config.yaml")
	if err := write(conf, oursConfig(s1LAN, "", filepath.Join(in.dir, "leases.db"), o.poolEnd)); err != nil {
		return err
	}
	in.pprof = filepath.Join(in.dir, "pprof.sock")
	p := b.startIn(b.s1, []string{"COREDHCP_FAILOVER_PPROF=" + in.pprof},
		filepath.Join(in.dir, "server.log"), b.oursBin, "-c", conf, "-L", "warning")
	in.procs = append(in.procs, p)
	return waitUDP(p, 30*time.Second)
}

func (b *bench) startOursPair(in *instance, o serverOpts) error {
	extra := ""
	if o.mrd != "" {
		extra = " max-response-delay=" + o.mrd
	}
	for i, side := range []struct {
		node                        *netlab.Node
		sid, role, addr, peer, args string
	}{
		{b.s1, s1LAN, "primary", s1Peer, s2Peer, " mclt=1h split=128"},
		{b.s2, s2LAN, "secondary", s2Peer, s1Peer, ""},
	} {
		ctl := filepath.Join(in.dir, side.role+".sock")
		ls := fmt.Sprintf("name=bench role=%s address=%s peer=%s%s%s control=%s",
			side.role, side.addr, side.peer, side.args, extra, ctl)
		conf := filepath.Join(in.dir, side.role+".yaml")
		if err := write(conf, oursConfig(side.sid, ls, filepath.Join(in.dir, side.role+".db"), o.poolEnd)); err != nil {
			return err
		}
		var env []string
		if i == 0 || o.pprofAll {
			sock := filepath.Join(in.dir, side.role+"-pprof.sock")
			env = []string{"COREDHCP_FAILOVER_PPROF=" + sock}
			if i == 0 {
				in.pprof = sock
			}
		}
		p := b.startIn(side.node, env, filepath.Join(in.dir, side.role+".log"), b.oursBin, "-c", conf, "-L", "warning")
		in.procs = append(in.procs, p)
		in.controls = append(in.controls, ctl)
	}
	if err := in.waitUDP(); err != nil {
		return err
	}
	// Ready: both NORMAL, the initial pool balance sent and acknowledged.
	return waitFor(60*time.Second, func() (bool, string) {
		var why []string
		for _, c := range in.controls {
			st, err := controlStatus(c)
			if err != nil {
				return false, err.Error()
			}
			if st.State != "normal" || st.Unacked+st.Queued > 0 || st.FreeOwn == 0 {
				why = append(why, fmt.Sprintf("%s %s queued %d unacked %d free %d/%d", st.Role, st.State, st.Queued, st.Unacked, st.FreeOwn, st.FreePeer))
			}
		}
		return len(why) == 0, strings.Join(why, "; ")
	})
}

func waitFor(timeout time.Duration, ok func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		var done bool
		if done, last = ok(); done {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %s", timeout, last)
}

// ctlStatus is what the harness reads of `failoverctl status`.
type ctlStatus struct {
	Role      string `json:"role"`
	State     string `json:"state"`
	Connected bool   `json:"connected"`
	Unacked   int    `json:"unacked_updates"`
	Queued    int    `json:"queued_updates"`
	FreeOwn   int    `json:"free_own"`
	FreePeer  int    `json:"free_peer"`
}

func controlStatus(path string) (ctlStatus, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return ctlStatus{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(`{"command":"status"}` + "\n")); err != nil {
		return ctlStatus{}, err
	}
	var reply struct {
		Error  string     `json:"error"`
		Status *ctlStatus `json:"status"`
	}
	if err := json.NewDecoder(c).Decode(&reply); err != nil {
		return ctlStatus{}, err
	}
	if reply.Error != "" || reply.Status == nil {
		return ctlStatus{}, fmt.Errorf("control %s: %s", path, reply.Error)
	}
	return *reply.Status, nil
}

// ISC dhcpd: a failover pair (split 128, mclt 3600,
// max-unacked-updates 10), over the peer link.
func iscConfig(role, pEnd string) string {
	var fo string
	switch role {
	case "primary":
		fo = fmt.Sprintf(`failover peer "pf" {
  primary; address %s; port 647; peer address %s; peer port 647;
  max-response-delay 30; max-unacked-updates 10; load balance max seconds 3;
  mclt 3600; split 128;
}`, s1Peer, s2Peer)
	case "secondary":
		fo = fmt.Sprintf(`failover peer "pf" {
  secondary; address %s; port 647; peer address %s; peer port 647;
  max-response-delay 30; max-unacked-updates 10; load balance max seconds 3;
}`, s2Peer, s1Peer)
	}
	return fmt.Sprintf(`authoritative;
ddns-update-style none;
ping-check false;
default-lease-time 3600;
max-lease-time 3600;
min-lease-time 3600;
%s
shared-network pfnet {
  subnet 198.51.100.0 netmask 255.255.255.0 { }
  subnet 198.18.0.0 netmask 255.255.0.0 {
    option routers %s;
    option subnet-mask %s;
    pool { failover peer "pf"; deny dynamic bootp clients; range %s %s; }
  }
}
`, fo, router, netmask, poolStart, pEnd)
}

var iscNormal = regexp.MustCompile(`I move from .* to normal`)

// startISCPair starts the ISC pair. The primary's initial pool balance
// (about 32,000 binding updates at 10 unacknowledged) takes a minute, so
// it is done once: the balanced lease files are kept (iscSnapshot) and
// every later start begins from a copy of them, as a pair restarted in
// NORMAL does.
func (b *bench) startISCPair(in *instance, o serverOpts) error {
	snap := filepath.Join(b.work, "isc-snapshot")
	useSnap := o.poolEnd == poolEnd
	haveSnap := false
	if _, err := os.Stat(filepath.Join(snap, "secondary.leases")); err == nil && useSnap {
		haveSnap = true
	}
	for _, side := range []struct {
		node *netlab.Node
		role string
	}{{b.s1, "primary"}, {b.s2, "secondary"}} {
		conf := filepath.Join(in.dir, side.role+".conf")
		lf := filepath.Join(in.dir, side.role+".leases")
		if err := write(conf, iscConfig(side.role, o.poolEnd)); err != nil {
			return err
		}
		initial := []byte{}
		if haveSnap {
			var err error
			if initial, err = os.ReadFile(filepath.Join(snap, side.role+".leases")); err != nil {
				return err
			}
		}
		if err := os.WriteFile(lf, initial, 0o644); err != nil {
			return err
		}
		p := b.startIn(side.node, nil, filepath.Join(in.dir, side.role+".log"),
			"dhcpd", "-4", "-f", "-d", "-cf", conf, "-lf", lf, "-pf", filepath.Join(in.dir, side.role+".pid"), lanName)
		in.procs = append(in.procs, p)
		in.leases = append(in.leases, lf)
	}
	if err := in.waitUDP(); err != nil {
		return err
	}
	// Ready: both NORMAL and the primary's initial pool balance written
	// by the secondary (its backup leases stop growing past a third of
	// the pool).
	prev := -1
	t0 := time.Now()
	err := waitFor(180*time.Second, func() (bool, string) {
		for _, p := range in.procs {
			if !iscNormal.MatchString(p.Output()) {
				return false, p.LogPath + ": not normal yet"
			}
		}
		n := countISC(in.leases[1], "binding state backup;")
		done := n >= 20000 && n == prev
		prev = n
		return done, fmt.Sprintf("secondary holds %d backup leases", n)
	})
	if err != nil || haveSnap || !useSnap {
		return err
	}
	logf("isc-pair: pool balanced after %.0f s; keeping the lease files for later starts", time.Since(t0).Seconds())
	in.stop()
	in.procs = nil
	if err := os.MkdirAll(snap, 0o755); err != nil {
		return err
	}
	for _, role := range []string{"primary", "secondary"} {
		data, err := os.ReadFile(filepath.Join(in.dir, role+".leases"))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(snap, role+".leases"), data, 0o644); err != nil {
			return err
		}
	}
	in.leases = nil
	os.RemoveAll(in.dir)
	os.MkdirAll(in.dir, 0o755)
	return b.startISCPair(in, o)
}

// countISC counts the lines of a dhcpd lease file that contain what
// (every change is appended, so this counts writes, not leases).
func countISC(path, what string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), what) {
			n++
		}
	}
	return n
}

// iscActive is the number of addresses whose last recorded state in a
// dhcpd lease file is active.
func iscActive(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	st := map[string]bool{}
	ip := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if a, ok := strings.CutPrefix(l, "lease "); ok {
			ip = strings.TrimSuffix(a, " {")
		} else if strings.HasPrefix(l, "binding state ") {
			st[ip] = l == "binding state active;"
		}
	}
	n := 0
	for _, a := range st {
		if a {
			n++
		}
	}
	return n
}

func (b *bench) startKea(in *instance, o serverOpts) error {
	conf := filepath.Join(in.dir, "kea4.json")
	if err := write(conf, fmt.Sprintf(`{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "%s/%s" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "%s", "lfc-interval": 0 },
  "valid-lifetime": 3600, "renew-timer": 1800, "rebind-timer": 3150,
  "subnet4": [ { "id": 1, "subnet": "%s",
      "relay": { "ip-addresses": [ "%s" ] },
      "pools": [ { "pool": "%s - %s" } ],
      "option-data": [ { "name": "routers", "data": "%s" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "%s" } ], "severity": "WARN" } ]
} }
`, lanName, s1LAN, filepath.Join(in.dir, "leases4.csv"), subnet, cliLAN, poolStart, o.poolEnd, router, filepath.Join(in.dir, "kea.log"))); err != nil {
		return err
	}
	env := []string{"KEA_PIDFILE_DIR=" + in.dir, "KEA_LOCKFILE_DIR=" + in.dir}
	p := b.startIn(b.s1, env, filepath.Join(in.dir, "server.log"), "kea-dhcp4", "-c", conf)
	in.procs = append(in.procs, p)
	return waitUDP(p, 30*time.Second)
}

// buildStock builds stock CoreDHCP at the pinned version into the cache
// (once).
func buildStock(bin, version string) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	dir := filepath.Dir(bin)
	logf("building stock CoreDHCP %s in %s", version, dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	script := fmt.Sprintf(`set -e
[ -f go.mod ] || go mod init pfbench/stock >/dev/null 2>&1
go get github.com/coredhcp/coredhcp@%s
printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/coredhcp/coredhcp/cmds/coredhcp"\n' > tools.go
go mod tidy
CGO_ENABLED=1 go build -o %s github.com/coredhcp/coredhcp/cmds/coredhcp
`, version, bin)
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}
