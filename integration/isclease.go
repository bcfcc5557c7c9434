//go:build integration

package integration

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// LeaseRecord is one address's binding as a server's database has it, in a
// form shared by our sqlite database and ISC dhcpd's lease file, so that one
// checker can read both sides of a mixed pair.
type LeaseRecord struct {
	Source   string // where it was read: a DB or lease file path
	IP       string
	State    string // the failover binding state: free active expired released abandoned reset backup
	HWAddr   string // lower case, colon separated, without htype ("" if none)
	ClientID string // option 61 as lower-case hex ("" if none)
	Hostname string
	Start    int64 // unix seconds, 0 if unknown
	End      int64 // unix seconds, 0 if none; MaxInt64 for "never"
	// dhcpd only (0 for ours): the potential expiry told to the peer, the
	// one the peer acknowledged, and the client's last transaction time.
	TSTP, TSFP, CLTT int64
}

func (r LeaseRecord) String() string {
	return fmt.Sprintf("%-15s %-9s hw=%s cid=%s host=%q start=%s end=%s tstp=%s tsfp=%s",
		r.IP, r.State, r.HWAddr, r.ClientID, r.Hostname, unixTime(r.Start), unixTime(r.End), unixTime(r.TSTP), unixTime(r.TSFP))
}

// Client is the identity the record is bound to: the client identifier if
// there is one, else the hardware address (as ISC and we both decide).
func (r LeaseRecord) Client() string {
	if r.ClientID != "" {
		return "id:" + r.ClientID
	}
	return "hw:" + r.HWAddr
}

// ReadISCLeases parses an ISC dhcpd lease file (dhcpd.leases(5)) and returns
// the last record of each address (dhcpd appends a record on every change),
// sorted by address. It understands both time formats (the default
// "W YYYY/MM/DD HH:MM:SS" in UTC and "epoch N"), octal-quoted and
// colon-hex uids, and skips the failover state blocks and anything else
// that is not a lease.
func ReadISCLeases(path string) ([]LeaseRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseISCLeases(path, string(b))
}

func parseISCLeases(source, text string) ([]LeaseRecord, error) {
	byIP := map[string]LeaseRecord{}
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, "lease ") || !strings.HasSuffix(line, "{") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%s:%d: want \"lease ADDRESS {\", got %q", source, i+1, line)
		}
		r := LeaseRecord{Source: source, IP: f[1]}
		if _, err := netip.ParseAddr(r.IP); err != nil {
			return nil, fmt.Errorf("%s:%d: lease address %q: %v", source, i+1, r.IP, err)
		}
		depth := 1
		for i++; i < len(lines) && depth > 0; i++ {
			s := strings.TrimSpace(lines[i])
			if strings.HasSuffix(s, "{") {
				depth++ // on expiry { ... }
				continue
			}
			if s == "}" {
				depth--
				continue
			}
			if depth > 1 {
				continue
			}
			if err := r.set(s); err != nil {
				return nil, fmt.Errorf("%s:%d: %v", source, i+1, err)
			}
		}
		i--
		if depth != 0 {
			return nil, fmt.Errorf("%s: lease %s: no closing brace", source, r.IP)
		}
		byIP[r.IP] = r
	}
	out := make([]LeaseRecord, 0, len(byIP))
	for _, r := range byIP {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return addrLess(out[i].IP, out[j].IP) })
	return out, nil
}

// set applies one statement of a lease block.
func (r *LeaseRecord) set(s string) error {
	s = strings.TrimSuffix(s, ";")
	key, val := s, ""
	for _, k := range []string{"starts", "ends", "tstp", "tsfp", "atsfp", "cltt", "binding state",
		"next binding state", "rewind binding state", "hardware", "uid", "client-hostname"} {
		if strings.HasPrefix(s, k+" ") {
			key, val = k, strings.TrimSpace(s[len(k)+1:])
			break
		}
	}
	var err error
	switch key {
	case "starts":
		r.Start, err = parseISCTime(val)
	case "ends":
		r.End, err = parseISCTime(val)
	case "tstp":
		r.TSTP, err = parseISCTime(val)
	case "tsfp":
		r.TSFP, err = parseISCTime(val)
	case "cltt":
		r.CLTT, err = parseISCTime(val)
	case "binding state":
		r.State = val
	case "hardware":
		f := strings.Fields(val)
		if len(f) != 2 {
			return fmt.Errorf("hardware %q: want TYPE ADDRESS", val)
		}
		r.HWAddr = strings.ToLower(f[1])
	case "uid":
		var id []byte
		id, err = parseISCString(val)
		r.ClientID = hex.EncodeToString(id)
	case "client-hostname":
		var h []byte
		h, err = parseISCString(val)
		r.Hostname = string(h)
	}
	if err != nil {
		return fmt.Errorf("%s: %v", key, err)
	}
	return nil
}

