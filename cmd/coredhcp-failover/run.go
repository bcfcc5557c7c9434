package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/coredhcp/coredhcp/config"
	"github.com/coredhcp/coredhcp/plugins"
	"github.com/coredhcp/coredhcp/server"
	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/cmd/coredhcp-failover/internal/chain"
	"github.com/coredhcp-failover/coredhcp-failover/cmd/coredhcp-failover/internal/serve4"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/lifecycle"
)

// minProcs is the least GOMAXPROCS the server runs with.
const minProcs = 4

// run serves until a listener fails or SIGTERM/SIGINT arrives, then lets
// the plugins flush and close their stores and sessions. It returns the
// process's exit status. (It lives outside the template because the
// generator renders with html/template, which escapes Go's <- operator.)
//
// DHCPv4 is served by serve4 (bounded work, DHCPDECLINE delivered); DHCPv6,
// if configured, by CoreDHCP's own server.
func run(conf *config.Config, log *logrus.Entry) int {
	// Leave room for the packet readers while workers are in sqlite (cgo,
	// fsync): pinned to one CPU, Go would run a single scheduler thread,
	// and the readers would stall until the kernel dropped datagrams (at
	// 5000 DORA/s: 5-8 % loss with 1, under 1.5 % with 4).
	if runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
	defer startPprof(log)()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	status := 0
	fail := func(err error) int {
		log.Error(err)
		if serr := lifecycle.Shutdown(); serr != nil {
			log.Error(serr)
		}
		return 1
	}
	var v4 *serve4.Server
	if conf.Server4 != nil {
		if err := checkChain(conf.Server4.Plugins, log); err != nil {
			return fail(err)
		}
		handlers, _, err := plugins.LoadPlugins(&config.Config{Server4: conf.Server4})
		if err != nil {
			return fail(err)
		}
		if v4, err = serve4.Start(conf.Server4.Addresses, handlers, serve4.Options{}); err != nil {
			return fail(err)
		}
	}
	var v6 *server.Servers
	if conf.Server6 != nil {
		var err error
		if v6, err = server.Start(&config.Config{Server6: conf.Server6}); err != nil {
			if v4 != nil {
				v4.Close()
			}
			return fail(err)
		}
	}
	done := make(chan error, 2)
	if v4 != nil {
		go func() { done <- v4.Wait() }()
	}
	if v6 != nil {
		go func() { done <- v6.Wait() }()
	}
	select {
	case sig := <-sigs:
		log.Infof("Received %v, shutting down", sig)
	case err := <-done:
		if err != nil {
			log.Error(err)
			status = 1
		}
	}
	if v4 != nil {
		v4.Close()
	}
	if v6 != nil {
		v6.Close()
	}
	if err := lifecycle.Shutdown(); err != nil {
		log.Errorf("Shutdown: %v", err)
		status = 1
	}
	log.Info("Stopped")
	return status
}

// checkChain logs the plugin chain's warnings and each of its errors; its
// error, if any, says the server does not start.
func checkChain(plugins []config.PluginConfig, log *logrus.Entry) error {
	warnings, err := chain.Check(plugins, net.InterfaceAddrs)
	for _, w := range warnings {
		log.Warnf("plugin chain: %s", w)
	}
	var errs chain.Errors
	if !errors.As(err, &errs) {
		return err
	}
	for _, e := range errs {
		log.Errorf("plugin chain: %s", e)
	}
	return fmt.Errorf("plugin chain: %d error(s) above; not starting", len(errs))
}
