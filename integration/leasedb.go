//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// Lease is one row of the server's "leases" view.
type Lease struct {
	Address  string `json:"address"`
	State    string `json:"state"`
	HWAddr   string `json:"hwaddr"`
	ClientID string `json:"client_id"`
	Hostname string `json:"hostname"`
	Starts   int64  `json:"starts"`
	Ends     int64  `json:"ends"`
	// The failover columns: the client's last transaction time, the
	// expiry the peer has acknowledged, and whether the peer has yet to
	// acknowledge the latest change.
	Cltt       int64 `json:"cltt"`
	PeerExpiry int64 `json:"peer_expiry"`
	Pending    int64 `json:"pending"`
}

func (l Lease) String() string {
	return fmt.Sprintf("%-15s %-9s hw=%s cid=%s host=%q starts=%s ends=%s",
		l.Address, l.State, l.HWAddr, l.ClientID, l.Hostname, unixTime(l.Starts), unixTime(l.Ends))
}

func unixTime(s int64) string {
	if s == 0 {
		return "0"
	}
	return time.Unix(s, 0).UTC().Format("15:04:05")
}

// ReadLeases reads every row of the leases view with the sqlite3 shell,
// read-only, sorted by address.
func ReadLeases(db string) ([]Lease, error) {
	cmd := exec.Command(netlab.Tool("sqlite3"), "-readonly", "-json", "-cmd", ".timeout 5000", db,
		"SELECT address, state, hwaddr, client_id, hostname, starts, ends, cltt, peer_expiry, pending FROM leases")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("sqlite3 %s: %v: %s", db, err, strings.TrimSpace(stderr.String()))
	}
	var ls []Lease
	if len(bytes.TrimSpace(out)) > 0 { // no rows: no output at all
		if err := json.Unmarshal(out, &ls); err != nil {
			return nil, fmt.Errorf("sqlite3 %s: parsing JSON output: %v", db, err)
		}
	}
	sort.Slice(ls, func(i, j int) bool { return addrLess(ls[i].Address, ls[j].Address) })
	return ls, nil
}

func addrLess(a, b string) bool {
	pa, ea := netip.ParseAddr(a)
	pb, eb := netip.ParseAddr(b)
	if ea != nil || eb != nil {
		return a < b
	}
	return pa.Less(pb)
}

// ActiveByHW maps hwaddr to its active lease. A client with two active
// leases is an error (one pool, one binding per client).
func ActiveByHW(ls []Lease) (map[string]Lease, error) {
	m := map[string]Lease{}
	for _, l := range ls {
		if l.State != "active" {
			continue
		}
		hw := strings.ToLower(l.HWAddr)
		if prev, dup := m[hw]; dup {
			return m, fmt.Errorf("client %s has two active leases:\n  %v\n  %v", hw, prev, l)
		}
		m[hw] = l
	}
	return m, nil
}

// ByAddress maps address to row.
func ByAddress(ls []Lease) map[string]Lease {
	m := make(map[string]Lease, len(ls))
	for _, l := range ls {
		m[l.Address] = l
	}
	return m
}

// NotFree returns the rows in any state but free.
func NotFree(ls []Lease) []Lease {
	var out []Lease
	for _, l := range ls {
		if l.State != "free" {
			out = append(out, l)
		}
	}
	return out
}

// CountStates summarises the view: "100 rows: active=6 free=94".
func CountStates(ls []Lease) string {
	c := map[string]int{}
	for _, l := range ls {
		c[l.State]++
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, c[k])
	}
	return fmt.Sprintf("%d rows: %s", len(ls), strings.Join(parts, " "))
}

// FormatLeases prints at most max rows, one per line.
func FormatLeases(ls []Lease, max int) string {
	var b strings.Builder
	for i, l := range ls {
		if i == max {
			fmt.Fprintf(&b, "  ... and %d more\n", len(ls)-max)
			break
		}
		fmt.Fprintf(&b, "  %v\n", l)
	}
	return b.String()
}
