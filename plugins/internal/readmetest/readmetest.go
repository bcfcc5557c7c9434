// Package readmetest checks a plugin's README in tests: the sections every
// CoreDNS-style plugin README has, and its YAML examples, loaded with
// CoreDHCP's own config loader.
package readmetest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
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

// ParsedKeys returns the argument keys a parser accepts: the string cases
// of every `switch key` statement in the Go file at path. Reading the
// source rather than a list means a new case cannot be forgotten.
func ParsedKeys(t *testing.T, path string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		sw, ok := n.(*ast.SwitchStmt)
		if !ok {
			return true
		}
		if id, ok := sw.Tag.(*ast.Ident); !ok || id.Name != "key" {
			return true
		}
		for _, stmt := range sw.Body.List {
			for _, e := range stmt.(*ast.CaseClause).List {
				if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if k, err := strconv.Unquote(lit.Value); err == nil {
						seen[k] = true
					}
				}
			}
		}
		return true
	})
	var keys []string
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		t.Fatalf("No `switch key` cases in %s", path)
	}
	return keys
}

// Section returns the text of the README section that starts with heading
// ("## Syntax"), up to the next section of the same level.
func Section(t *testing.T, path, heading string) string {
	t.Helper()
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no section %q", path, heading)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// Documented fails the test for every key that the README's Syntax
// section neither shows in its synopsis nor explains as `key=...`.
func Documented(t *testing.T, readme string, keys []string) {
	t.Helper()
	syntax := Section(t, readme, "## Syntax")
	synopsis := ""
	if m := yamlBlock.FindStringSubmatch(syntax); m != nil {
		synopsis = m[1]
	}
	for _, k := range keys {
		if !strings.Contains(synopsis, k+"=") {
			t.Errorf("%s: argument %s= is not in the Syntax synopsis", readme, k)
		}
		if !strings.Contains(syntax, "`"+k+"=") {
			t.Errorf("%s: argument %s= is not explained in Syntax (as `%s=...`)", readme, k, k)
		}
	}
}
