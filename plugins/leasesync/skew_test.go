package leasesync

import (
	"math"
	"math/rand"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// skewPeer models the peer's clock: off seconds ahead of ours, stamps
// truncated to the second as on the wire.
type skewPeer struct{ off float64 }

var skewBase = time.Unix(1_700_000_000, 250_000_000)

func at(s float64) time.Time { return skewBase.Add(time.Duration(s * float64(time.Second))) }

func (p skewPeer) stamp(ours float64) uint32 {
	return uint32(math.Floor(unixSeconds(at(ours)) + p.off))
}

// answer feeds e the answer to a request sent at t1 (our clock, seconds
// after skewBase): fwd on the way there, proc at the peer before it
// stamps the answer, back on the way here.
func (p skewPeer) answer(e *skewEstimator, t1, fwd, proc, back float64) {
	e.roundTrip(p.stamp(t1+fwd+proc), at(t1), at(t1+fwd+proc+back))
}

// message feeds e a message the peer stamped at sent (our clock) that
// arrived delay later.
func (p skewPeer) message(e *skewEstimator, sent, delay float64) {
	e.oneWay(p.stamp(sent), at(sent+delay))
}

// TestSkewBiasedSamplesDoNotMoveTheEstimate: the peer is 30 s ahead. One
// answer comes back at once; the others waited 3 s at the peer (fsync)
// or 2.5 s on the way. Taken from a single message as before, each of
// those would bias the skew by seconds (and the 2 s bias that triggers a
// correction is reached); the estimate stays at 30.
func TestSkewBiasedSamplesDoNotMoveTheEstimate(t *testing.T) {
	p := skewPeer{off: 30}
	var e skewEstimator
	p.answer(&e, 0, 0.005, 0.001, 0.005)
	for i := 1; i <= 10; i++ {
		t0 := float64(i * 10)
		p.answer(&e, t0, 0.005, 3, 0.005) // the peer's fsync before its BNDACK
		p.answer(&e, t0+1, 2.5, 0, 0.005) // our update queued on the way
		p.message(&e, t0+2, 2.5)          // a CONTACT queued on the way
	}
	if got := e.seconds(); got != 30 {
		est, _ := e.estimate()
		t.Fatalf("Skew %d (%.3f), want 30", got, est)
	}
	// The expiries: never corrected by more than the truth; the last
	// message was 2.5 s late, and its own bound (a step cannot be told
	// from a delay at once) may lengthen them by that much, no more.
	if c := e.correction(); c.order != 30 || c.expiry > 30 || c.expiry < 26 {
		t.Fatalf("Correction %+v, want order 30, expiry from 26 to 30", c)
	}
	p.message(&e, 200, 0.005)
	if c := e.correction(); c.expiry != 29 && c.expiry != 30 {
		t.Fatalf("After a prompt message: expiry correction %d, want 29 or 30", c.expiry)
	}
}

// TestSkewSmallestRoundTripWins: of three answers in the window, the one
// with the smallest round trip sets the estimate, whatever their order.
// The slow ones are asymmetric (all the delay one way), so their middles
// are off by a second and more.
func TestSkewSmallestRoundTripWins(t *testing.T) {
	const off = -12.4
	p := skewPeer{off: off}
	samples := []func(e *skewEstimator, t0 float64){
		func(e *skewEstimator, t0 float64) { p.answer(e, t0, 4, 0, 0.01) },    // middle off by +2
		func(e *skewEstimator, t0 float64) { p.answer(e, t0, 0.05, 0, 0.05) }, // the best
		func(e *skewEstimator, t0 float64) { p.answer(e, t0, 0.01, 0, 2.5) },  // middle off by -1.25
	}
	for _, order := range [][]int{{0, 1, 2}, {1, 0, 2}, {2, 0, 1}, {0, 2, 1}} {
		var e skewEstimator
		for i, k := range order {
			samples[k](&e, float64(i*10))
		}
		est, ok := e.estimate()
		if !ok || math.Abs(est-off) > 0.55 {
			t.Errorf("Order %v: estimate %.3f, want %.1f within the best sample's half-width", order, est, off)
		}
		if got := e.seconds(); math.Abs(float64(got)-off) > 1 {
			t.Errorf("Order %v: skew %d, want %.1f rounded", order, got, off)
		}
	}
	// A one-way message only bounds the offset from below: without an
	// answer the estimate is the best bound, plus the stamp's half second.
	var e skewEstimator
	p.message(&e, 0, 3)
	p.message(&e, 10, 0.01)
	p.message(&e, 20, 1)
	if est, _ := e.estimate(); math.Abs(est-off) > 0.55 {
		t.Errorf("From one-way messages: estimate %.3f, want %.1f", est, off)
	}
}

// TestSkewCorrectionNeverShortensAPeerLease: whatever the delays, an
// expiry the peer sends, brought into our clock, is never earlier than the
// moment it stands for. The delays here are the worst for NTP's middle:
// the request is slow, the answer fast, so the middle overestimates the
// peer's lead by half the delay; corrected by it, the peer's lease would
// end early in our clock (the estimate itself is checked to be wrong, so
// that the test shows the guard at work).
func TestSkewCorrectionNeverShortensAPeerLease(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	guarded := 0
	for _, off := range []float64{-90, -30, -3, -2, -1, 0, 1, 2, 3, 7, 30, 59} {
		p := skewPeer{off: off}
		var e skewEstimator
		for i := 0; i < 12; i++ {
			t0 := float64(i * 20)
			p.answer(&e, t0, 4+rng.Float64()*4, rng.Float64(), rng.Float64()*0.5)
			p.message(&e, t0+5, 0.5+rng.Float64()*3)
		}
		c := e.correction()
		const end = 1_700_003_600 // an expiry in the peer's clock
		truth := end - int64(off) // the same moment in ours
		if got := end - c.expiry; got < truth {
			t.Errorf("Peer %+.0fs: expiry corrected to %d, %ds before the moment it stands for (%+v)", off, got, truth-got, c)
		}
		if c.order > int64(off) {
			guarded++ // the estimate alone would have shortened it
		}
	}
	if guarded == 0 {
		t.Fatal("No case where the estimate overshoots: the test does not exercise the guard")
	}
}

// TestSkewWindowFollowsAClockStep: the peer's clock steps back by 100 s.
// Its next answer proves the old lower bound wrong, and the window starts
// again; without an answer, three messages in a row below the bound do it,
// while a single delayed message does not.
func TestSkewWindowFollowsAClockStep(t *testing.T) {
	var e skewEstimator
	skewPeer{off: 20}.answer(&e, 0, 0.01, 0, 0.01)
	skewPeer{off: 20}.message(&e, 5, 0.01)
	after := skewPeer{off: -80}
	after.answer(&e, 10, 0.01, 0, 0.01)
	if got := e.seconds(); got != -80 {
		t.Fatalf("After an answer from the stepped clock: skew %d, want -80", got)
	}
	if c := e.correction(); c.expiry > -80 {
		t.Fatalf("After the step: expiry correction %d, want at most -80 (never shortening)", c.expiry)
	}

	e = skewEstimator{}
	skewPeer{off: 20}.message(&e, 0, 0.01)
	skewPeer{off: 20}.message(&e, 5, 4) // one delayed CONTACT
	if got := e.seconds(); got != 20 {
		t.Fatalf("After one delayed message: skew %d, want 20", got)
	}
	// A single message from the stepped clock already lowers the expiry
	// correction, before the window starts again.
	after.message(&e, 9, 0.01)
	if c := e.correction(); c.expiry > -80 {
		t.Fatalf("After one message from the stepped clock: expiry correction %d, want at most -80", c.expiry)
	}
	for i := 0; i < skewFallRun; i++ {
		after.message(&e, float64(10+i), 0.01)
	}
	if c := e.correction(); c.expiry > -80 {
		t.Fatalf("After %d messages from the stepped clock: expiry correction %d, want at most -80", skewFallRun, c.expiry)
	}
	// Samples older than the window do not count.
	e = skewEstimator{}
	skewPeer{off: 20}.message(&e, 0, 0.01)
	skewPeer{off: 10}.message(&e, skewWindow.Seconds()+1, 0.01)
	if got := e.seconds(); got != 10 {
		t.Fatalf("With the old sample out of the window: skew %d, want 10", got)
	}
}

// TestSkewIsMeasuredWhenFramesArriveNotWhenHandled settles issue 15's
// suspicion "clock skew": the peer's clock is ours, but the session
// handles its CONTACT and BNDUPD 3 s after they arrived (it was busy:
// a commit, a queue of events). Measured when handled, as before, the
// skew came out at -3 s and every time in the update was moved 3 s late.
// Stamped by the connection reader, the skew is 0 and the update is
// stored as sent.
func TestSkewIsMeasuredWhenFramesArriveNotWhenHandled(t *testing.T) {
	clk := &fakeClock{now: time.Unix(time.Now().Unix(), 0)}
	tg, p := normalTargetWith(t, targetOpts{clk: clk})
	t0 := clk.Now()

	// Hold the session goroutine while both frames arrive.
	blocked, release := make(chan struct{}), make(chan struct{})
	var l *link
	tg.s.post(event{kind: evInspect, fn: func() { l = tg.s.link; close(blocked); <-release }})
	<-blocked
	before := l.stamped.Load()
	p.send(&wire.Contact{Header: wire.Header{Time: uint32(t0.Unix())}})
	u := &wire.BindingUpdate{Header: wire.Header{Time: uint32(t0.Unix())}}
	u.Addr, u.Status, u.HWAddr = netip.MustParseAddr("192.0.2.161"), wire.StatusActive, []byte{1, 2, 0, 0, 0, 0, 0xd}
	u.StartTimeOfState, u.CLTT = uint32(t0.Unix()), uint32(t0.Unix())
	u.LeaseExpiry, u.PotentialExpiry = uint32(t0.Unix()+600), uint32(t0.Unix()+900)
	p.send(u)
	deadline := time.Now().Add(10 * time.Second)
	for l.stamped.Load() < before+2 { // the reader has stamped both
		if time.Now().After(deadline) {
			t.Fatal("The frames did not reach the session's queue")
		}
		runtime.Gosched()
	}
	clk.Advance(3 * time.Second)
	close(release)

	if a := expect[*wire.BindingAck](p); a.RejectReason != 0 {
		t.Fatalf("BNDACK %s %q", a.RejectReason, a.Message)
	}
	b, ok := tg.srv.Get(mustIP("192.0.2.161"))
	if !ok || b.End != t0.Unix()+600 || b.PeerExpiry != t0.Unix()+900 || b.Start != t0.Unix() {
		t.Errorf("Stored %s (start %d, end %d, peer expiry %d), want the times as sent: %d, %d, %d",
			b, b.Start, b.End, b.PeerExpiry, t0.Unix(), t0.Unix()+600, t0.Unix()+900)
	}
	if st, err := tg.s.Status(); err != nil || st.ClockSkew != 0 {
		t.Errorf("Clock skew %d (%v), want 0: the peer's clock is ours", st.ClockSkew, err)
	}
}
