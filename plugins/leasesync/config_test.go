package leasesync

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	const base = "name=lan1 address=192.0.2.1 peer=192.0.2.2 "
	for _, tc := range []struct {
		name    string
		line    string
		wantErr string
		check   func(*testing.T, Config)
	}{
		{name: "Primary with the defaults",
			line: base + "role=primary mclt=1h split=128",
			check: func(t *testing.T, c Config) {
				if c.Role != Primary || c.MCLT != time.Hour || c.Address.Port() != 647 || c.Peer.Port() != 647 {
					t.Errorf("parsed %+v", c)
				}
				if c.MaxResponseDelay != 20*time.Second || c.MaxUnackedUpdates != 100 || c.LBMaxSecs != 3 ||
					c.AutoPartnerDown != 0 || c.MaxLeaseMisbalance != 15 || c.MaxLeaseOwnership != 10 ||
					c.MinBalance != time.Minute || c.MaxBalance != time.Hour {
					t.Errorf("defaults %+v", c)
				}
				if !c.HBA.PrimaryServes(127) || c.HBA.PrimaryServes(128) {
					t.Errorf("split=128 gave %x", c.HBA)
				}
			}},
		{name: "Secondary learns mclt and split from the primary",
			line: base + "role=secondary port=6470 peer-port=6471",
			check: func(t *testing.T, c Config) {
				if c.Role != Secondary || c.MCLT != 0 || c.HasHBA || c.Address.Port() != 6470 || c.Peer.Port() != 6471 {
					t.Errorf("parsed %+v", c)
				}
			}},
		{name: "Every knob in dhcpd.conf units",
			line: base + "role=primary mclt=3600 hba=" + strings.Repeat("aa", 32) + " load-balance-max-seconds=0 max-response-delay=60 max-unacked-updates=10 auto-partner-down=15m max-lease-misbalance=20 max-lease-ownership=5 min-balance=30 max-balance=600",
			check: func(t *testing.T, c Config) {
				if c.MCLT != time.Hour || c.LBMaxSecs != 0 || c.MaxResponseDelay != time.Minute || c.MaxUnackedUpdates != 10 ||
					c.AutoPartnerDown != 15*time.Minute || c.MaxLeaseMisbalance != 20 || c.MaxLeaseOwnership != 5 ||
					c.MinBalance != 30*time.Second || c.MaxBalance != 10*time.Minute {
					t.Errorf("parsed %+v", c)
				}
				if !c.HBA.PrimaryServes(1) || c.HBA.PrimaryServes(0) {
					t.Errorf("hba aa... gave %x", c.HBA)
				}
			}},
		{name: "Unknown key", line: base + "role=primary mclt=1h split=128 splt=1", wantErr: `argument "splt=1": unknown key "splt"`},
		{name: "Metrics host name", line: base + "role=primary mclt=1h split=128 metrics=localhost:9647", wantErr: `argument "metrics=localhost:9647": want ADDRESS:PORT`},
		{name: "Missing name", line: "role=primary address=192.0.2.1 peer=192.0.2.2 mclt=1h split=128", wantErr: "missing name="},
		{name: "Missing peer", line: "name=a role=primary address=192.0.2.1 mclt=1h split=128", wantErr: "missing peer="},
		{name: "Bad role", line: base + "role=master", wantErr: `argument "role=master": want primary or secondary`},
		{name: "Peer not IPv4", line: "name=a role=primary address=192.0.2.1 peer=2001:db8::2 mclt=1h split=128", wantErr: `argument "peer=2001:db8::2": want an IPv4 address`},
		{name: "Port zero", line: base + "role=primary mclt=1h split=128 port=0", wantErr: "want a TCP port"},
		{name: "Peer is ourselves", line: "name=a role=primary address=192.0.2.1 peer=192.0.2.1 mclt=1h split=128", wantErr: "the peer cannot be this server's own address"},
		{name: "Primary without mclt", line: base + "role=primary split=128", wantErr: "missing mclt=DURATION"},
		{name: "Primary without split", line: base + "role=primary mclt=1h", wantErr: "missing split=N or hba=HEX"},
		{name: "Split out of range", line: base + "role=primary mclt=1h split=300", wantErr: `argument "split=300": want a number of hash buckets from 0 to 256`},
		{name: "Split and hba", line: base + "role=primary mclt=1h split=128 hba=" + strings.Repeat("ff", 32), wantErr: "give split or hba, not both"},
		{name: "Short hba", line: base + "role=primary mclt=1h hba=ffff", wantErr: "want 32 bytes of hex"},
		{name: "Bad mclt", line: base + "role=primary mclt=soon split=128", wantErr: `argument "mclt=soon": invalid duration`},
		{name: "Fractional mclt", line: base + "role=primary mclt=1.5s split=128", wantErr: "whole seconds"},
		{name: "Tiny max-response-delay", line: base + "role=secondary max-response-delay=1s", wantErr: "want from 3s"},
		{name: "Zero max-unacked-updates", line: base + "role=secondary max-unacked-updates=0", wantErr: "want a number from 1 to 65535"},
		{name: "Misbalance over 100", line: base + "role=secondary max-lease-misbalance=150", wantErr: "want a percentage"},
		{name: "Min over max balance", line: base + "role=secondary min-balance=2h max-balance=1h", wantErr: "must not be longer than max-balance"},
		{name: "Repeated key", line: base + "role=primary role=secondary", wantErr: `argument "role=secondary": role is already set`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parse(strings.Fields(tc.line))
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