// parseISCTime reads "3 2026/11/25 00:20:00" (UTC), "epoch 1795000000" (with
// an optional "# comment" after it) or "never".
func parseISCTime(v string) (int64, error) {
	if i := strings.Index(v, "#"); i >= 0 {
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v[:i]), ";"))
	}
	f := strings.Fields(v)
	switch {
	case len(f) == 1 && f[0] == "never":
		return 1<<63 - 1, nil
	case len(f) == 2 && f[0] == "epoch":
		return strconv.ParseInt(f[1], 10, 64)
	case len(f) == 3:
		t, err := time.Parse("2006/01/02 15:04:05", f[1]+" "+f[2])
		if err != nil {
			return 0, err
		}
		return t.Unix(), nil
	}
	return 0, fmt.Errorf("unknown time format %q", v)
}

// parseISCString reads a value dhcpd wrote either as a quoted string with
// C escapes (\ooo octal, \" \\) or as colon-separated hex.
func parseISCString(v string) ([]byte, error) {
	if !strings.HasPrefix(v, `"`) {
		return hex.DecodeString(strings.ReplaceAll(v, ":", ""))
	}
	if len(v) < 2 || !strings.HasSuffix(v, `"`) {
		return nil, fmt.Errorf("unterminated string %s", v)
	}
	v = v[1 : len(v)-1]
	var out []byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(v) {
			return nil, fmt.Errorf("string ends in a backslash")
		}
		if v[i+1] >= '0' && v[i+1] <= '7' {
			if i+4 > len(v) {
				return nil, fmt.Errorf("short octal escape in %q", v)
			}
			n, err := strconv.ParseUint(v[i+1:i+4], 8, 8)
			if err != nil {
				return nil, fmt.Errorf("octal escape %q: %v", v[i+1:i+4], err)
			}
			out = append(out, byte(n))
			i += 3
			continue
		}
		switch v[i+1] {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		default:
			out = append(out, v[i+1])
		}
		i++
	}
	return out, nil
}

// ReadDBRecords reads our server's sqlite database (the leases view) as
// LeaseRecords.
func ReadDBRecords(db string) ([]LeaseRecord, error) {
	ls, err := ReadLeases(db)
	if err != nil {
		return nil, err
	}
	out := make([]LeaseRecord, 0, len(ls))
	for _, l := range ls {
		out = append(out, LeaseRecord{
			Source: db, IP: l.Address, State: l.State, HWAddr: strings.ToLower(l.HWAddr),
			ClientID: strings.ToLower(strings.ReplaceAll(l.ClientID, ":", "")),
			Hostname: l.Hostname, Start: l.Starts, End: l.Ends,
		})
	}
	return out, nil
}

// BoundTwice returns, for every address that is active and unexpired at
// now in more than one of the record sets (one per server) for different
// clients, a line naming both records; nil when there is none. Records of
// one client compare by hardware address when both have one (a client
// identifier is not always carried over by every path), else by Client().
// It also reports a client identity active on two addresses within one
// set.
func BoundTwice(now int64, sets ...[]LeaseRecord) []string {
	var out []string
	holder := map[string]LeaseRecord{}
	for _, set := range sets {
		byClient := map[string]LeaseRecord{}
		for _, r := range set {
			if r.State != "active" || r.End <= now {
				continue
			}
			if h, ok := holder[r.IP]; ok && !sameClient(h, r) {
				out = append(out, fmt.Sprintf("%s is bound to two clients:\n    %s: %v\n    %s: %v", r.IP, h.Source, h, r.Source, r))
			}
			holder[r.IP] = r
			if o, ok := byClient[r.Client()]; ok {
				out = append(out, fmt.Sprintf("client %s holds two addresses in %s:\n    %v\n    %v", r.Client(), r.Source, o, r))
			}
			byClient[r.Client()] = r
		}
	}
	return out
}

func sameClient(a, b LeaseRecord) bool {
	if a.HWAddr != "" && b.HWAddr != "" {
		return a.HWAddr == b.HWAddr
	}
	return a.Client() == b.Client()
}

// RecordsByIP indexes records by address.
func RecordsByIP(rs []LeaseRecord) map[string]LeaseRecord {
	m := make(map[string]LeaseRecord, len(rs))
	for _, r := range rs {
		m[r.IP] = r
	}
	return m
}
