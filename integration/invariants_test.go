//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"
)

// The checker must catch each kind of violation on made-up evidence, and
// must stay quiet on the same evidence made right: a checker that cannot
// fail proves nothing.

var t0 = time.Unix(1_800_000_000, 0)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func expectViolations(t *testing.T, c *Checker, want ...string) {
	t.Helper()
	if len(c.Violations) != len(want) {
		t.Fatalf("got %d violations, want %d: %q", len(c.Violations), len(want), c.Violations)
	}
	for i, w := range want {
		if !strings.Contains(c.Violations[i], w) {
			t.Errorf("violation %d = %q, want it to mention %q", i, c.Violations[i], w)
		}
	}
}

func TestCheckerCatchesAnAddressHeldTwice(t *testing.T) {
	recs := []SimRecord{
		{Client: "02:00:00:00:00:01", Kind: "ack", IP: "192.0.2.100", Server: "192.0.2.1", Req: at(0), At: at(0.1), Lease: 10 * time.Second},
		{Client: "02:00:00:00:00:02", Kind: "ack", IP: "192.0.2.100", Server: "192.0.2.2", Req: at(5), At: at(5.1), Lease: 10 * time.Second},
	}
	c := NewChecker(5*time.Second, "192.0.2.1")
	c.NoAddressTwice(HoldsOfSim(recs))
	expectViolations(t, c, "invariant 1: 192.0.2.100 is held by two clients")

	// The first client released it before the second got it: fine.
	recs = append(recs[:1], SimRecord{Client: "02:00:00:00:00:01", Kind: "release", IP: "192.0.2.100", Req: at(4)}, recs[1])
	c = NewChecker(5*time.Second, "192.0.2.1")
	c.NoAddressTwice(HoldsOfSim(recs))
	expectViolations(t, c)

	// Two databases disagree on who holds an unexpired address.
	c = NewChecker(5*time.Second, "192.0.2.1")
	c.NoAddressTwiceInDBs(at(0),
		Snapshot{Server: "p", Leases: []Lease{{Address: "192.0.2.7", State: "active", HWAddr: "02:00:00:00:00:01", Ends: at(9).Unix()}}},
		Snapshot{Server: "s", Leases: []Lease{{Address: "192.0.2.7", State: "active", HWAddr: "02:00:00:00:00:02", Ends: at(9).Unix()}}})
	expectViolations(t, c, "invariant 1: 192.0.2.7 is active for two clients")
}

func TestCheckerCatchesALostLease(t *testing.T) {
	recs := []SimRecord{
		{Client: "02:00:00:00:00:01", Kind: "ack", IP: "192.0.2.100", Server: "192.0.2.1", Req: at(0), At: at(0.1), Lease: 30 * time.Second},
		{Client: "02:00:00:00:00:02", Kind: "ack", IP: "192.0.2.101", Server: "192.0.2.1", Req: at(1), At: at(1.1), Lease: 30 * time.Second},
	}
	snap := Snapshot{Server: "192.0.2.1", At: at(2), Why: "kill -9", Leases: []Lease{
		{Address: "192.0.2.100", State: "active", HWAddr: "02:00:00:00:00:01", Ends: at(30).Unix()},
	}}
	c := NewChecker(5*time.Second, "192.0.2.1")
	c.Durable(snap, HoldsOfSim(recs))
	expectViolations(t, c, "invariant 2: after kill -9, the database has no row for the ACKed lease: sim client 02:00:00:00:00:02")

	// A row that ends before what the client was told is lost time.
	snap.Leases = append(snap.Leases, Lease{Address: "192.0.2.101", State: "active", HWAddr: "02:00:00:00:00:02", Ends: at(20).Unix()})
	c = NewChecker(5*time.Second, "192.0.2.1")
	c.Durable(snap, HoldsOfSim(recs))
	expectViolations(t, c, "invariant 2: after kill -9, the database does not hold the ACKed lease")

	snap.Leases[1].Ends = at(31).Unix()
	c = NewChecker(5*time.Second, "192.0.2.1")
	c.Durable(snap, HoldsOfSim(recs))
	expectViolations(t, c)
}

func TestCheckerCatchesALeasePastMCLT(t *testing.T) {
	tl := Timeline{{At: at(0), State: "normal"}, {At: at(10), State: "communications-interrupted"}}
	row := Lease{Address: "192.0.2.9", State: "active", HWAddr: "02:00:00:00:00:01", Cltt: at(11).Unix(),
		PeerExpiry: at(12).Unix(), Ends: at(12 + 5 + 30).Unix(), Pending: 1}
	c := NewChecker(5*time.Second, "192.0.2.1")
	c.WithinMCLT(Snapshot{Server: "p", At: at(12), Leases: []Lease{row}}, tl)
	expectViolations(t, c, "invariant 3")

	row.Ends = at(12 + 5).Unix()
	c = NewChecker(5*time.Second, "192.0.2.1")
	c.WithinMCLT(Snapshot{Server: "p", At: at(12), Leases: []Lease{row}}, tl)
	expectViolations(t, c)

	// Granted in PARTNER-DOWN: no MCLT bound.
	row.Ends = at(100).Unix()
	tl = append(tl, Sample{At: at(10.5), State: "partner-down"})
	c = NewChecker(5*time.Second, "192.0.2.1")
	c.WithinMCLT(Snapshot{Server: "p", At: at(12), Leases: []Lease{row}}, tl)
	expectViolations(t, c)
}

