// Package lease holds the binding model of DHCP failover and its storage: an
// in-memory table indexed by address and by client, with O(1) amortised
// allocation, and durable stores (sqlite in WAL mode, or memory for tests)
// written through a group committer, so that many concurrent requests share
// one transaction and one fsync.
//
// The package takes the current time as an argument wherever it needs it; it
// never reads the clock.
package lease

import (
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
)

// State is a binding's status, numbered as the binding-status option of
// draft-ietf-dhc-failover-12 (and ISC dhcpd) numbers it on the wire.
type State uint8

// Binding states. A free address belongs to the primary when FREE and to the
// secondary when BACKUP; a server without a peer owns every FREE address.
const (
	Free      State = 1
	Active    State = 2
	Expired   State = 3
	Released  State = 4
	Abandoned State = 5
	Reset     State = 6
	Backup    State = 7
)

var stateNames = [...]string{
	Free: "free", Active: "active", Expired: "expired", Released: "released",
	Abandoned: "abandoned", Reset: "reset", Backup: "backup",
}

func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Valid reports whether s is one of the states above.
func (s State) Valid() bool { return s >= Free && s <= Backup }

// ParseState returns the state named s, as String prints it.
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if n != "" && n == strings.ToLower(s) {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown binding state %q", s)
}

// IP is an IPv4 address as a big-endian 32-bit number: small to keep a
// million of them, and easy to count through a range.
type IP uint32

// IPFromAddr converts an IPv4 (or IPv4-mapped IPv6) address.
func IPFromAddr(a netip.Addr) (IP, bool) {
	a = a.Unmap()
	if !a.Is4() {
		return 0, false
	}
	b := a.As4()
	return IP(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])), true
}

// IPFromNet converts a net.IP holding an IPv4 address.
func IPFromNet(ip net.IP) (IP, bool) {
	v4 := ip.To4()
	if v4 == nil {
		return 0, false
	}
	return IP(uint32(v4[0])<<24 | uint32(v4[1])<<16 | uint32(v4[2])<<8 | uint32(v4[3])), true
}

// Addr returns ip as a netip.Addr.
func (ip IP) Addr() netip.Addr {
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)})
}

// Net returns ip as a 4-byte net.IP.
func (ip IP) Net() net.IP {
	return net.IP{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}
}

func (ip IP) String() string { return ip.Addr().String() }

// Binding is everything known about one address. Times are Unix seconds; zero
// means unset.
type Binding struct {
	IP    IP
	State State
	// ClientID is the client identifier (option 61) the client sent, or nil.
	ClientID []byte
	// HWAddr is the hardware type followed by the client hardware address,
	// as the failover protocol's chaddr option carries it.
	HWAddr   []byte
	Hostname string
	// Start and End bound the lease given to the client (for ABANDONED, End
	// is when the address may be offered again).
	Start, End int64
	// CLTT is the client's last transaction time.
	CLTT int64
	// SentExpiry is the potential expiration time last sent to the peer
	// (ISC: tstp); PeerExpiry is the expiration the peer has acknowledged
	// (ISC: tsfp). A lease may run at most MCLT past PeerExpiry.
	SentExpiry, PeerExpiry int64
	// Pending is true while a change of this binding has not been
	// acknowledged by the peer.
	Pending bool
	// Transmitted is true once the pending change has been handed to the
	// link to the peer: the peer may hold it, acknowledged or not. It is
	// kept in memory only (a pending change loaded from disk may have
	// been sent before a crash; the failover plugin assumes it was).
	Transmitted bool
}

// Until is when b's lease ends: End, except that an ACTIVE binding with
// End 0 never ends (ISC's infinite lease, 0 on the wire too).
func (b *Binding) Until() int64 {
	if b.State == Active && b.End == 0 {
		return math.MaxInt64
	}
	return b.End
}

// Key returns the binding's client identity: the client identifier when the
// client sent one, else its hardware address (as ISC dhcpd and Kea do). It
// is empty for a binding that has no client.
func (b *Binding) Key() string { return ClientKey(b.ClientID, b.HWAddr) }

// ClientKey builds the identity under which a client is indexed. A
// hardware address of only its type byte (hlen 0) identifies no client: all
// such clients would share one key, which the database (that keeps no
// empty hardware address) would not give back after a restart.
func ClientKey(clientID, hwaddr []byte) string {
	switch {
	case len(clientID) > 0:
		return "i" + string(clientID)
	case len(hwaddr) > 1:
		return "h" + string(hwaddr)
	}
	return ""
}

// HWString formats an HWAddr (type byte first) as aa:bb:cc:..., without the
// type byte.
func HWString(hw []byte) string {
	if len(hw) < 2 {
		return ""
	}
	return net.HardwareAddr(hw[1:]).String()
}

func (b Binding) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s", b.IP, b.State)
	if len(b.HWAddr) > 0 {
		fmt.Fprintf(&sb, " hw=%s", HWString(b.HWAddr))
	}
	if len(b.ClientID) > 0 {
		fmt.Fprintf(&sb, " id=%s", hex.EncodeToString(b.ClientID))
	}
	if b.End != 0 {
		fmt.Fprintf(&sb, " ends=%d", b.End)
	}
	return sb.String()
}

// Range is an inclusive range of addresses.
type Range struct{ Start, End IP }

// Contains reports whether ip is in r.
func (r Range) Contains(ip IP) bool { return ip >= r.Start && ip <= r.End }

// Size is the number of addresses in r.
func (r Range) Size() uint64 { return uint64(r.End) - uint64(r.Start) + 1 }

func (r Range) String() string { return r.Start.String() + "-" + r.End.String() }
