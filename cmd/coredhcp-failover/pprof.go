package main

import (
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
)

// pprofEnv names a unix socket (an absolute path) or a TCP address on which
// the server serves net/http/pprof: CPU profiles, goroutine and heap
// profiles of a running server, for the benchmark (bench/) and for finding
// what limits it. It is deliberately not a flag: it is a developer's tool.
const pprofEnv = "COREDHCP_FAILOVER_PPROF"

// startPprof serves pprof if pprofEnv is set; it returns a function that
// stops it.
func startPprof(log *logrus.Entry) func() {
	addr := os.Getenv(pprofEnv)
	if addr == "" {
		return func() {}
	}
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
		os.Remove(addr)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		log.Warnf("%s=%s: %v (no profiling)", pprofEnv, addr, err)
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	log.Infof("pprof on %s %s", network, addr)
	return func() {
		srv.Close()
		if network == "unix" {
			os.Remove(addr)
		}
	}
}
