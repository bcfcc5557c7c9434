package leasesync

import (
	"flag"
	"fmt"
	"math/rand"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

var (
	propSchedules = flag.Int("prop.schedules", 3, "random schedules for TestPairNeverBindsAnAddressToTwoClients")
	propSteps     = flag.Int("prop.steps", 150, "steps per schedule")
	propSeed      = flag.Int64("prop.seed", 0, "first seed (0: from the clock)")
)

// held is one lease as a client holds it.
type held struct {
	client     int
	ip         string
	start, end int64
	from       string
}

// world runs a pair and its clients through a random schedule, checking
// after every ACK what the clients hold.
type world struct {
	t        *testing.T
	rng      *rand.Rand
	clk      *fakeClock
	p, s     *node
	toS, toP *blackhole
	leases   map[int]*held    // client -> current lease
	byIP     map[string]*held // address -> current holder
	mclt     int64
	acks     int
	faults   int
	down     map[*node]bool
	trace    []string
}

// logf records a step of the schedule, printed if an invariant breaks.
func (w *world) logf(format string, a ...any) {
	states := ""
	for _, n := range []*node{w.p, w.s} {
		if w.down[n] || n.s == nil {
			states += " " + n.name[:1] + "=down"
		} else {
			states += " " + n.name[:1] + "=" + n.state().String()
		}
	}
	w.trace = append(w.trace, fmt.Sprintf("t=%d%s: ", w.now()-1_800_000_000, states)+fmt.Sprintf(format, a...))
}

func (w *world) fail(format string, a ...any) {
	w.t.Helper()
	for _, l := range w.trace {
		w.t.Log(l)
	}
	w.t.Fatalf(format, a...)
}

const propClients = 40

func (w *world) now() int64 { return w.clk.Now().Unix() }

// record checks and stores an ACK: invariant 1 (no address held by two
// clients at once) and invariant 3 (outside PARTNER-DOWN, a lease runs at
// most MCLT past what the peer had acknowledged when it was granted).
func (w *world) record(client int, ip string, lt time.Duration, from *node, peerExpiryBefore int64) {
	now := w.now()
	w.logf("ACK %s to client %d for %v by %s", ip, client, lt, from.name)
	if h := w.byIP[ip]; h != nil && h.client != client && h.end > now {
		w.fail("Invariant 1: %s ACKed %s to client %d at %d while client %d holds it until %d (from %s)",
			from.name, ip, client, now, h.client, h.end, h.from)
	}
	secs := int64(lt / time.Second)
	if st := from.state(); st != fsm.PartnerDown && secs > w.mclt && now+secs > max(now, peerExpiryBefore)+w.mclt {
		w.fail("Invariant 3: %s in %s gave %s to client %d for %ds; the peer had acknowledged until %d (now %d, MCLT %d)",
			from.name, st, ip, client, secs, peerExpiryBefore, now, w.mclt)
	}
	if old := w.leases[client]; old != nil && old.ip != ip && w.byIP[old.ip] == old {
		delete(w.byIP, old.ip)
	}
	h := &held{client: client, ip: ip, start: now, end: now + secs, from: from.name}
	w.leases[client] = h
	w.byIP[ip] = h
	w.acks++
}

// servers are the servers that are running.
func (w *world) servers() []*node {
	var out []*node
	for _, n := range []*node{w.p, w.s} {
		if !w.down[n] {
			out = append(out, n)
		}
	}
	return out
}

// peerExpiry reads what each server holds for ip with Observe: Get is the
// session's read, which hides an address while a write of it runs (and
// marks it to be announced), so a checker reading through it saw no
// binding, took 0 for the peer's acknowledgement and failed a lawful
// renewal now and then.
func (w *world) peerExpiry(ip net.IP) map[*node]int64 {
	out := map[*node]int64{}
	for _, n := range w.servers() {
		if b, ok := n.srv.Observe(mustIP(ip.String())); ok {
			out[n] = b.PeerExpiry
		}
	}
	return out
}

// discover runs DISCOVER/REQUEST for a client, broadcast to both servers.
func (w *world) discover(c int) {
	disc, _ := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(c)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	var offer *dhcpv4.DHCPv4
	var from *node
	for _, n := range w.servers() {
		if o := n.dhcp(disc); o != nil && offer == nil {
			offer, from = o, n
		}
	}
	if offer == nil {
		return
	}
	pe := w.peerExpiry(offer.YourIPAddr)
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(c)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(from.id)),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)))
	for _, n := range w.servers() {
		if a := n.dhcp(req); a != nil && a.MessageType() == dhcpv4.MessageTypeAck {
			w.record(c, a.YourIPAddr.String(), a.IPAddressLeaseTime(0), n, pe[n])
		}
	}
}

// renew sends a REQUEST with ciaddr to both servers (REBINDING).
func (w *world) renew(c int) {
	h := w.leases[c]
	if h == nil || h.end <= w.now() {
		return
	}
	ip := net.ParseIP(h.ip)
	pe := w.peerExpiry(ip)
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(c)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(ip))
	for _, n := range w.servers() {
		if a := n.dhcp(req); a != nil && a.MessageType() == dhcpv4.MessageTypeAck {
			w.record(c, a.YourIPAddr.String(), a.IPAddressLeaseTime(0), n, pe[n])
			return // the client takes the first ACK
		}
	}
}

