package lease

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

// storeContract runs the same checks against every Store.
func storeContract(t *testing.T, open func(t *testing.T) Store) {
	t.Run("WriteThenLoad", func(t *testing.T) {
		s := open(t)
		rows := []Binding{
			{IP: ip("192.0.2.10"), State: Active, ClientID: []byte{1, 2, 3}, HWAddr: hw(1), Hostname: "a",
				Start: 10, End: 20, CLTT: 10, SentExpiry: 30, PeerExpiry: 25, Pending: true},
			{IP: ip("192.0.2.11"), State: Abandoned, Start: 5, End: 99},
			{IP: ip("192.0.2.12"), State: Backup},
			{IP: ip("192.0.2.13"), State: Active, HWAddr: hw(2), Start: 7, End: 9, CLTT: 8, PeerExpiry: 6},
			// InfiniBand (RFC 4390): a client identifier, a hardware
			// type and no hardware address; the type is kept for the
			// peer (a BNDUPD needs a chaddr option).
			{IP: ip("192.0.2.14"), State: Active, ClientID: []byte{0xff, 0, 1}, HWAddr: []byte{32}, Start: 7, End: 9},
		}
		if err := s.Write(rows); err != nil {
			t.Fatal(err)
		}
		// A later write replaces the row of its address.
		rows[0].State, rows[0].Pending = Expired, false
		if err := s.Write(rows[:1]); err != nil {
			t.Fatal(err)
		}
		got := loadAll(t, s)
		if !reflect.DeepEqual(got, rows) {
			t.Fatalf("Load gave\n%#v\nwant\n%#v", got, rows)
		}
	})
	t.Run("FailoverState", func(t *testing.T) {
		s := open(t)
		if _, ok, err := s.LoadState(); ok || err != nil {
			t.Fatalf("A new store has a failover state (ok %v, err %v)", ok, err)
		}
		want := RelState{MyState: 3, MyStos: 100, PeerState: 2, PeerStos: 90, MCLT: 3600}
		if err := s.SaveState(want); err != nil {
			t.Fatal(err)
		}
		want.MyState, want.MyStos = 4, 200
		if err := s.SaveState(want); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.LoadState()
		if !ok || err != nil || got != want {
			t.Fatalf("LoadState = %+v, %v, %v; want %+v", got, ok, err, want)
		}
	})
	t.Run("EmptyLoad", func(t *testing.T) {
		if got := loadAll(t, open(t)); len(got) != 0 {
			t.Fatalf("A new store holds %v", got)
		}
	})
}

