//go:build integration

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/leasesync"
)

// ctlStatus is what failoverctl --json prints.
type ctlStatus = leasesync.ControlReply

// failoverctl runs bin/failoverctl with args; it returns the output and
// the exit error.
func failoverctl(t *testing.T, socket string, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(filepath.Dir(BinaryPath(t)), "failoverctl")
	out, err := exec.Command(bin, append([]string{"-s", socket}, args...)...).CombinedOutput()
	return string(out), err
}

// ctlJSON runs a failoverctl command with --json --yes and fails the test
// when it reports an error.
func ctlJSON(t *testing.T, socket, cmd string) ctlStatus {
	t.Helper()
	out, err := failoverctl(t, socket, append([]string{"--json", "--yes"}, strings.Fields(cmd)...)...)
	var r ctlStatus
	if jerr := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); jerr != nil || r.Status == nil {
		t.Fatalf("failoverctl %s: %v %v: %s", cmd, err, jerr, out)
	}
	if r.Error != "" || err != nil {
		t.Fatalf("failoverctl %s: %s (%v)", cmd, r.Error, err)
	}
	return r
}

// scrape reads /metrics of a server listening on 127.0.0.1:9647 in its
// namespace (the dial runs there; the read does not need to).
func scrape(t *testing.T, n *netlab.Node) string {
	t.Helper()
	var conn net.Conn
	if err := n.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", "127.0.0.1:9647", 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("metrics of %s: %v", n.Name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
	body, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil || !strings.HasPrefix(string(body), "HTTP/1.0 200") {
		t.Fatalf("GET /metrics on %s: %v\n%.300s", n.Name, err, body)
	}
	return string(body)
}

// sample returns the value of the series of name whose labels include
// every `k="v"` given; ok false when there is none.
func sample(text, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series := line[:i]
		match := true
		for _, l := range labels {
			match = match && strings.Contains(series, l)
		}
		if match {
			v, err := strconv.ParseFloat(line[i+1:], 64)
			return v, err == nil
		}
	}
	return 0, false
}

func wantSample(t *testing.T, text, server, name string, want float64, labels ...string) {
	t.Helper()
	if v, ok := sample(text, name, labels...); !ok || v != want {
		t.Errorf("%s: %s%v = %v (present %v), want %v", server, name, labels, v, ok, want)
	}
}

