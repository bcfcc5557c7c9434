//go:build integration

package integration

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// The invariant checker proves invariants 1–5 (docs/invariants.md) on what
// real processes did: the records of every client (what each was told, and
// when) and the servers' databases, read at the moments that matter (right
// after a kill -9, when the peers were separated, at the end). It never
// trusts a server's account of itself where a client's record or the
// other database can say: each violation comes with its evidence.
//
// Times in the lease databases have a resolution of one second, and a
// client counts its lease from when it sent its request while the server
// counts from when it received it, so comparisons allow Slack.

// Hold is a client's record of holding an address: from when it was told
// (At) until its lease ends (End), unless it let go earlier.
type Hold struct {
	Client string
	IP     string
	Server string // server identifier of the ACK
	Req    time.Time
	At     time.Time
	End    time.Time
	Real   bool // from a real client's hook script (second resolution)
}

func (h Hold) String() string {
	kind := "sim"
	if h.Real {
		kind = "real"
	}
	return fmt.Sprintf("%s client %s held %s from %s (acked by %s) to %s", kind, h.Client, h.IP,
		h.At.Format("15:04:05.000"), h.Server, h.End.Format("15:04:05.000"))
}

// HoldsOfSim turns a simulated relay's records into holds: each ACK starts
// one, lasting to its lease's end or to the client's next act (release,
// NAK, a new ACK), whichever comes first.
func HoldsOfSim(recs []SimRecord) []Hold {
	by := map[string][]SimRecord{}
	for _, r := range recs {
		by[r.Client] = append(by[r.Client], r)
	}
	var out []Hold
	for _, rs := range by {
		for i, r := range rs {
			if r.Kind != "ack" {
				continue
			}
			h := Hold{Client: r.Client, IP: r.IP, Server: r.Server, Req: r.Req, At: r.At, End: r.End()}
			for _, next := range rs[i+1:] {
				if next.Kind == "ack" || next.Kind == "nak" || next.Kind == "release" {
					if t := next.Req; t.Before(h.End) {
						h.End = t
					}
					break
				}
			}
			out = append(out, h)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// HoldsOfClient turns a real client's hook events into holds, the same way.
func HoldsOfClient(c Client) []Hold {
	evs := c.Events()
	var out []Hold
	for i, ev := range evs {
		if !ev.Bound() {
			continue
		}
		at := time.Unix(ev.At, 0)
		h := Hold{Client: c.HW().String(), IP: ev.IP, Server: ev.ServerID, Req: at, At: at,
			End: at.Add(time.Duration(ev.Lease) * time.Second), Real: true}
		for _, next := range evs[i+1:] {
			if next.Bound() || next.Kind == "release" || next.Kind == "deconfig" || next.Kind == "nak" || next.Kind == "expire" {
				if t := time.Unix(next.At, 0); t.Before(h.End) {
					h.End = t
				}
				break
			}
		}
		out = append(out, h)
	}
	return out
}

// Sample is one reading of a server's failover state.
type Sample struct {
	At        time.Time
	State     string // "" when the server was not running
	Connected bool   // it held a session with its peer
}

// Timeline is what a server's state was over time, sampled.
type Timeline []Sample

// StateAt returns the last sampled state at or before t.
func (tl Timeline) StateAt(t time.Time) string {
	i := sort.Search(len(tl), func(i int) bool { return tl[i].At.After(t) })
	if i == 0 {
		return ""
	}
	return tl[i-1].State
}

// In reports whether any sample in [from-slack, to+slack] is state.
func (tl Timeline) In(state string, from, to time.Time, slack time.Duration) bool {
	for _, s := range tl {
		if !s.At.Before(from.Add(-slack)) && !s.At.After(to.Add(slack)) && s.State == state {
			return true
		}
	}
	return tl.StateAt(from.Add(-slack)) == state
}

// Entered returns when state was last entered at or before t (the first
// sample of the run of that state containing t), or zero.
func (tl Timeline) Entered(state string, t time.Time) time.Time {
	i := sort.Search(len(tl), func(i int) bool { return tl[i].At.After(t) })
	var since time.Time
	for j := i - 1; j >= 0 && tl[j].State == state; j-- {
		since = tl[j].At
	}
	return since
}

// LastLeft returns when the server last left state before t, or zero.
func (tl Timeline) LastLeft(state string, t time.Time) time.Time {
	var left time.Time
	for j := 1; j < len(tl) && !tl[j].At.After(t); j++ {
		if tl[j-1].State == state && tl[j].State != state {
			left = tl[j].At
		}
	}
	return left
}

// Reunited returns when two servers parted at from talk again: the first
// time after from that both hold a session, after one of them had lost it
// (a cut noticed only by the receive timer leaves both connected for a
// while). From then on they exchange updates and acknowledgements, and the
// state machine decides again what each may give; until is the latest
// answer (both in NORMAL again).
func Reunited(a, b Timeline, from, until time.Time) time.Time {
	type reading struct {
		at   time.Time
		a, b bool
	}
	var rs []reading
	ia, ib := 0, 0
	ca, cb := false, false
	for ia < len(a) || ib < len(b) {
		if ib >= len(b) || (ia < len(a) && a[ia].At.Before(b[ib].At)) {
			ca = a[ia].Connected
			rs = append(rs, reading{a[ia].At, ca, cb})
			ia++
		} else {
			cb = b[ib].Connected
			rs = append(rs, reading{b[ib].At, ca, cb})
			ib++
		}
	}
	apart := false
	for _, r := range rs {
		if r.at.Before(from) {
			continue
		}
		if !r.a || !r.b {
			apart = true
		} else if apart {
			if r.at.Before(until) {
				return r.at
			}
			break
		}
	}
	return until
}

// Snapshot is a server's database read at one moment.
type Snapshot struct {
	Server string // server identifier
	At     time.Time
	Leases []Lease
	Why    string
}

// Separation is a time when the two servers could not talk (peer link cut,
// or one of them down), with both databases as they were when it began;
// it ends when they talk again (Reunited).
type Separation struct {
	From, To time.Time // To: both back in NORMAL
	Start    map[string]Snapshot
	Why      string
}

// Checker collects evidence and the violations found in it.
type Checker struct {
	MCLT    time.Duration
	Slack   time.Duration
	Primary string // server identifier of the primary
	// Sampling is how late a sampled state may be seen (the states are
	// polled): a separation's end is known only that precisely.
	Sampling time.Duration

	Violations []string
	Checked    map[string]int // what was checked, by invariant
}

// NewChecker returns a checker for a pair with the given MCLT.
func NewChecker(mclt time.Duration, primary string) *Checker {
	return &Checker{MCLT: mclt, Slack: time.Second, Sampling: 500 * time.Millisecond, Primary: primary, Checked: map[string]int{}}
}

func (c *Checker) violate(format string, args ...any) {
	c.Violations = append(c.Violations, fmt.Sprintf(format, args...))
}

// NoAddressTwice is invariant 1 from the clients' side: no address held by
// two clients at overlapping times.
func (c *Checker) NoAddressTwice(holds []Hold) {
	byIP := map[string][]Hold{}
	for _, h := range holds {
		byIP[h.IP] = append(byIP[h.IP], h)
		c.Checked["1 holds"]++
	}
	for _, hs := range byIP {
		sort.Slice(hs, func(i, j int) bool { return hs[i].At.Before(hs[j].At) })
		for i, a := range hs {
			for _, b := range hs[i+1:] {
				if a.Client != b.Client && b.At.Add(c.Slack).Before(a.End) && a.At.Add(c.Slack).Before(b.End) {
					c.violate("invariant 1: %s is held by two clients at once:\n    %v\n    %v", a.IP, a, b)
				}
			}
		}
	}
}

// NoAddressTwiceInDBs is invariant 1 from the servers' side: an address
// active and unexpired in both databases is held by one client.
func (c *Checker) NoAddressTwiceInDBs(now time.Time, snaps ...Snapshot) {
	type hold struct {
		hw   string
		snap string
		l    Lease
	}
	seen := map[string]hold{}
	for _, s := range snaps {
		for _, l := range s.Leases {
			if l.State != "active" || l.Ends <= now.Unix() {
				continue
			}
			c.Checked["1 db rows"]++
			hw := strings.ToLower(l.HWAddr)
			if h, ok := seen[l.Address]; ok && h.hw != hw {
				c.violate("invariant 1: %s is active for two clients:\n    %s: %v\n    %s: %v", l.Address, h.snap, h.l, s.Server, l)
			}
			seen[l.Address] = hold{hw, s.Server, l}
		}
	}
}

// Durable is invariant 2: every lease the killed server ACKed, still
// running and not given up by its client, is in the database it left.
func (c *Checker) Durable(snap Snapshot, holds []Hold) {
	rows := map[string]Lease{}
	for _, l := range snap.Leases {
		rows[l.Address] = l
	}
	for _, h := range holds {
		if h.Server != snap.Server || h.At.After(snap.At) || !h.End.After(snap.At.Add(c.Slack)) {
			continue
		}
		c.Checked["2 acked leases after kill"]++
		l, ok := rows[h.IP]
		slack := c.Slack
		if h.Real {
			slack += time.Second // hook scripts stamp whole seconds, after the ACK
		}
		switch {
		case !ok:
			c.violate("invariant 2: after %s, the database has no row for the ACKed lease: %v", snap.Why, h)
		case l.State != "active" || !strings.EqualFold(l.HWAddr, h.Client) || time.Unix(l.Ends, 0).Add(slack).Before(h.End):
			c.violate("invariant 2: after %s, the database does not hold the ACKed lease: %v; row %v", snap.Why, h, l)
		}
	}
}

// WithinMCLT is invariant 3 on a database snapshot: a lease whose change
// the peer has not acknowledged runs at most MCLT past the later of its
// grant and the expiry the peer did acknowledge, unless it was granted in
// PARTNER-DOWN.
func (c *Checker) WithinMCLT(snap Snapshot, tl Timeline) {
	if tl.StateAt(snap.At) == "partner-down" {
		return
	}
	pdLeft := tl.LastLeft("partner-down", snap.At)
	for _, l := range snap.Leases {
		if l.State != "active" || l.Pending == 0 {
			continue
		}
		cltt := time.Unix(l.Cltt, 0)
		if !pdLeft.IsZero() && !cltt.After(pdLeft.Add(c.Slack)) {
			continue // granted in PARTNER-DOWN
		}
		c.Checked["3 unacknowledged leases"]++
		bound := max(l.Cltt, l.PeerExpiry) + int64(c.MCLT/time.Second) + int64(c.Slack/time.Second)
		if l.Ends > bound {
			c.violate("invariant 3: on %s (%s), %v runs %ds past MCLT beyond what the peer acknowledged",
				snap.Server, snap.Why, l, l.Ends-bound)
		}
	}
}

// FirstLease is invariant 3 from the clients' side: for an address no
// client has had before, the peer can have acknowledged no expiry, so its
// first lease is at most MCLT, unless granted in PARTNER-DOWN. (An address
// used before may run to MCLT past the expiry the peer acknowledged for it,
// whoever the client: the peer waits that long before reusing it anyway.)
// An address a client asked for without an answer (recs of kind
// "unanswered") counts as used from then: the server may have bound it
// and its ACK been lost on the way, as behind a cut.
func (c *Checker) FirstLease(first, recs []SimRecord, holds []Hold, tls map[string]Timeline) {
	used := map[string]time.Time{} // address → first time a client was told of it
	note := func(ip string, t time.Time) {
		if u, ok := used[ip]; !ok || t.Before(u) {
			used[ip] = t
		}
	}
	for _, h := range holds {
		note(h.IP, h.At)
	}
	for _, a := range first {
		note(a.IP, a.At)
	}
	for _, r := range recs {
		if r.Kind == "unanswered" {
			note(r.IP, r.Req)
		}
	}
	for _, a := range first {
		if used[a.IP].Before(a.At) {
			continue // someone had this address before
		}
		if tls[a.Server].In("partner-down", a.At.Add(-c.Slack), a.At, 200*time.Millisecond) {
			continue
		}
		c.Checked["3 first leases"]++
		if a.Lease > c.MCLT+c.Slack {
			c.violate("invariant 3: the first lease of %s (new client %s, from %s at %s) is %v: more than MCLT (%v) outside PARTNER-DOWN",
				a.IP, a.Client, a.Server, a.At.Format("15:04:05.000"), a.Lease, c.MCLT)
		}
	}
}

// Separated is invariants 4 and 5: while the servers could not talk, each
// gave new clients only the addresses it owned when they parted, and the
// peer's only in PARTNER-DOWN, MCLT after entering it.
func (c *Checker) Separated(sep Separation, holds []Hold, tls map[string]Timeline) {
	// What each client held last, by the time of each hold: giving a
	// client back the address it held is not giving a new client an
	// address, whatever the databases said when the servers parted (an
	// update in flight at a kill may reach the survivor just after).
	held := map[string]Hold{}
	sorted := append([]Hold(nil), holds...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].At.Before(sorted[j].At) })
	for _, h := range sorted {
		prev, had := held[h.Client]
		held[h.Client] = h
		if h.At.Before(sep.From) || h.At.After(sep.To.Add(-c.Sampling)) {
			continue // the servers may be talking again
		}
		if had && prev.IP == h.IP && !prev.End.Add(c.MCLT).Before(h.At) {
			continue // the client's own address, held until just now
		}
		snap, ok := sep.Start[h.Server]
		if !ok {
			continue
		}
		var row Lease
		for _, l := range snap.Leases {
			if l.Address == h.IP {
				row = l
				break
			}
		}
		if strings.EqualFold(row.HWAddr, h.Client) {
			continue // the client's own binding
		}
		c.Checked["4 new leases while separated"]++
		owned := "free"
		if h.Server != c.Primary {
			owned = "backup"
		}
		if row.State == owned || (row.State == "" && owned == "free") {
			continue // never used: FREE, the primary's
		}
		tl := tls[h.Server]
		pd := tl.Entered("partner-down", h.At)
		c.Checked["5 peer's addresses taken"]++
		if pd.IsZero() {
			c.violate("invariant 4: during %s, %s gave %s, which it did not own (%q when they parted), outside PARTNER-DOWN: %v",
				sep.Why, h.Server, h.IP, row.State, h)
		} else if h.At.Before(pd.Add(c.MCLT).Add(-c.Slack)) {
			c.violate("invariant 5: during %s, %s gave the peer's %s %v after entering PARTNER-DOWN at %s (MCLT %v): %v",
				sep.Why, h.Server, h.IP, h.At.Sub(pd).Round(time.Millisecond), pd.Format("15:04:05.000"), c.MCLT, h)
		}
	}
}
