package failover

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/ratelimit"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// maxInFlight bounds the requests this plugin works on at once. CoreDHCP
// starts a goroutine for every datagram; beyond this many waiting on the
// store, a request is dropped at once (the client retransmits) rather than
// queued behind the others until it is too late to matter.
const maxInFlight = 1024

// sweepBatch caps the expiries handled in one sweep, to bound the time the
// table lock is held.
const sweepBatch = 4096

// Server is one failover plugin line: its table of bindings, its store and
// the DHCP logic. Handler4 is safe for concurrent use.
type Server struct {
	cfg    Config
	now    func() time.Time
	mu     sync.Mutex // guards table
	table  *lease.Table
	commit Committer
	slots  chan struct{}
	// rel is the failover relationship, nil for a single server.
	rel *relation.Relationship
	// primary is our role in rel (true for a single server).
	primary bool

	stop     chan struct{}
	stopped  chan struct{}
	closeMu  sync.Mutex
	isClosed bool

	exhaustedLog ratelimit.Limiter
	// pdOpen is set while the peer's addresses are open to us in
	// PARTNER-DOWN; pdScan is when they were last re-examined.
	pdOpen bool
	pdScan int64
	// wasStale is stale(view) at the last reopen.
	wasStale bool
	store    lease.Store
	met      *serverMetrics
	health   storeHealth
	// acks is the commit the last acknowledgement from the peer went
	// into (see Acked); unsaved holds the acknowledged addresses whose
	// write failed: Sweep writes them again (see saveAcks).
	acks    *ackCommit
	unsaved map[lease.IP]bool
	// peerCommit collects the peer's updates that went into the current
	// commit (see ApplyPeer).
	peerCommit *peerCommit
	// superseded holds failed changes that had already been replaced in
	// memory (see undoLocked).
	superseded map[lease.IP]undoRecord
	// writing counts, per address, the client bindings submitted whose
	// write (and undo, if it failed) has not finished: while there is
	// one, the binding in memory may not be on disk. Guarded by mu.
	writing map[lease.IP]int
	// hidden holds the addresses Get refused while they were written:
	// they are announced when the last write settles. Guarded by mu.
	hidden map[lease.IP]bool
}

// reusable is the ownership rule: which existing bindings may go to a new
// client. A single server owns every free, expired or released address;
// in a relationship the primary allocates FREE addresses and the secondary
// BACKUP ones, and an expired or released address becomes free only when
// the peer has acknowledged it (docs/protocol.md §18).
func (s *Server) reusable(b *lease.Binding) bool {
	if s.rel == nil {
		return lease.DefaultReusable(b)
	}
	own := lease.Backup
	if s.primary {
		own = lease.Free
	}
	v := s.rel.View()
	if b.State == own && !stale(v) {
		return true
	}
	if v.MyState != fsm.PartnerDown {
		return false
	}
	switch b.State {
	case lease.Free, lease.Backup, lease.Expired, lease.Released, lease.Reset:
		return s.now().Unix() >= partnerDownReuse(v, b)
	}
	return false
}

// partnerDownReuse is when, in PARTNER-DOWN, an address that is not ours
// may be given to a new client (docs/protocol.md §18; docs/invariants.md, invariant 5): MCLT
// after PARTNER-DOWN began, after the binding's end, and after every
// expiry the peer may hold -- the peer, if it is in fact alive, cannot have
// granted past that bound plus MCLT. The peer holds what it acknowledged
// (PeerExpiry) or what it received since, which it adopts before its
// BNDACK leaves; that ack may be lost with the link, so the wait covers
// what was sent (SentExpiry, never lowered: see request) as well.
func partnerDownReuse(v *relation.View, b *lease.Binding) int64 {
	return max(pdStart(v), b.End, b.PeerExpiry, b.SentExpiry) + v.MCLT
}

// pdStart is when PARTNER-DOWN began for the reuse rules
// (relation.View.PartnerDownStart, which failoverctl status shows too).
func pdStart(v *relation.View) int64 { return v.PartnerDownStart() }

// partnerDownOpen is true when the peer's never-used addresses may be used:
// in PARTNER-DOWN, MCLT after entering it, once the peer has been heard or
// the operator has declared partner-down since this process started.
func (s *Server) partnerDownOpen(now int64) bool {
	v := s.view()
	return v != nil && v.MyState == fsm.PartnerDown && (v.Contacted || v.OperatorPartnerDown) &&
		now >= pdStart(v)+v.MCLT
}

