package failover

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Which failover line answers a request. Several failover lines may follow
// one another in the plugin chain, each for its own subnet (a relationship
// or a single server each); a request that a line does not serve passes to
// the next plugin when a later line serves it, and is dropped (counted as
// foreign_relay) when none does.

// link is what names a request's network, found as ISC dhcpd and Kea find
// it, in this order: the link-selection sub-option of relay agent
// information (82.5, RFC 3527; the relay's word on its client's link, which
// both prefer), the subnet-selection option (118, RFC 3011), the relay's
// giaddr, and, for a request that no relay forwarded, the
// address the client renews (ciaddr) when a line's subnet holds it. A
// request with none of these is from the listening link.
type link struct {
	addr netip.Addr
	how  linkSource
}

type linkSource uint8

const (
	linkLocal     linkSource = iota // no relay: the listening link
	linkSubnetSel                   // option 118
	linkLinkSel                     // option 82, sub-option 5
	linkGiaddr                      // the relay's address
	linkCiaddr                      // a unicast renewal's address
)

var linkSourceNames = [...]string{"local", "subnet-selection", "link-selection", "relay", "ciaddr"}

func (l link) String() string {
	if l.how == linkLocal {
		return "the listening link"
	}
	return linkSourceNames[l.how] + " " + l.addr.String()
}

// addrOption reads a 4-byte address option, zero when absent or malformed.
func addrOption(b []byte) netip.Addr {
	if len(b) != 4 {
		return netip.Addr{}
	}
	a := netip.AddrFrom4([4]byte(b))
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

// linkOf finds what names req's network (see link). ciaddr is not
// decided here: it names a network only when a line's subnet holds it.
func linkOf(req *dhcpv4.DHCPv4) link {
	if rai := req.RelayAgentInfo(); rai != nil {
		if a := addrOption(rai.Get(dhcpv4.LinkSelectionSubOption)); a.IsValid() {
			return link{a, linkLinkSel}
		}
	}
	if a := addrOption(req.Options.Get(dhcpv4.OptionSubnetSelection)); a.IsValid() {
		return link{a, linkSubnetSel}
	}
	if a, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !a.IsUnspecified() {
		return link{a, linkGiaddr}
	}
	return link{}
}

// claims reports whether line cfg serves a request whose network l names.
// A relay listed with relay= is claimed ahead of this (chooseLine).
func (cfg *Config) claims(l link) bool {
	if l.how == linkLocal {
		return cfg.Local
	}
	return cfg.Subnet.Contains(l.addr)
}

// chooseLine returns the index of the line of lines (in chain order) that
// answers req, and the link that chose it; -1 when none serves it. A
// request from the listening link goes to the first line whose subnet is
// the listening link's (Local), unless it renews an address that another
// line's subnet holds; when no line is Local, the first line takes it
// (a line whose subnet= names no subnet of this host, as before several
// lines were possible).
func chooseLine(lines []*Config, req *dhcpv4.DHCPv4) (int, link) {
	l := linkOf(req)
	if l.how == linkLocal {
		if a, ok := netip.AddrFromSlice(req.ClientIPAddr.To4()); ok && !a.IsUnspecified() {
			c := link{a, linkCiaddr}
			for i, cfg := range lines {
				if cfg.claims(c) {
					return i, c
				}
			}
		}
		if !slices.ContainsFunc(lines, func(cfg *Config) bool { return cfg.Local }) {
			if len(lines) == 0 {
				return -1, l
			}
			return 0, l
		}
	}
	if l.how == linkGiaddr {
		// A relay named by relay= is that line's, even when another
		// line's subnet holds it (as Kea matches relay addresses first).
		for i, cfg := range lines {
			if slices.Contains(cfg.Relays, l.addr) {
				return i, l
			}
		}
	}
	for i, cfg := range lines {
		if cfg.claims(l) {
			return i, l
		}
	}
	return -1, l
}

// chain is the failover lines of this process, in the order of the
// plugin chain (setup order): each line's handler asks it which line
// answers a request. A server started outside the plugin chain (tests,
// the simulation) is a chain of its own (inChain nil).
type chain struct {
	mu   sync.Mutex
	snap atomic.Pointer[chainSnap]
}

// chainSnap is the lines at one time, never changed once published, so
// that the packet path reads it without a lock.
type chainSnap struct {
	servers []*Server
	cfgs    []*Config
}

var processChain chain

// add appends s; remove takes it out (when it shuts down).
func (c *chain) add(s *Server) {
	c.update(func(lines []*Server) []*Server { return append(lines, s) })
	s.inChain = c
}

func (c *chain) remove(s *Server) {
	c.update(func(lines []*Server) []*Server {
		return slices.DeleteFunc(lines, func(x *Server) bool { return x == s })
	})
}

func (c *chain) update(fn func([]*Server) []*Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lines []*Server
	if old := c.snap.Load(); old != nil {
		lines = slices.Clone(old.servers)
	}
	lines = fn(lines)
	n := &chainSnap{servers: lines, cfgs: make([]*Config, len(lines))}
	for i, x := range lines {
		n.cfgs[i] = &x.cfg
	}
	c.snap.Store(n)
}

// route decides what line s does with req: answer it (mine), pass it to
// the next plugin untouched (pass: another line answers it, a later one,
// or an earlier one whose answer the chain carries on to the option
// plugins), or neither: drop it (no line serves its network).
func (s *Server) route(req *dhcpv4.DHCPv4) (mine, pass bool, l link) {
	var snap *chainSnap
	if s.inChain != nil {
		snap = s.inChain.snap.Load()
	}
	if snap == nil {
		i, l := chooseLine([]*Config{&s.cfg}, req)
		return i == 0, false, l
	}
	i, l := chooseLine(snap.cfgs, req)
	me := slices.Index(snap.servers, s)
	return i >= 0 && i == me, i >= 0 && i != me, l
}
