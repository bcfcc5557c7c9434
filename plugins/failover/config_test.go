package failover

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// lanAddrs is a host with one interface on 192.0.2.0/24.
func lanAddrs() ([]net.Addr, error) {
	return []net.Addr{
		&net.IPNet{IP: net.IPv4(127, 0, 0, 1), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)},
	}, nil
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		line    string
		wantErr string
		check   func(*testing.T, Config)
	}{
		{name: "Minimal line takes the defaults and the interface subnet",
			line: "db=/x.db pool=192.0.2.100-192.0.2.199",
			check: func(t *testing.T, c Config) {
				if c.LeaseTime != 12*time.Hour || c.MaxLeaseTime != 12*time.Hour || c.OfferHold != 30*time.Second || c.DeclineHold != 24*time.Hour {
					t.Errorf("defaults: %+v", c)
				}
				if c.Subnet.String() != "192.0.2.0/24" || !c.SubnetInferred {
					t.Errorf("subnet %v inferred=%v", c.Subnet, c.SubnetInferred)
				}
			}},
		{name: "Every argument",
			line: "db=/x.db pool=198.18.0.10-198.18.0.20 pool=198.18.1.0-198.18.1.9 subnet=198.18.0.0/15 relay=198.51.100.2 relay=198.51.100.3 lease-time=1h max-lease-time=7200 offer-hold=10s decline-hold=0",
			check: func(t *testing.T, c Config) {
				if len(c.Pools) != 2 || len(c.Relays) != 2 || c.MaxLeaseTime != 2*time.Hour || c.DeclineHold != 0 || c.SubnetInferred {
					t.Errorf("parsed %+v", c)
				}
			}},
		{name: "Not key=value", line: "db=/x.db 192.0.2.100-192.0.2.199", wantErr: `argument "192.0.2.100-192.0.2.199": want key=value`},
		{name: "Unknown key", line: "db=/x.db pool=192.0.2.100-192.0.2.199 splt=128", wantErr: `argument "splt=128": unknown key "splt"`},
		{name: "Metrics listener", line: "db=/x.db pool=192.0.2.100-192.0.2.199 metrics=127.0.0.1:9647",
			check: func(t *testing.T, c Config) {
				if c.Metrics.String() != "127.0.0.1:9647" {
					t.Errorf("metrics %v", c.Metrics)
				}
			}},
		{name: "Metrics without a port", line: "db=/x.db pool=192.0.2.100-192.0.2.199 metrics=127.0.0.1", wantErr: `argument "metrics=127.0.0.1": want ADDRESS:PORT`},
		{name: "Empty value", line: "db= pool=192.0.2.100-192.0.2.199", wantErr: `argument "db=": empty value`},
		{name: "Repeated single key", line: "db=/a db=/b pool=192.0.2.100-192.0.2.199", wantErr: `argument "db=/b": db is already set by "db=/a"`},
		{name: "Missing db", line: "pool=192.0.2.100-192.0.2.199", wantErr: "missing db=PATH"},
		{name: "Missing pool", line: "db=/x.db", wantErr: "missing pool=START-END"},
		{name: "Pool without dash", line: "db=/x.db pool=192.0.2.100", wantErr: `argument "pool=192.0.2.100": want START-END`},
		{name: "Pool not IPv4", line: "db=/x.db pool=2001:db8::1-2001:db8::9", wantErr: "START and END must be IPv4 addresses"},
		{name: "Pool backwards", line: "db=/x.db pool=192.0.2.199-192.0.2.100", wantErr: "START is after END"},
		{name: "A /31 has no network nor broadcast address (RFC 3021)", line: "db=/x.db pool=192.0.2.0-192.0.2.1 subnet=192.0.2.0/31",
			check: func(t *testing.T, c Config) {
				if c.Subnet.Bits() != 31 {
					t.Errorf("subnet %v", c.Subnet)
				}
			}},
		{name: "Overlapping pools given backwards", line: "db=/x.db pool=192.0.2.150-192.0.2.199 pool=192.0.2.100-192.0.2.150", wantErr: "pools 192.0.2.100-192.0.2.150 and 192.0.2.150-192.0.2.199 overlap"},
		{name: "Disjoint pools given backwards", line: "db=/x.db pool=192.0.2.200-192.0.2.209 pool=192.0.2.150-192.0.2.199 pool=192.0.2.100-192.0.2.149",
			check: func(t *testing.T, c Config) {
				if len(c.Pools) != 3 {
					t.Errorf("pools %v", c.Pools)
				}
			}},
		{name: "The longest finite lease", line: "db=/x.db pool=192.0.2.100-192.0.2.199 lease-time=4294967294s max-lease-time=4294967294s",
			check: func(t *testing.T, c Config) {
				if c.LeaseTime != maxLeaseSeconds*time.Second {
					t.Errorf("lease-time %v", c.LeaseTime)
				}
			}},
		{name: "Overlapping pools", line: "db=/x.db pool=192.0.2.100-192.0.2.150 pool=192.0.2.150-192.0.2.199", wantErr: "pools 192.0.2.100-192.0.2.150 and 192.0.2.150-192.0.2.199 overlap"},
		{name: "Pool on no interface", line: "db=/x.db pool=203.0.113.10-203.0.113.20", wantErr: "pool 203.0.113.10-203.0.113.20 is in no subnet of this host's interfaces"},
		{name: "Pool outside the given subnet", line: "db=/x.db pool=192.0.2.100-192.0.2.199 subnet=198.51.100.0/24", wantErr: "pool 192.0.2.100-192.0.2.199: not inside of subnet=198.51.100.0/24"},
		{name: "Pools in two subnets", line: "db=/x.db pool=192.0.2.100-192.0.2.199 pool=203.0.113.10-203.0.113.20", wantErr: "pool 203.0.113.10-203.0.113.20: not inside of the subnet of this host's interface (192.0.2.0/24)"},
		{name: "Pool with the broadcast address", line: "db=/x.db pool=192.0.2.100-192.0.2.255", wantErr: "holds the broadcast address 192.0.2.255"},
		{name: "Pool with the network address", line: "db=/x.db pool=192.0.2.0-192.0.2.10", wantErr: "holds the network address 192.0.2.0"},
		{name: "Subnet with host bits", line: "db=/x.db pool=192.0.2.100-192.0.2.199 subnet=192.0.2.1/24", wantErr: "host bits are set; did you mean 192.0.2.0/24?"},
		{name: "Subnet not IPv4", line: "db=/x.db pool=192.0.2.100-192.0.2.199 subnet=2001:db8::/64", wantErr: "want an IPv4 prefix"},
		{name: "Relay not an address", line: "db=/x.db pool=192.0.2.100-192.0.2.199 relay=gateway", wantErr: `argument "relay=gateway"`},
		{name: "Bad duration", line: "db=/x.db pool=192.0.2.100-192.0.2.199 lease-time=5x", wantErr: `argument "lease-time=5x": invalid duration`},
		{name: "Fractional seconds", line: "db=/x.db pool=192.0.2.100-192.0.2.199 offer-hold=1500ms", wantErr: "DHCP times are whole seconds"},
		{name: "Zero lease time", line: "db=/x.db pool=192.0.2.100-192.0.2.199 lease-time=0", wantErr: `argument "lease-time=0": must be at least 1s`},
		{name: "Lease time too long for option 51", line: "db=/x.db pool=192.0.2.100-192.0.2.199 lease-time=2000000h", wantErr: "must be at most 4294967294 seconds"},
		{name: "Max lease time under lease time", line: "db=/x.db pool=192.0.2.100-192.0.2.199 lease-time=2h max-lease-time=1h", wantErr: `argument "max-lease-time=1h": must not be shorter than lease-time (2h0m0s)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parse(strings.Fields(tc.line), lanAddrs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parse(%q) error = %v, want it to contain %q", tc.line, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): %v", tc.line, err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestParseReportsInterfaceListingFailure(t *testing.T) {
	broken := func() ([]net.Addr, error) { return nil, errors.New("netlink gone") }
	_, err := parse([]string{"db=/x", "pool=192.0.2.10-192.0.2.20"}, broken)
	if err == nil || !strings.Contains(err.Error(), "netlink gone") || !strings.Contains(err.Error(), "give subnet=CIDR") {
		t.Fatalf("error = %v", err)
	}
}

func TestSetupErrorsNameThePlugin(t *testing.T) {
	_, err := setup4("db=/x.db", "bogus=1")
	if err == nil || !strings.HasPrefix(err.Error(), "plugins/failover: ") {
		t.Fatalf("setup4 error = %v, want it to start with the plugin name", err)
	}
}
