package chain

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coredhcp/coredhcp/config"
	"github.com/coredhcp/coredhcp/logger"
)

// hostAddrs pretends the host has the documentation networks the examples
// use on its interfaces.
func hostAddrs() ([]net.Addr, error) {
	return []net.Addr{
		&net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)},
	}, nil
}

// chainOf builds a plugin list from lines written as in the YAML file
// ("name: args").
func chainOf(lines ...string) []config.PluginConfig {
	var out []config.PluginConfig
	for _, l := range lines {
		name, args, _ := strings.Cut(l, ":")
		out = append(out, config.PluginConfig{Name: name, Args: strings.Fields(args)})
	}
	return out
}

const (
	serverID  = "server_id: 192.0.2.1"
	sync1     = "leasesync: name=lan1 role=primary address=192.0.2.1 peer=192.0.2.2 mclt=1h split=128"
	sync2     = "leasesync: name=lan2 role=secondary address=192.0.2.1 peer=192.0.2.3"
	fo1       = "failover: name=lan1 db=/tmp/lan1.db pool=192.0.2.100-192.0.2.199"
	fo2       = "failover: name=lan2 db=/tmp/lan2.db subnet=198.51.100.0/24 pool=198.51.100.10-198.51.100.99"
	foSingle  = "failover: db=/tmp/leases.db pool=192.0.2.100-192.0.2.199"
	router1   = "router: 192.0.2.1"
	netmask24 = "netmask: 255.255.255.0"
)

// A valid pair's chain passes without a word.
func TestValidChain(t *testing.T) {
	for _, c := range [][]string{
		{serverID, sync1, fo1, router1, netmask24},
		{serverID, foSingle, router1, netmask24, "dns: 192.0.2.53"},
		{"dns: 192.0.2.53"}, // no failover line: not this check's business
	} {
		warnings, err := Check(chainOf(c...), hostAddrs)
		if err != nil || len(warnings) > 0 {
			t.Errorf("Chain %q: warnings %q, error %v; want neither", c, warnings, err)
		}
	}
}

