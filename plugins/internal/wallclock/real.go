//go:build !fakeclock

package wallclock

import "time"

func offset() time.Duration { return 0 }
