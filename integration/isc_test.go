//go:build integration

package integration

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// A mixed failover pair: coredhcp-failover and ISC dhcpd 4.4 (Debian's
// isc-dhcp-server) on the lab LAN, the primary at 192.0.2.1 and the
// secondary at 192.0.2.2, relationship "isc", TCP 647 between them.
const (
	iscRel      = "isc"
	iscPrimary  = "192.0.2.1"
	iscSecond   = "192.0.2.2"
	iscFirst    = "192.0.2.100"
	iscLast     = "192.0.2.199"
	iscMCLT     = 30
	iscLease    = 600
	iscMaxDelay = 10
)

type iscPair struct {
	t        *testing.T
	lab      *netlab.Lab
	ours     *Server
	isc      *Dhcpd
	oursRole string // "primary" or "secondary"
	sock     string // our control socket
	clients  []Client
	iscMark  int      // see mark
	capture  *Capture // with iscOptions.capture
	ourNode  *netlab.Node
}

// iscOptions tunes a pair; the zero value is the standard one.
type iscOptions struct {
	capture   bool   // capture TCP 647 on our node's LAN interface from the start (p.capture)
	mclt      int    // default iscMCLT
	maxDelay  int    // max-response-delay on both sides, default iscMaxDelay
	leasesync string // extra leasesync arguments for our server
	dhcpd     func(*DhcpdOptions)
}

// newISCPair starts our server in role oursRole and dhcpd in the other one,
// and waits until both are NORMAL.
func newISCPair(t *testing.T, prefix, oursRole string, o iscOptions) *iscPair {
	t.Helper()
	netlab.RequireTools(t, "dhcpd", "sqlite3", "udhcpc", "dhclient")
	lab := netlab.NewLab(t, prefix)
	pn := lab.AddNode("p", iscPrimary+"/24")
	sn := lab.AddNode("s", iscSecond+"/24")
	p := &iscPair{t: t, lab: lab, oursRole: oursRole, sock: filepath.Join(lab.Dir, "ours.sock")}
	if o.mclt == 0 {
		o.mclt = iscMCLT
	}
	if o.maxDelay == 0 {
		o.maxDelay = iscMaxDelay
	}
	ourNode, iscNode := pn, sn
	me, peer, iscRole := iscPrimary, iscSecond, "secondary"
	if oursRole == "secondary" {
		ourNode, iscNode = sn, pn
		me, peer, iscRole = iscSecond, iscPrimary, "primary"
	}
	ls := fmt.Sprintf("leasesync: name=%s role=%s address=%s peer=%s max-response-delay=%d max-unacked-updates=10 load-balance-max-seconds=3 control=%s",
		iscRel, oursRole, me, peer, o.maxDelay, p.sock)
	if oursRole == "primary" {
		ls += fmt.Sprintf(" mclt=%d split=128", o.mclt)
	}
	if o.leasesync != "" {
		ls += " " + o.leasesync
	}
	do := DhcpdOptions{Name: iscRel, Role: iscRole, Address: peer, Peer: me, MCLT: o.mclt, Split: 128,
		MaxResponseDelay: o.maxDelay, MaxUnacked: 10, LBMaxSeconds: 3, First: iscFirst, Last: iscLast,
		DefaultLease: iscLease}
	if o.dhcpd != nil {
		o.dhcpd(&do)
	}
	if o.capture {
		p.capture = StartCapture(ourNode, "peer", netlab.LanIface, 647)
	}
	// dhcpd first: our server finds its peer listening and the handshake
	// starts at once.
	p.isc = StartDhcpd(iscNode, do)
	p.ourNode = ourNode
	p.ours = StartServer(ourNode, ServerOptions{
		Before:   []string{ls},
		Failover: fmt.Sprintf("name=%s pool=%s-%s lease-time=%d", iscRel, iscFirst, iscLast, iscLease),
		Plugins:  LANPlugins,
	})
	lab.OnFailure(func() {
		for _, c := range p.clients {
			t.Logf("--- events of %s %s (%s):\n%s", c.Kind(), c.Name(), c.HW(), formatEvents(c.Events()))
		}
		t.Logf("--- dhcpd state moves: %v; peer moves: %v", p.isc.Moves(), p.isc.PeerMoves())
	})
	p.waitNormal(30 * time.Second)
	return p
}

// waitNormal waits until both servers say they are NORMAL.
func (p *iscPair) waitNormal(timeout time.Duration) {
	p.t.Helper()
	p.waitStates(timeout, "normal", "normal")
}

