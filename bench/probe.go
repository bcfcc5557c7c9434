package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// result is one perfdhcp run against one server.
type result struct {
	Server  string
	Round   int
	Phase   string // search, overload, storm, fill
	Offered int    // DORA/s; 0: unlimited
	Period  float64

	DOSent, DORcvd, RASent, RARcvd int
	Achieved                       float64 // ACKs per second of the period
	Loss                           float64 // percent: 1 - ACKs / DISCOVERs
	DOp50, DOp99, RAp50, RAp99     float64 // ms
	CPU                            float64 // percent of one core, all server processes
	CPUEach                        []float64
	RSSPeak                        int // MiB, VmHWM, the largest process
	RSSMax                         int // MiB, the largest VmRSS sampled during the run
	Backlog                        int // pairs: the most peer updates queued+unacked at once (ours)
	DrainSec                       float64
	PeerDiff                       int // isc-pair: |active leases primary - secondary| at the end
	GoIdle, GoMax                  int // ours: goroutines before and at most during the run
	GenCPU                         float64
	Pass                           bool
	Note                           string
}

// probeOpts says how one perfdhcp run goes.
type probeOpts struct {
	rate     int // 0: unlimited
	period   int
	seed     int
	clients  int
	sampleGo bool
	// during runs while perfdhcp is running (the storm heals the link).
	during func()
}

