//go:build integration

package integration

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// SimRelay is a relay agent with many simulated DHCP clients behind it, in
// one namespace: each client has its own MAC and client identifier and its
// own RFC 2131 state (INIT, SELECTING, REQUESTING, BOUND, RENEWING,
// REBINDING), and every answer it acts on is recorded with the time the
// client would use (a lease counts from when its request was sent). Like a
// real relay it forwards every broadcast to all the servers, with giaddr
// set; renewals go to the server that granted the lease, then to all.
type SimRelay struct {
	node    *netlab.Node
	giaddr  net.IP
	servers []*net.UDPAddr
	conn    *net.UDPConn

	seed    int64
	linkSel net.IP // option 82 link selection (RFC 3527) added to what it relays; nil: none
	mu      sync.Mutex
	macs    int // MACs handed out
	waiting map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	records []SimRecord
	first   map[string]SimRecord // each client's first ACK, acted on or not
	stopped bool

	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// SimRecord is one thing a simulated client did or was told.
type SimRecord struct {
	Client string        // MAC
	Kind   string        // "ack", "nak", "release", "expire", "stop", "unanswered" (a REQUEST for IP that got no answer)
	IP     string        // the address concerned
	Server string        // server identifier of the answer ("" for the client's own acts)
	Req    time.Time     // when the request was sent (ack, nak); when it happened otherwise
	At     time.Time     // when the answer arrived (ack, nak)
	Lease  time.Duration // lease time granted (ack)
	Mask   net.IPMask    // subnet mask (option 1) of an ack
	Router []net.IP      // routers (option 3) of an ack
}

// End is when the lease of an ack ends for its client.
func (r SimRecord) End() time.Time { return r.Req.Add(r.Lease) }

func (r SimRecord) String() string {
	switch r.Kind {
	case "ack":
		return fmt.Sprintf("%s ack %s from %s, requested %s, acked %s, lease %v (to %s)", r.Client, r.IP, r.Server,
			r.Req.Format("15:04:05.000"), r.At.Format("15:04:05.000"), r.Lease, r.End().Format("15:04:05.000"))
	case "nak":
		return fmt.Sprintf("%s nak for %s from %s at %s", r.Client, r.IP, r.Server, r.At.Format("15:04:05.000"))
	}
	return fmt.Sprintf("%s %s %s at %s", r.Client, r.Kind, r.IP, r.Req.Format("15:04:05.000"))
}

// StartSimRelay opens the relay's socket (giaddr port 67, in the node's
// namespace) and starts n clients. releaseP is the chance that a client
// releases its lease instead of renewing it and leaves: a new client (a new
// MAC) takes its place, so that new clients keep arriving.
func StartSimRelay(n *netlab.Node, giaddr string, servers []string, clients int, releaseP float64, seed int64, opts ...RelayOption) *SimRelay {
	t := n.Lab.T
	t.Helper()
	r := &SimRelay{node: n, seed: seed, giaddr: net.ParseIP(giaddr).To4(), waiting: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{},
		first: map[string]SimRecord{}}
	for _, o := range opts {
		o(r)
	}
	for _, s := range servers {
		r.servers = append(r.servers, &net.UDPAddr{IP: net.ParseIP(s), Port: 67})
	}
	err := n.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: r.giaddr, Port: 67})
		r.conn = c
		return err
	})
	if err != nil {
		t.Fatalf("relay socket on %s:67 in %s: %v", giaddr, n.NS, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go r.read()
	rng := rand.New(rand.NewSource(seed))
	for i := 0; i < clients; i++ {
		c := &simClient{r: r, mac: r.newMAC(), rng: rand.New(rand.NewSource(rng.Int63())), releaseP: releaseP}
		r.wg.Add(1)
		go c.run(ctx)
	}
	n.Lab.T.Cleanup(r.Stop)
	return r
}

// RelayOption changes how a SimRelay relays.
type RelayOption func(*SimRelay)

// WithLinkSelection makes the relay name its clients' link with option
// 82's link-selection sub-option (RFC 3527), its own giaddr being on
// another network.
func WithLinkSelection(link string) RelayOption {
	return func(r *SimRelay) { r.linkSel = net.ParseIP(link).To4() }
}

// newMAC returns a MAC no client of this relay has had.
func (r *SimRelay) newMAC() net.HardwareAddr {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.macs
	r.macs++
	return net.HardwareAddr{0x02, 0x5e, byte(r.seed), byte(i >> 16), byte(i >> 8), byte(i)}
}

// Stop stops every client (without releasing) and closes the socket.
func (r *SimRelay) Stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	r.mu.Unlock()
	r.cancel()
	r.conn.Close()
	r.wg.Wait()
}

