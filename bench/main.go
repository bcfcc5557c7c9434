// Command bench compares five DHCPv4 servers with perfdhcp on this
// machine, in one invocation (`make bench`, as root): stock CoreDHCP with
// `range` (the pinned version), coredhcp-failover as a single server and
// as a load-balanced pair, an ISC dhcpd 4.4 failover pair, and Kea dhcp4
// with memfile persistence. It prints one table and writes it, with every
// run, to bench/results/latest.md.
//
// Each round alternates the servers, one perfdhcp run at a time (A B C D E
// A B ...), while each searches for its sustained rate: the highest
// offered DORA/s with under 1 % of DORAs lost and at least 98 % of the
// offer achieved (a ladder up from a first rate, doubling, then bisection
// to 10 %; later rounds start from the median so far). Then each round
// floods coredhcp-failover (single and pair) for the overload figures;
// the other servers are flooded once. After the rounds: a renewal storm on
// the pair after a partition heals, start-up on the largest allowed pool,
// and the Go benchmarks.
//
// Knobs (environment):
//
//	BENCH_RUNS=3        rounds (sustained figures are median (min-max) of them)
//	BENCH_QUICK=1       a smoke run: 1 round, 4 s probes, 3 probes per search, 8 s overload, a small storm
//	BENCH_SERVERS=stock,ours,ours-pair,isc-pair,kea
//	BENCH_PERIOD=10     seconds per search probe
//	BENCH_OVERLOAD=30   seconds of unlimited offered rate (0 skips)
//	BENCH_PROBES=6      probes per server per round at most (0 skips the search)
//	BENCH_STORM=1 BENCH_STARTUP=1 BENCH_GO=1   the extra phases (0 skips); BENCH_STORM_FILL_RATE=2500
//	BENCH_PROFILE=1     keep a CPU profile (pprof) of our (primary) server for every run, in BENCH_WORK
//	BENCH_CLIENTS=50000 BENCH_PIN=1 (servers on CPU0, perfdhcp on CPU1)
//	BENCH_PERFDHCP_EXTRA="-t 1"  more perfdhcp options (-t 1: a report every second)
//	BENCH_OUT=bench/results  BENCH_WORK (raw output; default a new /tmp dir)
//	COREDHCP_FAILOVER_BIN (default bin/coredhcp-failover)  BENCH_CACHE (stock build)
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

const stockVersion = "v0.0.0-20260217182248-a0841cb3038f"

type bench struct {
	runs, period, overload, probes, clients int
	quick, storm, startup, goBench, profile bool
	servers                                 []kind
	srvCPUs, genCPUs                        string // taskset -c lists; "": not pinned
	s1, s2, cli                             *netlab.Node
	oursBin, stockBin                       string
	work, out, repo                         string
	rssLimitKiB                             int

	results []*result
	storms  []*stormResult
	starts  []startupResult
	goOut   string
	t0      time.Time
	load0   string
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func envInt(key string, def int) int {
	if v := os.Getenv(key); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s=%q is not a number\n", key, v)
			os.Exit(2)
		}
		return n
	}
	return def
}

