// Package metrics is the process's Prometheus registry and its one HTTP
// listener, shared by the failover and leasesync plugins. Each plugin
// registers its own collectors, labelled with the relationship name; the
// first plugin line with metrics=ADDR:PORT starts the listener, and a
// second line may name the same address (or none) but not another one.
//
// Like CoreDNS's metrics plugin this is process-wide state: a process has
// one /metrics endpoint. Tests pass their own registry to the plugins
// instead of using this one.
package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace and Subsystem prefix every metric: coredhcp_failover_*.
const (
	Namespace = "coredhcp"
	Subsystem = "failover"
)

// Name returns the full name of metric name.
func Name(name string) string { return prometheus.BuildFQName(Namespace, Subsystem, name) }

var (
	regOnce sync.Once
	reg     *prometheus.Registry

	srvMu   sync.Mutex
	srvAddr netip.AddrPort
	srv     *http.Server
)

// Registry is the process's registry, with the Go runtime and process
// collectors.
func Registry() *prometheus.Registry {
	regOnce.Do(func() {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	})
	return reg
}

// ParseAddr reads a metrics=ADDR:PORT value.
func ParseAddr(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, errors.New("want ADDRESS:PORT for the metrics listener, e.g. 127.0.0.1:9647 or [::1]:9647")
	}
	return ap, nil
}

// Serve starts the process's metrics listener on addr, serving Registry
// at /metrics. A second call with the same address shares the listener; a
// different address is an error (one listener per process).
func Serve(addr netip.AddrPort) error {
	srvMu.Lock()
	defer srvMu.Unlock()
	if srv != nil {
		if addr == srvAddr {
			return nil
		}
		return fmt.Errorf("metrics already served on %s: one metrics listener per process", srvAddr)
	}
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(Registry(), promhttp.HandlerOpts{}))
	srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srvAddr = addr
	go srv.Serve(ln)
	return nil
}

// Close stops the listener, if one runs.
func Close() error {
	srvMu.Lock()
	defer srvMu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	srv = nil
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Bool is 1 for true, for gauges.
func Bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