// stale is true in PARTNER-DOWN when the peer has not been heard since this
// process started: while we were away the peer may have given our own free
// addresses too, so they wait for MCLT like the peer's.
func stale(v *relation.View) bool {
	return v.MyState == fsm.PartnerDown && !v.Contacted
}

// Committer queues bindings for durable writes. The server uses a
// lease.Committer, which writes in groups from a goroutine of its own; a
// driver that must decide when each write ends (the deterministic
// simulation of a pair, in the leasesync tests) gives its own to NewDriven.
type Committer interface {
	// Submit queues b and returns the batch that settles once b is
	// durable or its write has failed.
	Submit(b lease.Binding) *lease.Batch
	// Close writes what is queued and closes the store.
	Close() error
}

// LoadServer loads every binding from store and returns a server over it.
// now is the clock (time.Now outside tests). rel is the failover
// relationship, or nil for a single server. Its metrics go to the
// relationship's registry, or to one of its own (Registry).
func LoadServer(cfg Config, store lease.Store, now func() time.Time, rel *relation.Relationship) (*Server, error) {
	reg := prometheus.NewRegistry()
	if rel != nil && rel.Metrics != nil {
		reg = rel.Metrics
	}
	return loadServerWith(cfg, store, now, rel, reg, nil)
}

// loadServerWith is LoadServer with the metrics in reg, writing through
// commit (nil: a lease.Committer over store).
func loadServerWith(cfg Config, store lease.Store, now func() time.Time, rel *relation.Relationship, reg *prometheus.Registry, commit Committer) (*Server, error) {
	s := &Server{
		cfg:     cfg,
		now:     now,
		slots:   make(chan struct{}, maxInFlight),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		rel:     rel,
		primary: true,
	}
	if rel != nil {
		s.primary = rel.View().Primary
	}
	// Until the first sweep has seen the view, assume the reuse rule may
	// have refused our own free addresses (stale): reopen requeues them.
	s.wasStale = rel != nil
	s.table = lease.NewTable(cfg.Pools, s.reusable, s.ownsNew)
	s.superseded = make(map[lease.IP]undoRecord)
	s.writing = make(map[lease.IP]int)
	s.unsaved = make(map[lease.IP]bool)
	s.hidden = make(map[lease.IP]bool)
	s.store = store
	if err := s.load(store); err != nil {
		return nil, err
	}
	met, err := registerMetrics(s, reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s.met = met
	s.commit = commit
	if commit == nil {
		s.commit = lease.NewCommitter(store, 0)
	}
	return s, nil
}

// loadBatch is how many bindings go from the store's reader to the table
// builder at once.
const loadBatch = 4096

// load fills the table from store. The table is built in a second
// goroutine while the store reads the next rows: for sqlite, reading is
// about half of the work (cgo per column) and the indexes the other half,
// so a large database loads in about half the time on two cores.
func (s *Server) load(store lease.Store) error {
	size := loadBatch
	if c, ok := store.(lease.Counter); ok {
		if n, err := c.Count(); err == nil {
			s.table.Reserve(n)
			// A small database needs no full-size batches.
			size = min(size, n+1)
		}
	}
	full := make(chan []lease.Binding, 2)
	empty := make(chan []lease.Binding, 3)
	for range cap(empty) {
		empty <- make([]lease.Binding, 0, size)
	}
	built := make(chan struct{})
	go func() {
		defer close(built)
		for batch := range full {
			for i := range batch {
				// It may have reached the peer before a crash.
				batch[i].Transmitted = batch[i].Pending
				s.table.Put(batch[i])
			}
			empty <- batch[:0]
		}
	}()
	batch := <-empty
	err := store.Load(func(b lease.Binding) error {
		batch = append(batch, b)
		if len(batch) == size {
			full <- batch
			batch = <-empty
		}
		return nil
	})
	if len(batch) > 0 {
		full <- batch
	}
	close(full)
	<-built
	return err
}

// Run expires leases and offer holds every interval until Close.
func (s *Server) Run(interval time.Duration) {
	defer close(s.stopped)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Close writes what is queued and closes the store, for a server whose
// sweeper was never started (Run); Shutdown stops a running one.
func (s *Server) Close() error { return s.close(false) }

// Shutdown stops the sweeper that Run started, then closes as Close.
func (s *Server) Shutdown() error { return s.close(true) }

func (s *Server) close(running bool) error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.isClosed {
		return nil
	}
	s.isClosed = true
	close(s.stop)
	if running {
		<-s.stopped
	}
	s.met.unregister()
	var err error
	if s.rel != nil {
		// The session uses the store: it stops first.
		err = s.rel.Stop()
	}
	return errors.Join(err, s.commit.Close())
}

// Sweep ends lapsed offer holds, moves ACTIVE leases past their end to
// EXPIRED and ABANDONED addresses past their hold to FREE.
func (s *Server) Sweep() {
	s.resaveAcks()
	now := s.now().Unix()
	var last *lease.Batch
	var changed []lease.IP
	// The primary expires leases; the secondary only where it may be
	// serving alone (COMMUNICATIONS-INTERRUPTED, PARTNER-DOWN). An ISC
	// primary refuses a secondary's EXPIRED for a lease it holds ACTIVE
	// (reason 2), so an expiry made while NORMAL or while resynchronising
	// (ISC's secondary skips only NORMAL) would only come back refused;
	// the primary's own expiry reaches us instead.
	expireActive := true
	if v := s.view(); v != nil && !v.Primary && v.MyState != fsm.CommInterrupted && v.MyState != fsm.PartnerDown {
		expireActive = false
	}
	s.mu.Lock()
	s.table.ExpireHolds(now)
	s.reopen(now)
	for i := 0; i < sweepBatch; i++ {
		b, ok := s.table.NextEnd(now)
		if !ok {
			break
		}
		switch b.State {
		case lease.Active:
			if !expireActive {
				i = sweepBatch // leave the rest for later
				continue
			}
			b.State = lease.Expired
		case lease.Abandoned:
			// Back to the primary's pool; pool balancing gives the
			// secondary its share. Only once the peer has acknowledged
			// the ABANDONED binding: until then it is not on the heap
			// (lease.Table), as a peer that did not hear the DECLINE
			// may still hold the address for its client.
			b = lease.Binding{IP: b.IP, State: lease.Free, PeerExpiry: b.PeerExpiry, SentExpiry: b.SentExpiry}
		}
		s.mark(&b)
		s.table.Put(b)
		last = s.commit.Submit(b)
		changed = append(changed, b.IP)
	}
	s.mu.Unlock()
	if last != nil {
		if err := s.wrote(last.Wait(), "expired leases"); err != nil {
			// Memory is ahead of the disk; the rows are written again
			// at the next change or re-expired after a restart.
			return
		}
		s.announce(changed...)
	}
}

// reopen re-examines the bindings when the state makes more of them
// usable: when the peer is first heard after a restart in PARTNER-DOWN
// (our own free addresses, which the reuse rule refused until then, and
// which an allocation may have taken off the free queue meanwhile), and in
// PARTNER-DOWN, from MCLT after entering it and then every reuseScan as
// more leases pass their end plus MCLT. Never-used addresses need nothing
// here: the table asks ownsNew at each allocation. Call with s.mu held.
func (s *Server) reopen(now int64) {
	if v := s.view(); v != nil {
		st := stale(v)
		if s.wasStale && !st {
			s.table.RequeueAll()
		}
		s.wasStale = st
	}
	if !s.partnerDownOpen(now) {
		s.pdOpen = false
		return
	}
	if !s.pdOpen || now >= s.pdScan+reuseScan {
		s.pdOpen, s.pdScan = true, now
		s.table.RequeueAll()
	}
}

// reuseScan is how often, in PARTNER-DOWN, the addresses of the peer are
// re-examined for reuse, in seconds.
const reuseScan = 10

// view is the relationship's current view, or nil for a single server.
func (s *Server) view() *relation.View {
	if s.rel == nil {
		return nil
	}
	return s.rel.View()
}

// mark flags a change the peer must hear of. Call with s.mu held.
func (s *Server) mark(b *lease.Binding) {
	if s.rel != nil {
		b.Pending, b.Transmitted = true, false
	}
}

// announce tells the session of durable changes.
func (s *Server) announce(ips ...lease.IP) {
	if s.rel == nil {
		return
	}
	for _, ip := range ips {
		s.rel.Changed(ip)
	}
}

// client is what identifies the sender of a request.
type client struct {
	key      string
	clientID []byte
	hwaddr   []byte
}

func clientOf(req *dhcpv4.DHCPv4) client {
	var c client
	if id := req.Options.Get(dhcpv4.OptionClientIdentifier); len(id) > 0 {
		c.clientID = id
	}
	hw := make([]byte, 1, 1+len(req.ClientHWAddr))
	hw[0] = byte(req.HWType)
	c.hwaddr = append(hw, req.ClientHWAddr...)
	c.key = lease.ClientKey(c.clientID, c.hwaddr)
	return c
}

// Handler4 is the plugin's handler: it answers DISCOVER, REQUEST and INFORM,
// and takes RELEASE and DECLINE, for clients of its network.
func (s *Server) Handler4(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.met.drops[dropOverload].Inc()
		log.Debugf("dropping %s from %s: %d requests in progress", req.MessageType(), req.ClientHWAddr, maxInFlight)
		return nil, true
	}
	giaddr, _ := netip.AddrFromSlice(req.GatewayIPAddr.To4())
	if !s.cfg.serves(giaddr) {
		s.met.drops[dropForeignRelay].Inc()
		log.Debugf("dropping %s from %s: relay %s is not on %s", req.MessageType(), req.ClientHWAddr, giaddr, s.cfg.Subnet)
		return nil, true
	}
	c := clientOf(req)
	if c.key == "" {
		// Nothing tells this client from another (Kea drops these too):
		// every such client would share one lease.
		s.met.drops[dropNoIdentity].Inc()
		log.Debugf("dropping %s: no hardware address and no client identifier", req.MessageType())
		return nil, true
	}
	v := s.view()
	if v != nil && !v.MayServe {
		s.met.drops[dropStateForbids].Inc()
		log.Debugf("dropping %s from %s: failover state %s serves no client", req.MessageType(), req.ClientHWAddr, v.MyState)
		return nil, true
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		if v != nil && !s.mine(req, v) {
			s.met.drops[dropNotOurBucket].Inc()
			log.Debugf("dropping DISCOVER from %s: its hash bucket belongs to the peer", req.ClientHWAddr)
			return nil, true
		}
		out, stop := s.discover(req, resp, c)
		if out != nil {
			s.met.answers[answerOffer].Inc()
		}
		return out, stop
	case dhcpv4.MessageTypeRequest:
		out, stop := s.request(req, resp, c)
		switch {
		case out == nil:
		case stop:
			s.met.answers[answerNak].Inc()
		default:
			s.met.answers[answerAck].Inc()
		}
		return out, stop
	case dhcpv4.MessageTypeRelease:
		s.release(req, c)
		return nil, true
	case dhcpv4.MessageTypeDecline:
		s.decline(req, c)
		return nil, true
	case dhcpv4.MessageTypeInform:
		s.met.answers[answerInform].Inc()
		resp.YourIPAddr = net.IPv4zero
		return resp, false
	}
	s.met.drops[dropNotClient].Inc()
	log.Debugf("dropping %s from %s: not a client message", req.MessageType(), req.ClientHWAddr)
	return nil, true
}

