package fsm

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsArePure checks the rule of the style guide: the state machine
// imports no net, os, logrus or coredhcp, and uses package time at most for
// the time.Duration type (it never reads the clock).
func TestImportsArePure(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatalf("Parsing %s: %v", name, err)
		}
		checked++
		timeName := ""
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			switch {
			case path == "net" || strings.HasPrefix(path, "net/"),
				path == "os" || strings.HasPrefix(path, "os/"),
				path == "syscall", path == "unsafe",
				strings.Contains(path, "logrus"),
				strings.Contains(path, "coredhcp/coredhcp"),
				path == "math/rand", path == "math/rand/v2", path == "crypto/rand":
				t.Errorf("File %s imports %q, which the pure state machine must not use", name, path)
			case path == "time":
				timeName = "time"
				if imp.Name != nil {
					timeName = imp.Name.Name
				}
			}
		}
		if timeName == "" {
			continue
		}
		full, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatalf("Parsing %s: %v", name, err)
		}
		ast.Inspect(full, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == timeName && sel.Sel.Name != "Duration" {
				t.Errorf("File %s uses time.%s at %s; only the time.Duration type is allowed", name, sel.Sel.Name, fset.Position(sel.Pos()))
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("No package files found")
	}
}
