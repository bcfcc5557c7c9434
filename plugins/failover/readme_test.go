package failover

import (
	"net"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/readmetest"
)

// TestDocumentedConfigsParse loads every YAML example in the plugin's README
// and the repository's example configuration with CoreDHCP's config loader,
// and parses each failover line.
func TestDocumentedConfigsParse(t *testing.T) {
	confs := readmetest.Configs(t, "README.md", "../../coredhcp-failover.yaml")
	lines := readmetest.Lines(confs, "failover")
	if len(confs) < 5 || len(lines) < len(confs) {
		t.Fatalf("Found %d example configurations with %d failover lines, want at least 5, a line or more each", len(confs), len(lines))
	}
	// The examples name documentation networks on interfaces this host
	// does not have: pretend it has them.
	addrs := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.IPv4(198, 51, 100, 1), Mask: net.CIDRMask(24, 32)},
		}, nil
	}
	for _, args := range lines {
		if _, err := parse(args, addrs); err != nil {
			t.Errorf("Example line %v: %v", args, err)
		}
	}
}

// TestEveryArgumentIsDocumented fails when the parser accepts an argument
// that the README's Syntax section does not show and explain.
func TestEveryArgumentIsDocumented(t *testing.T) {
	keys := readmetest.ParsedKeys(t, "config.go")
	if len(keys) < 8 {
		t.Fatalf("Found only the keys %v in config.go", keys)
	}
	readmetest.Documented(t, "README.md", keys)
}
