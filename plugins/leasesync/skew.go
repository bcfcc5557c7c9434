package leasesync

import (
	"math"
	"time"
)

// Clock skew, NTP-style (draft-12 §5.1 asks the receiver to correct the
// peer's times for the difference of the clocks; it does not say how to
// measure it).
//
// Every message carries the time its sender stamped on it, in whole
// seconds. A message stamped T by the peer that arrives here at t4 (taken
// by the connection reader, not when the session gets to it) proves that
// the peer's clock minus ours is at least T - t4: it was stamped before it
// arrived. An answer to a request of ours sent at t1 also proves that it is
// below T + 1 - t1: it was stamped after the request left, and the stamp
// was truncated to the second. The true offset is in that interval, whose
// width is the round trip plus a second; its middle is NTP's estimate, and
// the sample with the smallest round trip is the best one (a BNDACK that
// waited for the peer's fsync, or a message that waited in a queue, widens
// its interval instead of moving the estimate).
//
// Two numbers come out:
//   - the estimate (status, metrics, logs, and the correction of the times
//     that order events: start of state, CLTT);
//   - the correction of the expiry times the peer sends (End and potential
//     expiry), which is never more than the highest lower bound: a wrong
//     estimate may lengthen what the peer's clients hold in our clock,
//     never shorten it (an early end frees an address that a client of the
//     peer still holds).
//
// A clock that steps makes old samples wrong. The latest message's own
// lower bound is valid whatever happened before it (a binding update is
// sampled before it is applied): when it falls more than a second (the
// stamps' resolution) below the window's, the expiries are corrected by it
// instead, at once. The window itself starts again from a sample that no
// longer fits it: an answer whose interval lies below the highest lower
// bound, or skewFallRun samples in a row whose lower bounds fall more than
// minCorrection below it (one delayed message is not a step, three are).

const (
	// skewWindow is how long a sample counts.
	skewWindow = 5 * time.Minute
	// maxSkewSamples bounds the window (CONTACT comes every few seconds,
	// a BNDACK per update).
	maxSkewSamples = 32
	// skewFallRun is how many samples in a row must fall below the
	// window's lower bound for the window to start again.
	skewFallRun = 3
)

// skewSample bounds the peer's clock minus ours, in seconds, as one
// message showed it.
type skewSample struct {
	at     time.Time // arrival, our clock
	lo, hi float64   // hi is +Inf for a message that answers nothing
}

func (s skewSample) roundTrip() bool { return !math.IsInf(s.hi, 1) }

// skewEstimator keeps the samples of one link. It is pure: the times are
// given to it.
type skewEstimator struct {
	samples []skewSample
	falls   int     // samples in a row below the window's lower bound
	lastLo  float64 // the latest sample's lower bound
}

// oneWay records a message the peer stamped peerTime that arrived at
// arrived. A zero stamp (a peer that does not fill it in) tells nothing.
func (e *skewEstimator) oneWay(peerTime uint32, arrived time.Time) {
	if peerTime == 0 {
		return
	}
	e.add(skewSample{at: arrived, lo: float64(peerTime) - unixSeconds(arrived), hi: math.Inf(1)})
}

// roundTrip records the peer's answer, stamped peerTime and arrived at
// arrived, to a request of ours sent at sent.
func (e *skewEstimator) roundTrip(peerTime uint32, sent, arrived time.Time) {
	if peerTime == 0 || arrived.Before(sent) {
		return
	}
	e.add(skewSample{at: arrived, lo: float64(peerTime) - unixSeconds(arrived), hi: float64(peerTime) + 1 - unixSeconds(sent)})
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (e *skewEstimator) add(s skewSample) {
	// The window slides with the arrivals.
	keep := e.samples[:0]
	for _, old := range e.samples {
		if s.at.Sub(old.at) < skewWindow {
			keep = append(keep, old)
		}
	}
	clear(e.samples[len(keep):])
	e.samples = keep
	if lo, ok := e.lowerBound(); ok {
		switch {
		case s.hi < lo:
			// The answer proves the offset below what the window
			// proved above it: a clock stepped.
			e.samples = e.samples[:0]
			e.falls = 0
		case s.lo < lo-minCorrection:
			e.falls++
			if e.falls >= skewFallRun {
				e.samples = e.samples[:0]
				e.falls = 0
			}
		default:
			e.falls = 0
		}
	}
	if len(e.samples) == maxSkewSamples {
		copy(e.samples, e.samples[1:])
		e.samples = e.samples[:maxSkewSamples-1]
	}
	e.samples = append(e.samples, s)
	e.lastLo = s.lo
}

// lowerBound is the highest lower bound in the window: the peer's clock
// minus ours is at least this. ok is false without samples.
func (e *skewEstimator) lowerBound() (lo float64, ok bool) {
	for i, s := range e.samples {
		if i == 0 || s.lo > lo {
			lo = s.lo
		}
	}
	return lo, len(e.samples) > 0
}

// estimate is the peer's clock minus ours, in seconds: the middle of the
// interval of the answer with the smallest round trip, kept within the
// bounds the other samples prove; without an answer in the window, the
// highest lower bound plus half a second (the stamp's truncation, with
// the smallest delay seen taken as none).
func (e *skewEstimator) estimate() (skew float64, ok bool) {
	lo, ok := e.lowerBound()
	if !ok {
		return 0, false
	}
	best := -1
	hi := math.Inf(1)
	for i, s := range e.samples {
		if !s.roundTrip() {
			continue
		}
		hi = min(hi, s.hi)
		if best < 0 || s.hi-s.lo < e.samples[best].hi-e.samples[best].lo {
			best = i
		}
	}
	if best < 0 {
		return lo + 0.5, true
	}
	b := e.samples[best]
	return min(max((b.lo+b.hi)/2, lo), hi), true
}

// seconds is the estimate in whole seconds (status, metrics).
func (e *skewEstimator) seconds() int64 {
	skew, _ := e.estimate()
	return int64(math.RoundToEven(skew))
}

// timeCorrection is what to subtract from the times in a peer's binding
// update to have them in our clock.
type timeCorrection struct {
	// order corrects the start of state and CLTT: the estimate.
	order int64
	// expiry corrects End and the potential expiry: never more than the
	// highest lower bound, so that no lease of the peer's ends earlier in
	// our clock than in fact.
	expiry int64
}

// correction is the timeCorrection the window supports. A difference
// below minCorrection is not corrected: the stamps have a resolution of a
// second. For the expiries that is safe: with a lower bound in [0, 2) the
// peer's clock is not behind ours, so an expiry left as sent is no earlier
// than the truth in our clock; with one in [-1, 0) it is less than a
// second early, within the resolution of the stamps.
func (e *skewEstimator) correction() timeCorrection {
	var c timeCorrection
	if skew, ok := e.estimate(); ok {
		c.order = deadBand(int64(math.RoundToEven(skew)))
	}
	if lo, ok := e.lowerBound(); ok {
		if e.lastLo < lo-1 {
			lo = e.lastLo // a delayed message, or a step: the safe bound
		}
		c.expiry = deadBand(int64(math.Floor(lo)))
	}
	return c
}

func deadBand(s int64) int64 {
	if s >= minCorrection || s <= -minCorrection {
		return s
	}
	return 0
}
