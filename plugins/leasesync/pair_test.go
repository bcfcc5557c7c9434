package leasesync

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredhcp/coredhcp/logger"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/failover"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// logs collects every log entry of the process, for assertions.
var logs *test.Hook

func init() {
	l := logger.GetLogger("test")
	logger.WithNoStdOutErr(l)
	logs = test.NewLocal(l.Logger)
}

// node is one server of a pair: its session, its failover plugin and its
// store, all in this process.
type node struct {
	t     *testing.T
	name  string
	id    net.IP
	line  string
	s     *Session
	srv   *failover.Server
	store lease.Store
	clk   Clock // nil: the real clock
}

// pool is the failover line's pool; tests may widen it.
var pool = "pool=192.0.2.100-192.0.2.199 subnet=192.0.2.0/24 lease-time=600"

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// pair prepares a primary and a secondary on loopback with extra
// leasesync words; neither is started.
func pair(t *testing.T, extraP, extraS string) (p, s *node) {
	t.Helper()
	pp, sp := freePort(t), freePort(t)
	p = &node{t: t, name: "primary", id: net.IPv4(192, 0, 2, 1).To4(), store: lease.NewMemoryStore(),
		line: fmt.Sprintf("name=lan1 role=primary address=127.0.0.1 port=%d peer=127.0.0.1 peer-port=%d mclt=30 split=128 max-response-delay=5 %s", pp, sp, extraP)}
	s = &node{t: t, name: "secondary", id: net.IPv4(192, 0, 2, 2).To4(), store: lease.NewMemoryStore(),
		line: fmt.Sprintf("name=lan1 role=secondary address=127.0.0.1 port=%d peer=127.0.0.1 peer-port=%d max-response-delay=5 %s", sp, pp, extraS)}
	return p, s
}

// start runs the node: the session starts when failover attaches.
func (n *node) start() {
	n.t.Helper()
	n.startLine("name=lan1 db=/unused " + pool)
}

// startLine runs the node with the failover line given (its name= must be
// the leasesync line's).
func (n *node) startLine(failoverLine string) {
	n.t.Helper()
	var clk Clock
	now := time.Now
	if n.clk != nil {
		clk, now = n.clk, n.clk.Now
	}
	s, err := SessionFromLine(strings.Fields(n.line), clk)
	if err != nil {
		n.t.Fatal(err)
	}
	s.reconnect = 100 * time.Millisecond
	s.startupTimeout = 1
	srv, err := failover.StartFromLine(strings.Fields(failoverLine), n.store, now, s.Relationship())
	if err != nil {
		n.t.Fatal(err)
	}
	n.s, n.srv = s, srv
	n.t.Cleanup(n.stop)
}

// stop closes the node as the process would at SIGTERM (the store stays).
func (n *node) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv, n.s = nil, nil
	}
}

func (n *node) state() fsm.State { return n.s.Relationship().View().MyState }

// waitFor waits, without sleeping, until cond holds, re-checking whenever
// one of the sessions ends a round.
func waitFor(t testing.TB, what string, cond func() bool, nodes ...*node) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	// Conditions on logs or on the failover side's counts can turn true
	// after the event that ended the session's round: look again now and then.
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		chans := make([]<-chan struct{}, 0, len(nodes))
		for _, n := range nodes {
			if n.s != nil {
				chans = append(chans, n.s.RoundDone())
			}
		}
		if cond() {
			return
		}
		select {
		case <-anyOf(chans):
		case <-poll.C:
		case <-deadline:
			for _, n := range nodes {
				if n.s != nil {
					t.Logf("%s: %+v", n.name, *n.s.Relationship().View())
				}
			}
			t.Fatalf("Timed out waiting for %s", what)
		}
	}
}

func anyOf(chans []<-chan struct{}) <-chan struct{} {
	out := make(chan struct{})
	var once sync.Once
	for _, c := range chans {
		go func() {
			select {
			case <-c:
				once.Do(func() { close(out) })
			case <-time.After(time.Second):
				// Timers in the sessions fire at least this often
				// while connected; re-check the condition.
				once.Do(func() { close(out) })
			}
		}()
	}
	return out
}

