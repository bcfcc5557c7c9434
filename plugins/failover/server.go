package failover

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
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
	// inChain is the process's chain of failover lines this one is part
	// of (subnet.go); nil outside the plugin chain.
	inChain *chain

	stop     chan struct{}
	stopped  chan struct{}
	closeMu  sync.Mutex
	isClosed bool

	exhaustedLog ratelimit.Limiter
	// pinger probes an address before it is offered (ping-check=; nil:
	// off); pingErrLog limits the warning when it cannot.
	pinger     Pinger
	pingErrLog ratelimit.Limiter
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
	// write failed: Sweep writes them again (see resaveAcks).
	acks    *ackCommit
	unsaved map[lease.IP]bool
	// peerCommit collects the peer's updates that went into the current
	// commit (see ApplyPeer).
	peerCommit *peerCommit
	// superseded holds failed changes that had already been replaced in
	// memory (see undoLocked, durable.go).
	superseded map[lease.IP]undoRecord
	// writing counts, per address, the hidden writes submitted whose
	// write (and undo, if it failed) has not finished: while there is
	// one, the binding in memory may not be on disk. Guarded by mu.
	writing map[lease.IP]int
	// hidden holds the addresses Get refused while they were written:
	// they are announced when the last write settles. Guarded by mu.
	hidden map[lease.IP]bool
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
	s.table = lease.NewTable(cfg.Pools)
	cfg.reserved.each(s.table.Exclude)
	if cfg.PingCheck > 0 {
		s.pinger = &icmpPinger{}
	}
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
				s.setLocked(batch[i])
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
	if s.inChain != nil {
		s.inChain.remove(s)
	}
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
	var ws []write
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
	for _, ip := range s.table.ExpireHolds(now) {
		s.offerLocked(ip)
	}
	s.reopen(now)
	for i := 0; i < sweepBatch; i++ {
		b, ok := s.table.NextEnd(now)
		if !ok {
			break
		}
		orig := b
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
		ws = append(ws, s.put(b, orig, true, true))
	}
	s.mu.Unlock()
	s.settleSweep(ws)
}

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