// mine is RFC 3074 load balancing as ISC applies it (docs/protocol.md §17): in
// NORMAL a DISCOVER is answered only by the server whose hash buckets hold
// the client, unless its secs field exceeds load-balance-max-seconds (0
// turns balancing off). Other requests and other states are not balanced.
func (s *Server) mine(req *dhcpv4.DHCPv4, v *relation.View) bool {
	if v.MyState != fsm.Normal {
		return true
	}
	if lbhash.SecsOverride(req.NumSeconds, v.LBMaxSecs, false) {
		return true
	}
	key := lbhash.PacketKey(req.Options.Get(dhcpv4.OptionClientIdentifier), req.ClientHWAddr)
	return v.HBA.Serves(lbhash.Bucket(key), v.Primary)
}

// grant applies the MCLT rule to a desired lease time L (docs/protocol.md §16,
// as ISC): a lease may run at most MCLT past the expiry the peer has
// acknowledged (peerExpiry). It returns the lease to give and the potential
// expiry to announce to the peer, which lets the next renewal have L.
func grant(desired, now, peerExpiry, mclt int64) (granted, potential int64) {
	switch {
	case desired <= mclt:
		granted = desired
	case peerExpiry <= now:
		granted = mclt
	case now+desired > peerExpiry+mclt:
		granted = peerExpiry + mclt - now
	default:
		granted = desired
	}
	return granted, now + desired + granted/2
}