func bothNormal(p, s *node) func() bool {
	return func() bool {
		if p.s == nil || s.s == nil || p.state() != fsm.Normal || s.state() != fsm.Normal {
			return false
		}
		// And each has seen the other's NORMAL.
		return p.s.Relationship().View().PeerState == fsm.Normal && s.s.Relationship().View().PeerState == fsm.Normal
	}
}

func TestPairReachesNormalFromEveryStartOrder(t *testing.T) {
	for _, order := range []string{"primary first", "secondary first", "together"} {
		t.Run(order, func(t *testing.T) {
			p, s := pair(t, "", "")
			switch order {
			case "primary first":
				// The primary leaves STARTUP alone before the
				// secondary appears.
				p.start()
				waitFor(t, "the primary to leave STARTUP", func() bool { return p.state() != fsm.Startup }, p)
				s.start()
			case "secondary first":
				s.start()
				waitFor(t, "the secondary to leave STARTUP", func() bool { return s.state() != fsm.Startup }, s)
				p.start()
			case "together":
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { defer wg.Done(); p.start() }()
				go func() { defer wg.Done(); s.start() }()
				wg.Wait()
			}
			waitFor(t, "both servers in NORMAL", bothNormal(p, s), p, s)
		})
	}
}

// dhcp runs one packet through a node's failover handler, as CoreDHCP
// would after server_id.
func (n *node) dhcp(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	n.t.Helper()
	resp, err := dhcpv4.NewReplyFromRequest(req)
	if err != nil {
		n.t.Fatal(err)
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
	case dhcpv4.MessageTypeRequest:
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
	}
	resp.UpdateOption(dhcpv4.OptServerIdentifier(n.id))
	out, _ := n.srv.Handler4(req, resp)
	return out
}

func clientMAC(i int) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)} }

// dora broadcasts a DISCOVER and the REQUEST to both servers, as a client
// on the LAN does (taking the first offer), and returns the address and
// the server that ACKed. With single set, a second offer fails the test
// (in NORMAL, load balancing lets exactly one server answer).
func dora(t *testing.T, i int, single bool, servers ...*node) (string, *node) {
	t.Helper()
	mac := clientMAC(i)
	disc, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	var offer *dhcpv4.DHCPv4
	var from *node
	for _, n := range servers {
		if o := n.dhcp(disc); o != nil {
			if offer != nil {
				if single {
					t.Fatalf("Client %d got offers from two servers", i)
				}
				continue
			}
			offer, from = o, n
		}
	}
	if offer == nil {
		return "", nil
	}
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(from.id)),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)))
	var ack *dhcpv4.DHCPv4
	for _, n := range servers {
		if a := n.dhcp(req); a != nil {
			if n != from || a.MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("Client %d: %s answered %s to a REQUEST for %s", i, n.name, a.MessageType(), from.name)
			}
			ack = a
		}
	}
	if ack == nil {
		t.Fatalf("Client %d: %s offered %s but did not ACK it", i, from.name, offer.YourIPAddr)
	}
	return ack.YourIPAddr.String(), from
}

func mustIP(s string) lease.IP {
	ip, ok := lease.IPFromNet(net.ParseIP(s))
	if !ok {
		panic(s)
	}
	return ip
}

// agree reports whether the other server holds each ACKed lease, bound to
// the same client. It logs the first disagreement when the test fails.
func agree(leases map[string]int, p, s *node) func() bool {
	var last string
	p.t.Cleanup(func() {
		if p.t.Failed() && last != "" {
			p.t.Log("Last disagreement: " + last)
		}
	})
	return func() bool {
		for ip, i := range leases {
			for _, n := range []*node{p, s} {
				b, ok := n.srv.Observe(mustIP(ip))
				if !ok || b.State != lease.Active || len(b.HWAddr) < 2 || !bytes.Equal(b.HWAddr[1:], clientMAC(i)) {
					last = fmt.Sprintf("%s of client %d on the %s: %v (found %v)", ip, i, n.name, b, ok)
					return false
				}
			}
		}
		return true
	}
}

