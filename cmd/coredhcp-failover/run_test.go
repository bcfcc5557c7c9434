package main

import (
	"strings"
	"testing"

	"github.com/coredhcp/coredhcp/config"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// A bad plugin chain stops the server before any plugin is set up: exit
// status 1 and the check's message in the log at error level.
func TestRunRefusesBadChain(t *testing.T) {
	logger, hook := test.NewNullLogger()
	conf := &config.Config{Server4: &config.ServerConfig{Plugins: []config.PluginConfig{
		{Name: "failover", Args: []string{"db=" + t.TempDir() + "/l.db", "subnet=192.0.2.0/24", "pool=192.0.2.10-192.0.2.20"}},
		{Name: "server_id", Args: []string{"192.0.2.1"}},
	}}}
	if status := run(conf, logrus.NewEntry(logger)); status != 1 {
		t.Fatalf("run returned %d, want 1", status)
	}
	var logged []string
	found := false
	for _, e := range hook.AllEntries() {
		logged = append(logged, e.Level.String()+": "+e.Message)
		found = found || e.Level == logrus.ErrorLevel &&
			strings.Contains(e.Message, `plugin 1 "failover db=`) && strings.Contains(e.Message, "move the server_id line above the failover line")
	}
	if !found {
		t.Errorf("No error names the failover line and the fix; logged:\n%s", strings.Join(logged, "\n"))
	}
}

// A chain that is legal but odd starts: its warnings are logged at warning
// level and checkChain lets run go on.
func TestCheckChainWarns(t *testing.T) {
	logger, hook := test.NewNullLogger()
	err := checkChain([]config.PluginConfig{
		{Name: "server_id", Args: []string{"192.0.2.1"}},
		{Name: "leasesync", Args: []string{"name=lan1", "role=secondary", "address=192.0.2.1", "peer=192.0.2.2"}},
		{Name: "failover", Args: []string{"db=l.db", "subnet=192.0.2.0/24", "pool=192.0.2.10-192.0.2.20"}},
	}, logrus.NewEntry(logger))
	if err != nil {
		t.Fatalf("checkChain: %v", err)
	}
	e := hook.LastEntry()
	if len(hook.AllEntries()) != 1 || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, `plugin 2 "leasesync name=lan1`) {
		t.Fatalf("Logged %d entries, the last %v; want one warning naming the leasesync line", len(hook.AllEntries()), e)
	}
}
