//go:build integration

package integration

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// PerfOptions is one perfdhcp -4 DORA run. perfdhcp always acts as a relay:
// giaddr is the address of the node it runs on, replies come back to that
// address on port 67, so the server needs relay=ADDR (or a subnet holding it).
type PerfOptions struct {
	Server  string        // destination address
	Rate    int           // -r exchanges/s; 0 floods
	Clients int           // -R simulated clients, MACs MACBase .. MACBase+Clients-1
	MACBase string        // -b mac=; default 02:cf:10:00:00:00
	Period  time.Duration // -p test period
	Seed    int           // -s; default 1
	Extra   []string
}

// Perfdhcp is a running perfdhcp.
type Perfdhcp struct {
	node *netlab.Node
	Proc *netlab.Proc
	Opts PerfOptions
}

// PerfStats is the summary perfdhcp prints at exit.
type PerfStats struct {
	Rate                                          float64 // 4-way exchanges/s
	DiscoverSent, OfferRcvd, RequestSent, AckRcvd int
	DOAvgMs, RAAvgMs                              float64
	Raw                                           string
}

// StartPerfdhcp starts perfdhcp on the node's LAN interface.
func StartPerfdhcp(n *netlab.Node, o PerfOptions) *Perfdhcp {
	n.Lab.T.Helper()
	netlab.RequireTools(n.Lab.T, "perfdhcp")
	if o.MACBase == "" {
		o.MACBase = "02:cf:10:00:00:00"
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	args := []string{"-4", "-l", n.Iface, "-R", strconv.Itoa(o.Clients), "-b", "mac=" + o.MACBase,
		"-s", strconv.Itoa(o.Seed), "-p", strconv.Itoa(int(o.Period.Seconds()))}
	if o.Rate > 0 {
		args = append(args, "-r", strconv.Itoa(o.Rate))
	}
	args = append(append(args, o.Extra...), o.Server)
	return &Perfdhcp{node: n, Opts: o, Proc: n.Start("perfdhcp-"+n.Name, "perfdhcp", args...)}
}

// Wait waits for perfdhcp to finish and parses its summary. perfdhcp exits
// non-zero when packets were dropped, so only a missing summary fails.
func (p *Perfdhcp) Wait() PerfStats {
	t := p.node.Lab.T
	t.Helper()
	if err := p.Proc.Wait(p.Opts.Period + 30*time.Second); err != nil && p.Proc.Running() {
		t.Fatalf("perfdhcp: %v", err)
	}
	out := p.Proc.Output()
	st, err := ParsePerfdhcp(out)
	if err != nil {
		t.Fatalf("perfdhcp (exit %d): %v\n%s", p.Proc.ExitCode(), err, out)
	}
	return st
}

var rateRE = regexp.MustCompile(`Rate: ([0-9.]+) 4-way`)

// ParsePerfdhcp extracts the DORA counters from perfdhcp's output.
func ParsePerfdhcp(out string) (PerfStats, error) {
	st := PerfStats{Raw: out}
	m := rateRE.FindStringSubmatch(out)
	if m == nil {
		return st, fmt.Errorf("no \"Rate:\" line in perfdhcp output")
	}
	st.Rate, _ = strconv.ParseFloat(m[1], 64)
	do, ra := section(out, "DISCOVER-OFFER"), section(out, "REQUEST-ACK")
	if do == "" || ra == "" {
		return st, fmt.Errorf("no DISCOVER-OFFER or REQUEST-ACK statistics in perfdhcp output")
	}
	var err error
	get := func(s, key string) int {
		m := regexp.MustCompile(`(?m)^` + key + `: ([0-9]+)`).FindStringSubmatch(s)
		if m == nil {
			err = fmt.Errorf("no %q in perfdhcp statistics", key)
			return 0
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
	getf := func(s, key string) float64 {
		m := regexp.MustCompile(`(?m)^` + key + `: ([0-9.]+) ms`).FindStringSubmatch(s)
		if m == nil {
			return 0 // perfdhcp prints no delays when nothing was received
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	st.DiscoverSent, st.OfferRcvd = get(do, "sent packets"), get(do, "received packets")
	st.RequestSent, st.AckRcvd = get(ra, "sent packets"), get(ra, "received packets")
	st.DOAvgMs, st.RAAvgMs = getf(do, "avg delay"), getf(ra, "avg delay")
	return st, err
}

func section(out, name string) string {
	head := "***Statistics for: " + name + "***"
	i := strings.Index(out, head)
	if i < 0 {
		return ""
	}
	s := out[i+len(head):]
	if j := strings.Index(s, "***"); j >= 0 {
		s = s[:j]
	}
	return s
}

func (s PerfStats) String() string {
	return fmt.Sprintf("DISCOVER sent %d, OFFER %d, REQUEST sent %d, ACK %d, rate %.1f/s, avg DO %.2f ms RA %.2f ms",
		s.DiscoverSent, s.OfferRcvd, s.RequestSent, s.AckRcvd, s.Rate, s.DOAvgMs, s.RAAvgMs)
}