func TestLeasesReachThePeerAndBothServersShareTheClients(t *testing.T) {
	p, s := pair(t, "", "")
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL", bothNormal(p, s), p, s)
	// Pool balancing gives the secondary its share of the free addresses.
	waitFor(t, "the secondary to own BACKUP addresses", func() bool {
		own, _ := s.srv.FreeCounts()
		return own >= 40
	}, p, s)
	leases := map[string]int{}
	served := map[string]int{}
	for i := 0; i < 60; i++ {
		ip, from := dora(t, i, true, p, s)
		if from == nil {
			t.Fatalf("Client %d got no offer", i)
		}
		if j, dup := leases[ip]; dup {
			t.Fatalf("Clients %d and %d both got %s", j, i, ip)
		}
		leases[ip] = i
		served[from.name]++
		// The server that answered is the one whose hash bucket holds
		// the client (split=128: buckets 0-127 are the primary's).
		primary := lbhash.Bucket(lbhash.PacketKey(nil, clientMAC(i))) < 128
		if primary != (from == p) {
			t.Fatalf("Client %d (bucket %d) was served by the %s", i, lbhash.Bucket(lbhash.PacketKey(nil, clientMAC(i))), from.name)
		}
	}
	if served["primary"] == 0 || served["secondary"] == 0 {
		t.Fatalf("Load balancing: served %v", served)
	}
	waitFor(t, "every lease on both servers", agree(leases, p, s), p, s)
}

func TestUpdatesSurviveACutLinkAndAreResent(t *testing.T) {
	p, s := pair(t, "", "")
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL", bothNormal(p, s), p, s)
	leases := map[string]int{}
	for i := 0; i < 40; i++ {
		if i == 20 {
			// Cut mid-stream: updates in flight and queued must go
			// again on the next link.
			if err := p.s.Reconnect(); err != nil {
				t.Fatal(err)
			}
		}
		ip, from := dora(t, i, false, p, s)
		if from == nil {
			// While the link is down the secondary may be out of
			// BACKUP addresses; the primary still serves its half.
			continue
		}
		leases[ip] = i
	}
	waitFor(t, "both servers in NORMAL again", bothNormal(p, s), p, s)
	waitFor(t, "every lease on both servers", agree(leases, p, s), p, s)
}

func TestPendingUpdatesSurviveARestart(t *testing.T) {
	p, s := pair(t, "", "")
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL", bothNormal(p, s), p, s)
	s.stop()
	waitFor(t, "the primary to notice", func() bool { return p.state() == fsm.CommInterrupted }, p)
	leases := map[string]int{}
	for i := 0; i < 30; i++ {
		if ip, from := dora(t, i, false, p); from != nil {
			leases[ip] = i
		}
	}
	if len(leases) == 0 {
		t.Fatal("The primary served no one in communications-interrupted")
	}
	// The primary restarts too: its unacknowledged updates are in its
	// store and go to the secondary when the pair meets again.
	p.stop()
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL", bothNormal(p, s), p, s)
	waitFor(t, "every lease on both servers", agree(leases, p, s), p, s)
}

func TestPeerWithWrongSettingsIsRefusedWithAReason(t *testing.T) {
	for _, tc := range []struct {
		name           string
		extraP, extraS string
		secondaryName  string
		want           string
	}{
		{name: "Wrong relationship name", secondaryName: "lan2", want: "unknown failover relationship name"},
		{name: "MCLT differs", extraS: "mclt=60", want: "MCLT 30s differs from ours (60s)"},
		{name: "Split differs", extraS: "split=64", want: "hash bucket assignment"},
		{name: "Both primary", want: "both servers are configured as primary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			p, s := pair(t, tc.extraP, tc.extraS)
			if tc.secondaryName != "" {
				s.line = strings.Replace(s.line, "name=lan1", "name="+tc.secondaryName, 1)
			}
			if tc.name == "Both primary" {
				s.line = strings.Replace(s.line, "role=secondary", "role=primary mclt=30 split=128", 1)
			}
			p.start()
			if tc.secondaryName != "" {
				// The failover line must carry the same name.
				sess, err := SessionFromLine(strings.Fields(s.line), nil)
				if err != nil {
					t.Fatal(err)
				}
				sess.reconnect = 100 * time.Millisecond
				sess.startupTimeout = 1
				srv, err := failover.StartFromLine(strings.Fields("name="+tc.secondaryName+" db=/unused "+pool), s.store, time.Now, sess.Relationship())
				if err != nil {
					t.Fatal(err)
				}
				s.s, s.srv = sess, srv
				t.Cleanup(s.stop)
			} else {
				s.start()
			}
			waitFor(t, "the refusal in the log", func() bool {
				for _, e := range logs.AllEntries() {
					if e.Level <= logrus.WarnLevel && strings.Contains(e.Message+fmt.Sprint(e.Data), tc.want) {
						return true
					}
				}
				return false
			}, p, s)
			if p.state() == fsm.Normal || s.state() == fsm.Normal {
				t.Fatalf("A refused pair reached NORMAL (%s, %s)", p.state(), s.state())
			}
		})
	}
}