// waitStates waits until our server is in state ours (its control socket
// says so, and for NORMAL it is connected and knows the peer NORMAL) and
// dhcpd has logged a move to state isc since the last mark; "" for either:
// don't care.
func (p *iscPair) waitStates(timeout time.Duration, ours, isc string) {
	p.t.Helper()
	start := time.Now()
	err := netlab.Eventually(timeout, func() error {
		if ours != "" {
			st, err := p.oursStatus()
			if err != nil {
				return err
			}
			if st.State != ours || ours == "normal" && (st.PeerState != "normal" || !st.Connected) {
				return fmt.Errorf("our server is %q (peer %q, connected %v), want %q", st.State, st.PeerState, st.Connected, ours)
			}
		}
		if isc != "" {
			ms := p.isc.MovesSince(p.iscMark)
			if len(ms) == 0 || ms[len(ms)-1].To != isc {
				return fmt.Errorf("dhcpd moved %v since the mark, want a move to %q", ms, isc)
			}
		}
		return nil
	})
	if err != nil {
		p.t.Fatalf("Waiting %v for ours=%q dhcpd=%q: %v\ndhcpd moves: %v", timeout, ours, isc, err, p.isc.Moves())
	}
	p.t.Logf("ours=%q dhcpd=%q after %v", ours, isc, time.Since(start).Round(time.Millisecond))
}

// mark remembers how many state moves dhcpd has logged: waitStates then
// waits for a move after this point.
func (p *iscPair) mark() { p.iscMark = len(p.isc.Moves()) }

// oursStatus asks our server for its status on the control socket.
func (p *iscPair) oursStatus() (leasesyncStatus, error) {
	var st leasesyncStatus
	bin := filepath.Join(filepath.Dir(BinaryPath(p.t)), "failoverctl")
	out, err := exec.Command(bin, "-s", p.sock, "--json", "status").Output()
	if err != nil {
		return st, fmt.Errorf("failoverctl status: %v: %s", err, out)
	}
	var reply struct {
		Error  string          `json:"error"`
		Status leasesyncStatus `json:"status"`
	}
	if err := json.Unmarshal(out, &reply); err != nil || reply.Error != "" {
		return st, fmt.Errorf("failoverctl status: %v %s: %s", err, reply.Error, out)
	}
	return reply.Status, nil
}

// leasesyncStatus is the part of the control socket's status we look at.
type leasesyncStatus struct {
	State     string `json:"state"`
	Since     int64  `json:"since"`
	PeerState string `json:"peer_state"`
	Connected bool   `json:"connected"`
	Unacked   int    `json:"unacked_updates"`
	Queued    int    `json:"queued_updates"`
}

// serverOf names the server that has address sid ("ours" or "dhcpd").
func (p *iscPair) serverOf(sid string) string {
	if (sid == iscPrimary) == (p.oursRole == "primary") {
		return "ours"
	}
	return "dhcpd"
}

// addClients starts nu udhcpc and nd dhclient clients and waits until each
// is bound; it returns their binding events.
func (p *iscPair) addClients(tag string, nu, nd int) map[Client]Event {
	p.t.Helper()
	var cs []Client
	for i := 0; i < nu+nd; i++ {
		name := fmt.Sprintf("%s%d", tag, i)
		n := p.lab.AddNode(name)
		if i < nu {
			cs = append(cs, NewUdhcpc(n, name))
		} else {
			cs = append(cs, NewDhclient(n, name))
		}
	}
	for _, c := range cs {
		c.Start()
	}
	p.clients = append(p.clients, cs...)
	out := map[Client]Event{}
	for _, c := range cs {
		out[c] = c.WaitBound(0, 30*time.Second)
	}
	return out
}

