# coredhcp-failover: see README.md. Targets that touch the network (test,
# integration, demo, bench) need root: they create network namespaces.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:$(PATH)
export CGO_ENABLED := 1
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN := bin/coredhcp-failover

# The Debian packages each target needs, as PACKAGE:CHECK (a command, or a
# path that must exist); tools/deps.sh installs the missing ones. The ISC
# interop tests and the benchmark run ISC dhcpd (and the benchmark Kea)
# inside namespaces; tools/deps.sh keeps their services off the host.
DEPS_DEMO := iproute2:ip isc-dhcp-client:dhclient udhcpc:udhcpc sqlite3:sqlite3 gcc:gcc libc6-dev:/usr/include/stdio.h
DEPS_TEST := $(DEPS_DEMO) kea-admin:perfdhcp tshark:tshark systemd:systemd-analyze isc-dhcp-server:dhcpd
DEPS_BENCH := $(DEPS_TEST) kea-dhcp4-server:kea-dhcp4

.PHONY: all build generate check-generate test unit sim integration lint tidy-check \
	bench chaos demo deps deps-demo deps-test deps-bench fuzz mutate clean install

# make install: PREFIX, DESTDIR (staging root) and the directories below.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/coredhcp-failover
# The configuration the server reads without -c, the unit's -c and where
# install puts the example.
CONFIG := $(SYSCONFDIR)/coredhcp-failover/coredhcp-failover.yaml

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.defaultConfig=$(CONFIG)" -o $(BIN) ./cmd/coredhcp-failover
	CGO_ENABLED=0 $(GO) build -o bin/failoverctl ./cmd/failoverctl

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
test: deps-test check-generate lint unit sim integration

# What each target needs: Debian packages (quietly, only the missing ones)
# and the Go modules.
deps-demo:
	@tools/deps.sh $(DEPS_DEMO)
	@$(GO) mod download
deps-test:
	@tools/deps.sh $(DEPS_TEST)
	@$(GO) mod download
deps-bench:
	@tools/deps.sh $(DEPS_BENCH)
	@$(GO) mod download
deps: deps-bench

# The tests run through gotestsum (a go.mod tool): a line per package
# (unit) or per test (integration) as each ends, failures in full, and the
# counts at the end.
GOTESTSUM := $(GO) tool gotestsum --hide-summary=skipped --format-hide-empty-pkg

# The deterministic simulation of the pair (docs/simulation.md): SIM_SEEDS
# seeds (SIM_SEED=n replays one with its transcript, SIM_FAULTS picks the
# fault kinds). About a minute on two idle cores by default.
# SIM_GOGC: the simulation allocates a packet per client move and is
# short-lived, so a lazier collector nearly doubles its seeds per second.
SIM_SEEDS ?= 8000
SIM_GOGC ?= 800
sim:
	set -o pipefail; GOGC=$(SIM_GOGC) SIM_SEEDS=$(SIM_SEEDS) $(GO) test -count=1 -timeout 0 -run '^TestSimulation$$' -v ./plugins/leasesync/ | grep -v '^=== RUN'

unit:
	$(GOTESTSUM) --format pkgname -- -race -count=1 ./...
	$(GOTESTSUM) --format pkgname -- -race -count=1 -tags fakeclock ./plugins/internal/wallclock/

# Network-namespace tests with real clients; needs root.
integration: build bin/coredhcp-failover-fakeclock
	$(GOTESTSUM) --format testname -- -race -count=1 -tags integration -timeout 40m ./integration/... ./plugins/internal/wire/...

lint: tidy-check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt wants to change: $$out" >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...

tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'" >&2; exit 1; }

# Random fault schedules against a pair with real and simulated clients,
# checked for the invariants of docs/invariants.md (integration/chaos_test.go); needs
# root. N schedules, P at once; SEED replays (default: from the clock);
# CHAOS_LAB is the namespace prefix (to run beside make test, whose chaos
# schedules use cx).
N ?= 200
P ?= 2
SEED ?= 0
CHAOS_LAB ?= cx
chaos: deps-test build bin/coredhcp-failover-fakeclock
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

