// Package integration holds the network-namespace test suite of
// coredhcp-failover and the lab helpers it is built from.
//
// Everything except this file is behind the build tag "integration": the
// tests create Linux network namespaces, veth pairs and a bridge, start the
// built server binary and real DHCP clients (dhclient, udhcpc, perfdhcp)
// inside them, and must run as root:
//
//	make build
//	go test -tags integration -v ./integration/...
//
// The namespace lab and the process harness themselves are in
// internal/netlab, shared with the benchmark (bench/). See README.md in this
// directory for the lab layout and the cleanup rules.
package integration