// checkLeasesOnBoth waits until every client's binding is ACTIVE in our
// database and in dhcpd's lease file, for its hardware address, and both
// agree on its end (within 2 s). That end is at least the one the client
// was told and at most a full lease time after it was bound: a broadcast
// REQUEST can be ACKed by both servers (dhcpd answers one that names the
// other server when the binding is already ACTIVE for that client, see
// dhcprequest() in ISC's server/dhcp.c), and the client keeps the first
// ACK while the databases keep the later one.
func (p *iscPair) checkLeasesOnBoth(bound map[Client]Event) {
	p.t.Helper()
	err := netlab.Eventually(10*time.Second, func() error {
		o, i, err := p.records()
		if err != nil {
			return err
		}
		for c, ev := range bound {
			for _, side := range []struct {
				name string
				recs map[string]LeaseRecord
			}{{"our DB", o}, {"dhcpd's lease file", i}} {
				r, ok := side.recs[ev.IP]
				switch {
				case !ok:
					return fmt.Errorf("%s has no record of %s, bound by %s %s", side.name, ev.IP, c.Kind(), c.Name())
				case r.State != "active" || r.HWAddr != c.HW().String():
					return fmt.Errorf("%s has %v; %s %s (%s) is bound to it", side.name, r, c.Kind(), c.Name(), c.HW())
				case r.End < ev.Ends().Unix()-3 || r.End > ev.At+iscLease+3:
					return fmt.Errorf("%s has %v; %s was told %v", side.name, r, c.Name(), ev)
				case r.Start > ev.At+1 || r.Start < ev.At-3:
					return fmt.Errorf("%s has %v starting at %d; %s was bound at %d", side.name, r, r.Start, c.Name(), ev.At)
				}
			}
			if d := o[ev.IP].End - i[ev.IP].End; abs(d) > 2 {
				return fmt.Errorf("the ends of %s differ by %ds:\n  ours:  %v\n  dhcpd: %v", ev.IP, d, o[ev.IP], i[ev.IP])
			}
		}
		return nil
	})
	if err != nil {
		p.t.Fatalf("Leases on both sides: %v", err)
	}
}

// records reads our database and dhcpd's lease file, by address.
func (p *iscPair) records() (ours, theirs map[string]LeaseRecord, err error) {
	o, err := ReadDBRecords(p.ours.DB)
	if err != nil {
		return nil, nil, err
	}
	i, err := ReadISCLeases(p.isc.Leases)
	if err != nil {
		return nil, nil, err
	}
	return RecordsByIP(o), RecordsByIP(i), nil
}

// checkNoDoubleBinding fails if an address is bound to two clients across
// our database and dhcpd's lease file.
func (p *iscPair) checkNoDoubleBinding() {
	p.t.Helper()
	ours, err := ReadDBRecords(p.ours.DB)
	if err != nil {
		p.t.Fatal(err)
	}
	theirs, err := ReadISCLeases(p.isc.Leases)
	if err != nil {
		p.t.Fatal(err)
	}
	if bad := BoundTwice(time.Now().Unix(), ours, theirs); len(bad) > 0 {
		p.t.Fatalf("Addresses bound twice:\n%s", strings.Join(bad, "\n"))
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// Both role combinations reach NORMAL; a lease granted by either server is
// in the other's database with its state and times; dhcpd never complains
// about what we send.
func TestISCPeerNormalAndLeases(t *testing.T) {
	for _, tc := range []struct{ prefix, ours string }{{"isa", "primary"}, {"isb", "secondary"}} {
		t.Run("ours_"+tc.ours, func(t *testing.T) {
			p := newISCPair(t, tc.prefix, tc.ours, iscOptions{})
			p.checkPoolBalance()
			pri, sec := p.checkLoadBalance(48)
			if pri < 12 || sec < 12 {
				t.Errorf("Of 53 keys the primary answered %d and the secondary %d: not about half", pri, sec)
			}
			bound := p.addClients("c", 4, 2)
			by := map[string]int{}
			for _, ev := range bound {
				by[p.serverOf(ev.ServerID)]++
			}
			t.Logf("Clients served: %v", by)
			p.checkLeasesOnBoth(bound)
			p.checkNoDoubleBinding()
			p.isc.CheckNoComplaints(t)
			p.checkOursClean()
		})
	}
}

// checkPoolBalance waits until the two servers agree, address by address,
// on which free addresses belong to the secondary (BACKUP) and which to the
// primary (FREE, or no row in our database), and the secondary holds its
// share: half of the free addresses, within ISC's max-lease-misbalance
// (15% of the pool).
func (p *iscPair) checkPoolBalance() (backup, free int) {
	p.t.Helper()
	total := int(ipNum(iscLast)-ipNum(iscFirst)) + 1
	err := netlab.Eventually(10*time.Second, func() error {
		o, i, err := p.records()
		if err != nil {
			return err
		}
		backup, free = 0, 0
		for n := ipNum(iscFirst); n <= ipNum(iscLast); n++ {
			ip := ipString(n)
			os, is := o[ip].State, i[ip].State
			if os == "" {
				os = "free" // never used: FREE, the primary's
			}
			if (os == "backup") != (is == "backup") || (os == "free") != (is == "free") {
				return fmt.Errorf("%s is %q in our DB and %q in dhcpd's lease file", ip, os, is)
			}
			switch os {
			case "backup":
				backup++
			case "free":
				free++
			}
		}
		if d := backup - free; abs(int64(d))*100 > int64(total)*15 {
			return fmt.Errorf("the secondary owns %d free addresses and the primary %d: not balanced", backup, free)
		}
		return nil
	})
	if err != nil {
		p.t.Fatalf("Pool balance: %v", err)
	}
	p.t.Logf("Pool balanced: primary %d FREE, secondary %d BACKUP, same addresses on both sides", free, backup)
	return backup, free
}

func ipNum(s string) uint32 {
	a := netip.MustParseAddr(s).As4()
	return binary.BigEndian.Uint32(a[:])
}

func ipString(n uint32) string {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], n)
	return netip.AddrFrom4(a).String()
}

