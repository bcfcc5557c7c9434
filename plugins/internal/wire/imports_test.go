package wire

import (
	"go/build"
	"strings"
	"testing"
)

// TestImports keeps the codec free of I/O, clocks, logging and CoreDHCP:
// the package's non-test files may not import net (net/netip is fine), os,
// time, logrus or anything from coredhcp.
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkg.GoFiles) == 0 {
		t.Fatal("Found no Go files in the package")
	}
	for _, imp := range pkg.Imports {
		if reason := forbiddenImport(imp); reason != "" {
			t.Errorf("Package wire imports %q: %s", imp, reason)
		}
	}
}

func forbiddenImport(imp string) string {
	switch {
	case imp == "net/netip":
		return ""
	case imp == "net" || strings.HasPrefix(imp, "net/"):
		return "no networking in the codec (use net/netip)"
	case imp == "os" || strings.HasPrefix(imp, "os/"):
		return "no OS access in the codec"
	case imp == "time":
		return "no clocks in the codec (times are uint32 UNIX seconds)"
	case strings.Contains(imp, "logrus"):
		return "the codec does not log"
	case strings.Contains(imp, "coredhcp/coredhcp"), strings.HasPrefix(imp, "github.com/coredhcp/"):
		return "the codec does not depend on CoreDHCP"
	}
	return ""
}

func TestForbiddenImport(t *testing.T) {
	for imp, bad := range map[string]bool{
		"net/netip": false, "encoding/binary": false, "net": true, "net/http": true, "os": true,
		"time": true, "github.com/sirupsen/logrus": true, "github.com/coredhcp/coredhcp/logger": true,
	} {
		if got := forbiddenImport(imp) != ""; got != bad {
			t.Errorf("Checking %q: forbidden = %v, want %v", imp, got, bad)
		}
	}
}
