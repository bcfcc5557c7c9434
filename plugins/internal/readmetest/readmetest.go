// Package readmetest checks a plugin's README in tests: the sections every
// CoreDNS-style plugin README has, and its YAML examples, loaded with
// CoreDHCP's own config loader.
package readmetest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coredhcp/coredhcp/config"
)

// Sections every plugin README has.
var Sections = []string{"## Name", "## Description", "## Syntax", "## Examples", "## Metrics"}

var yamlBlock = regexp.MustCompile("(?s)~~~ yaml\n(.*?)~~~")

// Configs checks the README at path for Sections and loads every ~~~ yaml
// block that holds a server4 configuration, plus the extra files given.
func Configs(t *testing.T, path string, extra ...string) []*config.Config {
	t.Helper()
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, section := range Sections {
		if !strings.Contains(string(readme), "\n"+section+"\n") {
			t.Errorf("%s lacks the section %q", path, section)
		}
	}
	var texts []string
	for _, m := range yamlBlock.FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], "server4:") {
			texts = append(texts, m[1])
		}
	}
	for _, f := range extra {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(b))
	}
	var out []*config.Config
	for _, text := range texts {
		file := filepath.Join(t.TempDir(), "config.yml")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		conf, err := config.Load(file)
		if err != nil {
			t.Fatalf("Example does not load: %v\n%s", err, text)
		}
		out = append(out, conf)
	}
	return out
}

// Lines returns the arguments of every line of the named plugin.
func Lines(confs []*config.Config, plugin string) [][]string {
	var out [][]string
	for _, c := range confs {
		for _, p := range c.Server4.Plugins {
			if p.Name == plugin {
				out = append(out, p.Args)
			}
		}
	}
	return out
}
