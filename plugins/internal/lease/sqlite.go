package lease

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
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

// OpenSQLite opens (creating if needed) the database at path.
func OpenSQLite(path string) (*SQLiteStore, error) {
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

// Load implements Store.
func (s *SQLiteStore) Load(fn func(Binding) error) error {
	rows, err := s.db.Query(`SELECT ip, state, client_id, htype, hwaddr, hostname,
		starts, ends, cltt, sent_expiry, peer_expiry, pending FROM bindings ORDER BY ip`)
	if err != nil {
		return fmt.Errorf("lease database %s: %w", s.path, err)
	}
	defer rows.Close()
	// Scanned into the same variables row after row: what escapes to
	// Scan is allocated once, not once per row.
	var (
		ip, state, htype, pending       int64
		start, end, cltt, sent, peerExp int64
		clientID                        []byte
		hw                              sql.RawBytes // valid until the next row
		hostname                        string
	)
	for rows.Next() {
		if err := rows.Scan(&ip, &state, &clientID, &htype, &hw, &hostname,
			&start, &end, &cltt, &sent, &peerExp, &pending); err != nil {
			return fmt.Errorf("lease database %s: %w: %v", s.path, ErrCorrupt, err)
		}
		if ip < 0 || ip > 0xffffffff {
			return fmt.Errorf("lease database %s: %w: address %d is not IPv4", s.path, ErrCorrupt, ip)
		}
		b := Binding{IP: IP(ip), State: State(state), Hostname: hostname,
			Start: start, End: end, CLTT: cltt, SentExpiry: sent, PeerExpiry: peerExp, Pending: pending != 0}
		if state < 0 || state > 255 || !b.State.Valid() {
			return fmt.Errorf("lease database %s: %w: %s has state %d", s.path, ErrCorrupt, b.IP, state)
		}
		if len(hw) > 0 {
			if htype < 0 || htype > 255 {
				return fmt.Errorf("lease database %s: %w: %s has hardware type %d", s.path, ErrCorrupt, b.IP, htype)
			}
			if b.HWAddr, err = parseHW(byte(htype), hw); err != nil {
				return fmt.Errorf("lease database %s: %w: %s has hardware address %d/%q", s.path, ErrCorrupt, b.IP, htype, hw)
			}
		}
		if len(clientID) > 0 {
			// Scan gives a fresh slice for each non-NULL value.
			b.ClientID = clientID
		}
		clientID = nil
		if err := fn(b); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lease database %s: %w", s.path, err)
	}
	return nil
}

// parseHW reads colon-separated hex bytes (aa:bb:...) of any length into
// one new slice that starts with the hardware type, as Binding.HWAddr.
func parseHW(htype byte, s []byte) ([]byte, error) {
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