// failoverctl and the metrics endpoint against a running pair: status
// matches the databases and the clients; maintenance start hands the pool
// to the peer (PARTNER-DOWN at once, countdown to the takeover) and
// maintenance stop brings the server back; partner-down after a kill; the
// metrics follow each change.
func TestFailoverctlAndMetricsOnARunningPair(t *testing.T) {
	netlab.RequireTools(t, "udhcpc", "sqlite3")
	l := netlab.NewLab(t, "opa")
	pn := l.AddNode("p", "192.0.2.1/24")
	sn := l.AddNode("s", "192.0.2.2/24")
	psock, ssock := filepath.Join(l.Dir, "p.sock"), filepath.Join(l.Dir, "s.sock")
	const fo = "name=lan1 pool=192.0.2.100-192.0.2.139 lease-time=600"
	p := StartServer(pn, ServerOptions{Failover: fo, Plugins: LANPlugins, LogLevel: "info",
		Before: []string{"leasesync: name=lan1 role=primary address=192.0.2.1 peer=192.0.2.2 mclt=10 split=128 max-response-delay=5 control=" + psock + " metrics=127.0.0.1:9647"}})
	s := StartServer(sn, ServerOptions{Failover: fo, Plugins: LANPlugins, LogLevel: "info",
		Before: []string{"leasesync: name=lan1 role=secondary address=192.0.2.2 peer=192.0.2.1 max-response-delay=5 control=" + ssock + " metrics=127.0.0.1:9647"}})
	waitStates(t, 20*time.Second, "both servers in NORMAL", map[*Server]string{p: "normal", s: "normal"})

	n := 0
	newClient := func() Event {
		c := NewUdhcpc(l.AddNode(fmt.Sprintf("c%d", n)), fmt.Sprintf("c%d", n))
		n++
		c.Start()
		return c.WaitBound(0, 20*time.Second)
	}
	for i := 0; i < 4; i++ {
		newClient()
	}
	// Status matches the databases once the updates are acknowledged.
	if err := netlab.Eventually(10*time.Second, func() error {
		for _, tc := range []struct {
			srv  *Server
			sock string
		}{{p, psock}, {s, ssock}} {
			st := ctlJSON(t, tc.sock, "status").Status
			active := 0
			for _, le := range tc.srv.Leases() {
				if le.State == "active" {
					active++
				}
			}
			switch {
			case st.State != "normal" || st.PeerState != "normal" || !st.Connected || !st.MayServe:
				return fmt.Errorf("%s: state %s, peer %s, connected %v", tc.srv.Node.Name, st.State, st.PeerState, st.Connected)
			case st.Unacked+st.Queued != 0:
				return fmt.Errorf("%s: %d updates unacked, %d queued", tc.srv.Node.Name, st.Unacked, st.Queued)
			case len(st.Pools) != 1 || st.Pools[0].Range != "192.0.2.100-192.0.2.139":
				return fmt.Errorf("%s: pools %+v", tc.srv.Node.Name, st.Pools)
			case st.Pools[0].Active != 4 || active != 4:
				return fmt.Errorf("%s: status says %d active, the database %d, the clients 4", tc.srv.Node.Name, st.Pools[0].Active, active)
			case st.FreeOwn+st.FreePeer+st.Pools[0].Active != 40:
				return fmt.Errorf("%s: %d + %d free and %d active of 40", tc.srv.Node.Name, st.FreeOwn, st.FreePeer, st.Pools[0].Active)
			case st.MCLT != 10 || st.ClockSkew != 0 || time.Since(time.Unix(st.LastContact, 0)) > 5*time.Second:
				return fmt.Errorf("%s: mclt %d, skew %d, last contact %v", tc.srv.Node.Name, st.MCLT, st.ClockSkew, time.Unix(st.LastContact, 0))
			}
		}
		a, b := ctlJSON(t, psock, "status").Status, ctlJSON(t, ssock, "status").Status
		if a.FreeOwn != b.FreePeer || a.FreePeer != b.FreeOwn {
			return fmt.Errorf("the primary owns %d/%d, the secondary sees %d/%d", a.FreeOwn, a.FreePeer, b.FreePeer, b.FreeOwn)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out, err := failoverctl(t, psock, "status")
	if err != nil || !strings.Contains(out, "my state     NORMAL") || !strings.Contains(out, "peer state   NORMAL") ||
		!strings.Contains(out, "192.0.2.100-192.0.2.139") {
		t.Fatalf("failoverctl status: %v\n%s", err, out)
	}
	t.Logf("failoverctl status on the primary:\n%s", out)
	m := scrape(t, pn)
	wantSample(t, m, "primary", "coredhcp_failover_state", 1, `server="local"`, `state="normal"`)
	wantSample(t, m, "primary", "coredhcp_failover_peer_connected", 1)
	acks, _ := sample(m, "coredhcp_failover_dhcp_answers_total", `type="ack"`)
	acks2, _ := sample(scrape(t, sn), "coredhcp_failover_dhcp_answers_total", `type="ack"`)
	if acks+acks2 != 4 {
		t.Errorf("The servers counted %v + %v ACKs, want the 4 clients'", acks, acks2)
	}

	// Maintenance of the primary: refused confirmation does nothing.
	cmd := exec.Command(filepath.Join(filepath.Dir(BinaryPath(t)), "failoverctl"), "-s", psock, "maintenance", "start")
	cmd.Stdin = strings.NewReader("n\n")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "not done") {
		t.Fatalf("maintenance start answered no: %v\n%s", err, out)
	}
	if st := ctlJSON(t, psock, "status").Status; st.State != "normal" {
		t.Fatalf("After a refused confirmation the primary is %s", st.State)
	}
	r := ctlJSON(t, psock, "maintenance start")
	if r.Status.State != "shutdown" || r.Status.PeerState != "partner-down" || !strings.Contains(r.Message, "may be stopped") {
		t.Fatalf("maintenance start: %s %+v", r.Message, r.Status)
	}
	ss := ctlJSON(t, ssock, "status").Status
	if ss.State != "partner-down" || ss.PeerState != "shutdown" || ss.TakeoverAt != ss.Since+10 {
		t.Fatalf("The secondary after the primary's maintenance start: %+v", ss)
	}
	out, _ = failoverctl(t, ssock, "status")
	if !strings.Contains(out, "may use the peer's free addresses") && time.Now().Unix() < ss.TakeoverAt {
		t.Fatalf("No countdown on the secondary:\n%s", out)
	}
	t.Logf("failoverctl status on the secondary:\n%s", out)
	m = scrape(t, sn)
	wantSample(t, m, "secondary", "coredhcp_failover_state", 1, `server="local"`, `state="partner-down"`)
	wantSample(t, m, "secondary", "coredhcp_failover_state", 0, `server="local"`, `state="normal"`)
	wantSample(t, m, "secondary", "coredhcp_failover_state", 1, `server="peer"`, `state="shutdown"`)
	wantSample(t, scrape(t, pn), "primary", "coredhcp_failover_serving", 0)
	// Every new client is the secondary's now.
	for i := 0; i < 2; i++ {
		if ev := newClient(); ev.ServerID != "192.0.2.2" {
			t.Fatalf("In maintenance, a client was served by %s", ev.ServerID)
		}
	}
	// The primary restarts and stays out of service until maintenance stop.
	p.Stop()
	p.Start()
	waitStates(t, 20*time.Second, "the primary back in shutdown", map[*Server]string{p: "shutdown"})
	if err := netlab.Eventually(10*time.Second, func() error {
		if st := ctlJSON(t, psock, "status").Status; st.State != "shutdown" || !st.Connected {
			return fmt.Errorf("primary %s, connected %v", st.State, st.Connected)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctlJSON(t, psock, "maintenance stop")
	waitStates(t, 30*time.Second, "both back in NORMAL", map[*Server]string{p: "normal", s: "normal"})
	if err := netlab.Eventually(10*time.Second, func() error {
		st := ctlJSON(t, psock, "status").Status
		if st.Pools[0].Active != 6 {
			return fmt.Errorf("the primary has %d active leases, want the 6 clients'", st.Pools[0].Active)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The primary dies; the operator declares it down on the secondary.
	p.Kill9()
	waitStates(t, 10*time.Second, "the secondary to notice", map[*Server]string{s: "communications-interrupted"})
	m = scrape(t, sn)
	wantSample(t, m, "secondary", "coredhcp_failover_state", 1, `server="local"`, `state="communications-interrupted"`)
	wantSample(t, m, "secondary", "coredhcp_failover_peer_connected", 0)
	r = ctlJSON(t, ssock, "partner-down")
	if r.Status.State != "partner-down" || r.Status.TakeoverAt != r.Status.Since+10 {
		t.Fatalf("partner-down: %+v", r.Status)
	}
	wantSample(t, scrape(t, sn), "secondary", "coredhcp_failover_state", 1, `server="local"`, `state="partner-down"`)
	if d, _ := sample(scrape(t, sn), "coredhcp_failover_peer_disconnects_total"); d < 1 {
		t.Errorf("peer_disconnects_total = %v after the kill", d)
	}
}
