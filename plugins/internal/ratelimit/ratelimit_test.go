package ratelimit

import (
	"testing"
	"time"
)

func TestLimiterFoldsEventsWithinAPeriod(t *testing.T) {
	var l Limiter
	t0 := time.Unix(1000, 0)
	var runs []int
	for _, at := range []time.Duration{0, time.Second, 5 * time.Second, 10 * time.Second, 11 * time.Second, 25 * time.Second} {
		l.Do(t0.Add(at), func(n int) { runs = append(runs, n) })
	}
	// Runs at 0 (1 event), at 10s (3 events: 1s, 5s, 10s), at 25s (2).
	if len(runs) != 3 || runs[0] != 1 || runs[1] != 3 || runs[2] != 2 {
		t.Fatalf("runs = %v, want [1 3 2]", runs)
	}
}
