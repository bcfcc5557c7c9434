package lease

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	// The sqlite driver, through cgo.
	_ "github.com/mattn/go-sqlite3"
)

// schemaVersion is stored in PRAGMA user_version.
const schemaVersion = 1

const schema = `
CREATE TABLE IF NOT EXISTS bindings (
	ip          INTEGER PRIMARY KEY,        -- IPv4 address, big-endian 32-bit
	state       INTEGER NOT NULL,           -- binding status, as on the failover wire
	client_id   BLOB,                       -- option 61, or NULL
	htype       INTEGER NOT NULL DEFAULT 0, -- hardware type (1: Ethernet)
	hwaddr      TEXT NOT NULL DEFAULT '',   -- chaddr as aa:bb:cc:...
	hostname    TEXT NOT NULL DEFAULT '',
	starts      INTEGER NOT NULL DEFAULT 0, -- Unix seconds
	ends        INTEGER NOT NULL DEFAULT 0,
	cltt        INTEGER NOT NULL DEFAULT 0, -- client's last transaction time
	sent_expiry INTEGER NOT NULL DEFAULT 0, -- potential expiry sent to the peer (tstp)
	peer_expiry INTEGER NOT NULL DEFAULT 0, -- expiry acknowledged by the peer (tsfp)
	pending     INTEGER NOT NULL DEFAULT 0  -- 1 while the peer has not acknowledged a change
);
CREATE TABLE IF NOT EXISTS failover_state (
	id          INTEGER PRIMARY KEY CHECK (id = 1),
	my_state    INTEGER NOT NULL,           -- failover server state, as on the wire
	my_stos     INTEGER NOT NULL,           -- when it was entered, Unix seconds
	peer_state  INTEGER NOT NULL,
	peer_stos   INTEGER NOT NULL,
	mclt        INTEGER NOT NULL            -- seconds; the secondary's copy of the primary's
);
CREATE VIEW IF NOT EXISTS leases AS SELECT
	((ip >> 24) & 255) || '.' || ((ip >> 16) & 255) || '.' || ((ip >> 8) & 255) || '.' || (ip & 255) AS address,
	CASE state WHEN 1 THEN 'free' WHEN 2 THEN 'active' WHEN 3 THEN 'expired' WHEN 4 THEN 'released'
		WHEN 5 THEN 'abandoned' WHEN 6 THEN 'reset' WHEN 7 THEN 'backup' ELSE 'unknown' END AS state,
	hwaddr,
	lower(hex(client_id)) AS client_id,
	hostname, starts, ends, cltt, sent_expiry, peer_expiry, pending
FROM bindings;
`

// SQLiteStore is a Store in an sqlite database in WAL mode with
// synchronous=FULL: a committed transaction is on disk. A lock file beside
// the database keeps a second server from using it.
type SQLiteStore struct {
	db   *sql.DB
	ins  *sql.Stmt
	lock *os.File
	path string
}

// OpenSQLite opens (creating if needed) the database at path. A missing
// directory is created, readable only by this process's user (0700): the
// database holds every client's identity, and a fresh host has no
// /var/lib/coredhcp-failover until the systemd unit or the operator
// creates one.
func OpenSQLite(path string) (*SQLiteStore, error) {
	if path != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("lease database %s: creating its directory: %w", path, err)
		}
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lease database %s: %w", path, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lease database %s is in use by another process (lock %s.lock): %w", path, path, err)
	}
	s, err := openSQLite(path)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

func openSQLite(path string) (*SQLiteStore, error) {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_busy_timeout", "5000")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	if path == ":memory:" {
		dsn = "file::memory:?_txlock=immediate"
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("lease database %s: %w", path, err)
	}
	// One connection: sqlite serialises writers anyway, and an in-memory
	// database exists per connection.
	db.SetMaxOpenConns(1)
	s := &SQLiteStore{db: db, path: path}
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("lease database %s: %w", path, err)
	}
	return s, nil
}

