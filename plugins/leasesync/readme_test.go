package leasesync

import (
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/readmetest"
)

// TestDocumentedConfigsParse loads every YAML example of the README with
// CoreDHCP's config loader and parses each leasesync line; each
// relationship shown has a primary and a secondary that name each other,
// and the hub-and-spoke example has two relationships on one address.
func TestDocumentedConfigsParse(t *testing.T) {
	byName := map[string][]Config{}
	byAddress := map[string][]string{}
	for _, args := range readmetest.Lines(readmetest.Configs(t, "README.md"), "leasesync") {
		c, err := parse(args)
		if err != nil {
			t.Fatalf("Example line %v: %v", args, err)
		}
		byName[c.Name] = append(byName[c.Name], c)
		byAddress[c.Address.String()] = append(byAddress[c.Address.String()], c.Name)
	}
	if len(byName) != 3 {
		t.Fatalf("Found the relationships %v, want the pair lan1 and the hub's site-a and site-b", byName)
	}
	for name, cfgs := range byName {
		if len(cfgs) != 2 {
			t.Fatalf("Relationship %s: %d lines, want the primary and the secondary", name, len(cfgs))
		}
		p, s := cfgs[0], cfgs[1]
		if p.Role != Primary {
			p, s = s, p
		}
		if p.Role != Primary || s.Role != Secondary || p.Peer.Addr() != s.Address.Addr() || s.Peer.Addr() != p.Address.Addr() {
			t.Fatalf("The examples of %s are not a pair: %+v / %+v", name, p, s)
		}
	}
	standby := byName["site-a"][0]
	if standby.Role != Secondary {
		standby = byName["site-a"][1]
	}
	if hub := byAddress[standby.Address.String()]; len(hub) != 2 || hub[0] != "site-a" || hub[1] != "site-b" {
		t.Fatalf("Relationships per address %v: want the hub's site-a and site-b on one address", byAddress)
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
