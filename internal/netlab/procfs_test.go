package netlab

import (
	"os"
	"path/filepath"
	"testing"
)

// The /proc readings, on this test's own process (no namespaces, no root).
func TestProcReadings(t *testing.T) {
	pid := os.Getpid()
	if rss := StatusKiB(pid, "VmRSS"); rss <= 0 {
		t.Errorf("VmRSS of this process = %d KiB, want > 0", rss)
	}
	if hwm := StatusKiB(pid, "VmHWM"); hwm <= 0 {
		t.Errorf("VmHWM of this process = %d KiB, want > 0", hwm)
	}
	if v := StatusKiB(pid, "NoSuchKey"); v != 0 {
		t.Errorf("a missing key reads %d, want 0", v)
	}
	if c := CPUSeconds(pid); c < 0 {
		t.Errorf("CPU seconds %v < 0", c)
	}
	if c := CPUSeconds(-1); c != 0 {
		t.Errorf("CPU seconds of no process = %v, want 0", c)
	}
	if UDPBound(-1, 67) {
		t.Error("no process holds port 67")
	}
}

func TestTool(t *testing.T) {
	if p := Tool("sh"); !filepath.IsAbs(p) {
		t.Errorf("Tool(sh) = %q, want an absolute path", p)
	}
	if p := Tool("no-such-tool-here"); p != "no-such-tool-here" {
		t.Errorf("Tool of a missing command = %q, want the name itself", p)
	}
}