// Records returns a copy of everything recorded so far.
func (r *SimRelay) Records() []SimRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]SimRecord(nil), r.records...)
}

// FirstAcks returns the first ACK that reached each client, whether the
// client acted on it or not (it may have come too late).
func (r *SimRelay) FirstAcks() []SimRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]SimRecord, 0, len(r.first))
	for _, a := range r.first {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

func (r *SimRelay) record(rec SimRecord) {
	r.mu.Lock()
	r.records = append(r.records, rec)
	r.mu.Unlock()
}

func (r *SimRelay) read() {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		r.mu.Lock()
		ch := r.waiting[m.TransactionID]
		if mac := m.ClientHWAddr.String(); m.MessageType() == dhcpv4.MessageTypeAck {
			if _, seen := r.first[mac]; !seen {
				r.first[mac] = SimRecord{Client: mac, Kind: "ack", IP: m.YourIPAddr.String(), Server: m.ServerIdentifier().String(),
					At: time.Now(), Lease: m.IPAddressLeaseTime(0), Mask: m.SubnetMask(), Router: m.Router()}
			}
		}
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default: // the client has what it needs
			}
		}
	}
}

// exchange sends m to the servers and collects answers until want says it
// has the one it needs or the timeout passes.
func (r *SimRelay) exchange(ctx context.Context, m *dhcpv4.DHCPv4, to []*net.UDPAddr, timeout time.Duration,
	want func(*dhcpv4.DHCPv4) bool) *dhcpv4.DHCPv4 {
	ch := make(chan *dhcpv4.DHCPv4, 8)
	xid := m.TransactionID
	r.mu.Lock()
	r.waiting[xid] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, xid)
		r.mu.Unlock()
	}()
	m.GatewayIPAddr = r.giaddr
	m.HopCount = 1
	if r.linkSel != nil {
		m.UpdateOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.LinkSelectionSubOption, r.linkSel)))
	}
	b := m.ToBytes()
	for _, a := range to {
		r.conn.WriteToUDP(b, a) // a lost datagram is what retries are for
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case a := <-ch:
			if want(a) {
				return a
			}
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

type simClient struct {
	r        *SimRelay
	mac      net.HardwareAddr
	rng      *rand.Rand
	releaseP float64

	ip      net.IP
	server  net.IP // who granted the current lease
	req     time.Time
	lease   time.Duration
	holding bool
}

func (c *simClient) newMsg(typ dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(c.mac), dhcpv4.WithMessageType(typ),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, c.mac...))))
	return m
}

// sleep waits d or until the run ends; false when it ends.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *simClient) run(ctx context.Context) {
	defer c.r.wg.Done()
	defer func() {
		if c.holding {
			c.r.record(SimRecord{Client: c.mac.String(), Kind: "stop", IP: c.ip.String(), Req: time.Now()})
		}
	}()
	if !sleep(ctx, time.Duration(c.rng.Intn(1000))*time.Millisecond) {
		return
	}
	for ctx.Err() == nil {
		if !c.holding {
			if !c.obtain(ctx) && !sleep(ctx, time.Duration(300+c.rng.Intn(700))*time.Millisecond) {
				return
			}
			continue
		}
		// BOUND: renew at T1 (or release instead, now and then).
		t1 := c.req.Add(c.lease / 2)
		if !sleep(ctx, time.Until(t1)) {
			return
		}
		if c.rng.Float64() < c.releaseP {
			m := c.newMsg(dhcpv4.MessageTypeRelease)
			m.ClientIPAddr = c.ip
			m.UpdateOption(dhcpv4.OptServerIdentifier(c.server))
			c.r.record(SimRecord{Client: c.mac.String(), Kind: "release", IP: c.ip.String(), Req: time.Now()})
			c.holding = false
			c.r.exchange(ctx, m, c.to(c.server), 0, func(*dhcpv4.DHCPv4) bool { return true })
			c.mac = c.r.newMAC()
			continue
		}
		c.renew(ctx)
	}
}

