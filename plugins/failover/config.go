package failover

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/args"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/metrics"
)

// Config is a parsed failover plugin line.
type Config struct {
	// Name is the failover relationship (the name of a leasesync line
	// listed before this one); empty for a single server.
	Name string
	// DB is the path of the sqlite lease database.
	DB string
	// Pools are the address ranges this line allocates from.
	Pools []lease.Range
	// Subnet is the network the pools belong to; SubnetInferred is true
	// when it was taken from the host's interfaces.
	Subnet         netip.Prefix
	SubnetInferred bool
	// Local is true when Subnet holds an address of this host: the line
	// serves the clients of the listening link (subnet.go).
	Local bool
	// Relays are relay agents (giaddr) whose clients are served from the
	// pools even though the relay's address is outside Subnet.
	Relays []netip.Addr
	// Routers are this subnet's routers (option 3) in preference order.
	Routers []netip.Addr
	// ReservationsFile is reservations=, read into reserved (reserve.go).
	ReservationsFile string
	reserved         *reservations
	// LeaseTime is given to clients that ask for no particular time;
	// MaxLeaseTime caps what a client may ask for (option 51).
	LeaseTime, MaxLeaseTime time.Duration
	// OfferHold is how long an offered address is kept for its client.
	OfferHold time.Duration
	// DeclineHold is how long a declined address stays ABANDONED.
	DeclineHold time.Duration
	// PingCheck is how long a probe of an address waits for an echo
	// reply before the address is offered (ping.go); 0: no probe.
	PingCheck time.Duration
	// Metrics is where the process serves /metrics (invalid: nowhere;
	// a leasesync line may name it instead).
	Metrics netip.AddrPort

	// poolWords are the pool= words as written, for errors.
	poolWords map[lease.Range]string
}

// Defaults, documented in README.md.
const (
	defaultLeaseTime   = 12 * time.Hour
	defaultOfferHold   = 30 * time.Second
	defaultDeclineHold = 24 * time.Hour
	// maxLeaseSeconds is the largest finite lease option 51 can carry
	// (0xffffffff means infinite, which this server does not give).
	maxLeaseSeconds = math.MaxUint32 - 1
)

// knownKeys are the arguments parse accepts (the README documents each).
var knownKeys = []string{"name", "db", "pool", "subnet", "relay", "router", "reservations", "lease-time", "max-lease-time", "offer-hold", "decline-hold", "ping-check", "metrics"}

// interfaceAddrs lists the host's interface addresses; tests replace it.
type interfaceAddrs func() ([]net.Addr, error)

// argError names the offending word and the rule it broke.
var argError = args.Error

// parse reads the plugin's key=value words and checks them against each
// other and the host's interfaces. Its errors name the word and the rule.
func parse(words []string, ifaddrs interfaceAddrs) (Config, error) {
	cfg := Config{
		LeaseTime:   defaultLeaseTime,
		OfferHold:   defaultOfferHold,
		DeclineHold: defaultDeclineHold,
	}
	split, seen, err := args.Split(words, "pool", "relay", "router")
	if err != nil {
		return cfg, err
	}
	for _, w := range split {
		key, val, word := w.Key, w.Value, w.Text
		var err error
		switch key {
		case "name":
			cfg.Name = val
		case "db":
			cfg.DB = val
		case "pool":
			var r lease.Range
			r, err = parseRange(val)
			cfg.Pools = append(cfg.Pools, r)
			if cfg.poolWords == nil {
				cfg.poolWords = map[lease.Range]string{}
			}
			cfg.poolWords[r] = word
		case "subnet":
			cfg.Subnet, err = netip.ParsePrefix(val)
			if err == nil && !cfg.Subnet.Addr().Is4() {
				err = errors.New("want an IPv4 prefix such as 192.0.2.0/24")
			}
			if err == nil && cfg.Subnet.Masked() != cfg.Subnet {
				err = fmt.Errorf("host bits are set; did you mean %s?", cfg.Subnet.Masked())
			}
		case "relay":
			var a netip.Addr
			a, err = parseAddr4(val, "a relay agent's giaddr")
			cfg.Relays = append(cfg.Relays, a)
		case "router":
			var a netip.Addr
			a, err = parseAddr4(val, "a router of this subnet, option 3")
			cfg.Routers = append(cfg.Routers, a)
		case "reservations":
			cfg.ReservationsFile = val
		case "lease-time":
			cfg.LeaseTime, err = parseDuration(val)
		case "max-lease-time":
			cfg.MaxLeaseTime, err = parseDuration(val)
		case "offer-hold":
			cfg.OfferHold, err = parseDuration(val)
		case "decline-hold":
			cfg.DeclineHold, err = parseDuration(val)
		case "ping-check":
			cfg.PingCheck, err = parsePingTimeout(val)
			if err == nil && (cfg.PingCheck <= 0 || cfg.PingCheck > pingTimeoutMax) {
				err = fmt.Errorf("want a timeout above 0 and at most %v, e.g. 300ms (the client waits for its offer meanwhile)", pingTimeoutMax)
			}
		case "metrics":
			cfg.Metrics, err = metrics.ParseAddr(val)
		default:
			return cfg, argError(word, "unknown key %q (known: %s)", key, strings.Join(knownKeys, ", "))
		}
		if err != nil {
			return cfg, argError(word, "%v", err)
		}
	}
	if cfg.MaxLeaseTime == 0 {
		cfg.MaxLeaseTime = cfg.LeaseTime
	}
	return cfg, cfg.validate(seen, ifaddrs)
}

