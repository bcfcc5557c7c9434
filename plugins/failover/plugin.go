// Package failover is a CoreDHCP plugin that allocates DHCPv4 addresses
// from pools, keeps every binding durably in sqlite, and (with the leasesync
// plugin) shares its pools with a failover peer. See README.md for the
// syntax, the arguments and their defaults, and what each failover state
// means for clients.
//
// A failover line without a relationship name is a single server: a
// durable drop-in replacement for CoreDHCP's range plugin.
package failover

import (
	"fmt"
	"net"
	"time"

	"github.com/coredhcp/coredhcp/handler"
	"github.com/coredhcp/coredhcp/logger"
	"github.com/coredhcp/coredhcp/plugins"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/lifecycle"
)

var log = logger.GetLogger("plugins/failover")

// Plugin is the failover plugin, registered by the generated main.
var Plugin = plugins.Plugin{
	Name:   "failover",
	Setup4: setup4,
}

// sweepInterval is how often expired leases and offers are reclaimed.
const sweepInterval = time.Second

func setup4(args ...string) (handler.Handler4, error) {
	cfg, err := parse(args, net.InterfaceAddrs)
	if err != nil {
		return nil, fmt.Errorf("plugins/failover: %w", err)
	}
	store, err := lease.OpenSQLite(cfg.DB)
	if err != nil {
		return nil, fmt.Errorf("plugins/failover: %w", err)
	}
	start := time.Now()
	s, err := NewServer(cfg, store, time.Now)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("plugins/failover: %w", err)
	}
	go s.Run(sweepInterval)
	lifecycle.OnShutdown(func() error { return s.Close(true) })
	var size uint64
	for _, p := range cfg.Pools {
		size += p.Size()
	}
	log.Infof("serving %d addresses in %d pool(s) of %s from %s: %d bindings loaded in %.3fs",
		size, len(cfg.Pools), cfg.Subnet, cfg.DB, s.table.Len(), time.Since(start).Seconds())
	return s.Handler4, nil
}
