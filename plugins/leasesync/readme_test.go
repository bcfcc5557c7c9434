package leasesync

import (
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/readmetest"
)

// TestDocumentedConfigsParse loads every YAML example of the README with
// CoreDHCP's config loader and parses each leasesync line; the two
// examples must form a pair.
func TestDocumentedConfigsParse(t *testing.T) {
	var cfgs []Config
	for _, args := range readmetest.Lines(readmetest.Configs(t, "README.md"), "leasesync") {
		c, err := parse(args)
		if err != nil {
			t.Fatalf("Example line %v: %v", args, err)
		}
		cfgs = append(cfgs, c)
	}
	if len(cfgs) != 2 {
		t.Fatalf("Found %d leasesync examples, want the primary and the secondary", len(cfgs))
	}
	p, s := cfgs[0], cfgs[1]
	if p.Role != Primary || s.Role != Secondary || p.Name != s.Name || p.Peer.Addr() != s.Address.Addr() || s.Peer.Addr() != p.Address.Addr() {
		t.Fatalf("The examples are not a pair: %+v / %+v", p, s)
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