func main() {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: run as root (network namespaces): sudo make bench")
		os.Exit(1)
	}
	b := &bench{t0: time.Now(), rssLimitKiB: 3 << 20}
	b.quick = os.Getenv("BENCH_QUICK") == "1"
	b.runs, b.period, b.overload, b.probes = 3, 10, 30, 6
	if b.quick {
		b.runs, b.period, b.overload, b.probes = 1, 4, 8, 3
	}
	b.runs = envInt("BENCH_RUNS", b.runs)
	b.period = envInt("BENCH_PERIOD", b.period)
	b.overload = envInt("BENCH_OVERLOAD", b.overload)
	b.probes = envInt("BENCH_PROBES", b.probes)
	b.clients = envInt("BENCH_CLIENTS", 50000)
	b.storm = envInt("BENCH_STORM", 1) == 1
	b.startup = envInt("BENCH_STARTUP", 1) == 1
	b.goBench = envInt("BENCH_GO", 1) == 1
	b.profile = envInt("BENCH_PROFILE", 0) == 1
	b.srvCPUs, b.genCPUs = "0", "1"
	if envInt("BENCH_PIN", 1) != 1 || runtime.NumCPU() < 2 {
		b.srvCPUs, b.genCPUs = "", ""
	}
	wd, _ := os.Getwd()
	b.repo = wd
	b.oursBin = os.Getenv("COREDHCP_FAILOVER_BIN")
	if b.oursBin == "" {
		b.oursBin = filepath.Join(b.repo, "bin/coredhcp-failover")
	}
	cache := os.Getenv("BENCH_CACHE")
	if cache == "" {
		home, _ := os.UserCacheDir()
		cache = filepath.Join(home, "coredhcp-failover-bench")
	}
	b.stockBin = filepath.Join(cache, "stock-"+stockVersion, "coredhcp")
	b.out = os.Getenv("BENCH_OUT")
	if b.out == "" {
		b.out = filepath.Join(b.repo, "bench/results")
	}
	b.work = os.Getenv("BENCH_WORK")
	if b.work == "" {
		var err error
		if b.work, err = os.MkdirTemp("", "pfb."); err != nil {
			fail(err)
		}
	}
	want := os.Getenv("BENCH_SERVERS")
	if want == "" {
		want = "stock,ours,ours-pair,isc-pair,kea"
	}
	for _, w := range strings.Split(want, ",") {
		found := false
		for _, k := range kinds {
			if k.key == strings.TrimSpace(w) {
				b.servers = append(b.servers, k)
				found = true
			}
		}
		if !found {
			fail(fmt.Errorf("BENCH_SERVERS: unknown server %q (known: stock, ours, ours-pair, isc-pair, kea)", w))
		}
	}
	if _, err := os.Stat(b.oursBin); err != nil {
		fail(fmt.Errorf("%s: run make build first", b.oursBin))
	}
	for _, k := range b.servers {
		if k.key == "stock" {
			if err := buildStock(b.stockBin, stockVersion); err != nil {
				fail(fmt.Errorf("building stock CoreDHCP: %w", err))
			}
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sigs; prog.exit(130, "interrupted") }()

	b.load0 = loadavg()
	logf("work dir %s; %d round(s), %d s probes, %d s overload; load average %s", b.work, b.runs, b.period, b.overload, b.load0)
	b.labUp()
	err := b.run()
	prog.done()
	if err != nil {
		fail(err)
	}
	md := b.report()
	fmt.Println(md)
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		fail(err)
	}
	latest := filepath.Join(b.out, "latest.md")
	if b.quick || os.Getenv("BENCH_RUNS") != "" && b.runs < 3 {
		latest = filepath.Join(b.out, "smoke.md")
	}
	for _, p := range []string{latest, filepath.Join(b.work, "results.md")} {
		if err := os.WriteFile(p, []byte(md), 0o644); err != nil {
			fail(err)
		}
	}
	logf("written %s (raw output in %s) after %s", latest, b.work, time.Since(b.t0).Round(time.Second))
}

// fail ends the program after the lab's teardown.
func fail(err error) { prog.exit(1, err.Error()) }

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// search is one server's hunt for its sustained rate in one round.
type search struct {
	lo, hi, next, n int
	growth          float64
	best            *result
}

func (s *search) done(maxProbes int) bool {
	return s.next == 0 || s.n >= maxProbes
}

// record takes a probe's outcome and picks the next rate (0: done).
func (s *search) record(r *result) {
	s.n++
	if r.passes() {
		s.lo, s.best = r.Offered, r
	} else {
		s.hi = r.Offered
	}
	switch {
	case s.hi == 0 && s.lo >= maxRate:
		s.next = 0
	case s.hi == 0:
		s.next = min(maxRate, roundRate(float64(s.lo)*s.growth))
	case s.lo == 0:
		s.next = roundRate(float64(s.hi) / s.growth)
		if s.next < minRate {
			s.next = 0
		}
	case float64(s.hi) <= 1.1*float64(s.lo):
		s.next = 0
	default:
		s.next = roundRate(float64(s.lo+s.hi) / 2)
		if s.next <= s.lo || s.next >= s.hi {
			s.next = 0
		}
	}
}