// lbProbe is one DISCOVER of the load-balancing check.
type lbProbe struct {
	hw   net.HardwareAddr
	cid  []byte // option 61, nil for none
	want string // the server that must answer, "" if either (but only one)
	from map[string]bool
}

// lbVectors are RFC 3074 keys whose buckets (docs/protocol.md §17) were
// computed and confirmed against ISC: with split 128, buckets 0-127 are the
// primary's.
var lbVectors = []struct {
	hw, cid string
	primary bool
}{
	{"02:00:00:00:00:01", "", false},               // bucket 133
	{"02:00:00:00:00:01", "01020000000001", true},  // 14
	{"02:00:00:00:00:aa", "", false},               // 241
	{"02:00:00:00:00:00", "01020000000000", false}, // 192
	{"02:33:4e:45:3f:d4", "0102334e453fd4", true},  // 13
}

// checkLoadBalance broadcasts DISCOVERs with secs 0 from a probe node: the
// test vectors above, then n more client keys (chaddr only, 01+MAC client
// identifiers, arbitrary identifiers). Every one must be offered by
// exactly one server, the vectors by the server their bucket names: dhcpd
// and we split the clients between us the same way (RFC 3074 with ISC's
// bit order, split 128), none is left unanswered and none gets two
// offers. It returns how many each server answered.
func (p *iscPair) checkLoadBalance(n int) (primary, secondary int) {
	p.t.Helper()
	probes := map[uint32]*lbProbe{}
	xid := uint32(0x15c00000)
	for _, v := range lbVectors {
		pr := &lbProbe{from: map[string]bool{}, want: iscSecond}
		pr.hw, _ = net.ParseMAC(v.hw)
		if v.cid != "" {
			pr.cid, _ = hex.DecodeString(v.cid)
		}
		if v.primary {
			pr.want = iscPrimary
		}
		probes[xid] = pr
		xid++
	}
	for i := 0; i < n; i++ {
		pr := &lbProbe{hw: net.HardwareAddr{0x02, 0x1b, 0, 0, byte(i >> 8), byte(i)}, from: map[string]bool{}}
		switch i % 3 {
		case 1:
			pr.cid = append([]byte{1}, pr.hw...)
		case 2:
			pr.cid = []byte(fmt.Sprintf("lb-probe-%d", i))
		}
		probes[xid] = pr
		xid++
	}
	node := p.lab.AddNode("lb", "192.0.2.9/24")
	p.lab.IP("-n", node.NS, "route", "add", "255.255.255.255/32", "dev", node.Iface) // no default route here
	var conn *net.UDPConn
	if err := node.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 68})
		return err
	}); err != nil {
		p.t.Fatalf("Probe socket: %v", err)
	}
	defer conn.Close()
	for x, pr := range probes {
		mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(pr.hw),
			dhcpv4.WithTransactionID(dhcpv4.TransactionID{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}),
			dhcpv4.WithBroadcast(true)}
		if pr.cid != nil {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(pr.cid)))
		}
		m, err := dhcpv4.New(mods...)
		if err != nil {
			p.t.Fatal(err)
		}
		if _, err := conn.WriteToUDP(m.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
			p.t.Fatalf("Sending a DISCOVER: %v", err)
		}
	}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(2 * time.Second)
	for {
		conn.SetReadDeadline(deadline)
		nr, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			break
		}
		m, err := dhcpv4.FromBytes(buf[:nr])
		if err != nil || m.MessageType() != dhcpv4.MessageTypeOffer {
			continue
		}
		x := m.TransactionID
		if pr := probes[binary.BigEndian.Uint32(x[:])]; pr != nil {
			pr.from[m.ServerIdentifier().String()] = true
		}
	}
	var bad []string
	for _, pr := range probes {
		if len(pr.from) != 1 || (pr.want != "" && !pr.from[pr.want]) {
			bad = append(bad, fmt.Sprintf("chaddr %s client-id %x: offers from %v, want one, from %q", pr.hw, pr.cid, keys(pr.from), pr.want))
			continue
		}
		if pr.from[iscPrimary] {
			primary++
		} else {
			secondary++
		}
	}
	if len(bad) > 0 {
		p.t.Fatalf("Load balancing, %d of %d DISCOVERs not answered by exactly the right server (primary %s is %s):\n  %s",
			len(bad), len(probes), iscPrimary, p.serverOf(iscPrimary), strings.Join(bad, "\n  "))
	}
	p.t.Logf("Load balancing: of %d DISCOVERs the primary alone answered %d, the secondary alone %d", len(probes), primary, secondary)
	return primary, secondary
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkBoundOn waits until our database (ours) or dhcpd's lease file has
// each client's address ACTIVE for its hardware address.
func (p *iscPair) checkBoundOn(side string, bound map[Client]Event) {
	p.t.Helper()
	err := netlab.Eventually(10*time.Second, func() error {
		o, i, err := p.records()
		if err != nil {
			return err
		}
		recs := o
		if side == "dhcpd" {
			recs = i
		}
		for c, ev := range bound {
			if r := recs[ev.IP]; r.State != "active" || r.HWAddr != c.HW().String() || r.End < ev.Ends().Unix()-3 {
				return fmt.Errorf("%s has %v; %s %s (%s) holds it: %v", side, r, c.Kind(), c.Name(), c.HW(), ev)
			}
		}
		return nil
	})
	if err != nil {
		p.t.Fatalf("Leases on %s: %v", side, err)
	}
	p.t.Logf("%d running leases ACTIVE on %s", len(bound), side)
}