// leaseTime is what the client asked for (option 51) within bounds, else
// the configured time.
func (s *Server) leaseTime(req *dhcpv4.DHCPv4) time.Duration {
	want := req.IPAddressLeaseTime(0)
	if want <= 0 {
		return s.cfg.LeaseTime
	}
	return min(want, s.cfg.MaxLeaseTime)
}

// usableBy reports whether the client with key may be given ip now: it is
// in a pool, no other client holds an offer of it, and it is either the
// client's own (bound, expired or released, so that a returning client
// keeps its address) or a free address this server owns (docs/protocol.md §18).
func (s *Server) usableBy(ip lease.IP, key string, now int64) bool {
	if !s.table.InPool(ip) || s.table.HeldByOther(ip, key, now) {
		return false
	}
	b, ok := s.table.Get(ip)
	if s.renewOnly() {
		return ok && b.State == lease.Active && b.Key() == key && b.Until() > now
	}
	if !ok {
		return s.ownsNew(now)
	}
	if b.Key() == key && (b.State == lease.Active || returnable(&b) && !s.staleNow()) {
		return true
	}
	return s.reusable(&b)
}

// staleNow is stale for the current view (false for a single server):
// then even an expired or released address that never left for the peer
// may have been taken by it, in PARTNER-DOWN while we were away, and goes
// to no one, its old client included, before the reuse rules allow it.
func (s *Server) staleNow() bool {
	v := s.view()
	return v != nil && stale(v)
}

