package leasesync

import (
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
)

// entries returns the log entries whose message contains msg.
func entries(msg string) []logrus.Entry {
	var out []logrus.Entry
	for _, e := range logs.AllEntries() {
		if strings.Contains(e.Message, msg) {
			out = append(out, *e)
		}
	}
	return out
}

// hasFields fails the test unless every entry carries the fields.
func hasFields(t *testing.T, es []logrus.Entry, fields ...string) {
	t.Helper()
	for _, e := range es {
		for _, f := range fields {
			if v, ok := e.Data[f]; !ok || v == "" {
				t.Errorf("Log line %q lacks %s: %v", e.Message, f, e.Data)
			}
		}
	}
}

// The operator reads the relationship from its logs: one structured line
// per state change, connect and disconnect, and nothing per DHCP packet
// at info level.
func TestLogsSayWhatChangedAndWhyButNothingPerPacket(t *testing.T) {
	logs.Reset()
	p, s, _, _ := controlPair(t, "", "")
	changes := entries("failover state change")
	if len(changes) < 4 { // each: unknown -> startup -> ... -> normal
		t.Fatalf("%d state change lines, want at least 4", len(changes))
	}
	hasFields(t, changes, "relationship", "from", "to", "reason")
	connects := entries("failover peer connected")
	// Two, or more when both servers dialed at once and the crossed
	// links were dropped.
	if len(connects) < 2 {
		t.Fatalf("%d connect lines, want one per server", len(connects))
	}
	hasFields(t, connects, "relationship", "peer", "direction")

	waitFor(t, "the secondary's share", func() bool { own, _ := s.srv.FreeCounts(); return own == 50 }, p, s)
	waitFor(t, "updates settled", caughtUp(p, s), p, s)
	before := len(logs.AllEntries())
	for i := 0; i < 30; i++ {
		dora(t, i, true, p, s)
	}
	waitFor(t, "updates settled", caughtUp(p, s), p, s)
	for _, e := range logs.AllEntries()[before:] {
		if e.Level <= logrus.InfoLevel && e.Data["prefix"] == "plugins/failover" {
			t.Errorf("Logged while serving clients: %s %q %v", e.Level, e.Message, e.Data)
		}
	}
	if n := len(logs.AllEntries()) - before; n > 5 {
		t.Errorf("%d log lines for 30 clients, want a handful at most", n)
	}

	s.stop()
	waitFor(t, "the primary to notice", func() bool { return p.state() == fsm.CommInterrupted }, p)
	gone := entries("failover peer disconnected")
	if len(gone) == 0 {
		t.Fatal("No disconnect line")
	}
	hasFields(t, gone, "relationship", "peer", "reason")
}