func (cfg *Config) validate(seen map[string]string, ifaddrs interfaceAddrs) error {
	if cfg.DB == "" {
		return errors.New("missing db=PATH: the lease database is required")
	}
	if len(cfg.Pools) == 0 {
		return errors.New("missing pool=START-END: at least one pool is required")
	}
	sorted := slices.Clone(cfg.Pools)
	slices.SortFunc(sorted, func(a, b lease.Range) int { return int(int64(a.Start) - int64(b.Start)) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Start <= sorted[i-1].End {
			return argError(cfg.poolWords[sorted[i]], "pools %s and %s overlap; want pools that share no address", sorted[i-1], sorted[i])
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
		min time.Duration
	}{
		{"lease-time", cfg.LeaseTime, time.Second},
		{"max-lease-time", cfg.MaxLeaseTime, time.Second},
		{"offer-hold", cfg.OfferHold, time.Second},
		{"decline-hold", cfg.DeclineHold, 0},
	} {
		if d.v < d.min {
			return argError(seen[d.key], "must be at least %v", d.min)
		}
		if d.v > maxLeaseSeconds*time.Second {
			return argError(seen[d.key], "must be at most %d seconds", maxLeaseSeconds)
		}
	}
	if cfg.MaxLeaseTime < cfg.LeaseTime {
		return argError(seen["max-lease-time"], "must not be shorter than lease-time (%v)", cfg.LeaseTime)
	}
	if !cfg.Subnet.IsValid() {
		s, err := inferSubnet(cfg.Pools[0], ifaddrs)
		if err != nil {
			return argError(cfg.poolWords[cfg.Pools[0]], "%v", err)
		}
		cfg.Subnet, cfg.SubnetInferred = s, true
	}
	cfg.Local = cfg.SubnetInferred || hostHasAddrIn(cfg.Subnet, ifaddrs)
	if cfg.ReservationsFile != "" {
		rs, err := loadReservations(cfg.ReservationsFile, cfg.Subnet, cfg.notReservable(ifaddrs))
		if err != nil {
			return argError(seen["reservations"], "%v", err)
		}
		cfg.reserved = rs
	}
	for _, r := range cfg.Pools {
		if err := checkInSubnet(r, cfg.Subnet); err != nil {
			how := "subnet=" + cfg.Subnet.String()
			if cfg.SubnetInferred {
				how = "the subnet of this host's interface (" + cfg.Subnet.String() + ")"
			}
			return argError(cfg.poolWords[r], "pool %s: %v of %s; every pool of a failover line must be in one subnet", r, err, how)
		}
	}
	return nil
}

// parseAddr4 reads an IPv4 address; what says what it is, for the error.
func parseAddr4(val, what string) (netip.Addr, error) {
	a, err := netip.ParseAddr(val)
	if err != nil || !a.Is4() {
		return a, fmt.Errorf("want an IPv4 address (%s)", what)
	}
	return a, nil
}

// parseRange reads START-END.
func parseRange(s string) (lease.Range, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return lease.Range{}, errors.New("want START-END, e.g. 192.0.2.100-192.0.2.199")
	}
	start, err1 := netip.ParseAddr(strings.TrimSpace(a))
	end, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || !start.Is4() || !end.Is4() {
		return lease.Range{}, errors.New("START and END must be IPv4 addresses")
	}
	s4, _ := lease.IPFromAddr(start)
	e4, _ := lease.IPFromAddr(end)
	if s4 > e4 {
		return lease.Range{}, errors.New("START is after END")
	}
	return lease.Range{Start: s4, End: e4}, nil
}

// parseDuration reads a Go duration (12h, 90m, 30s) or a whole number of
// seconds, as dhcpd.conf writes lease times.
func parseDuration(s string) (time.Duration, error) {
	d, err := parseIn(s, time.Second, "duration (want e.g. 12h, 30m, 45s or a number of seconds)")
	if err == nil && d%time.Second != 0 {
		return 0, errors.New("DHCP times are whole seconds")
	}
	return d, err
}

// parsePingTimeout reads a Go duration (300ms, 1s) or a number of
// milliseconds (as Kea's ping-timeout): a probe's wait is below a second.
func parsePingTimeout(s string) (time.Duration, error) {
	return parseIn(s, time.Millisecond, "timeout (want e.g. 300ms, 1s or a number of milliseconds)")
}

// parseIn reads a Go duration or a bare number of units.
func parseIn(s string, unit time.Duration, what string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * unit, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("invalid " + what)
	}
	return d, nil
}

