package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// stormResult is the renewal storm on the pair: on a 50,000-address pool,
// 40,000 clients get leases while the pair is NORMAL; the peer link is
// cut and the clients renew with both servers in
// COMMUNICATIONS-INTERRUPTED (every renewal queued as an update); then the
// link is healed while every client asks again within a minute and the
// queued updates drain.
type stormResult struct {
	Pool, Clients    int
	Fill             *result
	Partition        *result
	ActiveP, ActiveS int
	QueuedAtHeal     int
	HealToNormal     float64 // seconds until both servers are NORMAL again
	Storm            *result
	// NoFree is the DISCOVERs the servers dropped during the storm for
	// want of a free address (their log's count).
	NoFree int
	Err    string
}

const stormPoolEnd = "198.18.195.89" // 198.18.0.10 + 49,999

func (b *bench) renewalStorm() error {
	k := kinds[2]
	// 80 % of the pool: a busy network, where each server's share still
	// holds the clients the hash gives it. (With as many clients as
	// addresses, the partition alone exhausts both shares: each server
	// answers every client then, so a client may hold a lease from each,
	// and the storm measures an empty pool rather than the heal.)
	sr := &stormResult{Pool: 50000, Clients: 40000}
	b.storms = append(b.storms, sr)
	fillRate, fillSec, cutSec, stormSec := 2500, 30, 30, 60
	if b.quick {
		fillRate, fillSec, cutSec, stormSec = 2000, 10, 10, 20
	}
	fillRate = envInt("BENCH_STORM_FILL_RATE", fillRate)
	logf("storm: pair on a %d-address pool, %d clients; leases while NORMAL", sr.Pool, sr.Clients)
	in, err := b.start(k, filepath.Join(b.work, "state", "storm"), serverOpts{poolEnd: stormPoolEnd, mrd: "5s"})
	if err != nil {
		return err
	}
	defer in.stop()
	fill, err := b.probe(in, probeOpts{rate: fillRate, period: fillSec, seed: 7, clients: sr.Clients}, "storm_fill")
	if err != nil {
		return err
	}
	fill.Phase = "storm-fill"
	sr.Fill = fill
	bothIn := func(state string) func() (bool, string) {
		return func() (bool, string) {
			var why []string
			for _, c := range in.controls {
				st, err := controlStatus(c)
				if err != nil || st.State != state || state == "normal" && st.Queued+st.Unacked > 0 {
					why = append(why, fmt.Sprintf("%s %s queued %d unacked %d", st.Role, st.State, st.Queued, st.Unacked))
				}
			}
			return len(why) == 0, strings.Join(why, ", ")
		}
	}
	if err := waitFor(60*time.Second, bothIn("normal")); err != nil {
		sr.Err = "fill: " + err.Error()
		return nil
	}

	logf("storm: cutting the peer link; the clients renew for %d s", cutSec)
	b.setPeerLink(false)
	defer b.setPeerLink(true)
	if err := waitFor(30*time.Second, bothIn("communications-interrupted")); err != nil {
		sr.Err = "partition: " + err.Error()
		return nil
	}
	part, err := b.probe(in, probeOpts{rate: sr.Clients / cutSec, period: cutSec, seed: 9, clients: sr.Clients}, "storm_partition")
	if err != nil {
		return err
	}
	part.Phase = "storm-partition"
	sr.Partition = part
	sr.ActiveP = countActive(filepath.Join(in.dir, "primary.db"))
	sr.ActiveS = countActive(filepath.Join(in.dir, "secondary.db"))
	for _, c := range in.controls {
		if st, err := controlStatus(c); err == nil {
			sr.QueuedAtHeal += st.Queued + st.Unacked
		}
	}
	logf("storm: %d + %d active, %d updates queued; healing the link, %d DORA/s for %d s",
		sr.ActiveP, sr.ActiveS, sr.QueuedAtHeal, sr.Clients/stormSec, stormSec)
	var healed time.Time
	normal := make(chan float64, 1)
	logs := []string{filepath.Join(in.dir, "primary.log"), filepath.Join(in.dir, "secondary.log")}
	noFree0 := noFreeDrops(logs)
	storm, err := b.probe(in, probeOpts{rate: sr.Clients / stormSec, period: stormSec, seed: 11, clients: sr.Clients, during: func() {
		b.setPeerLink(true)
		healed = time.Now()
		go func() {
			err := waitFor(time.Duration(stormSec+10)*time.Second, func() (bool, string) {
				for _, c := range in.controls {
					st, err := controlStatus(c)
					if err != nil || st.State != "normal" {
						return false, ""
					}
				}
				return true, ""
			})
			if err != nil {
				normal <- -1
				return
			}
			normal <- time.Since(healed).Seconds()
		}()
	}}, "storm")
	if err != nil {
		return err
	}
	storm.Phase = "storm"
	sr.Storm = storm
	sr.HealToNormal = <-normal
	sr.NoFree = noFreeDrops(logs) - noFree0
	b.results = append(b.results, fill, part, storm)
	logf("storm: %d DORA/s offered, loss %.2f %% (%d for want of a free address), RA p99 %.1f ms, backlog at most %d, NORMAL %.1f s after the heal, drained %.1f s after the storm",
		sr.Clients/stormSec, storm.Loss, sr.NoFree, storm.RAp99, storm.Backlog, sr.HealToNormal, storm.DrainSec)
	return nil
}

