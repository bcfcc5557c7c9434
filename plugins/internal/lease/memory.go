package lease

import (
	"slices"
	"sync"
)

// MemoryStore is a Store that keeps bindings in memory only, for tests and
// benchmarks.
type MemoryStore struct {
	mu     sync.Mutex
	rows   map[IP]Binding
	writes int
	fail   error
	state  *RelState
}

// SetFail makes every later Write fail with err (nil: succeed again).
func (m *MemoryStore) SetFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{rows: make(map[IP]Binding)} }

// Load implements Store.
func (m *MemoryStore) Load(fn func(Binding) error) error {
	m.mu.Lock()
	rows := make([]Binding, 0, len(m.rows))
	for _, b := range m.rows {
		rows = append(rows, b)
	}
	m.mu.Unlock()
	slices.SortFunc(rows, func(a, b Binding) int { return int(int64(a.IP) - int64(b.IP)) })
	for _, b := range rows {
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

// Write implements Store.
func (m *MemoryStore) Write(rows []Binding) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	for _, b := range rows {
		b.ClientID = slices.Clone(b.ClientID)
		b.HWAddr = slices.Clone(b.HWAddr)
		m.rows[b.IP] = b
	}
	m.writes++
	return nil
}

// Writes is the number of successful Write calls (transactions).
func (m *MemoryStore) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

// Close implements Store.
func (m *MemoryStore) Close() error { return nil }

// LoadState implements Store.
func (m *MemoryStore) LoadState() (RelState, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == nil {
		return RelState{}, false, nil
	}
	return *m.state, true, nil
}

// SaveState implements Store.
func (m *MemoryStore) SaveState(st RelState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.state = &st
	return nil
}
