package leasesync

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/readmetest"
)

// gather returns the registry's families by name.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the value of the series of name whose labels include
// want (pairs of name, value); ok false when there is none.
func value(t *testing.T, reg prometheus.Gatherer, name string, want ...string) (float64, bool) {
	t.Helper()
	mf := gather(t, reg)[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func counterValue(t *testing.T, reg prometheus.Gatherer, name string, want ...string) float64 {
	t.Helper()
	v, ok := value(t, reg, name, want...)
	if !ok {
		t.Fatalf("No series %s%v", name, want)
	}
	return v
}

// Every metric of both plugins passes promlint, and the values follow
// the relationship: states, updates, round trips, pools, answers.
func TestMetricsAreLintCleanAndFollowTheState(t *testing.T) {
	p, s, _, ctlS := controlPair(t, "", "")
	reg := p.s.Registry()
	if p.srv.Registry() != reg {
		t.Fatal("The failover line's metrics are not in its relationship's registry")
	}
	waitFor(t, "the secondary's share", func() bool { own, _ := s.srv.FreeCounts(); return own == 50 }, p, s)
	for i := 0; i < 20; i++ {
		if _, from := dora(t, i, true, p, s); from == nil {
			t.Fatalf("Client %d got no lease", i)
		}
	}
	waitFor(t, "updates settled", caughtUp(p, s), p, s)

	problems, err := promlint.NewWithMetricFamilies(func() []*dto.MetricFamily {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		return mfs
	}()).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
	documented := readmetest.Section(t, "README.md", "## Metrics") + readmetest.Section(t, "../failover/README.md", "## Metrics")
	for name := range gather(t, reg) {
		if !strings.HasPrefix(name, "coredhcp_failover_") {
			t.Errorf("Metric %s is not named coredhcp_failover_*", name)
		}
		if !strings.Contains(documented, "`"+name) {
			t.Errorf("Metric %s is in neither plugin's README", name)
		}
	}

	check := func(name string, want float64, labels ...string) {
		t.Helper()
		if v, ok := value(t, reg, name, labels...); !ok || v != want {
			t.Errorf("%s%v = %v (present %v), want %v", name, labels, v, ok, want)
		}
	}
	check("coredhcp_failover_state", 1, "server", "local", "state", "normal")
	check("coredhcp_failover_state", 1, "server", "peer", "state", "normal")
	check("coredhcp_failover_state", 0, "server", "local", "state", "partner-down")
	check("coredhcp_failover_peer_connected", 1)
	check("coredhcp_failover_serving", 1)
	check("coredhcp_failover_binding_updates_unacked", 0)
	check("coredhcp_failover_binding_updates_queued", 0)
	check("coredhcp_failover_mclt_seconds", 30)
	sent := counterValue(t, reg, "coredhcp_failover_binding_updates_sent_total")
	acked := counterValue(t, reg, "coredhcp_failover_binding_updates_acked_total")
	rtts := counterValue(t, reg, "coredhcp_failover_binding_update_rtt_seconds")
	if sent == 0 || acked != sent || rtts != sent {
		t.Errorf("Updates sent %v, acked %v, round trips measured %v: want all equal and non-zero", sent, acked, rtts)
	}
	var ours float64
	for i := 0; i < 20; i++ {
		if lbhash.Bucket(lbhash.PacketKey(nil, clientMAC(i))) < 128 {
			ours++
		}
	}
	check("coredhcp_failover_dhcp_answers_total", ours, "type", "ack")
	check("coredhcp_failover_dhcp_answers_total", ours, "type", "offer")
	check("coredhcp_failover_dhcp_drops_total", 20-ours, "reason", "not_our_bucket")
	check("coredhcp_failover_pool_addresses", 20, "pool", "192.0.2.100-192.0.2.199", "state", "active")
	st, _ := p.s.Status()
	check("coredhcp_failover_pool_free_addresses", float64(st.FreeOwn), "owner", "local")
	check("coredhcp_failover_pool_free_addresses", float64(st.FreePeer), "owner", "peer")

	// The secondary goes into maintenance: the primary's metrics show
	// both states change.
	changes := counterValue(t, reg, "coredhcp_failover_state_changes_total")
	if r := askControl(t, ctlS, "maintenance-start"); r.Error != "" {
		t.Fatal(r.Error)
	}
	waitFor(t, "the primary to take over", func() bool { return p.state() == fsm.PartnerDown }, p, s)
	check("coredhcp_failover_state", 1, "server", "local", "state", "partner-down")
	check("coredhcp_failover_state", 0, "server", "local", "state", "normal")
	check("coredhcp_failover_state", 1, "server", "peer", "state", "shutdown")
	if got := counterValue(t, reg, "coredhcp_failover_state_changes_total"); got != changes+1 {
		t.Errorf("state_changes_total went from %v to %v, want one more", changes, got)
	}
	s.stop()
	waitFor(t, "the link to drop", func() bool { st, _ := p.s.Status(); return !st.Connected }, p)
	check("coredhcp_failover_peer_connected", 0)
	if d := counterValue(t, reg, "coredhcp_failover_peer_disconnects_total"); d < 1 {
		t.Errorf("peer_disconnects_total = %v after the peer stopped", d)
	}
	// Stopped, the session's gauges vanish from its registry.
	p.stop()
	if _, ok := value(t, reg, "coredhcp_failover_state"); ok {
		t.Error("A closed session still reports its state")
	}
}
