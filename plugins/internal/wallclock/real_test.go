//go:build !fakeclock

package wallclock

import (
	"testing"
	"time"
)

func TestNowIsTheRealClock(t *testing.T) {
	before := time.Now()
	got := Now()
	if got.Before(before) || got.Sub(before) > time.Second {
		t.Fatalf("Now() = %v, want the real clock (%v)", got, before)
	}
}