func TestThousandsOfUpdatesArriveInOrderWithoutLoss(t *testing.T) {
	old := pool
	pool = "pool=198.18.0.10-198.18.15.250 subnet=198.18.0.0/15 lease-time=600"
	defer func() { pool = old }()
	p, s := pair(t, "max-unacked-updates=10", "max-unacked-updates=10")
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL", bothNormal(p, s), p, s)
	waitFor(t, "the secondary to own BACKUP addresses", func() bool {
		own, _ := s.srv.FreeCounts()
		return own >= 1500
	}, p, s)
	leases := map[string]int{}
	for i := 0; i < 2000; i++ {
		ip, from := dora(t, i, true, p, s)
		if from == nil {
			t.Fatalf("Client %d got no offer", i)
		}
		leases[ip] = i
	}
	// Renew every other lease on the server that granted it: the second
	// update of a binding must not be overtaken by the first.
	for ip, i := range leases {
		if i%2 == 0 {
			continue
		}
		req, _ := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(i)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithClientIP(net.ParseIP(ip)))
		var acked bool
		for _, n := range []*node{p, s} {
			if a := n.dhcp(req); a != nil && a.MessageType() == dhcpv4.MessageTypeAck {
				acked = true
			}
		}
		if !acked {
			t.Fatalf("Renewal of %s by client %d was not ACKed", ip, i)
		}
	}
	// Both copies of each binding end with the same client and expiry.
	same := agree(leases, p, s)
	waitFor(t, "every lease, renewed, on both servers", func() bool {
		if !same() {
			return false
		}
		for ip := range leases {
			a, _ := p.srv.Observe(mustIP(ip))
			b, _ := s.srv.Observe(mustIP(ip))
			if a.End != b.End {
				return false
			}
		}
		return true
	}, p, s)
}

// A silent partition: no FIN, no RST, nothing. Each server must notice
// within max-response-delay (5 s here) and go COMMUNICATIONS-INTERRUPTED,
// keep serving its own clients, and both must come back to NORMAL and
// exchange what they granted meanwhile when the network heals.
func TestSilentPartitionIsNoticedWithinMaxResponseDelay(t *testing.T) {
	pp, sp := freePort(t), freePort(t)
	toS := newBlackhole(t, fmt.Sprintf("127.0.0.1:%d", sp))
	toP := newBlackhole(t, fmt.Sprintf("127.0.0.1:%d", pp))
	p := &node{t: t, name: "primary", id: net.IPv4(192, 0, 2, 1).To4(), store: lease.NewMemoryStore(),
		line: fmt.Sprintf("name=lan1 role=primary address=127.0.0.1 port=%d peer=127.0.0.1 peer-port=%d mclt=30 split=128 max-response-delay=5", pp, toS.port())}
	s := &node{t: t, name: "secondary", id: net.IPv4(192, 0, 2, 2).To4(), store: lease.NewMemoryStore(),
		line: fmt.Sprintf("name=lan1 role=secondary address=127.0.0.1 port=%d peer=127.0.0.1 peer-port=%d max-response-delay=5", sp, toP.port())}
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL", bothNormal(p, s), p, s)
	toS.cut.Store(true)
	toP.cut.Store(true)
	cutAt := time.Now()
	waitFor(t, "both servers in COMMUNICATIONS-INTERRUPTED", func() bool {
		return p.state() == fsm.CommInterrupted && s.state() == fsm.CommInterrupted
	}, p, s)
	if d := time.Since(cutAt); d > 7*time.Second {
		t.Fatalf("The partition was noticed after %v, max-response-delay is 5s", d)
	}
	leases := map[string]int{}
	for i := 0; i < 20; i++ {
		// Each side serves the clients that reach it.
		if ip, from := dora(t, i, false, p); from != nil {
			leases[ip] = i
		}
		if ip, from := dora(t, 1000+i, false, s); from != nil {
			leases[ip] = 1000 + i
		}
	}
	toS.cut.Store(false)
	toP.cut.Store(false)
	waitFor(t, "both servers in NORMAL after healing", bothNormal(p, s), p, s)
	waitFor(t, "every lease granted during the partition on both servers", agree(leases, p, s), p, s)
}