// probe runs perfdhcp against in and measures the server(s) meanwhile.
func (b *bench) probe(in *instance, o probeOpts, id string) (*result, error) {
	r := &result{Server: in.kind.key, Offered: o.rate, Period: float64(o.period), GoIdle: -1, GoMax: -1}
	pids := in.pids()
	var pp = unixHTTPOrNil(in.pprof)
	if pp != nil && o.sampleGo {
		r.GoIdle = goroutines(pp)
		r.GoMax = r.GoIdle
	}
	target := s1LAN
	args := []string{"-4", "-l", lanName, "-R", strconv.Itoa(o.clients), "-s", strconv.Itoa(o.seed),
		"-x", "t", "-p", strconv.Itoa(o.period), "-W", "500000"}
	if o.rate > 0 {
		args = append(args, "-r", strconv.Itoa(o.rate))
	}
	args = append(args, strings.Fields(os.Getenv("BENCH_PERFDHCP_EXTRA"))...)
	if in.kind.pair {
		args = append(args, "-B")
		target = "255.255.255.255"
	}
	args = append(args, target)
	// The output, after a line with the command; a fresh file (BENCH_WORK
	// may hold an earlier run's).
	out := filepath.Join(b.work, id+".perfdhcp")
	os.Remove(out)

	cpu0 := make([]float64, len(pids))
	for i, p := range pids {
		cpu0[i] = netlab.CPUSeconds(p)
	}
	w0 := time.Now()
	gen := b.cli.StartCmd(netlab.Cmd{Label: "perfdhcp", Log: out, CPUs: b.genCPUs, Name: "perfdhcp", Args: args})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Add(1)
	go func() { // sampler
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			rss := 0
			for _, p := range pids {
				rss = max(rss, netlab.StatusKiB(p, "VmRSS")/1024)
				if netlab.StatusKiB(p, "VmRSS") > b.rssLimitKiB {
					syscall.Kill(p, syscall.SIGKILL)
					mu.Lock()
					r.Note = fmt.Sprintf("killed by the harness at RSS %d MiB", netlab.StatusKiB(p, "VmRSS")/1024)
					mu.Unlock()
				}
			}
			bl := 0
			for _, c := range in.controls {
				if st, err := controlStatus(c); err == nil {
					bl += st.Unacked + st.Queued
				}
			}
			g := -1
			if pp != nil && o.sampleGo {
				g = goroutines(pp)
			}
			mu.Lock()
			r.RSSMax = max(r.RSSMax, rss)
			r.Backlog = max(r.Backlog, bl)
			more := g > r.GoMax
			r.GoMax = max(r.GoMax, g)
			mu.Unlock()
			if more {
				// Keep the goroutines at their most, to say what they were.
				goroutineDump(pp, filepath.Join(b.work, id+".goroutines.txt"))
			}
		}
	}()
	if pp != nil && b.profile && o.period > 2 {
		wg.Add(1)
		go func() { // a CPU profile of the (primary) server over the run
			defer wg.Done()
			if err := cpuProfile(pp, o.period-1, filepath.Join(b.work, id+".cpu.pprof")); err != nil {
				logf("%s: no CPU profile: %v", id, err)
			}
		}()
	}
	if o.during != nil {
		o.during()
	}
	werr := gen.Wait(time.Duration(o.period)*time.Second + time.Minute)
	if gen.Running() {
		gen.Kill()
	}
	w1 := time.Now()
	for i, p := range pids {
		c := 100 * (netlab.CPUSeconds(p) - cpu0[i]) / w1.Sub(w0).Seconds()
		r.CPUEach = append(r.CPUEach, c)
		r.CPU += c
		r.RSSPeak = max(r.RSSPeak, netlab.StatusKiB(p, "VmHWM")/1024)
	}
	close(stop)
	wg.Wait()
	r.GenCPU = 100 * gen.CPUTime().Seconds() / w1.Sub(w0).Seconds()
	// Pairs: how long until every update is acknowledged (ours) or both
	// lease files agree (ISC), at most 10 s.
	switch {
	case len(in.controls) > 0:
		t0 := time.Now()
		r.DrainSec = -1
		for time.Since(t0) < 10*time.Second {
			bl := 0
			for _, c := range in.controls {
				if st, err := controlStatus(c); err == nil {
					bl += st.Unacked + st.Queued
				} else {
					bl = -1
					break
				}
			}
			if bl == 0 {
				r.DrainSec = time.Since(t0).Seconds()
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	case len(in.leases) == 2:
		t0 := time.Now()
		r.DrainSec = -1
		for time.Since(t0) < 10*time.Second {
			a, c := iscActive(in.leases[0]), iscActive(in.leases[1])
			r.PeerDiff = a - c
			if r.PeerDiff < 0 {
				r.PeerDiff = -r.PeerDiff
			}
			if r.PeerDiff == 0 {
				r.DrainSec = time.Since(t0).Seconds()
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	if err := parsePerfdhcp(out, r); err != nil {
		if werr != nil {
			err = fmt.Errorf("%w (perfdhcp: %v)", err, werr)
		}
		return r, err
	}
	return r, nil
}

func unixHTTPOrNil(path string) *httpClient {
	if path == "" {
		return nil
	}
	return unixHTTP(path)
}

// parsePerfdhcp reads the counters and the per-packet timestamps (-x t)
// of a perfdhcp -4 run, then drops the timestamps from the file.
func parsePerfdhcp(path string, r *result) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	var keep []string
	sec, ts := "", ""
	delays := map[string][]float64{}
	counts := map[string]map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "***Statistics for: "):
			sec = strings.TrimSuffix(strings.TrimPrefix(l, "***Statistics for: "), "***")
			ts = ""
		case strings.HasPrefix(l, "***Timestamps for packets: "):
			ts = strings.TrimSuffix(strings.TrimPrefix(l, "***Timestamps for packets: "), "***")
			sec = ""
			continue
		case strings.HasPrefix(l, "***"):
			sec, ts = "", ""
		}
		if ts != "" {
			if v, ok := strings.CutPrefix(l, "sent / received: "); ok {
				var s, rcv float64
				if _, err := fmt.Sscanf(v, "%f / %f", &s, &rcv); err == nil {
					delays[ts] = append(delays[ts], (rcv-s)*1000)
				}
				continue
			}
		}
		keep = append(keep, l)
		if sec != "" {
			if k, v, ok := strings.Cut(l, ": "); ok {
				if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
					if counts[sec] == nil {
						counts[sec] = map[string]int{}
					}
					counts[sec][k] = n
				}
			}
		}
	}
	f.Close()
	os.WriteFile(path, []byte(strings.Join(keep, "\n")+"\n"), 0o644)
	do, ra := counts["DISCOVER-OFFER"], counts["REQUEST-ACK"]
	if do == nil || ra == nil {
		return fmt.Errorf("no statistics in %s", path)
	}
	r.DOSent, r.DORcvd, r.RASent, r.RARcvd = do["sent packets"], do["received packets"], ra["sent packets"], ra["received packets"]
	r.Achieved = float64(r.RARcvd) / r.Period
	if r.DOSent > 0 {
		r.Loss = 100 * (1 - float64(r.RARcvd)/float64(r.DOSent))
	} else {
		r.Loss = 100
	}
	r.DOp50, r.DOp99 = pct(delays["DISCOVER-OFFER"], 0.5), pct(delays["DISCOVER-OFFER"], 0.99)
	r.RAp50, r.RAp99 = pct(delays["REQUEST-ACK"], 0.5), pct(delays["REQUEST-ACK"], 0.99)
	return nil
}

func pct(d []float64, q float64) float64 {
	if len(d) == 0 {
		return -1
	}
	sort.Float64s(d)
	i := int(q * float64(len(d)))
	if i >= len(d) {
		i = len(d) - 1
	}
	return d[i]
}

// passes is the sustained criterion: under 1 % of DORAs lost and at least
// 98 % of the offered rate achieved.
func (r *result) passes() bool {
	return r.Offered > 0 && r.Note == "" && r.Loss < 1 && r.Achieved >= 0.98*float64(r.Offered)
}