func TestCheckerCatchesTakingThePeersAddresses(t *testing.T) {
	sep := Separation{From: at(0), To: at(60), Why: "the peer link cut", Start: map[string]Snapshot{
		"192.0.2.2": {Server: "192.0.2.2", Leases: []Lease{{Address: "192.0.2.120", State: "backup"}}},
		"192.0.2.1": {Server: "192.0.2.1"},
	}}
	holds := HoldsOfSim([]SimRecord{
		// The secondary gives its own BACKUP address: fine.
		{Client: "02:00:00:00:00:01", Kind: "ack", IP: "192.0.2.120", Server: "192.0.2.2", Req: at(1), At: at(1), Lease: 5 * time.Second},
		// ... and a never-used one, which is the primary's.
		{Client: "02:00:00:00:00:02", Kind: "ack", IP: "192.0.2.121", Server: "192.0.2.2", Req: at(2), At: at(2), Lease: 5 * time.Second},
		// In PARTNER-DOWN, but before MCLT.
		{Client: "02:00:00:00:00:03", Kind: "ack", IP: "192.0.2.122", Server: "192.0.2.2", Req: at(22), At: at(22), Lease: 5 * time.Second},
		// After MCLT: fine.
		{Client: "02:00:00:00:00:04", Kind: "ack", IP: "192.0.2.123", Server: "192.0.2.2", Req: at(27), At: at(27), Lease: 5 * time.Second},
		// A client given back the address the primary gave it (its
		// update reached the secondary after the databases were read).
		{Client: "02:00:00:00:00:05", Kind: "ack", IP: "192.0.2.124", Server: "192.0.2.1", Req: at(-1), At: at(-1), Lease: 5 * time.Second},
		{Client: "02:00:00:00:00:05", Kind: "ack", IP: "192.0.2.124", Server: "192.0.2.2", Req: at(3), At: at(3), Lease: 5 * time.Second},
	})
	tls := map[string]Timeline{"192.0.2.2": {{At: at(0), State: "communications-interrupted"}, {At: at(20), State: "partner-down"}}}
	c := NewChecker(5*time.Second, "192.0.2.1")
	c.Separated(sep, holds, tls)
	expectViolations(t, c, "invariant 4: during the peer link cut, 192.0.2.2 gave 192.0.2.121", "invariant 5")
}

func TestCheckerCatchesALongFirstLease(t *testing.T) {
	first := []SimRecord{
		{Client: "02:00:00:00:00:01", Kind: "ack", IP: "192.0.2.100", Server: "192.0.2.1", At: at(1), Lease: 5 * time.Second},
		{Client: "02:00:00:00:00:02", Kind: "ack", IP: "192.0.2.101", Server: "192.0.2.1", At: at(2), Lease: 30 * time.Second},
		{Client: "02:00:00:00:00:03", Kind: "ack", IP: "192.0.2.102", Server: "192.0.2.1", At: at(12), Lease: 30 * time.Second},
	}
	tls := map[string]Timeline{"192.0.2.1": {{At: at(0), State: "normal"}, {At: at(10), State: "partner-down"}}}
	c := NewChecker(5*time.Second, "192.0.2.1")
	c.FirstLease(first, nil, nil, tls)
	expectViolations(t, c, "invariant 3: the first lease of 192.0.2.101 (new client 02:00:00:00:00:02")

	// A REQUEST for 192.0.2.101 that got no answer before (chaos seed 151:
	// the server bound it, then a cut ate the ACK; the same client came
	// back and got MCLT past the expiry the peer had acknowledged).
	c = NewChecker(5*time.Second, "192.0.2.1")
	c.FirstLease(first, []SimRecord{{Client: "02:00:00:00:00:02", Kind: "unanswered", IP: "192.0.2.101", Req: at(1.5)}}, nil, tls)
	expectViolations(t, c)
	// ... but not one after the ACK it is judged by.
	c = NewChecker(5*time.Second, "192.0.2.1")
	c.FirstLease(first, []SimRecord{{Client: "02:00:00:00:00:02", Kind: "unanswered", IP: "192.0.2.101", Req: at(2.5)}}, nil, tls)
	expectViolations(t, c, "invariant 3: the first lease of 192.0.2.101")

	// 192.0.2.101 was someone else's before: the peer may have acknowledged
	// an expiry for it.
	c = NewChecker(5*time.Second, "192.0.2.1")
	c.FirstLease(first, nil, []Hold{{Client: "02:00:00:00:00:09", IP: "192.0.2.101", At: at(0.5), End: at(1)}}, tls)
	expectViolations(t, c)
}

func TestReunitedIsWhenBothHoldASessionAgain(t *testing.T) {
	p := Timeline{{At: at(0), State: "normal", Connected: true}, {At: at(2), State: "normal", Connected: true},
		{At: at(3), State: "communications-interrupted"}, {At: at(8), State: "partner-down", Connected: true}}
	s := Timeline{{At: at(0.5), State: "normal", Connected: true}, {At: at(2.5)}, {At: at(8.5), State: "recover", Connected: true}}
	// Parted at 2 (the kill): still "connected" at 2 on the primary, apart
	// at 2.5, together again at 8.5.
	if got := Reunited(p, s, at(2), at(20)); !got.Equal(at(8.5)) {
		t.Fatalf("Reunited = %v, want %v", got.Sub(t0), 8.5)
	}
	// Never apart after 9: the latest answer stands.
	if got := Reunited(p, s, at(9), at(20)); !got.Equal(at(20)) {
		t.Fatalf("Reunited = %v, want 20s", got.Sub(t0))
	}
}