// Pool balancing (docs/protocol.md §15): clients that hash to the secondary
// drain its BACKUP addresses; its balance timer finds it starved and sends
// POOLREQ; the primary answers with POOLRESP and the transfers. The
// primary's own timer is an hour, so only the request can explain them.
func TestStarvedSecondaryAsksForAddresses(t *testing.T) {
	logs.Reset()
	p, s := pair(t, "min-balance=3600", "min-balance=1")
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL", bothNormal(p, s), p, s)
	waitFor(t, "the secondary's share", func() bool { own, _ := s.srv.FreeCounts(); return own == 50 }, p, s)
	secondaryClients(t, 50, p, s)
	// It served exactly its 50: whatever it owns now was transferred
	// (its timer may have fired during the loop already).
	waitFor(t, "addresses transferred on request", func() bool {
		var asked, answered bool
		for _, e := range logs.AllEntries() {
			asked = asked || strings.Contains(e.Message, "requesting a pool rebalance")
			answered = answered || strings.Contains(e.Message, "pool request from the peer")
		}
		own, _ := s.srv.FreeCounts()
		return asked && answered && own > 0
	}, p, s)
}

// offsetClock is the real clock, shifted.
type offsetClock struct{ d time.Duration }

func (c offsetClock) Now() time.Time { return time.Now().Add(c.d) }
func (c offsetClock) AfterFunc(d time.Duration, f func()) interface{ Stop() bool } {
	return time.AfterFunc(d, f)
}

// Clock skew (draft-12 §5.1): the primary's clock runs 30 s ahead. The
// handshake accepts it (ISC refuses beyond 60 s), CONTACT keeps measuring
// it, and the times in the primary's updates are stored in the secondary's
// own clock.
func TestTimesFromASkewedPeerAreCorrected(t *testing.T) {
	p, s := pair(t, "", "")
	p.clk = offsetClock{30 * time.Second}
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL", bothNormal(p, s), p, s)
	var ip string
	for i := 0; ; i++ {
		if lbhash.Bucket(lbhash.PacketKey(nil, clientMAC(i))) >= 128 {
			continue // the secondary's client
		}
		var from *node
		ip, from = dora(t, i, true, p, s)
		if from != p {
			t.Fatalf("Client %d was not served by the primary", i)
		}
		break
	}
	waitFor(t, "the lease on the secondary", func() bool {
		b, ok := s.srv.Observe(mustIP(ip))
		return ok && b.State == lease.Active
	}, p, s)
	pb, _ := p.srv.Observe(mustIP(ip))
	sb, _ := s.srv.Observe(mustIP(ip))
	// Allow a second for the measurement's resolution.
	if d := pb.End - 30 - sb.End; d < -1 || d > 1 {
		t.Fatalf("The primary's lease ends at %d (its clock), the secondary stored %d; want %d±1", pb.End, sb.End, pb.End-30)
	}
	if d := pb.SentExpiry - 30 - sb.PeerExpiry; d < -1 || d > 1 {
		t.Fatalf("Potential expiry %d (primary's clock) stored as %d; want %d±1", pb.SentExpiry, sb.PeerExpiry, pb.SentExpiry-30)
	}
	if st, err := s.s.Status(); err != nil || st.ClockSkew < 29 || st.ClockSkew > 31 {
		t.Fatalf("The secondary reports a clock skew of %d (%v), want about 30", st.ClockSkew, err)
	}
}
