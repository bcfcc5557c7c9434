package leasesync

import (
	"fmt"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wallclock"
)

// Clock is the session's time source; tests pass a fake one.
type Clock interface {
	Now() time.Time
	// AfterFunc runs f after d; Stop cancels it.
	AfterFunc(d time.Duration, f func()) interface{ Stop() bool }
}

type realClock struct{}

func (realClock) Now() time.Time { return wallclock.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) interface{ Stop() bool } {
	return time.AfterFunc(d, f)
}

// timers are the session's deadlines: the state machine's timer, the
// pool balance, the peer's silence (max-response-delay), our CONTACT,
// the reconnection, and the one wake-up armed for the earliest of them.
// Owned by the run goroutine.
type timers struct {
	// lastSend and lastRecv are when the link last carried a message
	// each way: CONTACT and the receive timer count from them.
	lastSend    time.Time
	lastRecv    time.Time
	wake        interface{ Stop() bool }
	wakeAt      time.Time
	fsmTimer    int64
	dialPending bool
	nextDial    time.Time
	// balanceAt is when the pool balance runs next (zero: not armed);
	// asked is set when the last run sent POOLREQ.
	balanceAt time.Time
	asked     bool
}

// contactInterval is a third of the peer's receive timer, as ISC.
func (s *Session) contactInterval() time.Duration {
	rt := s.link.params.receiveTimer
	if rt < 3 {
		rt = 3
	}
	return time.Duration(rt/3) * time.Second
}

// checkTimers fires what is due: the state machine's timers and the
// receive timer.
func (s *Session) checkTimers(now time.Time) {
	if s.fsmTimer != 0 && now.Unix() >= s.fsmTimer {
		s.m.Tick(now.Unix())
	}
	if !s.balanceAt.IsZero() && !now.Before(s.balanceAt) {
		// As ISC: again after min-balance if this run found work, else
		// after max-balance unless bindings change first (drainChanged
		// brings it forward). Counting the free addresses walks the
		// bindings, so never more often than min-balance.
		if s.balance(now, balanceTimer) > 0 || s.asked {
			s.balanceAt = now.Add(s.cfg.MinBalance)
		} else {
			s.balanceAt = now.Add(s.cfg.MaxBalance)
		}
		s.asked = false
	}
	if s.link != nil && now.Sub(s.lastRecv) >= s.cfg.MaxResponseDelay {
		s.linkDown(fmt.Sprintf("nothing heard for %v (max-response-delay)", s.cfg.MaxResponseDelay), now)
	}
}

func (s *Session) requestDial() {
	s.dialPending = true
	select {
	case s.wantDial <- struct{}{}:
	default:
	}
}

// arm sets the wake-up for the earliest deadline.
func (s *Session) arm(now time.Time) {
	var at time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if s.fsmTimer != 0 {
		consider(time.Unix(s.fsmTimer, 0))
	}
	if s.m.State() == fsm.Normal {
		consider(s.balanceAt)
	}
	if s.link != nil {
		consider(s.lastRecv.Add(s.cfg.MaxResponseDelay))
		consider(s.lastSend.Add(s.contactInterval()))
		consider(s.out.retryAt)
	} else if !s.dialPending {
		consider(s.nextDial)
	}
	if at.IsZero() || at.Equal(s.wakeAt) && s.wake != nil {
		return
	}
	if s.wake != nil {
		s.wake.Stop()
	}
	s.wakeAt = at
	d := at.Sub(now)
	if d < 0 {
		d = 0
	}
	s.wake = s.clk.AfterFunc(d, func() {
		select {
		case s.events <- event{kind: evTick}:
		case <-s.done:
		}
	})
}