// returnable reports whether an expired or released address may go back
// to its last client outside the ownership rules: only until its EXPIRED
// or RELEASED has been transmitted. From then the peer may store it as
// free and give it to another client, ack or no ack (ISC's rewind rule
// applies from transmission too), so only reusable decides. A pending
// change loaded from disk counts as transmitted (see load).
func returnable(b *lease.Binding) bool {
	return (b.State == lease.Expired || b.State == lease.Released) && !b.Transmitted
}

// ownsNew is the rule for never-used addresses, which are FREE and so the
// primary's: the primary's unless it restarted in PARTNER-DOWN and has not
// heard its peer since; the secondary's only in PARTNER-DOWN once MCLT has
// passed; no one's while renewing only. The table asks it at each
// allocation (lease.NewTable), usableBy for each address: one rule, so
// that the table never walks its never-used addresses for a policy that
// refuses them.
func (s *Server) ownsNew(now int64) bool {
	if s.renewOnly() {
		return false
	}
	v := s.view()
	return s.primary && (v == nil || !stale(v)) || s.partnerDownOpen(now)
}

// renewOnly is true while a server restarted without reaching its peer
// is in COMMUNICATIONS-INTERRUPTED or PARTNER-DOWN: while it was down the
// peer may have declared it down (PARTNER-DOWN) and be taking its free
// addresses -- and a PARTNER-DOWN saved before the restart may no longer
// hold. Renewals stay within the MCLT rule, which keeps them inside what
// such a peer waits for; new allocations wait for contact, or for the
// operator to declare partner-down again. (ISC serves as usual here, which
// lets both servers give the same address.)
func (s *Server) renewOnly() bool {
	v := s.view()
	return v != nil && !v.Contacted && !v.OperatorPartnerDown &&
		(v.MyState == fsm.CommInterrupted || v.MyState == fsm.PartnerDown)
}

// renewOnlyCap bounds a lease time g granted at now for the binding b
// while renewing only: the lease never runs past what the peer can know of
// it, the stored end or the potential expiry it acknowledged
// (PeerExpiry), whichever is later. A peer that declared us down while we
// were away waits for no more than that plus MCLT; the MCLT rule alone
// lets each renewal go MCLT past the last, ever further beyond. A potential
// expiry sent but not acknowledged may never have reached the peer and
// does not count. Outside renewals-only, g is returned as is.
func (s *Server) renewOnlyCap(g, now int64, b *lease.Binding) int64 {
	if !s.renewOnly() {
		return g
	}
	return max(min(g, max(b.Until(), b.PeerExpiry)-now), 0)
}

// inUse reports whether ip is bound or offered to a client other than key,
// or abandoned: a request for it is refused with a NAK. A free address
// that is the peer's is not in use: the peer answers for it.
func (s *Server) inUse(ip lease.IP, key string, now int64) bool {
	if s.table.HeldByOther(ip, key, now) {
		return true
	}
	b, ok := s.table.Get(ip)
	return ok && (b.State == lease.Abandoned || b.State == lease.Active && b.Key() != key)
}

