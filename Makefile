# coredhcp-failover: see README.md. Targets that touch the network (test,
# integration, demo, bench) need root: they create network namespaces.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:$(PATH)
export CGO_ENABLED := 1
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN := bin/coredhcp-failover

# What the tests, the demo and the benchmark run: Debian packages, and the
# commands that tell whether they are installed. The ISC interop tests and
# the benchmark run ISC dhcpd (and the benchmark Kea) inside namespaces; their packages' own services must not
# start on the host (see deps).
APT_PACKAGES := isc-dhcp-client udhcpc kea-admin iproute2 tshark sqlite3 gcc libc6-dev systemd \
	isc-dhcp-server kea-dhcp4-server
APT_COMMANDS := dhclient udhcpc perfdhcp ip tshark sqlite3 gcc systemd-analyze dhcpd kea-dhcp4
# Services of those packages that deps keeps stopped and disabled.
APT_SERVICES := isc-dhcp-server kea-dhcp4-server

.PHONY: all build generate check-generate test unit sim integration lint tidy-check \
	bench chaos demo deps fuzz clean install

# make install: PREFIX, DESTDIR (staging root) and the directories below.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/coredhcp-failover

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/coredhcp-failover
	$(GO) build -o bin/failoverctl ./cmd/failoverctl

generate:
	cd cmd/coredhcp-failover && $(GO) generate ./

# Fails when cmd/coredhcp-failover/main.go is not what the generator makes
# from plugins.txt and main.go.template.
check-generate:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	cmd/coredhcp-failover/gen.sh "$$tmp/main.go" && \
	if ! diff -u cmd/coredhcp-failover/main.go "$$tmp/main.go"; then \
		echo "cmd/coredhcp-failover/main.go is stale: run 'make generate' and commit it" >&2; exit 1; \
	fi

# Installs what the tests need (Debian packages, Go modules), then runs the
# checks, the unit tests and the integration tests.
test: deps check-generate lint unit sim integration

# A package's postinst would start its service (a dhcpd or Kea answering on
# the host's interfaces): a policy-rc.d that refuses every start is put in
# place for the install when there is none, and on a systemd host the
# services are then stopped and disabled.
deps:
	@missing=""; for c in $(APT_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages (missing:$$missing)"; \
		policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; \
			trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES) || exit 1; \
		if [ -d /run/systemd/system ]; then systemctl disable --now $(APT_SERVICES) 2>/dev/null || true; fi; \
	fi
	$(GO) mod download

# The deterministic simulation of the pair (docs/simulation.md): SIM_SEEDS
# seeds (SIM_SEED=n replays one with its transcript, SIM_FAULTS picks the
# fault kinds). About 100 s on two idle cores by default.
SIM_SEEDS ?= 8000
sim:
	set -o pipefail; SIM_SEEDS=$(SIM_SEEDS) $(GO) test -count=1 -timeout 0 -run '^TestSimulation$$' -v ./plugins/leasesync/ | grep -v '^=== RUN'

unit:
	$(GO) test -race -count=1 ./...
	$(GO) test -race -count=1 -tags fakeclock ./plugins/internal/wallclock/

# Network-namespace tests with real clients; needs root.
integration: build bin/coredhcp-failover-fakeclock
	$(GO) test -race -count=1 -tags integration -timeout 40m ./integration/... ./plugins/internal/wire/...

lint: tidy-check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt wants to change: $$out" >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...

tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'" >&2; exit 1; }

# Random fault schedules against a pair with real and simulated clients,
# checked for the design's invariants (integration/chaos_test.go); needs
# root. N schedules, P at once; SEED replays (default: from the clock);
# CHAOS_LAB is the namespace prefix (to run beside make test, whose chaos
# schedules use cx).
N ?= 200
P ?= 2
SEED ?= 0
CHAOS_LAB ?= cx
chaos: deps build bin/coredhcp-failover-fakeclock
	@echo "chaos: $(N) schedules, $(P) at once; the full log goes to chaos.log"
	@set -o pipefail; $(GO) test -count=1 -timeout 0 -tags integration -run '^TestChaos$$' -v ./integration/ \
		-args -chaos.n=$(N) -chaos.parallel=$(P) -chaos.seed=$(SEED) -chaos.lab=$(CHAOS_LAB) 2>&1 | tee chaos.log | \
		grep --line-buffered -E '^chaos:|^ *--- |fault:|violations|invariant [1-5]:'

# Fuzz each target for FUZZTIME (default 30s); -timeout 0 lets FUZZTIME
# exceed go test's 10-minute default.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME) -timeout 0 ./plugins/internal/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -timeout 0 ./plugins/internal/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzHandler4$$' -fuzztime $(FUZZTIME) -timeout 0 -parallel 1 ./plugins/failover/

# The main job: real clients served in network namespaces; needs root.
demo: deps build
	bash integration/demo.sh

# Five DHCPv4 servers side by side (bench/main.go): stock CoreDHCP range,
# this server single and as a pair, an ISC dhcpd pair, Kea; then overload, a
# renewal storm, start-up on the largest pool and the Go benchmarks. About
# 30 minutes; BENCH_QUICK=1 is a smoke run of a few minutes, BENCH_RUNS=N
# sets the rounds. Writes bench/results/latest.md (smoke runs: smoke.md).
bench: deps build
	$(GO) run ./bench

# Installs both binaries, the systemd unit (with this PREFIX's paths), the
# documentation and the example configuration -- the latter only if no
# configuration is there yet (an operator's file is never overwritten).
install: build
	install -D -m 0755 $(BIN) "$(DESTDIR)$(BINDIR)/coredhcp-failover"
	install -D -m 0755 bin/failoverctl "$(DESTDIR)$(BINDIR)/failoverctl"
	install -d -m 0755 "$(DESTDIR)$(UNITDIR)"
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' dist/systemd/coredhcp-failover.service \
		> "$(DESTDIR)$(UNITDIR)/coredhcp-failover.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/coredhcp-failover.service"
	install -D -m 0644 coredhcp-failover.yaml "$(DESTDIR)$(DOCDIR)/coredhcp-failover.yaml.example"
	install -m 0644 README.md "$(DESTDIR)$(DOCDIR)/README.md"
	install -D -m 0644 plugins/failover/README.md "$(DESTDIR)$(DOCDIR)/failover.md"
	install -m 0644 plugins/leasesync/README.md "$(DESTDIR)$(DOCDIR)/leasesync.md"
	for f in docs/*.md; do [ -e "$$f" ] && install -m 0644 "$$f" "$(DESTDIR)$(DOCDIR)/" || true; done
	install -d -m 0755 "$(DESTDIR)$(SYSCONFDIR)/coredhcp-failover"
	[ -e "$(DESTDIR)$(SYSCONFDIR)/coredhcp-failover/coredhcp-failover.yaml" ] || \
		install -m 0644 coredhcp-failover.yaml "$(DESTDIR)$(SYSCONFDIR)/coredhcp-failover/coredhcp-failover.yaml"

# The server with a clock the chaos tests can step (plugins/internal/wallclock).
bin/coredhcp-failover-fakeclock: FORCE
	$(GO) build -tags fakeclock -o $@ ./cmd/coredhcp-failover

.PHONY: FORCE
FORCE:

clean:
	rm -rf bin
