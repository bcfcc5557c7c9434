package failover

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// Host reservations (reservations=PATH): each address given to one client
// only, by either server of a pair, in every state that serves clients.
//
// The file keeps the format of CoreDHCP's file plugin, one reservation a
// line, "HWADDR ADDRESS", '#' starting a comment, and adds client
// identifiers: "id:HEX ADDRESS" (option 61's bytes, type byte first, with
// or without colons, as ISC's dhcp-client-identifier and Kea's client-id
// write them). Unlike the file plugin, which warns, a client or an address
// listed twice is an error: two clients reserved one address is the
// duplicate this server exists to prevent.

// reservations maps clients to their reserved addresses.
type reservations struct {
	byHW   map[string]lease.IP // net.HardwareAddr.String()
	byID   map[string]lease.IP // option 61's bytes
	holder map[lease.IP]string // who holds each address, for logs
}

func (rs *reservations) len() int {
	if rs == nil {
		return 0
	}
	return len(rs.holder)
}

// each calls fn with every reserved address.
func (rs *reservations) each(fn func(lease.IP)) {
	if rs == nil {
		return
	}
	for ip := range rs.holder {
		fn(ip)
	}
}

// loadReservations reads path; every address must lie in subnet, and
// taken (nil: none) names why an address may not be reserved ("" when it
// may).
func loadReservations(path string, subnet netip.Prefix, taken func(netip.Addr) string) (*reservations, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseReservations(f, path, subnet, taken)
}

func parseReservations(r io.Reader, name string, subnet netip.Prefix, taken func(netip.Addr) string) (*reservations, error) {
	rs := &reservations{byHW: map[string]lease.IP{}, byID: map[string]lease.IP{}, holder: map[lease.IP]string{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		at := fmt.Sprintf("%s:%d", name, n)
		if len(f) != 2 {
			return nil, fmt.Errorf("%s: want \"HWADDR ADDRESS\" or \"id:HEX ADDRESS\", got %d fields", at, len(f))
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("%s: %q is not an IPv4 address", at, f[1])
		}
		if !subnet.Contains(a) {
			return nil, fmt.Errorf("%s: %s is outside this line's subnet %s", at, a, subnet)
		}
		if taken != nil {
			if why := taken(a); why != "" {
				return nil, fmt.Errorf("%s: %s is %s: a client given it would share it; reserve another address", at, a, why)
			}
		}
		ip, _ := lease.IPFromAddr(a)
		var who string
		if hexID, ok := strings.CutPrefix(f[0], "id:"); ok {
			id, err := hex.DecodeString(strings.ReplaceAll(hexID, ":", ""))
			if err != nil || len(id) < 2 {
				return nil, fmt.Errorf("%s: client identifier %q: want at least two hexadecimal bytes, e.g. id:01:02:00:00:00:00:01", at, f[0])
			}
			who = "client identifier " + hex.EncodeToString(id)
			if _, dup := rs.byID[string(id)]; dup {
				return nil, fmt.Errorf("%s: %s is reserved twice", at, who)
			}
			rs.byID[string(id)] = ip
		} else {
			hw, err := net.ParseMAC(f[0])
			if err != nil {
				return nil, fmt.Errorf("%s: %q is neither a hardware address nor id:HEX", at, f[0])
			}
			who = "hardware address " + hw.String()
			if _, dup := rs.byHW[hw.String()]; dup {
				return nil, fmt.Errorf("%s: %s is reserved twice", at, who)
			}
			rs.byHW[hw.String()] = ip
		}
		if other, dup := rs.holder[ip]; dup {
			return nil, fmt.Errorf("%s: %s is reserved for %s already; an address may be reserved for one client only", at, a, other)
		}
		rs.holder[ip] = who
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return rs, nil
}

// of returns the address reserved for client c: by its client identifier
// when it sends one (the client's identity, as for leases), else by its
// hardware address.
func (rs *reservations) of(c client) (lease.IP, bool) {
	if rs == nil {
		return 0, false
	}
	if len(c.clientID) > 0 {
		if ip, ok := rs.byID[string(c.clientID)]; ok {
			return ip, true
		}
	}
	if len(c.hwaddr) < 2 {
		return 0, false
	}
	ip, ok := rs.byHW[net.HardwareAddr(c.hwaddr[1:]).String()]
	return ip, ok
}

// forOther reports whether ip is reserved for a client other than c: it
// is never offered or given to c.
func (rs *reservations) forOther(ip lease.IP, c client) bool {
	if rs == nil {
		return false
	}
	if _, ok := rs.holder[ip]; !ok {
		return false
	}
	mine, ok := rs.of(c)
	return !ok || mine != ip
}
