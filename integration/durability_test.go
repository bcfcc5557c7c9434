//go:build integration

package integration

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// ackLedger is the exact account of the ACKs a sniffer saw: which address
// each client was given. It fails the test if one client is ACKed two
// addresses or one address is ACKed to two clients.
type ackLedger struct {
	byHW   map[string]string
	byAddr map[string]string
	acks   int
}

func newLedger() *ackLedger {
	return &ackLedger{byHW: map[string]string{}, byAddr: map[string]string{}}
}

func (a *ackLedger) add(t *testing.T, rs []Reply) {
	t.Helper()
	for _, r := range rs {
		hw, ip := r.HW.String(), r.YourIP.String()
		a.acks++
		if prev, ok := a.byHW[hw]; ok && prev != ip {
			t.Errorf("client %s was ACKed %s and then %s", hw, prev, ip)
		}
		if prev, ok := a.byAddr[ip]; ok && prev != hw {
			t.Errorf("address %s was ACKed to %s and to %s", ip, prev, hw)
		}
		a.byHW[hw], a.byAddr[ip] = ip, hw
	}
}

// checkActive fails unless every ACKed client has an active lease at its
// ACKed address in the DB.
func (a *ackLedger) checkActive(t *testing.T, srv *Server, when string) {
	t.Helper()
	ls := srv.Leases()
	active, err := ActiveByHW(ls)
	if err != nil {
		t.Errorf("%s: %v", when, err)
	}
	missing := 0
	for hw, ip := range a.byHW {
		if l, ok := active[hw]; !ok || l.Address != ip {
			missing++
			if missing <= 10 {
				t.Errorf("%s: client %s was ACKed %s, but the DB has no such active lease; rows:%s",
					when, hw, ip, rowsOf(ls, hw, ip))
			}
		}
	}
	if missing > 0 {
		t.Errorf("%s: %d of %d ACKed clients are not active in the DB (%s)", when, missing, len(a.byHW), CountStates(ls))
	}
}

// An ACK is sent only once its lease is on disk. perfdhcp (relay mode)
// drives DORAs for 200 clients at 400/s; once 300 ACKs have been seen on the
// wire the server is killed with SIGKILL in the middle of the load. Every
// client the sniffer saw ACKed must then be in the DB, active, at the ACKed
// address. After a restart on the same DB the same clients (same MACs) must
// be given the same addresses again.
func TestAckedLeasesSurviveKill9UnderLoad(t *testing.T) {
	netlab.RequireTools(t, "ip", "sqlite3", "perfdhcp")
	BinaryPath(t)
	lab := netlab.NewLab(t, prefix)
	gen := lab.AddNode("gen", "198.51.100.2/24")
	srv := StartServer(lab.AddNode("srv", "198.51.100.1/24"), ServerOptions{
		Failover: "subnet=203.0.113.0/24 pool=203.0.113.10-203.0.113.249 relay=198.51.100.2 lease-time=1h",
		Plugins:  []string{"router: 203.0.113.1", "netmask: 255.255.255.0"},
		LogLevel: "info",
	})

	sn := Sniff(gen)
	perf := StartPerfdhcp(gen, PerfOptions{Server: "198.51.100.1", Rate: 400, Clients: 200, Period: 5 * time.Second})
	err := netlab.Eventually(10*time.Second, func() error {
		if n := len(sn.Replies(DHCPAck)); n < 300 {
			return fmt.Errorf("only %d ACKs seen", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("load did not reach 300 ACKs: %v", err)
	}
	srv.Kill9()
	st := perf.Wait()
	if err := sn.Stop(); err != nil {
		t.Fatal(err)
	}
	acks := sn.Replies(DHCPAck)
	ledger := newLedger()
	ledger.add(t, acks)
	t.Logf("before kill -9: %d ACKs to %d clients on the wire; perfdhcp: %v", ledger.acks, len(ledger.byHW), st)
	if ledger.acks < 200 {
		t.Fatalf("only %d ACKs were captured, want at least 200 for the test to mean something", ledger.acks)
	}
	if st.AckRcvd > ledger.acks {
		t.Errorf("perfdhcp counted %d ACKs but the sniffer saw only %d: the accounting is not exact", st.AckRcvd, ledger.acks)
	}
	last := acks[len(acks)-1]
	t.Logf("last ACK before the kill: %s -> %s", last.HW, last.YourIP)
	ledger.checkActive(t, srv, "after kill -9")

	srv.Start()
	sn2 := Sniff(gen)
	st2 := StartPerfdhcp(gen, PerfOptions{Server: "198.51.100.1", Rate: 200, Clients: 200, Period: 3 * time.Second, Seed: 2}).Wait()
	if err := sn2.Stop(); err != nil {
		t.Fatal(err)
	}
	again := 0
	for _, r := range sn2.Replies(DHCPAck) {
		if ip, ok := ledger.byHW[r.HW.String()]; ok {
			again++
			if !r.YourIP.Equal(net.ParseIP(ip)) {
				t.Errorf("after the restart client %s was ACKed %s, but it held %s", r.HW, r.YourIP, ip)
			}
		}
	}
	t.Logf("after restart: %d ACKs to clients ACKed before the kill; perfdhcp: %v", again, st2)
	if again < 50 {
		t.Errorf("only %d ACKs went to clients known before the kill, want at least 50", again)
	}
	ledger.checkActive(t, srv, "after restart")
}

// Real clients keep their addresses across a server crash: three dhclient
// and three udhcpc clients are bound, the server is killed with SIGKILL, the
// DB must hold all six as active, and after a restart each client's renewal
// (dhclient: INIT-REBOOT from its lease file; udhcpc: RENEWING unicast) must
// be ACKed with the same address and extend the lease in the DB.
func TestClientsKeepAddressesAcrossKill9(t *testing.T) {
	lab, srv := newLAN(t)
	cs, bound := startClients(lab, 3, 3)

	srv.Kill9()
	before := checkDB(t, srv, cs, bound)
	srv.Start()

	for _, c := range cs {
		old := bound[c.Name()]
		e := c.Renew()
		want := map[string]string{"dhclient": "reboot", "udhcpc": "renew"}[c.Kind()]
		if e.Kind != want || e.IP != old.IP {
			t.Errorf("%s %s (%s) held %s; after the restart its renewal gave %v, want %q of the same address",
				c.Kind(), c.Name(), c.HW(), old.IP, e, want)
		}
		bound[c.Name()] = e
	}
	after := checkDB(t, srv, cs, bound)
	for hw, b := range before {
		if a, ok := after[hw]; ok && a.Ends < b.Ends {
			t.Errorf("client %s: lease end went back from %d to %d on renewal", hw, b.Ends, a.Ends)
		}
	}
}
