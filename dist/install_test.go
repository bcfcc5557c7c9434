// Package dist holds the files `make install` puts on a system; its test
// runs the install into a staging root and checks the systemd unit.
package dist

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// install runs `make install` with the given variables and returns the
// staging root.
func install(t *testing.T, vars ...string) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed (it is how the project is installed)")
	}
	root := t.TempDir()
	args := append([]string{"-C", "..", "--no-print-directory", "install", "DESTDIR=" + root}, vars...)
	out, err := exec.Command("make", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return root
}

func TestMakeInstallIntoDestdir(t *testing.T) {
	root := install(t)
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/coredhcp-failover":                                      0o755,
		"usr/local/bin/failoverctl":                                            0o755,
		"usr/local/lib/systemd/system/coredhcp-failover.service":               0o644,
		"etc/coredhcp-failover/coredhcp-failover.yaml":                         0o644,
		"usr/local/share/doc/coredhcp-failover/coredhcp-failover.yaml.example": 0o644,
		"usr/local/share/doc/coredhcp-failover/failover.md":                    0o644,
		"usr/local/share/doc/coredhcp-failover/leasesync.md":                   0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("Not installed: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	unit, err := os.ReadFile(filepath.Join(root, "usr/local/lib/systemd/system/coredhcp-failover.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/coredhcp-failover -c /etc/coredhcp-failover/coredhcp-failover.yaml") ||
		regexp.MustCompile(`@[A-Z]+@`).Match(unit) ||
		!strings.Contains(string(unit), "Documentation=file:/usr/local/share/doc/coredhcp-failover/README.md") {
		t.Errorf("The installed unit's paths are not substituted:\n%s", unit)
	}
	out, err := exec.Command(filepath.Join(root, "usr/local/bin/failoverctl"), "--help").CombinedOutput()
	if !strings.Contains(string(out), "maintenance start") {
		t.Errorf("The installed failoverctl does not run: %v\n%s", err, out)
	}
}

// A second install keeps the operator's configuration.
func TestMakeInstallKeepsTheConfiguration(t *testing.T) {
	root := install(t, "PREFIX=/usr")
	conf := filepath.Join(root, "etc/coredhcp-failover/coredhcp-failover.yaml")
	if err := os.WriteFile(conf, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("make", "-C", "..", "--no-print-directory", "install", "DESTDIR="+root, "PREFIX=/usr").CombinedOutput()
	if err != nil {
		t.Fatalf("second install: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(conf); string(b) != "# mine\n" {
		t.Fatalf("The second install replaced the configuration with:\n%.200s", b)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/coredhcp-failover")); err != nil {
		t.Fatalf("PREFIX=/usr: %v", err)
	}
}

// systemd accepts the unit without a warning, and rates its exposure as
// an operator would expect of a hardened service.
func TestSystemdUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is needed: make deps installs the systemd package")
	}
	root := install(t)
	// Verify checks that ExecStart exists: point it at the staged binary.
	unit, err := os.ReadFile(filepath.Join(root, "usr/local/lib/systemd/system/coredhcp-failover.service"))
	if err != nil {
		t.Fatal(err)
	}
	staged := strings.ReplaceAll(string(unit), "ExecStart=/usr/local/bin/", "ExecStart="+root+"/usr/local/bin/")
	path := filepath.Join(t.TempDir(), "coredhcp-failover.service")
	if err := os.WriteFile(path, []byte(staged), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=yes", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 3 {
		t.Errorf("Exposure level %.1f, want at most 3 (hardened):\n%s", level, out)
	}
	for _, want := range []string{"DynamicUser=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW", "StateDirectory=coredhcp-failover",
		"RuntimeDirectory=coredhcp-failover", "ProtectSystem=strict", "NoNewPrivileges=yes"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("The unit lacks %s", want)
		}
	}
}

// The paths an operator meets agree: the configuration the server reads
// without -c is the one make install writes and the unit names; the
// example's database is in the unit's state directory; failoverctl looks
// for control sockets in the unit's runtime directory, where the example
// puts them.
func TestDefaultsAgree(t *testing.T) {
	root := install(t, "SYSCONFDIR=/opt/etc")
	conf := "/opt/etc/coredhcp-failover/coredhcp-failover.yaml"
	if _, err := os.Stat(filepath.Join(root, conf)); err != nil {
		t.Errorf("make install SYSCONFDIR=/opt/etc wrote no %s: %v", conf, err)
	}
	unit, err := os.ReadFile(filepath.Join(root, "usr/local/lib/systemd/system/coredhcp-failover.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/coredhcp-failover -c "+conf+"\n") {
		t.Errorf("The unit does not read %s:\n%s", conf, unit)
	}
	help, _ := exec.Command(filepath.Join(root, "usr/local/bin/coredhcp-failover"), "--help").CombinedOutput()
	if !strings.Contains(string(help), `(default "`+conf+`")`) {
		t.Errorf("Without -c the server does not read %s:\n%s", conf, help)
	}
	dir := func(key string) string {
		m := regexp.MustCompile(`(?m)^` + key + `=(\S+)$`).FindSubmatch(unit)
		if m == nil {
			t.Fatalf("The unit has no %s=", key)
		}
		return string(m[1])
	}
	example, err := os.ReadFile(filepath.Join(root, conf))
	if err != nil {
		t.Fatal(err)
	}
	if db := "db=/var/lib/" + dir("StateDirectory") + "/"; !strings.Contains(string(example), db) {
		t.Errorf("The example's database is not in the unit's state directory (%s...)", db)
	}
	out, _ := exec.Command(filepath.Join(root, "usr/local/bin/failoverctl"), "--help").CombinedOutput()
	if run := "/run/" + dir("RuntimeDirectory"); !strings.Contains(string(out), run+"/*.sock") {
		t.Errorf("failoverctl does not look for sockets in the unit's runtime directory %s:\n%s", run, out)
	}
}