func (s *SQLiteStore) init() error {
	var version int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version > schemaVersion {
		return fmt.Errorf("schema version %d is newer than this binary's (%d)", version, schemaVersion)
	}
	if path := s.path; path != ":memory:" {
		var mode string
		if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
			return err
		}
		if !strings.EqualFold(mode, "wal") {
			return fmt.Errorf("journal mode is %q, want wal", mode)
		}
	}
	if _, err := s.db.Exec(schema); err != nil {
		return fmt.Errorf("creating schema: %w", err)
	}
	if _, err := s.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return err
	}
	ins, err := s.db.Prepare(`INSERT OR REPLACE INTO bindings
		(ip, state, client_id, htype, hwaddr, hostname, starts, ends, cltt, sent_expiry, peer_expiry, pending)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	s.ins = ins
	return nil
}

// Count is how many bindings Load will produce (see Counter).
func (s *SQLiteStore) Count() (int, error) {
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM bindings").Scan(&n); err != nil {
		return 0, fmt.Errorf("lease database %s: %w", s.path, err)
	}
	return n, nil
}

// Load implements Store. It reads through the driver's own rows rather
// than database/sql's Scan, whose conversions (reflection, a call per
// column) were a fifth of the time to load a million bindings.
func (s *SQLiteStore) Load(fn func(Binding) error) error {
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("lease database %s: %w", s.path, err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		q, ok := dc.(driver.QueryerContext)
		if !ok {
			return errors.New("the sqlite driver cannot query")
		}
		rows, err := q.QueryContext(ctx, loadQuery, nil)
		if err != nil {
			return err
		}
		defer rows.Close()
		v := make([]driver.Value, 10)
		for {
			if err := rows.Next(v); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			b, err := bindingFromRow(v)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			if err := fn(b); err != nil {
				return errCallback{err}
			}
		}
	})
	var cb errCallback
	if errors.As(err, &cb) {
		return cb.err
	}
	if err != nil {
		return fmt.Errorf("lease database %s: %w", s.path, err)
	}
	return nil
}

// loadQuery reads every binding. The three small integers (state,
// hardware type, pending) come packed in one column: each column read
// costs two cgo calls, which is most of the time to load a million rows.
// A value out of range (or not an integer) packs as -1, which Load
// rejects as corrupt. Common values (no hostname, cltt equal to starts,
// no expiry exchanged with a peer) come as NULL, which costs one cgo call
// rather than two or three.
const loadQuery = `SELECT ip,
	CASE WHEN typeof(state) = 'integer' AND typeof(htype) = 'integer' AND typeof(pending) = 'integer'
		AND state BETWEEN 0 AND 255 AND htype BETWEEN 0 AND 255
	THEN state | (htype << 8) | ((pending != 0) << 16) ELSE -1 END,
	client_id, hwaddr, NULLIF(hostname, ''), starts, ends,
	NULLIF(cltt, starts), NULLIF(sent_expiry, 0), NULLIF(peer_expiry, 0)
	FROM bindings ORDER BY ip`

// errCallback carries the error of Load's callback out of conn.Raw
// unchanged.
type errCallback struct{ err error }

func (e errCallback) Error() string { return e.err.Error() }

// bindingFromRow checks and converts one row of loadQuery.
func bindingFromRow(v []driver.Value) (Binding, error) {
	var ints [7]int64
	for i, col := range []int{0, 1, 5, 6, 7, 8, 9} {
		switch n := v[col].(type) {
		case int64:
			ints[i] = n
		case nil:
			if col < 7 {
				return Binding{}, fmt.Errorf("column %d is NULL", col+1)
			}
			// NULLIF: cltt equal to starts, or a zero expiry.
			if col == 7 {
				ints[i] = ints[2]
			}
		default:
			return Binding{}, fmt.Errorf("column %d is %T, not an integer", col+1, v[col])
		}
	}
	ip, packed := ints[0], ints[1]
	if ip < 0 || ip > 0xffffffff {
		return Binding{}, fmt.Errorf("address %d is not IPv4", ip)
	}
	if packed < 0 {
		return Binding{}, fmt.Errorf("%s has a state, hardware type or pending mark that is not a small integer", IP(ip))
	}
	state, htype := State(packed&0xff), byte(packed>>8)
	b := Binding{IP: IP(ip), State: state, Start: ints[2], End: ints[3], CLTT: ints[4],
		SentExpiry: ints[5], PeerExpiry: ints[6], Pending: packed>>16 != 0}
	if !b.State.Valid() {
		return Binding{}, fmt.Errorf("%s has state %d", b.IP, state)
	}
	switch id := v[2].(type) {
	case nil:
	case []byte:
		if len(id) > 0 {
			b.ClientID = id // the driver's own copy
		}
	case string:
		if id != "" {
			b.ClientID = []byte(id)
		}
	default:
		return Binding{}, fmt.Errorf("%s has a client id of type %T", b.IP, id)
	}
	hw, ok := text(v[3])
	if !ok {
		return Binding{}, fmt.Errorf("%s has a hardware address of type %T", b.IP, v[3])
	}
	switch {
	case hw != "":
		var err error
		if b.HWAddr, err = parseHW(htype, hw); err != nil {
			return Binding{}, fmt.Errorf("%s has hardware address %d/%q", b.IP, htype, hw)
		}
	case htype != 0:
		// A hardware type without an address (InfiniBand, RFC 4390):
		// the peer needs the type in a BNDUPD's chaddr option.
		b.HWAddr = []byte{htype}
	}
	if b.Hostname, ok = text(v[4]); !ok {
		return Binding{}, fmt.Errorf("%s has a hostname of type %T", b.IP, v[4])
	}
	return b, nil
}

// text is a TEXT column's value (a BLOB is accepted as its bytes).
func text(v driver.Value) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case []byte:
		return string(t), true
	case nil:
		return "", true
	}
	return "", false
}

// parseHW reads colon-separated hex bytes (aa:bb:...) of any length into
// one new slice that starts with the hardware type, as Binding.HWAddr.
func parseHW(htype byte, s string) ([]byte, error) {
	if (len(s)+1)%3 != 0 {
		return nil, errors.New("bad hex bytes")
	}
	out := make([]byte, 1, 1+(len(s)+1)/3)
	out[0] = htype
	for i := 0; i < len(s); i += 3 {
		if i+2 < len(s) && s[i+2] != ':' {
			return nil, errors.New("bad separator")
		}
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return nil, errors.New("bad hex digit")
		}
		out = append(out, hi<<4|lo)
	}
	return out, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Write implements Store: one transaction, committed (and so fsynced) before
// it returns.
func (s *SQLiteStore) Write(rows []Binding) error {
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("lease database %s: begin: %w", s.path, err)
	}
	st := tx.Stmt(s.ins)
	for i := range rows {
		b := &rows[i]
		var (
			htype int
			hw    string
			cid   any
		)
		if len(b.HWAddr) > 0 {
			htype = int(b.HWAddr[0])
			hw = HWString(b.HWAddr)
		}
		if len(b.ClientID) > 0 {
			cid = b.ClientID
		}
		if _, err := st.Exec(int64(b.IP), int64(b.State), cid, htype, hw, b.Hostname,
			b.Start, b.End, b.CLTT, b.SentExpiry, b.PeerExpiry, boolInt(b.Pending)); err != nil {
			tx.Rollback()
			return fmt.Errorf("lease database %s: writing %s: %w", s.path, b.IP, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("lease database %s: commit: %w", s.path, err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// LoadState implements Store.
func (s *SQLiteStore) LoadState() (RelState, bool, error) {
	var st RelState
	err := s.db.QueryRow("SELECT my_state, my_stos, peer_state, peer_stos, mclt FROM failover_state WHERE id = 1").
		Scan(&st.MyState, &st.MyStos, &st.PeerState, &st.PeerStos, &st.MCLT)
	if errors.Is(err, sql.ErrNoRows) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("lease database %s: failover state: %w", s.path, err)
	}
	return st, true, nil
}

// SaveState implements Store.
func (s *SQLiteStore) SaveState(st RelState) error {
	_, err := s.db.Exec(`INSERT OR REPLACE INTO failover_state (id, my_state, my_stos, peer_state, peer_stos, mclt)
		VALUES (1, ?, ?, ?, ?, ?)`, st.MyState, st.MyStos, st.PeerState, st.PeerStos, st.MCLT)
	if err != nil {
		return fmt.Errorf("lease database %s: storing the failover state: %w", s.path, err)
	}
	return nil
}

// Close implements Store.
func (s *SQLiteStore) Close() error {
	err := errors.Join(s.ins.Close(), s.db.Close())
	if s.lock != nil {
		err = errors.Join(err, s.lock.Close())
	}
	return err
}
