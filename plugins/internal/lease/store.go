package lease

import "errors"

// Store keeps bindings durably.
type Store interface {
	// Load calls fn for every stored binding.
	Load(fn func(Binding) error) error
	// Write stores rows in one transaction, each replacing the binding of
	// its address. When Write returns nil, every row is durable.
	Write(rows []Binding) error
	// LoadState returns the stored failover state (ok false if none).
	LoadState() (st RelState, ok bool, err error)
	// SaveState stores the failover state durably.
	SaveState(st RelState) error
	// Close releases the store. It does not wait for writers: the
	// Committer does that.
	Close() error
}

// Counter is implemented by stores that can tell, cheaply, how many
// bindings Load will produce, so that the tables are sized once rather
// than grown (a million bindings load in a fraction of the time).
type Counter interface {
	Count() (int, error)
}

// Sentinel errors.
var (
	// ErrClosed is returned for writes submitted after Close.
	ErrClosed = errors.New("lease store closed")
	// ErrCorrupt wraps a stored row that cannot be loaded.
	ErrCorrupt = errors.New("corrupt lease record")
)

// RelState is the failover relationship's state that survives a restart
// (ISC keeps it in its lease file as `failover peer "R" state {...}`).
// States are the failover protocol's wire values.
type RelState struct {
	MyState   uint8
	MyStos    int64
	PeerState uint8
	PeerStos  int64
	// MCLT is the primary's MCLT as a secondary learned it, in seconds.
	MCLT int64
}