// choose picks the address to offer: the client's current or last
// binding, the address it holds an offer for, the address it asks for, or
// any available one. It must be called with s.mu held.
func (s *Server) choose(c client, requested lease.IP, now int64) (lease.IP, bool) {
	if b, ok := s.table.ByClient(c.key); ok && s.usableBy(b.IP, c.key, now) {
		return b.IP, true
	}
	if ip, ok := s.table.Held(c.key, now); ok {
		return ip, true
	}
	if requested != 0 && s.usableBy(requested, c.key, now) {
		return requested, true
	}
	if s.renewOnly() {
		return 0, false
	}
	// The queues are lazy: the policy has the last word on a candidate,
	// and one it refuses stays in the table for later.
	return s.table.Allocate(now, func(ip lease.IP) bool { return s.usableBy(ip, c.key, now) })
}

func (s *Server) discover(req, resp *dhcpv4.DHCPv4, c client) (*dhcpv4.DHCPv4, bool) {
	now := s.now().Unix()
	requested, _ := lease.IPFromNet(req.RequestedIPAddress())
	s.mu.Lock()
	ip, ok := s.choose(c, requested, now)
	if ok {
		s.table.Hold(ip, c.key, now+int64(s.cfg.OfferHold/time.Second))
	}
	s.mu.Unlock()
	if !ok {
		if s.renewOnly() {
			s.met.drops[dropWaitingPeer].Inc()
			log.Debugf("dropping DISCOVER from %s: restarted without reaching the peer, renewals only", req.ClientHWAddr)
			return nil, true
		}
		s.met.drops[dropPoolExhausted].Inc()
		s.exhaustedLog.Do(s.now(), func(n int) {
			log.WithFields(logrus.Fields{"pools": s.cfg.Pools, "dropped": n}).Warn("no free address to offer")
		})
		return nil, true
	}
	lt := s.leaseTime(req)
	if v := s.view(); v != nil {
		s.mu.Lock()
		b, _ := s.table.Get(ip)
		s.mu.Unlock()
		g, _ := grant(int64(lt/time.Second), now, b.PeerExpiry, v.MCLT)
		lt = time.Duration(s.renewOnlyCap(g, now, &b)) * time.Second
	}
	log.Debugf("offering %s to %s", ip, req.ClientHWAddr)
	s.fill(req, resp, ip, lt)
	return resp, false
}

// fill sets the address and lease times of an OFFER or ACK.
func (s *Server) fill(req, resp *dhcpv4.DHCPv4, ip lease.IP, lt time.Duration) {
	resp.YourIPAddr = ip.Net()
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lt))
	resp.UpdateOption(dhcpv4.OptRenewTimeValue(lt / 2))
	resp.UpdateOption(dhcpv4.OptRebindingTimeValue(lt * 7 / 8))
}

// nak turns resp into a DHCPNAK and stops the chain (no options after it).
func nak(req, resp *dhcpv4.DHCPv4, why string) (*dhcpv4.DHCPv4, bool) {
	log.Debugf("NAK to %s: %s", req.ClientHWAddr, why)
	n, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
	)
	if err != nil {
		return nil, true
	}
	if sid := resp.ServerIdentifier(); sid != nil {
		n.UpdateOption(dhcpv4.OptServerIdentifier(sid))
	}
	n.YourIPAddr = net.IPv4zero
	n.ClientIPAddr = net.IPv4zero
	return n, true
}

