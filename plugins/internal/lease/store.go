package lease

import "errors"

// Store keeps bindings durably.
type Store interface {
	// Load calls fn for every stored binding.
	Load(fn func(Binding) error) error
	// Write stores rows in one transaction, each replacing the binding of
	// its address. When Write returns nil, every row is durable.
	Write(rows []Binding) error
	// Close releases the store. It does not wait for writers: the
	// Committer does that.
	Close() error
}

// Sentinel errors.
var (
	// ErrClosed is returned for writes submitted after Close.
	ErrClosed = errors.New("lease store closed")
	// ErrCorrupt wraps a stored row that cannot be loaded.
	ErrCorrupt = errors.New("corrupt lease record")
)
