// Package chain checks CoreDHCP's DHCPv4 plugin chain before the plugins
// are set up: orders and combinations that start without a word and then
// answer wrongly (an ACK without a server identifier, a lease time the
// database does not hold, two lines serving one subnet) are errors that
// stop the server; what is legal but odd is a warning. The check is a
// function of the plugin list and the host's interface addresses (given,
// so tests need no host): it opens nothing and keeps no state.
//
// A failover or leasesync line whose arguments do not parse is not judged
// here beyond its name and position: the plugin's own setup reports it.
//
// What is checked, and why: "The plugin chain" in
// plugins/failover/README.md.
package chain

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/coredhcp/coredhcp/config"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/failover"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/leasesync"
)

// Errors are the problems that stop the server, one a message.
type Errors []string

func (e Errors) Error() string { return strings.Join(e, "\n") }

// line is one plugin line of the chain.
type line struct {
	pos  int // 1-based, as an operator counts the lines
	name string
	args []string
}

// maxQuote bounds how much of a line a message quotes.
const maxQuote = 60

// String names the line by position and what it says, e.g.
// plugin 3 "failover name=lan1 db=/var/lib/lan1.db ...".
func (l line) String() string {
	text := l.name
	for _, a := range l.args {
		if len(text)+1+len(a) > maxQuote {
			text += " ..."
			break
		}
		text += " " + a
	}
	return fmt.Sprintf("plugin %d %q", l.pos, text)
}

// foLine is a failover line with what its arguments say.
type foLine struct {
	line
	rel     string // relationship name; "" for a single server
	parsed  bool   // false: the line does not parse (its setup reports it)
	subnets []netip.Prefix
	pools   []failover.Pool
}