// to is the server with identifier id, or every server when id is nil or
// unknown.
func (c *simClient) to(id net.IP) []*net.UDPAddr {
	for _, a := range c.r.servers {
		if id != nil && a.IP.Equal(id) {
			return []*net.UDPAddr{a}
		}
	}
	return c.r.servers
}

// obtain is INIT → SELECTING → REQUESTING; true when bound.
func (c *simClient) obtain(ctx context.Context) bool {
	d := c.newMsg(dhcpv4.MessageTypeDiscover)
	offer := c.r.exchange(ctx, d, c.r.servers, 700*time.Millisecond, func(a *dhcpv4.DHCPv4) bool {
		return a.MessageType() == dhcpv4.MessageTypeOffer
	})
	if offer == nil {
		return false
	}
	sid := offer.ServerIdentifier()
	q := c.newMsg(dhcpv4.MessageTypeRequest)
	q.TransactionID = d.TransactionID
	q.UpdateOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))
	q.UpdateOption(dhcpv4.OptServerIdentifier(sid))
	return c.request(ctx, q, c.r.servers, sid, offer.YourIPAddr)
}

// renew is RENEWING (to the granting server) then REBINDING (to all) until
// the lease ends.
func (c *simClient) renew(ctx context.Context) {
	t2 := c.req.Add(c.lease * 7 / 8)
	end := c.req.Add(c.lease)
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			c.r.record(SimRecord{Client: c.mac.String(), Kind: "expire", IP: c.ip.String(), Req: end})
			c.holding = false
			return
		}
		to := c.r.servers
		if now.Before(t2) {
			to = c.to(c.server)
		}
		q := c.newMsg(dhcpv4.MessageTypeRequest)
		q.ClientIPAddr = c.ip
		if c.request(ctx, q, to, nil, c.ip) || !c.holding {
			return
		}
		if !sleep(ctx, min(time.Until(end), time.Duration(500+c.rng.Intn(500))*time.Millisecond)) {
			return
		}
	}
}

// request sends a REQUEST and waits for the ACK or NAK of sid (any server
// when sid is nil). An ACK binds the client; a NAK ends its lease.
func (c *simClient) request(ctx context.Context, q *dhcpv4.DHCPv4, to []*net.UDPAddr, sid, ip net.IP) bool {
	sent := time.Now()
	a := c.r.exchange(ctx, q, to, 700*time.Millisecond, func(a *dhcpv4.DHCPv4) bool {
		t := a.MessageType()
		return (t == dhcpv4.MessageTypeAck || t == dhcpv4.MessageTypeNak) && (sid == nil || a.ServerIdentifier().Equal(sid))
	})
	if a == nil {
		// The server may have bound ip and lost its ACK on the way
		// (a cut, a stalled process): the address may be in use,
		// and the peer may have acknowledged an expiry for it.
		c.r.record(SimRecord{Client: c.mac.String(), Kind: "unanswered", IP: ip.String(), Req: sent})
		return false
	}
	at := time.Now()
	if a.MessageType() == dhcpv4.MessageTypeNak {
		c.r.record(SimRecord{Client: c.mac.String(), Kind: "nak", IP: ip.String(), Server: a.ServerIdentifier().String(), Req: sent, At: at})
		c.holding = false
		return false
	}
	lease := a.IPAddressLeaseTime(0)
	c.ip, c.server, c.req, c.lease, c.holding = a.YourIPAddr, a.ServerIdentifier(), sent, lease, true
	c.r.record(SimRecord{Client: c.mac.String(), Kind: "ack", IP: c.ip.String(), Server: c.server.String(),
		Req: sent, At: at, Lease: lease})
	if lease < time.Second {
		// A lease this short is a server bug; the checker reports it. Stop
		// renewing in a tight loop.
		c.lease = time.Second
	}
	return true
}
