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
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coredhcp/coredhcp/handler"
	"github.com/coredhcp/coredhcp/logger"
	"github.com/coredhcp/coredhcp/plugins"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/metrics"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wallclock"
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
	var rel *relation.Relationship
	if cfg.Name != "" {
		var ok bool
		if rel, ok = relation.Lookup(cfg.Name); !ok {
			return nil, fmt.Errorf("plugins/failover: argument \"name=%s\": no leasesync line with name=%s comes before this failover line", cfg.Name, cfg.Name)
		}
	}
	store, err := lease.OpenSQLite(cfg.DB)
	if err != nil {
		return nil, fmt.Errorf("plugins/failover: %w", err)
	}
	start := time.Now()
	reg := metrics.Registry()
	if cfg.Metrics.IsValid() {
		if err := metrics.Serve(cfg.Metrics); err != nil {
			store.Close()
			return nil, fmt.Errorf("plugins/failover: argument \"metrics=%s\": %w", cfg.Metrics, err)
		}
		lifecycle.OnShutdown(metrics.Close)
	}
	s, err := startServer(cfg, store, wallclock.Now, rel, reg)
	if se := (*relation.SessionError)(nil); errors.As(err, &se) {
		return nil, se // the leasesync line's error, which names it
	}
	if err != nil {
		return nil, fmt.Errorf("plugins/failover: %w", err)
	}
	processChain.add(s)
	lifecycle.OnShutdown(s.Shutdown)
	var size uint64
	for _, p := range cfg.Pools {
		size += p.Size()
	}
	log.Infof("serving %d addresses in %d pool(s) of %s from %s: %d bindings loaded in %.3fs",
		size, len(cfg.Pools), cfg.Subnet, cfg.DB, s.table.Len(), time.Since(start).Seconds())
	return s.Handler4, nil
}

// startServer loads the server, attaches it to its relationship (which
// starts the session) and starts the sweeper. On error the store is closed.
func startServer(cfg Config, store lease.Store, now func() time.Time, rel *relation.Relationship, reg *prometheus.Registry) (*Server, error) {
	s, err := loadServerWith(cfg, store, now, rel, reg, nil)
	if err != nil {
		store.Close()
		return nil, err
	}
	if rel != nil {
		if err := rel.Attach(s); err != nil {
			s.Close()
			return nil, fmt.Errorf("relationship %q: %w", cfg.Name, err)
		}
	}
	go s.Run(sweepInterval)
	return s, nil
}

// StartFromLine parses a failover plugin line and starts a server over
// store, in the relationship rel (nil for a single server; its name must
// match the line's name=). It is setup4 without the registry and the
// sqlite file, for tests that run both servers of a pair in one process.
// Shutdown stops it. Its metrics go to the relationship's registry, or to a registry of
// its own for a single server (Registry); metrics= is ignored.
func StartFromLine(args []string, store lease.Store, now func() time.Time, rel *relation.Relationship) (*Server, error) {
	cfg, err := parse(args, net.InterfaceAddrs)
	if err != nil {
		return nil, err
	}
	if (rel == nil) != (cfg.Name == "") || rel != nil && rel.Name != cfg.Name {
		return nil, fmt.Errorf("the line's name=%q does not match the relationship given", cfg.Name)
	}
	reg := prometheus.NewRegistry()
	if rel != nil && rel.Metrics != nil {
		reg = rel.Metrics
	}
	return startServer(cfg, store, now, rel, reg)
}

// Registry is the registry that holds the server's metrics.
func (s *Server) Registry() *prometheus.Registry { return s.met.reg }

// NewDriven parses a failover plugin line and returns a server over store
// that writes through commit and is attached to rel, with no goroutine of
// its own: the caller runs Sweep, and commit decides when each write
// ends. It is for a driver that controls time and every write: the
// deterministic simulation of a pair in the leasesync tests. rel has no
// session to start (relation.New); the driver runs it.
func NewDriven(args []string, store lease.Store, now func() time.Time, rel *relation.Relationship, commit Committer) (*Server, error) {
	cfg, err := parse(args, net.InterfaceAddrs)
	if err != nil {
		return nil, err
	}
	s, err := loadServerWith(cfg, store, now, rel, prometheus.NewRegistry(), commit)
	if err != nil {
		return nil, err
	}
	if err := rel.Attach(s); err != nil {
		return nil, err
	}
	return s, nil
}