// Check judges the DHCPv4 plugin chain. ifaddrs lists the host's interface
// addresses (net.InterfaceAddrs), from which a failover line without
// subnet= takes its subnet. The warnings are for the log; a non-nil error
// (of type Errors) means the server must not start.
func Check(plugins []config.PluginConfig, ifaddrs func() ([]net.Addr, error)) (warnings []string, err error) {
	var (
		errs                         Errors
		serverIDs, ranges, leaseTime []line
		routers, netmasks            []line
		fos                          []foLine
		syncs                        = map[string][]line{} // by relationship name
		syncOrder                    []string
		unnamedSync                  bool // a leasesync line whose name could not be read
	)
	for i, p := range plugins {
		l := line{pos: i + 1, name: p.Name, args: p.Args}
		switch p.Name {
		case "server_id":
			serverIDs = append(serverIDs, l)
		case "range":
			ranges = append(ranges, l)
		case "lease_time":
			leaseTime = append(leaseTime, l)
		case "router":
			routers = append(routers, l)
		case "netmask":
			netmasks = append(netmasks, l)
		case "failover":
			name, subnets, pools, err := failover.LineInfo(p.Args, ifaddrs)
			fos = append(fos, foLine{line: l, rel: name, parsed: err == nil, subnets: subnets, pools: pools})
		case "leasesync":
			name, _ := leasesync.LineName(p.Args)
			if name == "" {
				unnamedSync = true
				continue
			}
			if syncs[name] == nil {
				syncOrder = append(syncOrder, name)
			}
			syncs[name] = append(syncs[name], l)
		}
	}
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	warn := func(format string, a ...any) { warnings = append(warnings, fmt.Sprintf(format, a...)) }

	if len(fos) > 0 {
		first := fos[0]
		if len(serverIDs) == 0 {
			add("%v: no server_id line in the chain: an OFFER or ACK would leave without the server identifier (option 54), "+
				"which clients need to choose and renew; add \"- server_id: ADDRESS\" (this server's address on the client network) as the first plugin", first)
		} else {
			for _, f := range fos {
				if f.pos < serverIDs[0].pos {
					add("%v comes before %v: failover compares the server identifier (option 54) of a SELECTING DHCPREQUEST "+
						"with the one server_id sets in the reply, which is not set yet; move the server_id line above the failover line", f, serverIDs[0])
				}
			}
		}
		for _, r := range ranges {
			add("%v in a chain with %v: range allocates addresses from its own pool, which failover neither stores nor shares with its peer; "+
				"remove the range line and give its addresses to the failover line as pool=START-END", r, first)
		}
		for _, r := range leaseTime {
			add("%v in a chain with %v: lease_time overwrites the lease time (option 51) failover chose and stored, "+
				"so a client is told one time while the lease database holds another; remove the lease_time line and set lease-time= on the failover line", r, first)
		}
	}

	for _, name := range syncOrder {
		if ls := syncs[name]; len(ls) > 1 {
			for _, dup := range ls[1:] {
				add("%v and %v both define relationship %q: each relationship has one leasesync line; "+
					"give the other relationship its own name= (on its leasesync and failover lines) or remove the duplicate", ls[0], dup, name)
			}
		}
	}
	named := map[string]bool{}
	firstOf := map[string]foLine{}
	for _, f := range fos {
		if f.rel == "" {
			continue
		}
		if g, dup := firstOf[f.rel]; dup {
			add("%v and %v both name relationship %q: a relationship has one failover line (one database, one state); "+
				"give the second subnet its own relationship (a leasesync line with another name=), or make it a single server (no name=)", g, f, f.rel)
		} else {
			firstOf[f.rel] = f
		}
		named[f.rel] = true
		ls := syncs[f.rel]
		switch {
		case len(ls) == 0 && !unnamedSync:
			add("%v names relationship %q, but no leasesync line has name=%s: "+
				"add the relationship's leasesync line above the failover line, or remove name= for a single server", f, f.rel, f.rel)
		case len(ls) > 0 && ls[0].pos > f.pos:
			add("%v comes after %v, which names it: the failover line joins its relationship when it is set up, "+
				"so the leasesync line must be set up first; move the leasesync line above the failover line", ls[0], f)
		}
	}
	unparsedFailover := false
	for _, f := range fos {
		unparsedFailover = unparsedFailover || !f.parsed && f.rel == ""
	}
	for _, name := range syncOrder {
		if !named[name] && !unparsedFailover {
			warn("%v: no failover line has name=%s, so the relationship has no pools to share and its session never starts (the peer sees no partner); "+
				"add name=%s to the failover line of its pools, or remove the leasesync line", syncs[name][0], name, name)
		}
	}

	var subnets []netip.Prefix // distinct, in chain order
	var subnetLines []foLine
	for i, a := range fos {
		for _, s := range a.subnets {
			if !slices.Contains(subnets, s) {
				subnets = append(subnets, s)
				subnetLines = append(subnetLines, a)
			}
		}
		for _, b := range fos[i+1:] {
			s, t, ok := firstOverlap(a.subnets, b.subnets, netip.Prefix.Overlaps)
			if !ok {
				continue // the pools of each line lie in its subnets (the plugin checks), so they cannot overlap either
			}
			how := "subnet " + s.String()
			if s != t {
				how = fmt.Sprintf("the overlapping subnets %s and %s", s, t)
			}
			if p, q, ok := firstOverlap(a.pools, b.pools, failover.Pool.Overlaps); ok {
				how += fmt.Sprintf(", and their pools %s and %s overlap, so one address could be leased twice", p, q)
			}
			add("%v and %v both serve %s: a client's subnet must lead to one failover line; "+
				"put the pools of one subnet on one failover line, or correct subnet= (a line without it takes the subnet of the interface that holds its first pool)", a, b, how)
		}
	}
	// A request that no relay forwarded names no link (CoreDHCP does
	// not tell a plugin the interface it came in on): the first line on
	// a subnet of this host answers every one (plugins/failover/subnet.go).
	var onHost []foLine
	for _, f := range fos {
		if slices.ContainsFunc(f.subnets, func(p netip.Prefix) bool { return failover.HostHasAddrIn(p, ifaddrs) }) {
			onHost = append(onHost, f)
		}
	}
	for _, f := range onHost[min(1, len(onHost)):] {
		if _, _, ok := firstOverlap(onHost[0].subnets, f.subnets, netip.Prefix.Overlaps); ok {
			continue // two lines on one subnet: an error above
		}
		warn("%v and %v both serve a subnet of this host (%s, %s), and a request that no relay forwarded does not say which link it came from: "+
			"%v answers every one, so clients on the link of %s would get addresses of %s and NAKs for their own; "+
			"serve one link directly and reach the others through relays, or run a server process per link",
			onHost[0], f, onHost[0].subnets[0], f.subnets[0], onHost[0], f.subnets[0], onHost[0].subnets[0])
	}
	if len(subnets) > 1 {
		var served []string
		for i, s := range subnets {
			served = append(served, fmt.Sprintf("%s (plugin %d)", s, subnetLines[i].pos))
		}
		for _, l := range append(append([]line{}, routers...), netmasks...) {
			warn("%v writes one value into the replies of every subnet, but the failover lines serve %s: "+
				"clients of all but one subnet are told the wrong %s; remove it: give router=ADDRESS on each failover line (each line sends its own subnet's mask)",
				l, strings.Join(served, ", "), l.name)
		}
	}
	if len(subnets) == 1 {
		s, f := subnets[0], subnetLines[0]
		for _, l := range netmasks {
			if bits, ok := maskBits(l.args); ok && bits != s.Bits() {
				warn("%v tells clients a /%d network, but %v serves %s: clients would get a wrong netmask; make the netmask %s",
					l, bits, f, s, net.IP(net.CIDRMask(s.Bits(), 32)))
			}
		}
		for _, l := range routers {
			for _, a := range l.args {
				if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() && !s.Contains(ip) {
					warn("%v: router %s is outside the subnet %s that %v serves, and clients reach only a router on their own link; give a router address inside %s",
						l, ip, s, f, s)
				}
			}
		}
	}
	if len(errs) > 0 {
		return warnings, errs
	}
	return warnings, nil
}

// firstOverlap returns the first pair of a and b that overlap.
func firstOverlap[T any](a, b []T, overlaps func(T, T) bool) (x, y T, ok bool) {
	for _, x := range a {
		for _, y := range b {
			if overlaps(x, y) {
				return x, y, true
			}
		}
	}
	return x, y, false
}

// maskBits reads the netmask plugin's argument (a dotted IPv4 mask).
func maskBits(args []string) (int, bool) {
	if len(args) != 1 {
		return 0, false
	}
	ip, err := netip.ParseAddr(args[0])
	if err != nil || !ip.Is4() {
		return 0, false
	}
	b := ip.As4()
	ones, bits := net.IPMask(b[:]).Size()
	return ones, bits == 32
}
