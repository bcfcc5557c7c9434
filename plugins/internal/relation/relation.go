// Package relation is the one place where the failover and leasesync
// plugins meet: a registry of failover relationships keyed by the name both
// plugin lines carry. leasesync (listed first) registers the relationship;
// failover finds it by name at setup, attaches its binding database, and
// asks it, for every request, what the relationship allows.
//
// There is no other state shared between the plugins.
package relation

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// View is what the failover plugin needs to decide a request: an immutable
// snapshot, replaced whenever the relationship changes.
type View struct {
	Primary bool
	MyState fsm.State
	MyStos  int64
	// Entered is when this process last changed state: later than
	// MyStos when STARTUP ended in another state than the saved one
	// (stos is kept there, as ISC keeps it).
	Entered   int64
	PeerState fsm.State
	Connected bool
	// Contacted is true once the peer's state has been heard since this
	// process started. Until then our bindings may be stale: the peer may
	// have declared us down while we were away and given our addresses.
	Contacted bool
	// OperatorPartnerDown is true once the operator has declared
	// partner-down since this process started, last at
	// OperatorPartnerDownAt.
	OperatorPartnerDown   bool
	OperatorPartnerDownAt int64
	MCLT                  int64 // seconds
	HBA                   lbhash.HBA
	LBMaxSecs             uint16
	// MayServe is false in states that serve no client.
	MayServe bool
}

// PartnerDownStart is when PARTNER-DOWN began for the reuse rules: its
// start, never before this process entered it (a restart whose STARTUP
// ends in PARTNER-DOWN keeps the saved state's stos, which may be long
// before the peer stopped serving), or, when the peer has not been heard
// since this process started, the operator's latest declaration (a
// PARTNER-DOWN saved before a restart proves nothing about what the peer
// did meanwhile). The peer's free addresses may be used MCLT after it.
func (v *View) PartnerDownStart() int64 {
	if !v.Contacted {
		return max(v.MyStos, v.Entered, v.OperatorPartnerDownAt)
	}
	return max(v.MyStos, v.Entered)
}

// OwnFree is the binding state of the free addresses this server may
// allocate: FREE for the primary, BACKUP for the secondary.
func (v *View) OwnFree() lease.State {
	if v.Primary {
		return lease.Free
	}
	return lease.Backup
}

// Reject is why the failover plugin refuses a binding the peer announced
// (Bindings.ApplyPeer); 0 accepts it. The values are the failover
// protocol's reject-reason codes (docs/protocol.md §9), but only the
// reasons the failover plugin gives are named here: leasesync turns each
// into the wire's reject reason (and a test there pins every pair), so
// that neither the failover plugin nor this package depends on the wire
// codec.
type Reject uint8

// The reject reasons the failover plugin gives.
const (
	RejectIllegalAddress Reject = 1  // not part of any address pool
	RejectConflict       Reject = 2  // address in use by another client / invalid transition
	RejectMissingInfo    Reject = 3  // missing binding information
	RejectOther          Reject = 6  // unknown reason (ISC uses it for malformed bindings)
	RejectLessCritical   Reject = 16 // dueling updates: ours wins
)

// Rejects lists every named reject reason.
var Rejects = []Reject{RejectIllegalAddress, RejectConflict, RejectMissingInfo, RejectOther, RejectLessCritical}

// Bindings is the binding database of a relationship, implemented by the
// failover plugin. The session calls it from its own goroutine.
type Bindings interface {
	// Get returns the binding of ip. It reports none while a change of
	// ip is being written, which may yet be undone: the address is
	// announced through Changed once the write has settled.
	Get(ip lease.IP) (lease.Binding, bool)
	// InPool reports whether ip is in one of the relationship's pools.
	InPool(ip lease.IP) bool
	// Pending calls fn for every binding whose last change the peer has
	// not acknowledged.
	Pending(fn func(lease.IP))
	// All calls fn for every binding that has a record.
	All(fn func(lease.IP))
	// ApplyPeer stores a binding the peer announced, durably, if the rules
	// (ISC's, docs/protocol.md §13.3) allow it; else it returns one of the
	// reject reasons above and a message.
	// When accepted, the binding is durable once done settles. unacked
	// are this server's updates of the address sent and not yet
	// acknowledged, oldest first: the peer's update must win the duel
	// with each of them (docs/protocol.md §13.4).
	ApplyPeer(b lease.Binding, now int64, unacked ...lease.Binding) (reason Reject, msg string, done *lease.Batch)
	// Sent records that the update of sent is being written to the link:
	// the peer may hold it from now on, acknowledged or not. It returns
	// false, recording nothing, when the binding has changed since Get
	// read it: that update must not be sent (the newer one is due).
	Sent(sent lease.Binding) bool
	// Acked records that the peer acknowledged sent; it returns false when
	// the binding has changed since (a newer update is due).
	Acked(sent lease.Binding, now int64) bool
	// Transfer moves up to n of our free addresses to the peer (FREE to
	// BACKUP on the primary) durably, and returns them, to be announced.
	Transfer(n int, now int64) []lease.IP
	// FreeCounts returns how many free addresses each side owns.
	FreeCounts() (own, peer int)
	// PoolCounts returns, for each pool, how many addresses are in each
	// binding state (for status and metrics, not the packet path).
	PoolCounts() []lease.PoolCount
	// PartnerDownEntered applies the reuse rule of PARTNER-DOWN.
	PartnerDownEntered(stos int64)
	// LoadState and SaveState keep the relationship's state in the
	// binding database, durably.
	LoadState() (lease.RelState, bool, error)
	SaveState(lease.RelState) error
}

