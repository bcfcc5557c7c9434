package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/leasesync/control"
)

func TestSocketsFromFlagEnvOrRunDir(t *testing.T) {
	none := func(string) ([]string, error) { return nil, nil }
	two := func(pattern string) ([]string, error) {
		if pattern != "/run/coredhcp-failover/*.sock" {
			t.Errorf("Looked for sockets in %s", pattern)
		}
		return []string{"/run/coredhcp-failover/a.sock", "/run/coredhcp-failover/b.sock"}, nil
	}
	if got, _ := sockets([]string{"/x.sock"}, "/env.sock", two); len(got) != 1 || got[0] != "/x.sock" {
		t.Errorf("With -s: %v", got)
	}
	if got, _ := sockets(nil, "/env.sock", two); len(got) != 1 || got[0] != "/env.sock" {
		t.Errorf("With $FAILOVERCTL_SOCKET: %v", got)
	}
	if got, _ := sockets(nil, "", two); len(got) != 2 {
		t.Errorf("From the run directory: %v", got)
	}
	if _, err := sockets(nil, "", none); err == nil || !strings.Contains(err.Error(), "give -s PATH") {
		t.Errorf("Without any socket: %v", err)
	}
}

func TestCommandWords(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		err  string
	}{
		{args: []string{"status"}, want: "status"},
		{args: []string{"maintenance", "start"}, want: "maintenance-start"},
		{args: []string{"maintenance", "stop"}, want: "maintenance-stop"},
		{args: []string{"maintenance"}, err: "start or stop"},
		{args: []string{"maintenance", "later"}, err: `"maintenance later"`},
		{args: nil, err: "want one command"},
	} {
		got, err := command(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Command %q: error %v, want one containing %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Command %q = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}

// Every state-changing command asks before it acts.
func TestEveryStateChangeIsConfirmed(t *testing.T) {
	for _, c := range []string{"maintenance-start", "maintenance-stop", "resync", "rebalance", "partner-down", "paused", "shutdown", "recover", "normal", "reconnect"} {
		if confirm[c] == "" {
			t.Errorf("Command %s asks for no confirmation", c)
		}
	}
	if _, ok := confirm["status"]; ok {
		t.Error("status asks for confirmation")
	}
}

func TestStatusShowsTheCountdownAndThePools(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	st := &control.Status{
		Name: "lan1", Role: "secondary", State: "partner-down", Since: now.Unix() - 90, Reason: "operator command",
		PeerState: "communications-interrupted", PeerAddress: "192.0.2.1:647", MayServe: true, MCLT: 3600,
		LastContact: now.Unix() - 600, ClockSkew: -2, Unacked: 3, Queued: 7,
		Next:  []control.Next{{What: "may use the peer's free addresses", At: now.Unix() - 90 + 3600}},
		Pools: []control.PoolStatus{{Range: "192.0.2.100-192.0.2.199", FreeOwn: 40, FreePeer: 45, Active: 12, Expired: 2, Abandoned: 1}},
	}
	var b bytes.Buffer
	printStatus(&b, st, now)
	out := b.String()
	for _, want := range []string{
		"my state     PARTNER-DOWN since", "(1m30s ago), serving clients",
		"peer state   COMMUNICATIONS-INTERRUPTED, NOT connected",
		"may use the peer's free addresses in 58m30s, at ",
		"last contact", "(10m0s ago), clock skew -2s, MCLT 1h0m0s",
		"3 unacknowledged, 7 queued",
		"192.0.2.100-192.0.2.199               40        45       12        2         1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Status lacks %q:\n%s", want, out)
		}
	}
}

// After a restart straight into RECOVER, status says when the state was
// entered and, apart, the start its MCLT wait counts from (issue 16, 8).
func TestStatusSaysWhereTheMCLTWaitCountsFrom(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	st := &control.Status{Name: "lan1", Role: "primary", State: "recover-wait", Since: now.Unix() - 6, Stos: now.Unix() - 12,
		PeerState: "partner-down", MCLT: 15}
	var b bytes.Buffer
	printStatus(&b, st, now)
	for _, want := range []string{"RECOVER-WAIT since", "(6s ago)", "counted from", "(12s ago) (the protocol's start of state"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("Status lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	st.Stos = 0
	printStatus(&b, st, now)
	if strings.Contains(b.String(), "counted from") {
		t.Errorf("Status shows a start of state where it is the state's entry:\n%s", b.String())
	}
}

func TestHandoverNeedsThePeerInPartnerDownAndNothingQueued(t *testing.T) {
	st := control.Status{State: "shutdown", PeerState: "partner-down", Connected: true}
	if !handedOver(&st) {
		t.Error("A complete handover is not recognised")
	}
	for _, change := range []func(*control.Status){
		func(s *control.Status) { s.PeerState = "normal" },
		func(s *control.Status) { s.Queued = 1 },
		func(s *control.Status) { s.Unacked = 1 },
		func(s *control.Status) { s.Connected = false },
	} {
		s := st
		change(&s)
		if handedOver(&s) {
			t.Errorf("Handover recognised in %+v", s)
		}
	}
}

func TestHandoverToAPeerInShutdownFailsAtOnce(t *testing.T) {
	st := control.Status{State: "shutdown", PeerState: "shutdown", Connected: true}
	reply := waitHandover("/nonexistent", control.Reply{Status: &st}, time.Hour)
	if !strings.Contains(reply.Error, "maintenance stop") {
		t.Fatalf("Both in shutdown: error %q, want advice to run maintenance stop on one", reply.Error)
	}
	for _, peer := range []string{"normal", "partner-down", "communications-interrupted"} {
		if s := (control.Status{State: "shutdown", PeerState: peer}); bothShutDown(&s) {
			t.Errorf("Peer %s taken for a peer in shutdown", peer)
		}
	}
}

// failoverctl is an operator's tool: it links neither the plugins nor cgo
// (issue 16, item 5). The control protocol's types are in a leaf package.
func TestTheCLIBuildsWithoutThePlugins(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/mattn/go-sqlite3", "github.com/prometheus/", "github.com/coredhcp/coredhcp",
			"github.com/sirupsen/logrus", "/plugins/leasesync\n", "/plugins/failover", "/plugins/internal/"} {
			if strings.Contains(dep+"\n", banned) {
				t.Errorf("failoverctl depends on %s", dep)
			}
		}
	}
}