// Each bad chain of issue 17 item 4 is refused with one message that names
// the lines by position and says the fix; each odd chain is warned about.
func TestBadChains(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chain []string
		err   []string // substrings of the one error; nil: none
		warn  []string // substrings of the one warning; nil: none
	}{
		{
			name:  "no server_id",
			chain: []string{sync1, fo1, router1},
			err:   []string{`plugin 2 "failover name=lan1`, "no server_id line", "option 54", `add "- server_id: ADDRESS"`},
		},
		{
			name:  "failover before server_id",
			chain: []string{sync1, fo1, serverID, router1, netmask24},
			err:   []string{`plugin 2 "failover name=lan1`, `comes before plugin 3 "server_id 192.0.2.1"`, "SELECTING", "move the server_id line above the failover line"},
		},
		{
			name:  "range beside failover",
			chain: []string{serverID, foSingle, "range: /tmp/r.txt 192.0.2.10 192.0.2.50 60s"},
			err:   []string{`plugin 3 "range /tmp/r.txt`, `plugin 2 "failover db=/tmp/leases.db`, "own pool", "remove the range line"},
		},
		{
			name:  "lease_time beside failover",
			chain: []string{serverID, foSingle, "lease_time: 60s"},
			err:   []string{`plugin 3 "lease_time 60s"`, `plugin 2 "failover db=`, "option 51", "remove the lease_time line and set lease-time= on the failover line"},
		},
		{
			name:  "leasesync after its failover line",
			chain: []string{serverID, fo1, sync1, router1, netmask24},
			err:   []string{`plugin 3 "leasesync name=lan1`, `comes after plugin 2 "failover name=lan1`, "move the leasesync line above the failover line"},
		},
		{
			name:  "failover names no leasesync line",
			chain: []string{serverID, fo1, router1, netmask24},
			err:   []string{`plugin 2 "failover name=lan1`, `no leasesync line has name=lan1`, "add the relationship's leasesync line above the failover line, or remove name="},
		},
		{
			name:  "two leasesync lines with one name",
			chain: []string{serverID, sync1, "leasesync: name=lan1 role=secondary address=192.0.2.1 peer=192.0.2.3", fo1, router1, netmask24},
			err:   []string{`plugin 2 "leasesync name=lan1`, `and plugin 3 "leasesync name=lan1 role=secondary`, `both define relationship "lan1"`, "give the other relationship its own name="},
		},
		{
			name:  "two failover lines on one subnet",
			chain: []string{serverID, sync1, fo1, "failover: db=/tmp/b.db subnet=192.0.2.0/24 pool=192.0.2.150-192.0.2.160", router1, netmask24},
			err:   []string{`plugin 3 "failover name=lan1`, `and plugin 4 "failover db=/tmp/b.db`, "both serve subnet 192.0.2.0/24", "pools 192.0.2.100-192.0.2.199 and 192.0.2.150-192.0.2.160 overlap", "put the pools of one subnet on one failover line"},
		},
		{
			name:  "two failover lines on overlapping subnets",
			chain: []string{serverID, sync1, fo1, "failover: db=/tmp/b.db subnet=192.0.2.0/25 pool=192.0.2.10-192.0.2.20"},
			err:   []string{`plugin 3 "failover name=lan1`, `and plugin 4 "failover db=/tmp/b.db`, "overlapping subnets 192.0.2.0/24 and 192.0.2.0/25", "correct subnet="},
		},
		{
			name:  "two failover lines of one relationship",
			chain: []string{serverID, sync1, fo1, "failover: name=lan1 db=/tmp/b.db subnet=198.51.100.0/24 pool=198.51.100.10-198.51.100.20"},
			err:   []string{`plugin 3 "failover name=lan1`, `and plugin 4 "failover name=lan1 db=/tmp/b.db`, `both name relationship "lan1"`, "its own relationship"},
		},
		{
			name:  "leasesync named by no failover line",
			chain: []string{serverID, sync1, foSingle, router1, netmask24},
			warn:  []string{`plugin 2 "leasesync name=lan1`, "no failover line has name=lan1", "add name=lan1 to the failover line"},
		},
		{
			name:  "router with several subnets",
			chain: []string{serverID, sync1, sync2, fo1, fo2, router1},
			warn:  []string{`plugin 6 "router 192.0.2.1"`, "192.0.2.0/24 (plugin 4), 198.51.100.0/24 (plugin 5)", "give router=ADDRESS on each failover line"},
		},
		{
			name:  "netmask with several subnets",
			chain: []string{serverID, sync1, sync2, fo1, fo2, netmask24},
			warn:  []string{`plugin 6 "netmask 255.255.255.0"`, "192.0.2.0/24 (plugin 4), 198.51.100.0/24 (plugin 5)", "give router=ADDRESS on each failover line"},
		},
		{
			name:  "netmask that is not the subnet's",
			chain: []string{serverID, foSingle, router1, "netmask: 255.255.0.0"},
			warn:  []string{`plugin 4 "netmask 255.255.0.0"`, "/16", `plugin 2 "failover db=`, "make the netmask 255.255.255.0"},
		},
		{
			name:  "router outside the subnet",
			chain: []string{serverID, foSingle, "router: 198.51.100.1", netmask24},
			warn:  []string{`plugin 3 "router 198.51.100.1"`, "outside the subnet 192.0.2.0/24", `plugin 2 "failover db=`, "give a router address inside 192.0.2.0/24"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warnings, err := Check(chainOf(tc.chain...), hostAddrs)
			var errs Errors
			if err != nil && !errors.As(err, &errs) {
				t.Fatalf("Error %v is not Errors", err)
			}
			check := func(kind string, got []string, want []string) {
				if want == nil {
					if len(got) > 0 {
						t.Errorf("Unexpected %s %q", kind, got)
					}
					return
				}
				if len(got) != 1 {
					t.Fatalf("Got %d %ss %q, want one", len(got), kind, got)
				}
				for _, w := range want {
					if !strings.Contains(got[0], w) {
						t.Errorf("The %s %q does not say %q", kind, got[0], w)
					}
				}
			}
			check("error", errs, tc.err)
			check("warning", warnings, tc.warn)
		})
	}
}

// All errors of a chain are reported at once.
func TestEveryErrorReported(t *testing.T) {
	_, err := Check(chainOf(fo1, "lease_time: 1h", "range: /tmp/r 192.0.2.10 192.0.2.20 1h"), hostAddrs)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 4 { // no server_id, lease_time, range, no leasesync
		t.Fatalf("Got %v, want four errors", err)
	}
}