func (s *Server) request(req, resp *dhcpv4.DHCPv4, c client) (*dhcpv4.DHCPv4, bool) {
	now := s.now().Unix()
	sid := req.ServerIdentifier()
	requested, _ := lease.IPFromNet(req.RequestedIPAddress())
	ciaddr, _ := lease.IPFromNet(req.ClientIPAddr)
	var ip lease.IP
	selecting := sid != nil && !sid.IsUnspecified()
	switch {
	case selecting:
		// SELECTING: the client chose an offer.
		if our := resp.ServerIdentifier(); our != nil && !sid.Equal(our) {
			s.mu.Lock()
			s.table.Unhold(c.key)
			s.mu.Unlock()
			s.met.drops[dropOtherServer].Inc()
			log.Debugf("%s chose server %s", req.ClientHWAddr, sid)
			return nil, true
		}
		if requested == 0 {
			s.met.drops[dropMalformed].Inc()
			log.Debugf("dropping REQUEST from %s: SELECTING without a requested address", req.ClientHWAddr)
			return nil, true
		}
		ip = requested
	case ciaddr != 0:
		ip = ciaddr // RENEWING or REBINDING
	case requested != 0:
		ip = requested // INIT-REBOOT
	default:
		s.met.drops[dropMalformed].Inc()
		log.Debugf("dropping REQUEST from %s: no address named", req.ClientHWAddr)
		return nil, true
	}
	if !s.cfg.Subnet.Contains(ip.Addr()) {
		// The client is on the wrong network, or remembers another one.
		return nak(req, resp, "address not on this network")
	}
	lt := s.leaseTime(req)
	s.mu.Lock()
	if !s.table.InPool(ip) {
		s.mu.Unlock()
		// Not ours to speak for: another server may own it.
		s.met.drops[dropPeerAddress].Inc()
		log.Debugf("ignoring REQUEST from %s for %s: not in a pool", req.ClientHWAddr, ip)
		return nil, true
	}
	if !s.usableBy(ip, c.key, now) {
		busy := s.inUse(ip, c.key, now)
		s.mu.Unlock()
		if busy {
			return nak(req, resp, "address in use")
		}
		s.met.drops[dropPeerAddress].Inc()
		log.Debugf("ignoring REQUEST from %s for %s: a free address of the peer's", req.ClientHWAddr, ip)
		return nil, true
	}
	old, had := s.table.Get(ip)
	// Only a binding on disk may answer for a failed write below.
	durable := s.writing[ip] == 0
	b := lease.Binding{
		IP:         ip,
		State:      lease.Active,
		ClientID:   c.clientID,
		HWAddr:     c.hwaddr,
		Hostname:   req.HostName(),
		Start:      now,
		End:        now + int64(lt/time.Second),
		CLTT:       now,
		PeerExpiry: old.PeerExpiry,
	}
	if v := s.view(); v != nil {
		g, potential := grant(int64(lt/time.Second), now, old.PeerExpiry, v.MCLT)
		g = s.renewOnlyCap(g, now, &old)
		lt = time.Duration(g) * time.Second
		b.End = now + g
		// Never below what the peer may already hold: a shorter
		// potential expiry can be lost, and the peer then renews up to
		// the longer one (partnerDownReuse waits for SentExpiry).
		potential = max(potential, old.SentExpiry)
		b.SentExpiry = potential
		if potential < b.PeerExpiry {
			b.PeerExpiry = potential
		}
		b.Pending = true
	}
	s.table.ClearHold(ip)
	err := s.writeClient(b, old, had, "lease")
	if err != nil {
		if !selecting && durable && had && old.State == lease.Active && old.Key() == c.key && old.End-now >= minStoredRenewal {
			// A renewal: the stored lease runs until old.End. Answer
			// with what remains of it; nothing new to remember. Not
			// to a client SELECTING after a DISCOVER: it holds no
			// lease, and may have released this one to the peer,
			// whose RELEASED would then free the lease we answered
			// from without our knowing of the answer
			// (docs/simulation.md, seed 54722).
			lt = time.Duration(old.End-now) * time.Second
			log.Debugf("ACK %s to %s for the %v left of its stored lease (database failing)", ip, req.ClientHWAddr, lt)
			s.fill(req, resp, ip, lt)
			return resp, false
		}
		s.met.drops[dropStoreError].Inc()
		log.Debugf("no ACK of %s to %s: the lease cannot be stored", ip, req.ClientHWAddr)
		return nil, true
	}
	log.Debugf("ACK %s to %s for %v", ip, req.ClientHWAddr, lt)
	s.fill(req, resp, ip, lt)
	return resp, false
}

// writeClient stores b, a client's change of its address (a lease, a
// release, a decline) that replaces old (had: old existed). Call with s.mu
// held; it returns with s.mu released, once the write has settled.
//
// While the write runs, b is in memory but maybe never on disk: the
// address counts in writing, so that the session does not see it (Get)
// and a failed write is not answered from it (request). A failed write
// puts old back. Either way the session is then told of the address, and
// reads what the disk holds: the peer hears of b only once it is durable,
// and of old again if b failed, so that its view matches our disk.
func (s *Server) writeClient(b, old lease.Binding, had bool, what string) error {
	s.table.Put(b)
	batch := s.commit.Submit(b)
	s.writing[b.IP]++
	s.mu.Unlock()
	err := s.wrote(batch.Wait(), what)
	s.mu.Lock()
	if err != nil {
		s.undoLocked(b, old, had)
	}
	s.doneWriting(b.IP)
	s.mu.Unlock()
	s.announce(b.IP)
	return err
}

