package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/coredhcp/coredhcp/config"
	"github.com/coredhcp/coredhcp/server"
	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/lifecycle"
)

// run serves until the listeners fail or SIGTERM/SIGINT arrives, then lets
// the plugins flush and close their stores and sessions. It returns the
// process's exit status. (It lives outside the template because the
// generator renders with html/template, which escapes Go's <- operator.)
func run(conf *config.Config, log *logrus.Entry) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	srv, err := server.Start(conf)
	if err != nil {
		if serr := lifecycle.Shutdown(); serr != nil {
			log.Error(serr)
		}
		log.Error(err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	status := 0
	select {
	case sig := <-sigs:
		log.Infof("Received %v, shutting down", sig)
		srv.Close()
		if err := <-done; err != nil {
			log.Error(err)
		}
	case err := <-done:
		if err != nil {
			log.Error(err)
			status = 1
		}
	}
	if err := lifecycle.Shutdown(); err != nil {
		log.Errorf("Shutdown: %v", err)
		status = 1
	}
	log.Info("Stopped")
	return status
}