// servedBy fails unless every binding came from the named server.
func (p *iscPair) servedBy(side string, bound map[Client]Event) {
	p.t.Helper()
	for c, ev := range bound {
		if p.serverOf(ev.ServerID) != side {
			p.t.Fatalf("%s %s was served by %s (%s), want %s", c.Kind(), c.Name(), ev.ServerID, p.serverOf(ev.ServerID), side)
		}
	}
}

// Either server killed with SIGKILL and restarted on its database: the
// survivor goes COMMUNICATIONS-INTERRUPTED and serves a new client alone;
// after the restart both return to NORMAL and that lease is on both sides.
// Then our server loses its database: it recovers everything from dhcpd
// (UPDREQALL, UPDDONE, RECOVER-WAIT for MCLT, RECOVER-DONE) while dhcpd
// goes PARTNER-DOWN and back, and no address is ever bound twice.
func TestISCPeerKillAndRestart(t *testing.T) {
	for _, tc := range []struct{ prefix, ours string }{{"isc", "primary"}, {"isd", "secondary"}} {
		t.Run("ours_"+tc.ours, func(t *testing.T) {
			p := newISCPair(t, tc.prefix, tc.ours, iscOptions{mclt: 10, capture: true})
			before := p.addClients("a", 2, 1)
			p.checkLeasesOnBoth(before)

			// dhcpd dies; we serve alone; dhcpd comes back.
			alone := p.killAndServe("dhcpd", "b", "")
			p.restart("dhcpd", "normal", 20*time.Second)
			p.checkBoundOn("dhcpd", alone)
			p.checkNoDoubleBinding()

			// We die; dhcpd serves alone; we come back.
			alone = p.killAndServe("ours", "d", "")
			p.restart("ours", "normal", 20*time.Second)
			p.checkBoundOn("ours", alone)
			p.checkNoDoubleBinding()

			// We die and lose the database: full recovery from dhcpd.
			p.mark()
			p.ours.Kill9()
			for _, f := range []string{"", "-wal", "-shm"} {
				if err := os.Remove(p.ours.DB + f); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
			}
			p.ours.Start()
			p.waitStates(40*time.Second, "normal", "normal")
			if ms := p.isc.MovesSince(p.iscMark); !containsMove(ms, "partner-down") {
				t.Errorf("dhcpd did not go PARTNER-DOWN while we recovered: %v", ms)
			}
			log := p.isc.Log()
			for _, want := range []string{"Update request all from " + iscRel + ": sending update", "Sent update done message to " + iscRel} {
				if !strings.Contains(log, want) {
					t.Errorf("dhcpd never logged %q", want)
				}
			}
			p.checkBoundOn("ours", p.running(3*time.Second))
			p.checkNoDoubleBinding()
			p.checkConverged()

			// dhcpd dies and loses its lease file: it recovers everything
			// from us.
			p.mark()
			p.isc.Kill9()
			if err := os.WriteFile(p.isc.Leases, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			p.isc.Start()
			p.waitStates(40*time.Second, "normal", "normal")
			if ms := p.isc.MovesSince(p.iscMark); !containsMove(ms, "recover-wait") && !containsMove(ms, "recover-done") {
				t.Errorf("dhcpd did not recover: %v", ms)
			}
			if !strings.Contains(p.isc.Proc.Output(), "failover peer "+iscRel+": peer update completed.") {
				t.Errorf("dhcpd never logged that our update (answering its UPDREQALL) completed")
			}
			p.checkBoundOn("dhcpd", p.running(3*time.Second))
			p.checkNoDoubleBinding()
			p.checkConverged()
			// dhcpd expires leases in RECOVER-WAIT, as we do in
			// PARTNER-DOWN: a duel at a lease's end is resolved by the
			// primary's copy (reason 16), as between two ISC servers.
			p.isc.CheckNoComplaints(t, DuelingUpdates)
			p.checkOursClean(oursDueling)
			p.checkCapture()
		})
	}
}

func containsMove(ms []StateMove, to string) bool {
	for _, m := range ms {
		if m.To == to {
			return true
		}
	}
	return false
}

// oursComplaints are what our server logs when it dislikes what dhcpd sent
// or did, or when dhcpd refused what we sent. Not among them: "ignoring a
// BNDACK" (debug): dhcpd keeps its queue of lazy BNDACKs across a
// reconnection (toack_queue belongs to the relationship in ISC's
// failover.c, not to the link), so after one of us restarts it may ack, on
// the new link, updates sent on the old one, with the old link's xids.
var oursComplaints = regexp.MustCompile(`level=(error|fatal|panic)|rejected the peer's binding update|` +
	`the peer rejected our binding update|handshake refused|dropping the failover link|clock skew`)

// oursDueling is our side of a dueling update (see DuelingUpdates).
var oursDueling = regexp.MustCompile(`rejected the peer's binding update: incoming update is less critical than outgoing update`)

// checkOursClean fails with every complaining line of our server's log,
// minus those matching allowed.
func (p *iscPair) checkOursClean(allowed ...*regexp.Regexp) {
	p.t.Helper()
	var bad []string
lines:
	for _, line := range strings.Split(readFile(p.ours.Proc.LogPath), "\n") {
		for _, a := range allowed {
			if a.MatchString(line) {
				continue lines
			}
		}
		if oursComplaints.MatchString(line) {
			bad = append(bad, line)
		}
	}
	if len(bad) > 0 {
		p.t.Errorf("Our server complained (%d lines):\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
}

// killAndServe kills one side ("ours" or "dhcpd") with SIGKILL, waits
// until the survivor is COMMUNICATIONS-INTERRUPTED, optionally declares
// the dead side down on the survivor (declare: "partner-down"), and has
// two new clients (udhcpc tag0, dhclient tag1) bound by the survivor, in its
// database. It returns their bindings.
func (p *iscPair) killAndServe(victim, tag, declare string) map[Client]Event {
	p.t.Helper()
	p.mark()
	survivor := "ours"
	if victim == "ours" {
		survivor = "dhcpd"
		p.ours.Kill9()
		p.waitStates(5*time.Second, "", "communications-interrupted")
	} else {
		p.isc.Kill9()
		p.waitStates(5*time.Second, "communications-interrupted", "")
	}
	if declare != "" {
		p.declarePartnerDown(survivor)
	}
	// dhclient renews a short (MCLT) lease at T1, so it is still running
	// after the other side's recovery; udhcpc renews it late.
	alone := p.addClients(tag, 1, 1)
	p.servedBy(survivor, alone)
	p.checkBoundOn(survivor, alone)
	return alone
}

// restart starts the killed side again on its database and waits until
// both sides are in state.
func (p *iscPair) restart(victim, state string, timeout time.Duration) {
	p.t.Helper()
	p.mark()
	if victim == "ours" {
		p.ours.Start()
	} else {
		p.isc.Start()
	}
	p.waitStates(timeout, state, state)
}

// declarePartnerDown has the operator declare the peer down on one side:
// ours with failoverctl on the control socket, dhcpd with omshell.
func (p *iscPair) declarePartnerDown(side string) {
	p.t.Helper()
	p.mark()
	if side == "ours" {
		ctl(p.t, p.sock, "partner-down")
		p.waitStates(5*time.Second, "partner-down", "")
		return
	}
	p.isc.SetLocalState(4)
	p.waitStates(5*time.Second, "", "partner-down")
}

// Either side is declared down by the operator on the survivor (ours with
// failoverctl, dhcpd with omshell): the survivor serves new clients in
// PARTNER-DOWN; the killed side restarts on its database, finds its peer
// PARTNER-DOWN, recovers (RECOVER, UPDREQALL, RECOVER-WAIT until MCLT,
// RECOVER-DONE) and both return to NORMAL with the survivor's new leases
// in the recovered side's database.
func TestISCPeerPartnerDownAndRecovery(t *testing.T) {
	for _, tc := range []struct{ prefix, ours string }{{"isa", "primary"}, {"isb", "secondary"}} {
		t.Run("ours_"+tc.ours, func(t *testing.T) {
			p := newISCPair(t, tc.prefix, tc.ours, iscOptions{mclt: 10, dhcpd: func(o *DhcpdOptions) { o.OmapiPort = 7911 }})
			p.checkLeasesOnBoth(p.addClients("a", 1, 1))

			alone := p.killAndServe("dhcpd", "b", "partner-down")
			p.restart("dhcpd", "normal", 30*time.Second)
			if ms := p.isc.MovesSince(p.iscMark); !containsMove(ms, "recover") {
				t.Errorf("dhcpd came back to a peer in PARTNER-DOWN without recovering: %v", ms)
			}
			p.checkBoundOn("dhcpd", p.runningOf(alone, 3*time.Second))
			p.checkNoDoubleBinding()
			p.checkConverged()

			alone = p.killAndServe("ours", "d", "partner-down")
			p.restart("ours", "normal", 30*time.Second)
			if out := p.ours.Proc.Output(); !strings.Contains(out, "to=recover-wait") && !strings.Contains(out, "to=recover-done") {
				t.Errorf("We came back to dhcpd in PARTNER-DOWN without recovering; our state changes:\n%s", grepLines(out, "failover state change"))
			}
			p.checkBoundOn("ours", p.runningOf(alone, 3*time.Second))
			p.checkNoDoubleBinding()
			p.checkConverged()
			// A restart at a lease's end can make both sides change it
			// at once; the duel is resolved as ISC resolves it.
			p.isc.CheckNoComplaints(t, DuelingUpdates)
			p.checkOursClean(oursDueling)
		})
	}
}

// grepLines returns the lines of text that contain sub.
func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// checkConverged waits until our database and dhcpd's lease file agree on
// every address of the pool: bound (ACTIVE, to the same client) or not,
// and, if free, whose (FREE or BACKUP).
func (p *iscPair) checkConverged() {
	p.t.Helper()
	class := func(r LeaseRecord, now int64) string {
		switch {
		case r.State == "active" && r.End > now:
			return "active " + r.HWAddr
		case r.State == "backup":
			return "backup"
		case r.State == "free" || r.State == "":
			return "free"
		}
		return "unbound" // expired, released, abandoned, reset; or active past its end
	}
	err := netlab.Eventually(15*time.Second, func() error {
		o, i, err := p.records()
		if err != nil {
			return err
		}
		now := time.Now().Unix()
		for n := ipNum(iscFirst); n <= ipNum(iscLast); n++ {
			ip := ipString(n)
			co, ci := class(o[ip], now), class(i[ip], now)
			if co != ci && !(co == "unbound" && ci == "free" || co == "free" && ci == "unbound") {
				return fmt.Errorf("%s: ours %v, dhcpd's %v", ip, o[ip], i[ip])
			}
		}
		return nil
	})
	if err != nil {
		p.t.Fatalf("The databases do not agree: %v", err)
	}
}

// checkCapture stops the capture of the peer link and has tshark decode
// it: no malformed frame, no expert warning or error beyond tshark's known
// client-identifier artefact, and every message type a run with restarts
// and recoveries uses is there (tshark numbers: 7 is UPDREQALL).
func (p *iscPair) checkCapture() {
	p.t.Helper()
	segments := p.capture.Stop()
	d, err := DecodeFailoverPcap(p.capture.Path)
	if err != nil {
		p.t.Fatal(err)
	}
	if len(d.Problems) > 0 {
		p.t.Errorf("tshark finds %d problems in %s:\n  %s", len(d.Problems), p.capture.Path, strings.Join(d.Problems, "\n  "))
	}
	for typ, name := range map[string]string{"3": "BNDUPD", "4": "BNDACK", "5": "CONNECT", "6": "CONNECTACK",
		"7": "UPDREQALL", "8": "UPDDONE", "10": "STATE", "11": "CONTACT"} {
		if d.Types[typ] == 0 {
			p.t.Errorf("The capture holds no %s (type %s); it has %s", name, typ, d.TypeList())
		}
	}
	p.t.Logf("Capture of the peer link: %d TCP segments, %d failover messages decoded by tshark (type:count %s)", segments, d.Messages, d.TypeList())
}

// A partition: our server's LAN port is cut, both sides notice the silence
// after max-response-delay and go COMMUNICATIONS-INTERRUPTED; the
// operator declares PARTNER-DOWN on one side (the primary: ours with
// failoverctl, or dhcpd with omshell), which serves a new client; the link
// heals and the two resolve the potential conflict as ISC does
// (POTENTIAL-CONFLICT, UPDREQ, UPDDONE, CONFLICT-DONE) and return to
// NORMAL, agreeing on every address.
func TestISCPeerPartitionAndConflictResolution(t *testing.T) {
	for _, tc := range []struct{ prefix, ours string }{{"isc", "primary"}, {"isd", "secondary"}} {
		t.Run("ours_"+tc.ours, func(t *testing.T) {
			p := newISCPair(t, tc.prefix, tc.ours, iscOptions{mclt: 10, maxDelay: 3, capture: true,
				dhcpd: func(o *DhcpdOptions) { o.OmapiPort = 7911 }})
			p.checkLeasesOnBoth(p.addClients("a", 1, 0))

			p.mark()
			p.ourNode.SetLAN(false)
			p.waitStates(10*time.Second, "communications-interrupted", "communications-interrupted")
			primary := p.serverOf(iscPrimary)
			p.declarePartnerDown(primary)
			alone := p.addClients("b", 1, 0)
			p.servedBy("dhcpd", alone) // our LAN port is cut: the client reaches only dhcpd

			p.mark()
			p.ourNode.SetLAN(true)
			p.waitStates(40*time.Second, "normal", "normal")
			ms := p.isc.MovesSince(p.iscMark)
			if !containsMove(ms, "potential-conflict") {
				t.Errorf("dhcpd did not go through POTENTIAL-CONFLICT: %v", ms)
			}
			log := p.isc.Proc.Output()
			for _, want := range []string{"Update request from " + iscRel, "Sent update done message to " + iscRel} {
				if !strings.Contains(log, want) {
					t.Errorf("dhcpd never logged %q", want)
				}
			}
			p.checkBoundOn("ours", p.runningOf(alone, 3*time.Second))
			p.checkNoDoubleBinding()
			p.checkConverged()
			// The silence of the cut link is expected. So is one ISC quirk
			// (seen in this test's capture): in CONFLICT-DONE dhcpd
			// re-announces a binding (xid N) and, answering our UPDREQ,
			// sends it again (xid N+2) before our BNDACK of the first
			// arrives; it keeps only the latest xid per lease and logs
			// our correct BNDACK of xid N as a mismatch. An ISC peer
			// acks the same way.
			allowed := []*regexp.Regexp{regexp.MustCompile(`timeout waiting for failover peer ` + iscRel + `$`),
				regexp.MustCompile(`bind update on \S+ got ack from ` + iscRel + `: xid mismatch\.$`), DuelingUpdates}
			for _, line := range strings.Split(p.isc.Log(), "\n") {
				if allowed[1].MatchString(line) {
					t.Logf("Allowed dhcpd line: %s", line)
				}
			}
			p.isc.CheckNoComplaints(t, allowed...)
			p.checkOursClean(oursDueling)
			p.checkCapture()
		})
	}
}

// running returns each client's last binding whose lease, as the client
// was told, still runs for at least margin. With a 10 s MCLT first leases
// are 10 s, and busybox udhcpc renews such a short lease late: a lease may
// lapse during a recovery, and then neither database need keep it ACTIVE
// (the recovered side must still agree with the survivor: checkConverged).
func (p *iscPair) running(margin time.Duration) map[Client]Event {
	all := map[Client]Event{}
	for _, c := range p.clients {
		all[c] = Event{}
	}
	return p.runningOf(all, margin)
}

// runningOf is running for some of the clients (the keys of m).
func (p *iscPair) runningOf(m map[Client]Event, margin time.Duration) map[Client]Event {
	out := map[Client]Event{}
	until := time.Now().Add(margin)
	for c := range m {
		evs := c.Events()
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Bound() {
				if evs[i].Ends().After(until) {
					out[c] = evs[i]
				}
				break
			}
			if evs[i].Kind == "deconfig" || evs[i].Kind == "release" || evs[i].Kind == "expire" {
				break
			}
		}
	}
	return out
}