var noFreeRe = regexp.MustCompile(`msg="no free address to offer" dropped=(\d+)`)

// noFreeDrops sums the "no free address to offer" counts in the servers'
// logs (the line is rate-limited and carries the count since the last).
func noFreeDrops(logs []string) int {
	n := 0
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		for _, m := range noFreeRe.FindAllSubmatch(data, -1) {
			v, _ := strconv.Atoi(string(m[1]))
			n += v
		}
	}
	return n
}

func countActive(db string) int {
	out, err := exec.Command("sqlite3", "-readonly", db, "SELECT count(*) FROM bindings WHERE state = 2").Output()
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// startupResult is one start of the real binary on the largest pool the
// lab may use (198.18.0.0/15).
type startupResult struct {
	Bindings int
	Ready    float64 // seconds from exec to UDP port 67 bound
	Loaded   string  // the server's own "loaded in" figure
	RSS      int     // MiB, VmRSS a second after the start
	HWM      int     // MiB, VmHWM
}

var loadedRe = regexp.MustCompile(`(\d+) bindings loaded in ([0-9.]+)s`)

func (b *bench) startupPhase() error {
	dir := filepath.Join(b.work, "state", "startup")
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	db := filepath.Join(dir, "leases.db")
	conf := filepath.Join(dir, "config.yaml")
	write(conf, fmt.Sprintf(`server4:
  listen: ["0.0.0.0%%%s"]
  plugins:
    - server_id: %s
    - failover: db=%s subnet=198.18.0.0/15 pool=198.18.0.1-198.19.255.254 relay=%s lease-time=1h
`, lanName, s1LAN, db, cliLAN))
	reps := 3
	if b.quick {
		reps = 1
	}
	const size = 131070
	for _, filled := range []bool{false, true} {
		if filled {
			now := time.Now().Unix()
			sql := fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < %d)
INSERT OR REPLACE INTO bindings (ip, state, htype, hwaddr, starts, ends, cltt)
SELECT 3323068417 + i, 2, 1, printf('02:00:00:%%02x:%%02x:%%02x', (i >> 16) & 255, (i >> 8) & 255, i & 255), %d, %d, %d FROM n;`,
				size-1, now, now+3600, now)
			if out, err := exec.Command("sqlite3", db, sql).CombinedOutput(); err != nil {
				return fmt.Errorf("filling %s: %v: %s", db, err, out)
			}
		}
		for i := 0; i < reps; i++ {
			t0 := time.Now()
			p := b.startIn(b.s1, nil, filepath.Join(dir, "server.log"), b.oursBin, "-c", conf, "-L", "info")
			if err := waitUDP(p, 60*time.Second); err != nil {
				p.Stop(5 * time.Second)
				return fmt.Errorf("startup: %w", err)
			}
			r := startupResult{Ready: time.Since(t0).Seconds()}
			time.Sleep(time.Second)
			r.RSS, r.HWM = netlab.StatusKiB(p.PID(), "VmRSS")/1024, netlab.StatusKiB(p.PID(), "VmHWM")/1024
			p.Stop(5 * time.Second)
			if m := loadedRe.FindStringSubmatch(p.Output()); m != nil {
				r.Bindings, _ = strconv.Atoi(m[1])
				r.Loaded = m[2] + " s"
			}
			b.starts = append(b.starts, r)
			logf("startup: %d bindings, UDP bound after %.3f s (server: loaded in %s), RSS %d MiB", r.Bindings, r.Ready, r.Loaded, r.RSS)
		}
	}
	return nil
}

// goBenchmarks runs the Go benchmarks of the hot paths (less sensitive to
// a busy machine than perfdhcp) and keeps their output for the report.
func (b *bench) goBenchmarks() {
	bt := "1s"
	if b.quick {
		bt = "200ms"
	}
	logf("Go benchmarks (-benchtime %s)", bt)
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-benchtime", bt, "-count", "1", "./plugins/...", "./cmd/...")
	cmd.Dir = b.repo
	out, err := cmd.CombinedOutput()
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg:") || strings.HasPrefix(l, "cpu:") || strings.HasPrefix(l, "FAIL") || strings.HasPrefix(l, "---") {
			keep = append(keep, l)
		}
	}
	b.goOut = strings.Join(keep, "\n")
	if err != nil {
		b.goOut += fmt.Sprintf("\n(go test: %v)", err)
	}
}