func loadAll(t *testing.T, s Store) []Binding {
	t.Helper()
	var got []Binding
	if err := s.Load(func(b Binding) error { got = append(got, b); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestMemoryStoreContract(t *testing.T) {
	storeContract(t, func(t *testing.T) Store { return NewMemoryStore() })
}

func TestSQLiteStoreContract(t *testing.T) {
	storeContract(t, func(t *testing.T) Store {
		s, err := OpenSQLite(filepath.Join(t.TempDir(), "leases.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// A fresh host has no /var/lib/coredhcp-failover: the server creates the
// database's directory, private to its user, rather than failing on the
// lock file.
func TestSQLiteCreatesAMissingDirectoryPrivately(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "coredhcp-failover")
	s, err := OpenSQLite(filepath.Join(dir, "leases.db"))
	if err != nil {
		t.Fatalf("OpenSQLite in a missing directory: %v", err)
	}
	defer s.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("the created directory has mode %o, want 700", perm)
	}
}

func TestSQLiteSurvivesReopenAndShowsTheLeasesView(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	b := Binding{IP: ip("192.0.2.10"), State: Active, ClientID: []byte{0xab, 0xcd}, HWAddr: hw(0x42), Hostname: "h", Start: 1, End: 2}
	if err := s.Write([]Binding{b}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSQLite(path); err == nil {
		t.Fatal("A second OpenSQLite of a database in use succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := loadAll(t, s); len(got) != 1 || !reflect.DeepEqual(got[0], b) {
		t.Fatalf("After reopening Load gave %v", got)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var addr, state, hwaddr, cid string
	if err := db.QueryRow("SELECT address, state, hwaddr, client_id FROM leases").Scan(&addr, &state, &hwaddr, &cid); err != nil {
		t.Fatal(err)
	}
	if addr != "192.0.2.10" || state != "active" || hwaddr != "02:00:00:00:00:42" || cid != "abcd" {
		t.Fatalf("The leases view shows %s %s %s %s", addr, state, hwaddr, cid)
	}
}

func TestSQLiteRejectsCorruptRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.db.Exec("INSERT INTO bindings (ip, state) VALUES (3221225994, 42)"); err != nil {
		t.Fatal(err)
	}
	err = s.Load(func(Binding) error { return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load of a row with state 42 = %v, want ErrCorrupt", err)
	}
}

func TestCommitterGroupsConcurrentWrites(t *testing.T) {
	gate := make(chan struct{})
	m := &gatedStore{MemoryStore: NewMemoryStore(), gate: gate}
	c := NewCommitter(m, 0)
	// The first write blocks in the store; everything submitted meanwhile
	// must go into one second transaction.
	first := c.Submit(Binding{IP: 1, State: Active})
	m.waitEntered()
	var batches []*Batch
	for i := 2; i <= 101; i++ {
		batches = append(batches, c.Submit(Binding{IP: IP(i), State: Active}))
	}
	close(gate)
	if err := first.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if err := b.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if w := m.Writes(); w != 2 {
		t.Fatalf("101 rows took %d transactions, want 2", w)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(Binding{IP: 500}).Wait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close = %v, want ErrClosed", err)
	}
}

func TestCommitterKeepsSubmitOrderForOneAddress(t *testing.T) {
	m := NewMemoryStore()
	c := NewCommitter(m, 3)
	var last *Batch
	for i := 1; i <= 50; i++ {
		last = c.Submit(Binding{IP: 7, State: Active, End: int64(i)})
	}
	if err := last.Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	got := loadAll(t, m)
	if len(got) != 1 || got[0].End != 50 {
		t.Fatalf("After 50 ordered writes the store holds %v", got)
	}
}

func TestCommitterReportsStoreFailureToEveryWaiter(t *testing.T) {
	m := NewMemoryStore()
	boom := errors.New("disk full")
	m.SetFail(boom)
	c := NewCommitter(m, 0)
	defer c.Close()
	if err := c.Submit(Binding{IP: 1}).Wait(); !errors.Is(err, boom) {
		t.Fatalf("Wait = %v, want %v", err, boom)
	}
	m.SetFail(nil)
	if err := c.Submit(Binding{IP: 1}).Wait(); err != nil {
		t.Fatalf("After the store recovered Wait = %v", err)
	}
}

// gatedStore blocks its first Write until gate is closed.
type gatedStore struct {
	*MemoryStore
	gate    chan struct{}
	once    sync.Once
	entered chan struct{}
	mu      sync.Mutex
}

func (g *gatedStore) waitEntered() {
	g.mu.Lock()
	if g.entered == nil {
		g.entered = make(chan struct{})
	}
	ch := g.entered
	g.mu.Unlock()
	<-ch
}

func (g *gatedStore) Write(rows []Binding) error {
	g.once.Do(func() {
		g.mu.Lock()
		if g.entered == nil {
			g.entered = make(chan struct{})
		}
		close(g.entered)
		g.mu.Unlock()
		<-g.gate
	})
	return g.MemoryStore.Write(rows)
}

func BenchmarkCommitterSQLite(b *testing.B) {
	s, err := OpenSQLite(filepath.Join(b.TempDir(), "leases.db"))
	if err != nil {
		b.Fatal(err)
	}
	c := NewCommitter(s, 0)
	defer c.Close()
	b.ReportAllocs()
	b.SetParallelism(64)
	var n uint32
	var mu sync.Mutex
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			a := IP(n)
			mu.Unlock()
			if err := c.Submit(Binding{IP: a, State: Active, HWAddr: hw(byte(a)), End: 100}).Wait(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestSQLiteRejectsEveryKindOfCorruptRow(t *testing.T) {
	for _, c := range []struct{ name, insert string }{
		{"Text where an integer belongs", "INSERT INTO bindings (ip, state, ends) VALUES (3221225994, 2, 'soon')"},
		{"An address beyond IPv4", "INSERT INTO bindings (ip, state) VALUES (4294967296, 2)"},
		{"A hardware address that is not hex", "INSERT INTO bindings (ip, state, htype, hwaddr) VALUES (3221225994, 2, 1, '02:zz:00')"},
		{"A hardware type beyond a byte", "INSERT INTO bindings (ip, state, htype, hwaddr) VALUES (3221225994, 2, 300, '02:00')"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := OpenSQLite(filepath.Join(t.TempDir(), "leases.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.db.Exec(c.insert); err != nil {
				t.Fatal(err)
			}
			if err := s.Load(func(Binding) error { return nil }); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
		})
	}
}
