//go:build fakeclock

package wallclock

import (
	"testing"
	"time"
)

func TestOffsetMovesNow(t *testing.T) {
	off.Store(int64(time.Hour))
	defer off.Store(0)
	if d := Now().Sub(time.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("Now is %v off the real clock, want about 1h", d)
	}
}
