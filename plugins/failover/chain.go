package failover

import (
	"net"
	"net/netip"
)

// Pool is one pool= range of a failover line, both ends included.
type Pool struct{ First, Last netip.Addr }

// Overlaps reports whether p and q share an address.
func (p Pool) Overlaps(q Pool) bool {
	return p.First.Compare(q.Last) <= 0 && q.First.Compare(p.Last) <= 0
}

func (p Pool) String() string { return p.First.String() + "-" + p.Last.String() }

// LineInfo parses a failover plugin line as setup does, with ifaddrs
// standing for the host's interfaces (net.InterfaceAddrs), and returns what
// the start-up check of the plugin chain needs: the relationship name
// ("" for a single server), the subnets the line serves and its pools. Its
// error is the one the plugin's setup would report for the line; with an
// error, the name is still returned if the name= word was read.
func LineInfo(args []string, ifaddrs func() ([]net.Addr, error)) (name string, subnets []netip.Prefix, pools []Pool, err error) {
	cfg, err := parse(args, ifaddrs)
	if err != nil {
		return cfg.Name, nil, nil, err
	}
	for _, r := range cfg.Pools {
		pools = append(pools, Pool{First: r.Start.Addr(), Last: r.End.Addr()})
	}
	return cfg.Name, []netip.Prefix{cfg.Subnet}, pools, nil
}

// HostHasAddrIn reports whether one of the host's interface addresses
// (ifaddrs, as net.InterfaceAddrs) lies in p: whether a line on subnet p
// serves the listening link (subnet.go).
func HostHasAddrIn(p netip.Prefix, ifaddrs func() ([]net.Addr, error)) bool {
	return hostHasAddrIn(p, ifaddrs)
}