// inferSubnet finds the host interface subnet that holds the pool.
func inferSubnet(r lease.Range, ifaddrs interfaceAddrs) (netip.Prefix, error) {
	addrs, err := ifaddrs()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("listing interfaces to find the subnet of pool %s: %v (give subnet=CIDR)", r, err)
	}
	var seen []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		ones, _ := ipn.Mask.Size()
		ip, _ := netip.AddrFromSlice(ipn.IP.To4())
		p := netip.PrefixFrom(ip, ones).Masked()
		seen = append(seen, p.String())
		if ones < 32 && p.Contains(r.Start.Addr()) && p.Contains(r.End.Addr()) {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("pool %s is in no subnet of this host's interfaces %v; "+
		"give subnet=CIDR (and relay=GIADDR for relayed clients) if the pool is on a remote network", r, seen)
}

// hostHasAddrIn reports whether one of the host's interface addresses
// lies in p (false when they cannot be listed).
func hostHasAddrIn(p netip.Prefix, ifaddrs interfaceAddrs) bool {
	addrs, err := ifaddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP.To4()); ok && p.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// notReservable returns why an address of the line's subnet may not be
// reserved for a client ("" when it may): the subnet's network or
// broadcast address (as for pools), a router= address, or an address of
// this host. Each is in use by something other than a DHCP client.
func (cfg *Config) notReservable(ifaddrs interfaceAddrs) func(netip.Addr) string {
	return func(a netip.Addr) string {
		ip, _ := lease.IPFromAddr(a)
		if err := checkInSubnet(lease.Range{Start: ip, End: ip}, cfg.Subnet); err != nil {
			return strings.TrimPrefix(err.Error(), "holds ")
		}
		if slices.Contains(cfg.Routers, a) {
			return "a router of this subnet (router=)"
		}
		if hostHasAddrIn(netip.PrefixFrom(a, 32), ifaddrs) {
			return "an address of this host"
		}
		return ""
	}
}

// checkInSubnet checks that r lies in p and holds neither its network nor
// its broadcast address.
func checkInSubnet(r lease.Range, p netip.Prefix) error {
	if !p.Contains(r.Start.Addr()) || !p.Contains(r.End.Addr()) {
		return errors.New("not inside")
	}
	if p.Bits() >= 31 {
		return nil
	}
	network, _ := lease.IPFromAddr(p.Addr())
	broadcast := network | lease.IP(uint32(1)<<(32-p.Bits())-1)
	if r.Contains(network) {
		return fmt.Errorf("holds the network address %s", network)
	}
	if r.Contains(broadcast) {
		return fmt.Errorf("holds the broadcast address %s", broadcast)
	}
	return nil
}
