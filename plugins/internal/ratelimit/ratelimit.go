// Package ratelimit keeps repeated log lines (a refused connection, an
// exhausted pool) to one per period, saying how many were folded in.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter runs a function at most once per Period (10 s when zero). The
// zero value is ready to use and safe for concurrent use.
type Limiter struct {
	Period time.Duration
	mu     sync.Mutex
	last   time.Time
	count  int
}

// Do counts one event at now and runs fn, with the number of events since
// the last run, if a period has passed since then.
func (l *Limiter) Do(now time.Time, fn func(n int)) {
	period := l.Period
	if period == 0 {
		period = 10 * time.Second
	}
	l.mu.Lock()
	l.count++
	if !l.last.IsZero() && now.Sub(l.last) < period {
		l.mu.Unlock()
		return
	}
	n := l.count
	l.last, l.count = now, 0
	l.mu.Unlock()
	fn(n)
}
