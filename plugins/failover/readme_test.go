package failover

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coredhcp/coredhcp/config"
)

// TestDocumentedConfigsParse loads every YAML example in the plugin's README
// and the repository's example configuration with CoreDHCP's config loader,
// and parses each failover line.
func TestDocumentedConfigsParse(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, section := range []string{"## Name", "## Description", "## Syntax", "## Examples", "## Metrics"} {
		if !strings.Contains(string(readme), "\n"+section+"\n") {
			t.Errorf("README.md lacks the section %q", section)
		}
	}
	var configs []string
	for _, m := range regexp.MustCompile("(?s)~~~ yaml\n(.*?)~~~").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], "server4:") {
			configs = append(configs, m[1])
		}
	}
	example, err := os.ReadFile("../../coredhcp-failover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	configs = append(configs, string(example))
	if len(configs) < 3 {
		t.Fatalf("Found %d example configurations, want at least 3", len(configs))
	}
	// The examples name documentation networks on interfaces this host
	// does not have: pretend it has them.
	addrs := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.IPv4(198, 51, 100, 1), Mask: net.CIDRMask(24, 32)},
		}, nil
	}
	for i, c := range configs {
		path := filepath.Join(t.TempDir(), "config.yml")
		if err := os.WriteFile(path, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		conf, err := config.Load(path)
		if err != nil {
			t.Fatalf("Example %d does not load: %v\n%s", i, err, c)
		}
		found := false
		for _, p := range conf.Server4.Plugins {
			if p.Name != "failover" {
				continue
			}
			found = true
			if _, err := parse(p.Args, addrs); err != nil {
				t.Errorf("Example %d: %v", i, err)
			}
		}
		if !found {
			t.Errorf("Example %d has no failover line", i)
		}
	}
}
