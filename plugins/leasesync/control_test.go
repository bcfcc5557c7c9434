package leasesync

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
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

// peerIs is true once n's session has heard the peer report state.
func peerIs(n *node, state fsm.State) func() bool {
	return func() bool {
		st, err := n.s.Status()
		return err == nil && st.PeerState == state.String()
	}
}

// controlPair starts a pair in NORMAL, each with a control socket.
func controlPair(t *testing.T, extraP, extraS string) (p, s *node, ctlP, ctlS string) {
	t.Helper()
	dir := t.TempDir()
	ctlP, ctlS = filepath.Join(dir, "p.sock"), filepath.Join(dir, "s.sock")
	p, s = pair(t, "control="+ctlP+" "+extraP, "control="+ctlS+" "+extraS)
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL, each knowing the other is", func() bool {
		return bothNormal(p, s)() && peerIs(p, fsm.Normal)() && peerIs(s, fsm.Normal)()
	}, p, s)
	return p, s, ctlP, ctlS
}

// caughtUp is true when neither server has an update queued or in flight.
func caughtUp(p, s *node) func() bool {
	return func() bool {
		a, errA := p.s.Status()
		b, errB := s.s.Status()
		return errA == nil && errB == nil && a.Unacked+a.Queued+b.Unacked+b.Queued == 0
	}
}

// secondaryClients gives n clients that hash to the secondary a lease
// from it.
func secondaryClients(t *testing.T, n int, p, s *node) {
	t.Helper()
	taken := 0
	for i := 0; taken < n; i++ {
		if lbhash.Bucket(lbhash.PacketKey(nil, clientMAC(i))) < 128 {
			continue // the primary's client
		}
		if _, from := dora(t, i, true, p, s); from != s {
			t.Fatalf("Client %d was not served by the secondary", i)
		}
		taken++
	}
}

func hasNext(st *Status, what string) *Next {
	for i := range st.Next {
		if strings.Contains(st.Next[i].What, what) {
			return &st.Next[i]
		}
	}
	return nil
}

func TestControlSocketReportsAndSteers(t *testing.T) {
	p, s, ctl, _ := controlPair(t, "", "")
	if fi, err := os.Stat(ctl); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("Control socket %v, %v; want mode 0600", fi, err)
	}
	waitFor(t, "updates settled", func() bool { st, _ := p.s.Status(); return st.Unacked+st.Queued == 0 }, p, s)
	r := askControl(t, ctl, "status")
	st := r.Status
	if r.Error != "" || st == nil || st.State != "normal" || st.PeerState != "normal" ||
		!st.Connected || st.Role != "primary" || st.MCLT != 30 || st.FreeOwn+st.FreePeer != 100 {
		t.Fatalf("status = %+v (%s)", st, r.Error)
	}
	if len(st.Pools) != 1 || st.Pools[0].Range != "192.0.2.100-192.0.2.199" ||
		st.Pools[0].FreeOwn != st.FreeOwn || st.Pools[0].FreePeer != st.FreePeer || st.Pools[0].Active != 0 {
		t.Fatalf("Pools = %+v; want one pool with the totals", st.Pools)
	}
	if st.Since == 0 || st.LastContact == 0 || st.Reason == "" {
		t.Fatalf("Status lacks since, last contact or reason: %+v", st)
	}
	if n := hasNext(st, "pool balance"); n == nil || n.At <= st.Since {
		t.Fatalf("Next = %+v; want the pool balance check with its time", st.Next)
	}
	// A lease shows up as active in the pool of both servers.
	if _, from := dora(t, 1, true, p, s); from == nil {
		t.Fatal("No server answered the client")
	}
	waitFor(t, "the lease on both servers", func() bool {
		a, _ := p.s.Status()
		b, _ := s.s.Status()
		return a.Pools[0].Active == 1 && b.Pools[0].Active == 1 && caughtUp(p, s)()
	}, p, s)
	// The peer is up: declaring it down is refused, with the reason.
	if r := askControl(t, ctl, "partner-down"); !strings.Contains(r.Error, "peer") {
		t.Fatalf("partner-down while the peer is up answered %+v", r)
	}
	if r := askControl(t, ctl, "reboot"); !strings.Contains(r.Error, `unknown command "reboot"`) {
		t.Fatalf("An unknown command answered %+v", r)
	}
	if r := askControl(t, ctl, strings.Repeat("x", 10000)); !strings.Contains(r.Error, "longer than 4096 bytes") {
		t.Fatalf("A request of 10000 bytes answered %+v", r)
	}
	s.stop()
	waitFor(t, "the primary to notice", func() bool { return p.state() == fsm.CommInterrupted }, p)
	r = askControl(t, ctl, "status")
	if r.Status.Connected || hasNext(r.Status, "failoverctl partner-down") == nil || hasNext(r.Status, "connect to the peer again") == nil {
		t.Fatalf("Status in communications-interrupted = %+v", r.Status)
	}
	r = askControl(t, ctl, "partner-down")
	if r.Error != "" || r.Status.State != "partner-down" {
		t.Fatalf("partner-down with the peer gone answered %+v", r)
	}
	// The countdown to the takeover: MCLT after entering PARTNER-DOWN.
	if r.Status.TakeoverAt != r.Status.Since+30 {
		t.Fatalf("TakeoverAt = %d, want since %d + MCLT 30", r.Status.TakeoverAt, r.Status.Since)
	}
	if n := hasNext(r.Status, "may use the peer's free addresses"); n == nil || n.At != r.Status.TakeoverAt {
		t.Fatalf("Next = %+v; want the takeover at %d", r.Status.Next, r.Status.TakeoverAt)
	}
}

