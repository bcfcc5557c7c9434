package failover

import (
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// A single server counts its answers and its drops by reason, reports its
// pool by state and owner, passes promlint, and counting allocates
// nothing.
func TestMetricsCountAnswersDropsAndPools(t *testing.T) {
	h := newHarness(t, "db=/x.db pool=192.0.2.100-192.0.2.101 lease-time=600")
	reg := h.s.Registry()
	h.dora(1)
	h.dora(2)
	h.mustDrop(packet(t, 3, dhcpv4.MessageTypeDiscover))                                                    // pool exhausted
	h.mustDrop(packet(t, 4, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.9"), requested("192.0.2.100"))) // another server's offer
	h.mustDrop(packet(t, 5, dhcpv4.MessageTypeRequest, requested("192.0.2.50")))                            // outside the pools
	h.mustNak(packet(t, 6, dhcpv4.MessageTypeRequest, requested("198.51.100.7")))                           // wrong network
	h.mustDrop(packet(t, 7, dhcpv4.MessageTypeRequest))                                                     // names no address

	want := `
# HELP coredhcp_failover_dhcp_answers_total DHCP replies sent, by type.
# TYPE coredhcp_failover_dhcp_answers_total counter
coredhcp_failover_dhcp_answers_total{relationship="",type="ack"} 2
coredhcp_failover_dhcp_answers_total{relationship="",type="inform"} 0
coredhcp_failover_dhcp_answers_total{relationship="",type="nak"} 1
coredhcp_failover_dhcp_answers_total{relationship="",type="offer"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "coredhcp_failover_dhcp_answers_total"); err != nil {
		t.Error(err)
	}
	for reason, n := range map[string]float64{"pool_exhausted": 1, "other_server": 1, "peer_address": 1, "malformed": 1, "not_our_bucket": 0} {
		if got := testutil.ToFloat64(h.s.met.drops[dropIndex(t, reason)]); got != n {
			t.Errorf("drops{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	pools := `
# HELP coredhcp_failover_pool_free_addresses Free addresses of each pool by owner: this server (local) or its failover peer (peer).
# TYPE coredhcp_failover_pool_free_addresses gauge
coredhcp_failover_pool_free_addresses{owner="local",pool="192.0.2.100-192.0.2.101",relationship=""} 0
coredhcp_failover_pool_free_addresses{owner="peer",pool="192.0.2.100-192.0.2.101",relationship=""} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(pools), "coredhcp_failover_pool_free_addresses"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(h.s.met, "coredhcp_failover_pool_addresses"); n != 7 {
		t.Errorf("%d pool_addresses series, want one per binding state", n)
	}
	problems, err := promlint.NewWithMetricFamilies(gatherAll(t, h)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if a := testing.AllocsPerRun(100, func() {
		h.s.met.answers[answerAck].Inc()
		h.s.met.drops[dropNotOurBucket].Inc()
	}); a != 0 {
		t.Errorf("Counting a packet allocates %v times", a)
	}
}

func dropIndex(t *testing.T, reason string) drop {
	for i, n := range dropNames {
		if n == reason {
			return drop(i)
		}
	}
	t.Fatalf("No drop reason %q", reason)
	return 0
}

func gatherAll(t *testing.T, h *harness) []*dto.MetricFamily {
	t.Helper()
	mfs, err := h.s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}