func (w *world) release(c int) {
	h := w.leases[c]
	if h == nil || h.end <= w.now() {
		return
	}
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(c)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(net.ParseIP(h.ip)))
	for _, n := range w.servers() {
		n.dhcp(rel)
	}
	h.end = w.now()
	w.logf("RELEASE %s by client %d", h.ip, c)
}

func (w *world) advance(d time.Duration) {
	w.logf("advance %v", d)
	w.clk.Advance(d)
	for _, n := range w.servers() {
		n.srv.Sweep()
	}
}

// quiesce lets the sessions exchange what they have queued (real time).
func (w *world) quiesce() {
	deadline := time.After(25 * time.Millisecond)
	for _, n := range w.servers() {
		select {
		case <-n.s.RoundDone():
		case <-deadline:
			return
		}
	}
}

func TestPairNeverBindsAnAddressToTwoClients(t *testing.T) {
	seed := *propSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	old := pool
	pool = "pool=192.0.2.100-192.0.2.119 subnet=192.0.2.0/24 lease-time=120"
	defer func() { pool = old }()
	var acks, faults int
	for i := 0; i < *propSchedules; i++ {
		s := seed + int64(i)
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			a, f := runSchedule(t, s)
			acks += a
			faults += f
		})
	}
	t.Logf("%d schedules from seed %d: %d ACKs checked, %d faults injected", *propSchedules, seed, acks, faults)
}

func runSchedule(t *testing.T, seed int64) (acks, faults int) {
	t.Logf("Seed %d (rerun with -prop.seed=%d -prop.schedules=1)", seed, seed)
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	pp, sp := freePort(t), freePort(t)
	w := &world{t: t, rng: rand.New(rand.NewSource(seed)), clk: clk, mclt: 30,
		leases: map[int]*held{}, byIP: map[string]*held{}, down: map[*node]bool{}}
	w.toS = newBlackhole(t, fmt.Sprintf("127.0.0.1:%d", sp))
	w.toP = newBlackhole(t, fmt.Sprintf("127.0.0.1:%d", pp))
	w.p = &node{t: t, name: "primary", id: net.IPv4(192, 0, 2, 1).To4(), store: lease.NewMemoryStore(), clk: clk,
		line: fmt.Sprintf("name=lan1 role=primary address=127.0.0.1 port=%d peer=127.0.0.1 peer-port=%d mclt=30 split=128 max-response-delay=5 load-balance-max-seconds=0", pp, w.toS.port())}
	w.s = &node{t: t, name: "secondary", id: net.IPv4(192, 0, 2, 2).To4(), store: lease.NewMemoryStore(), clk: clk,
		line: fmt.Sprintf("name=lan1 role=secondary address=127.0.0.1 port=%d peer=127.0.0.1 peer-port=%d max-response-delay=5", sp, w.toP.port())}
	w.p.start()
	w.s.start()
	// Both leave STARTUP on the peer's STATE, then balance the pool. Time
	// moves on meanwhile, as it would: a failed first dial is retried.
	for i := 0; !bothNormal(w.p, w.s)(); i++ {
		if i == 200 {
			t.Fatalf("The pair did not reach NORMAL: %s, %s", w.p.state(), w.s.state())
		}
		w.clk.Advance(time.Second)
		w.quiesce()
	}
	defer func() {
		for _, n := range []*node{w.p, w.s} {
			n.stop()
		}
	}()
	partitioned := false
	for step := 0; step < *propSteps; step++ {
		c := w.rng.Intn(propClients)
		switch r := w.rng.Intn(100); {
		case r < 35:
			w.discover(c)
		case r < 55:
			w.renew(c)
		case r < 62:
			w.release(c)
		case r < 80:
			w.advance(time.Duration(1+w.rng.Intn(20)) * time.Second)
		case r < 86:
			// Cut or heal the link between the servers; the clients
			// still reach both.
			partitioned = !partitioned
			w.logf("partitioned=%v", partitioned)
			w.toS.cut.Store(partitioned)
			w.toP.cut.Store(partitioned)
			w.faults++
		case r < 89:
			// A server crashes (its store survives), or comes back.
			n := []*node{w.p, w.s}[w.rng.Intn(2)]
			if w.down[n] {
				n.start()
				w.down[n] = false
				w.logf("%s restarted", n.name)
			} else if len(w.servers()) == 2 {
				n.stop()
				w.down[n] = true
				w.logf("%s crashed", n.name)
			}
			w.faults++
		case r < 92:
			// The operator declares the peer down -- only when it is:
			// PARTNER-DOWN asserts that the peer is not operating
			// (draft-12 §9.2), and no protocol is safe if that is false
			// while the peer serves.
			if ups := w.servers(); len(ups) == 1 && ups[0].s.Command(fsm.PartnerDown) == nil {
				w.faults++
				w.logf("%s: operator partner-down", ups[0].name)
			}
		default:
			w.advance(6 * time.Second) // past max-response-delay
		}
		w.quiesce()
	}
	return w.acks, w.faults
}
