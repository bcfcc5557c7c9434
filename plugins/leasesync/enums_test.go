package leasesync

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// TestRejectMapping pins each reject reason of the failover plugin to the
// wire's code of the same number, and checks that relation.Rejects lists
// every Reject constant relation declares.
func TestRejectMapping(t *testing.T) {
	want := map[relation.Reject]wire.RejectReason{
		relation.RejectIllegalAddress: wire.RejectIllegalIPAddr,
		relation.RejectConflict:       wire.RejectFatalConflict,
		relation.RejectMissingInfo:    wire.RejectMissingBindInfo,
		relation.RejectOther:          wire.RejectMiscReject,
		relation.RejectLessCritical:   wire.RejectLessCritBindInfo,
	}
	for _, r := range relation.Rejects {
		w, ok := want[r]
		if !ok {
			t.Errorf("Reject %d: no expected wire code in this test", r)
			continue
		}
		if got := rejectToWire(r); got != w || uint8(got) != uint8(r) {
			t.Errorf("rejectToWire(%d) = %s (%d), want %s (%d)", r, got, uint8(got), w, uint8(r))
		}
	}
	if len(want) != len(relation.Rejects) {
		t.Errorf("relation.Rejects has %d reasons, this test %d", len(relation.Rejects), len(want))
	}
	if got := rejectToWire(relation.Reject(200)); got != wire.RejectMiscReject {
		t.Errorf("rejectToWire(200) = %s, want MISC-REJECT", got)
	}
	if declared := rejectConstants(t); declared != len(relation.Rejects) {
		t.Errorf("package relation declares %d Reject constants, relation.Rejects lists %d", declared, len(relation.Rejects))
	}
}

// rejectConstants counts the constants package relation declares with
// type Reject.
func rejectConstants(t *testing.T) int {
	t.Helper()
	files, err := filepath.Glob("../internal/relation/*.go")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				if vs := spec.(*ast.ValueSpec); vs.Type != nil {
					if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "Reject" {
						n += len(vs.Names)
					}
				}
			}
		}
	}
	return n
}
