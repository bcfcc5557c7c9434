// Package lifecycle lets plugins register work to do when the server stops.
//
// CoreDHCP has no shutdown hook for plugins (its range plugin never closes its
// database). The coredhcp-failover main program calls Shutdown after the
// listeners are closed on SIGTERM or SIGINT, so that plugins can flush their
// stores, tell their peers, and close files. Plugins register in their setup
// function, in the manner of Caddy's OnShutdown, which CoreDNS plugins use.
package lifecycle

import (
	"errors"
	"sync"
)

var (
	mu      sync.Mutex
	closers []func() error
)

// OnShutdown registers fn to run when the server stops. Functions run in the
// reverse order of registration, so a plugin set up later (which may depend
// on an earlier one) stops first.
func OnShutdown(fn func() error) {
	mu.Lock()
	defer mu.Unlock()
	closers = append(closers, fn)
}

// Shutdown runs every registered function once, last registered first, and
// returns their errors joined. Functions registered after Shutdown started are
// run by the next call.
func Shutdown() error {
	mu.Lock()
	fns := closers
	closers = nil
	mu.Unlock()
	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		if err := fns[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
