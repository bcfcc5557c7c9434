package leasesync

import (
	"strings"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/failover"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// TestBadPluginLines runs bad plugin lines through each plugin's setup, as
// CoreDHCP does, and checks that every error names the plugin, the
// argument (as the operator wrote it) and what is expected: CoreDHCP adds
// nothing to the message, so it is all the operator sees. Every argument
// of both plugins appears, and every rule the parsers check.
func TestBadPluginLines(t *testing.T) {
	const ls = "name=lan1 role=primary address=192.0.2.1 peer=192.0.2.2 mclt=1h split=128 "
	const sec = "name=lan1 role=secondary address=192.0.2.2 peer=192.0.2.1 "
	const fo = "db=/nonexistent/x.db subnet=192.0.2.0/24 pool=192.0.2.100-192.0.2.199 "
	for _, tc := range []struct {
		name   string
		plugin string // leasesync or failover
		line   string
		arg    string // the argument the message names
		want   string // what the message says is expected
	}{
		// leasesync: the words themselves.
		{"Unknown key", "leasesync", ls + "splt=128", `argument "splt=128"`, `unknown key "splt" (known: name, role,`},
		{"Not key=value", "leasesync", ls + "primary", `argument "primary"`, "want key=value"},
		{"Empty value", "leasesync", ls + "port=", `argument "port="`, "empty value"},
		{"Repeated key", "leasesync", ls + "name=lan2", `argument "name=lan2"`, `name is already set by "name=lan1"`},
		// leasesync: each argument.
		{"Name too long", "leasesync", strings.Replace(ls, "name=lan1", "name="+strings.Repeat("n", 256), 1), `argument "name=nnn`, "at most 255 bytes"},
		{"Missing name", "leasesync", strings.Replace(ls, "name=lan1 ", "", 1), "missing name=", "the relationship needs a name, a role, our address and the peer's address"},
		{"Role", "leasesync", strings.Replace(ls, "role=primary", "role=master", 1), `argument "role=master"`, "want primary or secondary"},
		{"Missing role", "leasesync", strings.Replace(ls, "role=primary ", "", 1), "missing role=", "needs a name, a role"},
		{"Address", "leasesync", strings.Replace(ls, "address=192.0.2.1", "address=eth0", 1), `argument "address=eth0"`, "want an IPv4 address"},
		{"Missing address", "leasesync", strings.Replace(ls, "address=192.0.2.1 ", "", 1), "missing address=", "our address"},
		{"Peer", "leasesync", strings.Replace(ls, "peer=192.0.2.2", "peer=2001:db8::2", 1), `argument "peer=2001:db8::2"`, "want an IPv4 address"},
		{"Missing peer", "leasesync", strings.Replace(ls, "peer=192.0.2.2 ", "", 1), "missing peer=", "the peer's address"},
		{"Peer is ourselves", "leasesync", strings.Replace(ls, "peer=192.0.2.2", "peer=192.0.2.1", 1), `argument "peer=192.0.2.1"`, "the peer cannot be this server's own address and port"},
		{"Port", "leasesync", ls + "port=70000", `argument "port=70000"`, "want a TCP port from 1 to 65535"},
		{"Peer port", "leasesync", ls + "peer-port=0", `argument "peer-port=0"`, "want a TCP port from 1 to 65535"},
		{"Mclt", "leasesync", strings.Replace(ls, "mclt=1h", "mclt=soon", 1), `argument "mclt=soon"`, "invalid duration (want e.g. 1h, 30s or a number of seconds)"},
		{"Mclt zero", "leasesync", strings.Replace(ls, "mclt=1h", "mclt=0", 1), `argument "mclt=0"`, "want from 1s to"},
		{"Mclt missing on the primary", "leasesync", strings.Replace(ls, "mclt=1h ", "", 1), "missing mclt=DURATION", "the primary sets the maximum client lead time"},
		{"Split out of range", "leasesync", strings.Replace(ls, "split=128", "split=257", 1), `argument "split=257"`, "want a number of hash buckets from 0 to 256"},
		{"Split missing on the primary", "leasesync", strings.Replace(ls, "split=128 ", "", 1), "missing split=N or hba=HEX", "split=128 shares clients evenly"},
		{"Hba", "leasesync", strings.Replace(ls, "split=128", "hba=ff", 1), `argument "hba=ff"`, "want 32 bytes of hex"},
		{"Split and hba", "leasesync", ls + "hba=" + strings.Repeat("ff", 32), `argument "hba=`, "give split or hba, not both"},
		{"Load-balance-max-seconds", "leasesync", ls + "load-balance-max-seconds=-1", `argument "load-balance-max-seconds=-1"`, "want a number of seconds from 0 (balancing off) to 65535"},
		{"Max-response-delay", "leasesync", ls + "max-response-delay=1", `argument "max-response-delay=1"`, "want from 3s to"},
		{"Max-unacked-updates", "leasesync", ls + "max-unacked-updates=0", `argument "max-unacked-updates=0"`, "want a number from 1 to 65535"},
		{"Auto-partner-down", "leasesync", ls + "auto-partner-down=1.5s", `argument "auto-partner-down=1.5s"`, "failover times are whole seconds"},
		{"Max-lease-misbalance", "leasesync", ls + "max-lease-misbalance=101", `argument "max-lease-misbalance=101"`, "want a percentage from 1 to 100"},
		{"Max-lease-ownership", "leasesync", ls + "max-lease-ownership=0", `argument "max-lease-ownership=0"`, "want a percentage from 1 to 100"},
		{"Min-balance", "leasesync", ls + "min-balance=0", `argument "min-balance=0"`, "want from 1s to"},
		{"Max-balance", "leasesync", ls + "max-balance=x", `argument "max-balance=x"`, "invalid duration"},
		{"Min-balance over max-balance", "leasesync", sec + "min-balance=2h max-balance=1h", `argument "min-balance=2h"`, "must not be longer than max-balance (1h0m0s)"},
		{"Control", "leasesync", ls + "control=run/x.sock", `argument "control=run/x.sock"`, "want an absolute path for the control socket"},

		// failover: the words themselves.
		{"Unknown key", "failover", fo + "split=128", `argument "split=128"`, `unknown key "split" (known: name, db, pool,`},
		{"Not key=value", "failover", fo + "192.0.2.5", `argument "192.0.2.5"`, "want key=value"},
		{"Repeated key", "failover", fo + "db=/y.db", `argument "db=/y.db"`, `db is already set by "db=/nonexistent/x.db"`},
		// failover: each argument.
		{"Name without a leasesync line", "failover", fo + "name=lan9", `argument "name=lan9"`, "no leasesync line with name=lan9 comes before this failover line"},
		{"Missing db", "failover", strings.Replace(fo, "db=/nonexistent/x.db ", "", 1), "missing db=PATH", "the lease database is required"},
		{"Missing pool", "failover", strings.Replace(fo, "pool=192.0.2.100-192.0.2.199 ", "", 1), "missing pool=START-END", "at least one pool is required"},
		{"Pool", "failover", fo + "pool=192.0.2.5", `argument "pool=192.0.2.5"`, "want START-END"},
		{"Pool backwards", "failover", fo + "pool=192.0.2.20-192.0.2.10", `argument "pool=192.0.2.20-192.0.2.10"`, "START is after END"},
		{"Pools overlapping", "failover", fo + "pool=192.0.2.150-192.0.2.210", `argument "pool=192.0.2.150-192.0.2.210"`, "want pools that share no address"},
		{"Pool outside the subnet", "failover", fo + "pool=198.51.100.10-198.51.100.20", `argument "pool=198.51.100.10-198.51.100.20"`, "not inside of subnet=192.0.2.0/24; every pool of a failover line must be in one subnet"},
		{"Pool holding the broadcast address", "failover", strings.Replace(fo, "192.0.2.199", "192.0.2.255", 1), `argument "pool=192.0.2.100-192.0.2.255"`, "holds the broadcast address 192.0.2.255"},
		{"Subnet", "failover", strings.Replace(fo, "subnet=192.0.2.0/24", "subnet=192.0.2.1/24", 1), `argument "subnet=192.0.2.1/24"`, "did you mean 192.0.2.0/24?"},
		{"Subnet not IPv4", "failover", strings.Replace(fo, "subnet=192.0.2.0/24", "subnet=2001:db8::/64", 1), `argument "subnet=2001:db8::/64"`, "want an IPv4 prefix such as 192.0.2.0/24"},
		{"Relay", "failover", fo + "relay=gw", `argument "relay=gw"`, "want an IPv4 address (a relay agent's giaddr)"},
		{"Relay not IPv4", "failover", fo + "relay=2001:db8::1", `argument "relay=2001:db8::1"`, "want an IPv4 address"},
		{"Lease-time", "failover", fo + "lease-time=forever", `argument "lease-time=forever"`, "invalid duration (want e.g. 12h, 30m, 45s or a number of seconds)"},
		{"Lease-time zero", "failover", fo + "lease-time=0", `argument "lease-time=0"`, "must be at least 1s"},
		{"Max-lease-time under lease-time", "failover", fo + "lease-time=2h max-lease-time=1h", `argument "max-lease-time=1h"`, "must not be shorter than lease-time (2h0m0s)"},
		{"Offer-hold", "failover", fo + "offer-hold=500ms", `argument "offer-hold=500ms"`, "DHCP times are whole seconds"},
		{"Decline-hold", "failover", fo + "decline-hold=99999999999", `argument "decline-hold=99999999999"`, "invalid duration"},
	} {
		t.Run(tc.plugin+"/"+tc.name, func(t *testing.T) {
			setup := setup4
			if tc.plugin == "failover" {
				setup = failover.Plugin.Setup4
			}
			h, err := setup(strings.Fields(tc.line)...)
			if err == nil {
				t.Fatalf("%s: %q was accepted (handler %v)", tc.plugin, tc.line, h != nil)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "plugins/"+tc.plugin+": ") || !strings.Contains(msg, tc.arg) || !strings.Contains(msg, tc.want) {
				t.Fatalf("%s: %q\nerror: %s\nwant the plugin, %s and %q", tc.plugin, tc.line, msg, tc.arg, tc.want)
			}
		})
	}
}

// TestMismatchedNamesBetweenThePluginLines: a failover line whose name= is
// not the name of the leasesync line before it is refused, naming both.
func TestMismatchedNamesBetweenThePluginLines(t *testing.T) {
	if _, err := setup4(strings.Fields("name=lan1 role=secondary address=192.0.2.2 peer=192.0.2.1")...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r, ok := relation.Lookup("lan1"); ok {
			relation.Unregister(r)
		}
	})
	_, err := failover.Plugin.Setup4(strings.Fields("name=lan2 db=/nonexistent/x.db subnet=192.0.2.0/24 pool=192.0.2.100-192.0.2.199")...)
	if err == nil || !strings.HasPrefix(err.Error(), "plugins/failover: ") || !strings.Contains(err.Error(), `argument "name=lan2"`) ||
		!strings.Contains(err.Error(), "no leasesync line with name=lan2") {
		t.Fatalf("Mismatched names: %v", err)
	}
	// The same name twice on leasesync lines is refused too.
	_, err = setup4(strings.Fields("name=lan1 role=primary address=192.0.2.1 peer=192.0.2.2 mclt=1h split=128")...)
	if err == nil || !strings.HasPrefix(err.Error(), "plugins/leasesync: ") || !strings.Contains(err.Error(), `argument "name=lan1"`) {
		t.Fatalf("A second leasesync line with the same name: %v", err)
	}
}

// A leasesync line whose address= this host does not hold fails when the
// failover line starts its session: the error names the leasesync line and
// the argument, not the failover line (issue 16, item 9).
func TestAnAddressThisHostDoesNotHoldNamesTheLeasesyncLine(t *testing.T) {
	if _, err := setup4(strings.Fields("name=lan7 role=secondary address=192.0.2.77 peer=192.0.2.78")...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r, ok := relation.Lookup("lan7"); ok {
			relation.Unregister(r)
		}
	})
	db := t.TempDir() + "/x.db"
	_, err := failover.Plugin.Setup4(strings.Fields("name=lan7 db=" + db + " subnet=192.0.2.0/24 pool=192.0.2.100-192.0.2.199")...)
	if err == nil || !strings.HasPrefix(err.Error(), "plugins/leasesync: ") || !strings.Contains(err.Error(), `argument "address=192.0.2.77"`) ||
		!strings.Contains(err.Error(), "cannot listen for the failover peer") {
		t.Fatalf("A leasesync address this host does not hold: %v", err)
	}
}