# Mutation testing with go-gremlins (installed into bin/, go.mod untouched):
# each package of MUTATE_PKGS is mutated one change at a time and its own
# tests run against every mutant; a mutant the tests do not notice (LIVED)
# is a rule no test holds. It prints the killed and surviving mutants and
# the totals; the full log (with the mutants no test covers) goes to
# mutate.log. MUTATE_WORKERS mutants at once (0: one per CPU),
# MUTATE_TIMEOUT multiplies each test run's timeout (0: gremlins' default).
# Slow (with one worker on two shared cores: fsm 2.5 to 4.5 min, wire
# 12 min, failover 28 to 36 min, leasesync hours) and not part of make test.
GREMLINS_VERSION ?= v0.6.0
MUTATE_PKGS ?= plugins/internal/wire plugins/internal/fsm plugins/failover plugins/leasesync
MUTATE_WORKERS ?= 0
MUTATE_TIMEOUT ?= 0
mutate: bin/gremlins
	@set -o pipefail; : > mutate.log; for p in $(MUTATE_PKGS); do \
		echo "mutate: $$p" | tee -a mutate.log; start=$$(date +%s); \
		./bin/gremlins unleash \
			$$( [ "$(MUTATE_WORKERS)" != 0 ] && echo --workers $(MUTATE_WORKERS) ) \
			$$( [ "$(MUTATE_TIMEOUT)" != 0 ] && echo --timeout-coefficient $(MUTATE_TIMEOUT) ) \
			./$$p 2>&1 | tee -a mutate.log | \
			grep --line-buffered -E '^ *(KILLED|LIVED|TIMED OUT|NOT VIABLE) |^(Killed|Timed out|Mutator|Test efficacy|Mutation testing)' \
			|| exit 1; \
		echo "mutate: $$p took $$(( $$(date +%s) - start )) s" | tee -a mutate.log; \
	done

bin/gremlins:
	GOBIN=$(CURDIR)/bin $(GO) install github.com/go-gremlins/gremlins/cmd/gremlins@$(GREMLINS_VERSION)

# The main job: real clients served in network namespaces; needs root.
demo: deps-demo build
	bash integration/demo.sh

# Five DHCPv4 servers side by side (bench/main.go): stock CoreDHCP range,
# this server single and as a pair, an ISC dhcpd pair, Kea; then overload, a
# renewal storm, start-up on the largest pool and the Go benchmarks. About
# 30 minutes; BENCH_QUICK=1 is a smoke run of a few minutes, BENCH_RUNS=N
# sets the rounds. Writes bench/results/latest.md (smoke runs: smoke.md).
bench: deps-bench build
	$(GO) run ./bench

# Installs both binaries, the systemd unit (with this PREFIX's paths), the
# documentation and the example configuration -- the latter only if no
# configuration is there yet (an operator's file is never overwritten).
install: build
	install -D -m 0755 $(BIN) "$(DESTDIR)$(BINDIR)/coredhcp-failover"
	install -D -m 0755 bin/failoverctl "$(DESTDIR)$(BINDIR)/failoverctl"
	install -d -m 0755 "$(DESTDIR)$(UNITDIR)"
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@CONFIG@|$(CONFIG)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' dist/systemd/coredhcp-failover.service \
		> "$(DESTDIR)$(UNITDIR)/coredhcp-failover.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/coredhcp-failover.service"
	install -D -m 0644 coredhcp-failover.yaml "$(DESTDIR)$(DOCDIR)/coredhcp-failover.yaml.example"
	install -m 0644 README.md "$(DESTDIR)$(DOCDIR)/README.md"
	install -D -m 0644 plugins/failover/README.md "$(DESTDIR)$(DOCDIR)/failover.md"
	install -m 0644 plugins/leasesync/README.md "$(DESTDIR)$(DOCDIR)/leasesync.md"
	for f in docs/*.md; do [ -e "$$f" ] && install -m 0644 "$$f" "$(DESTDIR)$(DOCDIR)/" || true; done
	install -d -m 0755 "$(DESTDIR)$(SYSCONFDIR)/coredhcp-failover"
	[ -e "$(DESTDIR)$(CONFIG)" ] || install -m 0644 coredhcp-failover.yaml "$(DESTDIR)$(CONFIG)"

# The server with a clock the chaos tests can step (plugins/internal/wallclock).
bin/coredhcp-failover-fakeclock: FORCE
	$(GO) build -tags fakeclock -o $@ ./cmd/coredhcp-failover

.PHONY: FORCE
FORCE:

clean:
	rm -rf bin
