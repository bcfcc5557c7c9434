package leasesync

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
)

func askControl(t *testing.T, path, cmd string) ControlReply {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := json.NewEncoder(conn).Encode(ControlRequest{Command: cmd}); err != nil {
		t.Fatal(err)
	}
	var r ControlReply
	if err := json.NewDecoder(conn).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestControlSocketReportsAndSteers(t *testing.T) {
	dir := t.TempDir()
	ctl := filepath.Join(dir, "p.sock")
	p, s := pair(t, "control="+ctl, "")
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL", bothNormal(p, s), p, s)
	if fi, err := os.Stat(ctl); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("Control socket %v, %v; want mode 0600", fi, err)
	}
	r := askControl(t, ctl, "status")
	if r.Error != "" || r.Status == nil || r.Status.State != "normal" || r.Status.PeerState != "normal" ||
		!r.Status.Connected || r.Status.Role != "primary" || r.Status.MCLT != 30 || r.Status.FreeOwn+r.Status.FreePeer != 100 {
		t.Fatalf("status = %+v (%s)", r.Status, r.Error)
	}
	// The peer is up: declaring it down is refused, with the reason.
	if r := askControl(t, ctl, "partner-down"); !strings.Contains(r.Error, "peer") {
		t.Fatalf("partner-down while the peer is up answered %+v", r)
	}
	if r := askControl(t, ctl, "reboot"); !strings.Contains(r.Error, `unknown command "reboot"`) {
		t.Fatalf("An unknown command answered %+v", r)
	}
	s.stop()
	waitFor(t, "the primary to notice", func() bool { return p.state() == fsm.CommInterrupted }, p)
	if r := askControl(t, ctl, "partner-down"); r.Error != "" || r.Status.State != "partner-down" {
		t.Fatalf("partner-down with the peer gone answered %+v", r)
	}
}