// A failover or leasesync line that does not parse is left to its plugin's
// setup: the check judges only what it can read.
func TestUnparsableLinesLeftToTheirPlugin(t *testing.T) {
	for _, c := range [][]string{
		{serverID, "failover: db=/tmp/x.db pool=10.9.8.1-10.9.8.9", "failover: db=/tmp/y.db pool=10.9.8.1-10.9.8.9"}, // no interface holds the pools
		{serverID, "leasesync: role=primary bogus", "failover: name=lan1 db=/tmp/x.db pool=192.0.2.10-192.0.2.20"},   // the name cannot be read
		{serverID, sync1, "failover: bogus"},
	} {
		warnings, err := Check(chainOf(c...), hostAddrs)
		if err != nil || len(warnings) > 0 {
			t.Errorf("Chain %q: warnings %q, error %v; want neither (the plugins report their lines)", c, warnings, err)
		}
	}
}

// Long lines are cut in messages, keeping the plugin's name and position.
func TestLineQuote(t *testing.T) {
	l := line{pos: 7, name: "leasesync", args: append(chainOf(sync1)[0].Args, "control=/run/coredhcp-failover/lan1.sock")}
	got := l.String()
	if !strings.HasPrefix(got, `plugin 7 "leasesync name=lan1 role=primary`) || !strings.HasSuffix(got, ` ..."`) || len(got) > maxQuote+20 {
		t.Errorf("Quote %s", got)
	}
}

var yamlBlock = regexp.MustCompile("(?s)(?:~~~|```) ?ya?ml\n(.*?)(?:~~~|```)")

// Every configuration the repository shows (the example files and the YAML
// blocks of its Markdown documents) passes the check without a warning.
func TestExamplesPass(t *testing.T) {
	root := filepath.Join("..", "..", "..", "..")
	var texts, names []string
	for _, pattern := range []string{"*.yaml", "examples/*.yaml"} {
		files, _ := filepath.Glob(filepath.Join(root, pattern))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			texts, names = append(texts, string(b)), append(names, f)
		}
	}
	for _, pattern := range []string{"*.md", "docs/*.md", "examples/*.md", "plugins/*/README.md"} {
		files, _ := filepath.Glob(filepath.Join(root, pattern))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
				if strings.Contains(m[1], "server4:") {
					texts, names = append(texts, m[1]), append(names, f)
				}
			}
		}
	}
	if len(texts) < 10 {
		t.Fatalf("Found %d example configurations (%q), want at least 10", len(texts), names)
	}
	logger.GetLogger("config").Logger.SetOutput(io.Discard) // config.Load tells each plugin line
	for i, text := range texts {
		file := filepath.Join(t.TempDir(), "config.yml")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		conf, err := config.Load(file)
		if err != nil {
			t.Fatalf("%s: example does not load: %v\n%s", names[i], err, text)
		}
		warnings, err := Check(conf.Server4.Plugins, hostAddrs)
		if err != nil || len(warnings) > 0 {
			t.Errorf("%s: warnings %q, error %v in\n%s", names[i], warnings, err, text)
		}
	}
}

// Two failover lines on two links of this host: a request no relay
// forwarded names no link, and the first of them answers every one
// (plugins/failover/subnet.go), so the check warns.
func TestTwoLinesOnLinksOfThisHostAreWarned(t *testing.T) {
	twoLinks := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.IPv4(198, 51, 100, 1), Mask: net.CIDRMask(24, 32)},
		}, nil
	}
	c := chainOf(serverID, foSingle, "failover: db=/tmp/b.db pool=198.51.100.10-198.51.100.99", "failover: db=/tmp/c.db subnet=203.0.113.0/24 pool=203.0.113.10-203.0.113.99")
	warnings, err := Check(c, twoLinks)
	if err != nil || len(warnings) != 1 {
		t.Fatalf("warnings %q, error %v; want one warning", warnings, err)
	}
	for _, want := range []string{`plugin 2 "failover db=/tmp/leases.db`, `plugin 3 "failover db=/tmp/b.db`, "(192.0.2.0/24, 198.51.100.0/24)", "clients on the link of 198.51.100.0/24 would get addresses of 192.0.2.0/24"} {
		if !strings.Contains(warnings[0], want) {
			t.Errorf("warning %q does not contain %q", warnings[0], want)
		}
	}
	// One link of this host and a relayed subnet: nothing to say.
	if warnings, err := Check(c, hostAddrs); err != nil || len(warnings) != 0 {
		t.Errorf("one link: warnings %q, error %v; want neither", warnings, err)
	}
}