const (
	maxRate = 16000 // perfdhcp on one core tops out near 9,000 DORA/s
	minRate = 20
)

// roundRate keeps two significant digits.
func roundRate(v float64) int {
	step := 1.0
	for v/step >= 100 {
		step *= 10
	}
	return int(v/step+0.5) * int(step)
}

func (b *bench) run() error {
	for round := 1; round <= b.runs; round++ {
		searches := map[string]*search{}
		for _, k := range b.servers {
			s := &search{next: k.first, growth: 2}
			if prev := b.sustained(k.key); len(prev) > 0 && median(prev) >= minRate {
				if m := median(prev); m > 0 {
					s.next, s.growth = int(m), 1.25
				}
			}
			searches[k.key] = s
		}
		for {
			busy := false
			for _, k := range b.servers {
				s := searches[k.key]
				if s.done(b.probes) {
					continue
				}
				busy = true
				r, err := b.once(k, round, "search", probeOpts{rate: s.next, period: b.period, seed: round, clients: b.clients})
				if err != nil {
					return err
				}
				s.record(r)
			}
			if !busy {
				break
			}
		}
		for _, k := range b.servers {
			s := searches[k.key]
			if s.best != nil {
				s.best.Phase = "sustained"
			}
			logf("round %d: %s sustains %d DORA/s", round, k.key, s.lo)
		}
		for _, k := range b.servers {
			if b.overload <= 0 || round > 1 && k.key != "ours" && k.key != "ours-pair" {
				continue
			}
			if _, err := b.once(k, round, "overload", probeOpts{period: b.overload, seed: round, clients: b.clients, sampleGo: true}); err != nil {
				return err
			}
		}
	}
	if b.storm && hasKind(b.servers, "ours-pair") {
		if err := b.renewalStorm(); err != nil {
			return err
		}
	}
	if b.startup {
		if err := b.startupPhase(); err != nil {
			return err
		}
	}
	if b.goBench {
		b.goBenchmarks()
	}
	return nil
}

func hasKind(ks []kind, key string) bool {
	for _, k := range ks {
		if k.key == key {
			return true
		}
	}
	return false
}

// once starts a fresh server, runs one probe and stops it.
func (b *bench) once(k kind, round int, phase string, o probeOpts) (*result, error) {
	id := fmt.Sprintf("%s_r%d_%s_%d", k.key, round, phase, o.rate)
	in, err := b.start(k, filepath.Join(b.work, "state", k.key), serverOpts{})
	if err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond)
	r, err := b.probe(in, o, id)
	in.stop()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	r.Round, r.Phase = round, phase
	for _, p := range in.procs {
		if code := p.ExitCode(); code > 0 && r.Note == "" {
			r.Note = fmt.Sprintf("%s exited with status %d", p.Name, code)
		}
	}
	b.results = append(b.results, r)
	rate := "unlimited"
	if o.rate > 0 {
		rate = strconv.Itoa(o.rate)
	}
	verdict := ""
	if o.rate > 0 {
		verdict = map[bool]string{true: "pass", false: "FAIL"}[r.passes()]
	}
	logf("%-9s round %d %-8s offered %-9s achieved %7.0f/s loss %5.2f %% RA p99 %7.1f ms CPU %5.1f %% RSS %4d MiB backlog %d %s %s",
		k.key, round, phase, rate, r.Achieved, r.Loss, r.RAp99, r.CPU, r.RSSPeak, r.Backlog, verdict, r.Note)
	return r, nil
}

// sustained lists a server's sustained rate of every round so far.
func (b *bench) sustained(key string) []float64 {
	best := map[int]int{}
	rounds := map[int]bool{}
	for _, r := range b.results {
		if r.Server != key || (r.Phase != "search" && r.Phase != "sustained") {
			continue
		}
		rounds[r.Round] = true
		if r.passes() && r.Offered > best[r.Round] {
			best[r.Round] = r.Offered
		}
	}
	var v []float64
	for rd := range rounds {
		v = append(v, float64(best[rd]))
	}
	return v
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