// Maintenance: the server going away moves to SHUTDOWN; its peer goes to
// PARTNER-DOWN at once and counts down MCLT to using our free addresses;
// maintenance stop comes back through RECOVER to NORMAL.
func TestMaintenanceHandsThePoolsToThePeerAndBack(t *testing.T) {
	p, s, ctlP, ctlS := controlPair(t, "", "")
	r := askControl(t, ctlP, "maintenance-stop")
	if !strings.Contains(r.Error, "not in maintenance") {
		t.Fatalf("maintenance-stop in normal answered %+v", r)
	}
	r = askControl(t, ctlP, "maintenance-start")
	if r.Error != "" || r.Status.State != "shutdown" || r.Status.MayServe || !strings.Contains(r.Status.Reason, "maintenance") {
		t.Fatalf("maintenance-start answered %+v", r)
	}
	waitFor(t, "the secondary to take over", func() bool { return s.state() == fsm.PartnerDown }, p, s)
	waitFor(t, "the primary to see it", peerIs(p, fsm.PartnerDown), p, s)
	rs := askControl(t, ctlS, "status").Status
	if rs.PeerState != "shutdown" || !rs.MayServe || rs.TakeoverAt != rs.Since+30 {
		t.Fatalf("The secondary's status after the primary's maintenance start: %+v", rs)
	}
	// A second start changes nothing.
	if r := askControl(t, ctlP, "maintenance-start"); r.Error != "" || r.Status.State != "shutdown" {
		t.Fatalf("A second maintenance-start answered %+v", r)
	}
	r = askControl(t, ctlP, "maintenance-stop")
	if r.Error != "" || !strings.Contains(r.Message, "recover") {
		t.Fatalf("maintenance-stop answered %+v", r)
	}
	waitFor(t, "both servers back in NORMAL", bothNormal(p, s), p, s)
}

func TestMaintenanceStartNeedsThePeer(t *testing.T) {
	p, s, ctlP, _ := controlPair(t, "", "")
	s.stop()
	waitFor(t, "the primary to notice", func() bool { return p.state() == fsm.CommInterrupted }, p)
	r := askControl(t, ctlP, "maintenance-start")
	if !strings.Contains(r.Error, "needs the peer connected") || p.state() != fsm.CommInterrupted {
		t.Fatalf("maintenance-start without the peer answered %+v (state %s)", r, p.state())
	}
}

// Resync asks the peer for every binding: the peer sends them all again
// and UPDDONE; the state stays NORMAL.
func TestResyncFetchesEveryBindingAgain(t *testing.T) {
	p, s, ctlP, _ := controlPair(t, "", "")
	waitFor(t, "the secondary's share", func() bool { own, _ := s.srv.FreeCounts(); return own == 50 }, p, s)
	for i := 0; i < 10; i++ {
		if _, from := dora(t, i, true, p, s); from == nil {
			t.Fatalf("Client %d got no lease", i)
		}
	}
	waitFor(t, "updates settled", caughtUp(p, s), p, s)
	before := counterValue(t, p.s.Registry(), "coredhcp_failover_binding_updates_received_total")
	r := askControl(t, ctlP, "resync")
	if r.Error != "" || !strings.Contains(r.Message, "UPDREQALL") || r.Status.ResyncSince == 0 {
		t.Fatalf("resync answered %+v", r)
	}
	waitFor(t, "the resync to complete", func() bool { st, _ := p.s.Status(); return st.ResyncSince == 0 }, p, s)
	// The secondary has a binding for every address it holds (its own
	// leases and the balanced BACKUP ones): at least one each.
	after := counterValue(t, p.s.Registry(), "coredhcp_failover_binding_updates_received_total")
	if after-before < 10 {
		t.Fatalf("The resync brought %v binding updates, want at least the 10 leases", after-before)
	}
	if p.state() != fsm.Normal {
		t.Fatalf("State after resync %s, want normal", p.state())
	}
}

