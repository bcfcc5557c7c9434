// Package leasesync is a CoreDHCP plugin that keeps a DHCPv4 failover
// relationship with a peer server (draft-ietf-dhc-failover-12, as ISC
// dhcpd 4.4 speaks it on TCP 647): the connection, the state machine,
// binding updates in both directions, resynchronisation and pool balancing.
// The failover plugin, listed after it with the same name=, allocates
// addresses within what the relationship allows. See README.md.
package leasesync

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coredhcp/coredhcp/handler"
	"github.com/coredhcp/coredhcp/logger"
	"github.com/coredhcp/coredhcp/plugins"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/metrics"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/lifecycle"
)

var log = logger.GetLogger("plugins/leasesync")

// Plugin is the leasesync plugin, registered by the generated main.
var Plugin = plugins.Plugin{
	Name:   "leasesync",
	Setup4: setup4,
}

// attachWait is how long after setup a relationship may wait for its
// failover line before the omission is logged.
const attachWait = 10 * time.Second

func setup4(args ...string) (handler.Handler4, error) {
	cfg, err := parse(args)
	if err != nil {
		return nil, fmt.Errorf("plugins/leasesync: %w", err)
	}
	s := newRelationship(cfg, nil, metrics.Registry())
	if err := relation.Register(s.rel); err != nil {
		return nil, fmt.Errorf("plugins/leasesync: argument \"name=%s\": %w", cfg.Name, err)
	}
	if cfg.Metrics.IsValid() {
		if err := metrics.Serve(cfg.Metrics); err != nil {
			relation.Unregister(s.rel)
			return nil, fmt.Errorf("plugins/leasesync: argument \"metrics=%s\": %w", cfg.Metrics, err)
		}
		lifecycle.OnShutdown(metrics.Close)
	}
	lifecycle.OnShutdown(s.Close)
	go func() {
		select {
		case <-s.rel.Attached():
		case <-time.After(attachWait):
			log.Errorf("relationship %q: no failover line with name=%s; the session does not start", cfg.Name, cfg.Name)
		}
	}()
	return passThrough, nil
}

// newRelationship creates cfg's relationship and its session, which
// starts when the failover line attaches its bindings. Its metrics, and
// the failover line's, go to reg.
func newRelationship(cfg Config, clk Clock, reg *prometheus.Registry) *Session {
	v := &relation.View{
		Primary:   cfg.Role == Primary,
		MyState:   fsm.Startup,
		MCLT:      int64(cfg.MCLT.Seconds()),
		HBA:       cfg.HBA,
		LBMaxSecs: uint16(cfg.LBMaxSecs),
	}
	rel := relation.New(cfg.Name, v)
	rel.Metrics = reg
	s := NewSession(cfg, rel, clk)
	s.reg = reg
	rel.SetSession(s.Start, s.Close)
	return s
}

// passThrough: the session works beside the packet path, not in it.
func passThrough(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) { return resp, false }

// SessionFromLine parses a leasesync plugin line and prepares its
// relationship and session without registering them (tests run both
// servers of a pair in one process). The session starts when a failover server attaches to
// Relationship(); Close stops it. clk nil means the real clock. Its
// metrics (and its failover server's) go to a registry of its own,
// Registry(); metrics= is ignored.
func SessionFromLine(args []string, clk Clock) (*Session, error) {
	cfg, err := parse(args)
	if err != nil {
		return nil, err
	}
	return newRelationship(cfg, clk, prometheus.NewRegistry()), nil
}

// Registry is the registry that holds the session's metrics.
func (s *Session) Registry() *prometheus.Registry { return s.reg }

// Relationship returns the session's relationship.
func (s *Session) Relationship() *relation.Relationship { return s.rel }