// Relationship is one failover relationship.
type Relationship struct {
	Name string
	// Metrics is the registry both plugins' metrics of this relationship
	// go to; set by leasesync when it creates the relationship.
	Metrics *prometheus.Registry
	view    atomic.Pointer[View]
	// viewChanged is closed (and replaced) when the view changes.
	viewMu      sync.Mutex
	viewChanged chan struct{}

	mu       sync.Mutex
	bindings Bindings
	attached chan struct{}
	notify   func(lease.IP)
	start    func() error
	stop     func() error
}

// SetSession gives the relationship its session's start and stop: Attach
// starts it, Stop stops it.
func (r *Relationship) SetSession(start, stop func() error) {
	r.mu.Lock()
	r.start, r.stop = start, stop
	r.mu.Unlock()
}

// Stop stops the session (before the bindings' store closes).
func (r *Relationship) Stop() error {
	r.mu.Lock()
	stop := r.stop
	r.mu.Unlock()
	if stop == nil {
		return nil
	}
	return stop()
}

// View returns the current snapshot.
func (r *Relationship) View() *View { return r.view.Load() }

// SetView replaces the snapshot.
func (r *Relationship) SetView(v *View) {
	r.view.Store(v)
	r.viewMu.Lock()
	close(r.viewChanged)
	r.viewChanged = make(chan struct{})
	r.viewMu.Unlock()
}

// ViewChanged returns a channel closed at the next change of the view.
func (r *Relationship) ViewChanged() <-chan struct{} {
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	return r.viewChanged
}

// Attach gives the relationship its binding database and starts the
// session. It may be called once.
func (r *Relationship) Attach(b Bindings) error {
	r.mu.Lock()
	select {
	case <-r.attached:
		r.mu.Unlock()
		return fmt.Errorf("relationship %q already has a failover line", r.Name)
	default:
	}
	r.bindings = b
	close(r.attached)
	start := r.start
	r.mu.Unlock()
	if start == nil {
		return nil
	}
	if err := start(); err != nil {
		return &SessionError{Err: err}
	}
	return nil
}

// SessionError is Attach's error when the session (the leasesync line)
// could not start: it is that line's error, named by it, not the failover
// line's.
type SessionError struct{ Err error }

func (e *SessionError) Error() string { return e.Err.Error() }
func (e *SessionError) Unwrap() error { return e.Err }

// Attached is closed once a failover line has attached its bindings.
func (r *Relationship) Attached() <-chan struct{} { return r.attached }

// Bindings returns the attached database (nil before Attach).
func (r *Relationship) Bindings() Bindings {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bindings
}

// SetNotify sets the function told of every binding change that must reach
// the peer.
func (r *Relationship) SetNotify(fn func(lease.IP)) {
	r.mu.Lock()
	r.notify = fn
	r.mu.Unlock()
}

// Changed tells the session that the binding of ip changed.
func (r *Relationship) Changed(ip lease.IP) {
	r.mu.Lock()
	fn := r.notify
	r.mu.Unlock()
	if fn != nil {
		fn(ip)
	}
}

var (
	regMu    sync.Mutex
	registry = map[string]*Relationship{}
)

// New creates a relationship called name, with its first view, without
// registering it (tests run both servers of a pair in one process).
func New(name string, v *View) *Relationship {
	r := &Relationship{Name: name, attached: make(chan struct{}), viewChanged: make(chan struct{})}
	r.view.Store(v)
	return r
}

// Register makes r findable by its name.
func Register(r *Relationship) error {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[r.Name]; dup {
		return fmt.Errorf("relationship %q is defined twice", r.Name)
	}
	registry[r.Name] = r
	return nil
}

// Lookup finds a registered relationship.
func Lookup(name string) (*Relationship, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	r, ok := registry[name]
	return r, ok
}

// Unregister removes r from the registry if it is there.
func Unregister(r *Relationship) {
	regMu.Lock()
	defer regMu.Unlock()
	if registry[r.Name] == r {
		delete(registry, r.Name)
	}
}