// Rebalance runs the pool balance at once: a secondary that has given
// away addresses to its clients asks the primary, which transfers half
// the difference.
func TestRebalanceRunsThePoolBalanceNow(t *testing.T) {
	p, s, _, ctlS := controlPair(t, "min-balance=3600", "min-balance=3600")
	waitFor(t, "the secondary's share", func() bool { own, _ := s.srv.FreeCounts(); return own == 50 }, p, s)
	if r := askControl(t, ctlS, "rebalance"); r.Error != "" || !strings.Contains(r.Message, "nothing to move") {
		t.Fatalf("rebalance when balanced answered %+v", r)
	}
	secondaryClients(t, 20, p, s)
	waitFor(t, "updates settled", caughtUp(p, s), p, s)
	r := askControl(t, ctlS, "rebalance")
	if r.Error != "" || !strings.Contains(r.Message, "asked the peer") {
		t.Fatalf("rebalance when short answered %+v", r)
	}
	// Owning 30 against 50: the primary gives (50-30)/2 = 10.
	var own, peer int
	t.Cleanup(func() { t.Logf("The secondary owns %d, the primary %d", own, peer) })
	waitFor(t, "the transfer", func() bool { own, peer = s.srv.FreeCounts(); return own == 40 }, p, s)
	s.stop()
	waitFor(t, "the primary to notice", func() bool { return p.state() == fsm.CommInterrupted }, p)
	if r := askControl(t, filepath.Join(filepath.Dir(ctlS), "p.sock"), "rebalance"); !strings.Contains(r.Error, "only in normal") {
		t.Fatalf("rebalance outside normal answered %+v", r)
	}
}

// A request posted as the session closes can be accepted into the queue
// (select picks at random between the queue and done) and never handled:
// its caller must not wait for an answer forever, because Close waits for
// that caller. A control socket request at SIGTERM hung a server so.
func TestRequestsRacingCloseDoNotHang(t *testing.T) {
	s := NewSession(Config{Name: "lan1"}, nil, nil)
	close(s.done) // closed, and no run goroutine handles the queue
	for i := 0; i < 50; i++ {
		if _, err := s.snapshot(); !errors.Is(err, errSessionClosed) {
			t.Fatalf("status on a closed session: %v", err)
		}
		if err := s.Command(fsm.Normal); !errors.Is(err, errSessionClosed) {
			t.Fatalf("command on a closed session: %v", err)
		}
		if err := s.Reconnect(); !errors.Is(err, errSessionClosed) {
			t.Fatalf("reconnect on a closed session: %v", err)
		}
	}

	// The run goroutine, exiting, closes the links left in the queue
	// and refuses later ones, closing them too.
	queued, peer := net.Pipe()
	s.events <- event{kind: evLinkUp, link: &link{conn: queued}}
	s.drainEvents()
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("A link left in the queue is open: read %v", err)
	}
	late, peer := net.Pipe()
	if s.post(event{kind: evLinkUp, link: &link{conn: late}}) {
		t.Fatal("A link was accepted after the run goroutine exited")
	}
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("A link posted after exit is open: read %v", err)
	}
}

// TestStatusSaysRecoverDoneWaitsForTheUpdateDone: in RECOVER-DONE,
// `failoverctl status` says what NORMAL waits for: the peer's leaving
// PARTNER-DOWN, then the UPDDONE answering our UPDREQ.
func TestStatusSaysRecoverDoneWaitsForTheUpdateDone(t *testing.T) {
	s := &Session{}
	st := &Status{Next: s.next(fsm.Status{State: fsm.RecoverDone}, 0)}
	if hasNext(st, "UPDREQ to the peer when it reaches recover-done or normal") == nil {
		t.Errorf("Next in recover-done = %+v; want the UPDREQ when the peer leaves partner-down", st.Next)
	}
	st = &Status{Next: s.next(fsm.Status{State: fsm.RecoverDone, AwaitingUpdateDone: true}, 0)}
	if hasNext(st, "normal when the peer's UPDDONE arrives") == nil {
		t.Errorf("Next in recover-done with UPDREQ out = %+v; want normal at the peer's UPDDONE", st.Next)
	}
}
