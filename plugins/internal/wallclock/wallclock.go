// Package wallclock is the wall clock of the server's plugins: the time
// they stamp on leases, state changes and failover messages. In a normal
// build it is time.Now. Built with the tag fakeclock (only the integration
// tests do), it is time.Now plus an offset that a test steps while the
// server runs, to prove the server stays safe across clock steps.
//
// Deadlines on sockets and rate limits of log lines keep using time.Now:
// they measure intervals, not the time of day.
package wallclock

import "time"

// Now returns the current wall-clock time.
func Now() time.Time { return time.Now().Add(offset()) }