// doneWriting ends one write of ip counted in writing. It reports whether
// the session asked for ip while it was hidden (Get): the address must be
// announced. Call with s.mu held.
func (s *Server) doneWriting(ip lease.IP) (asked bool) {
	if s.writing[ip]--; s.writing[ip] <= 0 {
		delete(s.writing, ip)
		// No write of ip is under way: no failure can come to use
		// the record of a failed change it replaced. Left behind
		// (the change that replaced it was stored), such records
		// would pile up until maxSuperseded clears them all, the
		// record of a chain still under way with them.
		delete(s.superseded, ip)
		asked = s.hidden[ip]
		delete(s.hidden, ip)
	}
	return asked
}

// undoLocked puts back the binding a failed write replaced, unless it has
// changed again since. Call with s.mu held.
func (s *Server) undoLocked(b, old lease.Binding, had bool) {
	if !had {
		old = lease.Binding{IP: b.IP, State: lease.Free}
	}
	cur, ok := s.table.Get(b.IP)
	if !ok || !sameBinding(&cur, &b) {
		// Replaced before its write failed: if the write of what
		// replaced it fails too, memory must go back to old, which the
		// disk may hold, rather than to b, which it never did.
		if len(s.superseded) >= maxSuperseded {
			clear(s.superseded)
		}
		s.superseded[b.IP] = undoRecord{b: b, old: old}
		return
	}
	if sup, ok := s.superseded[b.IP]; ok {
		if sameBinding(&old, &sup.b) {
			old = sup.old
		}
		delete(s.superseded, b.IP)
	}
	s.table.Put(old)
}

// maxSuperseded bounds Server.superseded: it only grows while writes fail
// and one address changes twice before its first write has failed.
const maxSuperseded = 4096

// sameBinding reports whether a and b are the same change of an address.
func sameBinding(a, b *lease.Binding) bool {
	return a.End == b.End && a.State == b.State && a.Key() == b.Key()
}

// applyClientChange changes the binding of ip if it belongs to the client
// (a release or a decline), and waits until the change is durable.
func (s *Server) applyClientChange(ip lease.IP, c client, what string, change func(*lease.Binding)) {
	s.mu.Lock()
	b, ok := s.table.Get(ip)
	if !ok || b.Key() != c.key || (b.State != lease.Active && what != "decline") {
		s.mu.Unlock()
		if what == "decline" {
			s.declineUnbound(ip, c)
			return
		}
		log.Debugf("ignoring %s of %s from %s: not its lease", what, ip, c.key)
		return
	}
	orig := b
	change(&b)
	s.mark(&b)
	// Memory never runs ahead of the disk on what a client holds.
	s.writeClient(b, orig, true, what)
}

func (s *Server) release(req *dhcpv4.DHCPv4, c client) {
	ip, ok := lease.IPFromNet(req.ClientIPAddr)
	if !ok || ip == 0 {
		return
	}
	now := s.now().Unix()
	s.applyClientChange(ip, c, "release", func(b *lease.Binding) {
		b.State = lease.Released
		b.End = now
		b.CLTT = now
	})
}

func (s *Server) decline(req *dhcpv4.DHCPv4, c client) {
	ip, ok := lease.IPFromNet(req.RequestedIPAddress())
	if !ok || ip == 0 {
		return
	}
	s.applyClientChange(ip, c, "decline", func(b *lease.Binding) { s.abandon(b) })
}

// declineUnbound handles a DECLINE of an address that was offered to (held
// for) the client but not yet bound to it.
func (s *Server) declineUnbound(ip lease.IP, c client) {
	now := s.now().Unix()
	s.mu.Lock()
	held, ok := s.table.Held(c.key, now)
	if !ok || held != ip {
		s.mu.Unlock()
		log.Debugf("ignoring DECLINE of %s from %s: not offered to it", ip, c.key)
		return
	}
	b, had := s.table.Get(ip)
	orig := b
	b.IP = ip
	s.abandon(&b)
	s.mark(&b)
	s.table.ClearHold(ip)
	s.writeClient(b, orig, had, "decline")
}

// abandon marks b as in use by an unknown host until decline-hold passes.
func (s *Server) abandon(b *lease.Binding) {
	now := s.now().Unix()
	log.WithField("address", b.IP.String()).Warn("address declined by a client: another host may be using it")
	*b = lease.Binding{
		IP:         b.IP,
		State:      lease.Abandoned,
		Start:      now,
		End:        now + int64(s.cfg.DeclineHold/time.Second),
		CLTT:       now,
		SentExpiry: b.SentExpiry,
		PeerExpiry: b.PeerExpiry,
	}
	if b.End == now {
		b.End = now + 1 // the heap needs a non-zero end
	}
}
