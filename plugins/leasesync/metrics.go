package leasesync

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/metrics"
)

// sessionMetrics are the relationship's metrics: counters the session
// goroutine increments (never per DHCP packet), and gauges read from a
// status snapshot when the registry is scraped. Every series carries the
// relationship name.
type sessionMetrics struct {
	s *Session

	updatesSent, updatesReceived, updatesAcked prometheus.Counter
	rejectedByPeer, rejectedByUs               prometheus.Counter
	connects, disconnects, stateChanges        prometheus.Counter
	rtt                                        prometheus.Histogram

	state, stateDuration, peerConnected, contactAge, skew *prometheus.Desc
	unacked, queued, mayServe, mclt                       *prometheus.Desc
}

func newSessionMetrics(s *Session) *sessionMetrics {
	rel := prometheus.Labels{"relationship": s.cfg.Name}
	counter := func(name, help string, extra prometheus.Labels) prometheus.Counter {
		l := prometheus.Labels{}
		for k, v := range rel {
			l[k] = v
		}
		for k, v := range extra {
			l[k] = v
		}
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: metrics.Subsystem,
			Name: name, Help: help, ConstLabels: l})
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(metrics.Name(name), help, labels, rel)
	}
	const rejectHelp = "Binding updates (BNDUPD) rejected, by the peer (ours) or by us (the peer's)."
	return &sessionMetrics{
		s:               s,
		updatesSent:     counter("binding_updates_sent_total", "Binding updates (BNDUPD) sent to the peer.", nil),
		updatesReceived: counter("binding_updates_received_total", "Binding updates (BNDUPD) received from the peer.", nil),
		updatesAcked:    counter("binding_updates_acked_total", "Binding updates sent to the peer and acknowledged (BNDACK without a reject reason).", nil),
		rejectedByPeer:  counter("binding_updates_rejected_total", rejectHelp, prometheus.Labels{"by": "peer"}),
		rejectedByUs:    counter("binding_updates_rejected_total", rejectHelp, prometheus.Labels{"by": "local"}),
		connects:        counter("peer_connects_total", "Connections to the peer established (handshake completed).", nil),
		disconnects:     counter("peer_disconnects_total", "Connections to the peer lost or dropped.", nil),
		stateChanges:    counter("state_changes_total", "Changes of this server's failover state.", nil),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metrics.Namespace, Subsystem: metrics.Subsystem,
			Name: "binding_update_rtt_seconds", Help: "Time from sending a binding update (BNDUPD) to its BNDACK.",
			ConstLabels: rel, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		state: desc("state", "Failover state of this server (server=local) and the last known state of the peer (server=peer): 1 for the current state.",
			"server", "state"),
		stateDuration: desc("state_duration_seconds", "Time since this server entered its current failover state."),
		peerConnected: desc("peer_connected", "1 while the connection to the peer is established."),
		contactAge:    desc("contact_age_seconds", "Time since the last message from the peer (absent until one arrives)."),
		skew:          desc("clock_skew_seconds", "The peer's clock minus ours, as last measured on the link."),
		unacked:       desc("binding_updates_unacked", "Binding updates sent and not yet acknowledged by the peer."),
		queued:        desc("binding_updates_queued", "Binding updates waiting to be sent (queue depth)."),
		mayServe:      desc("serving", "1 while this server's state lets it answer DHCP clients."),
		mclt:          desc("mclt_seconds", "The maximum client lead time in force."),
	}
}

func (m *sessionMetrics) counters() []prometheus.Collector {
	return []prometheus.Collector{m.updatesSent, m.updatesReceived, m.updatesAcked, m.rejectedByPeer, m.rejectedByUs,
		m.connects, m.disconnects, m.stateChanges, m.rtt}
}

// Describe implements prometheus.Collector.
func (m *sessionMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.counters() {
		c.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{m.state, m.stateDuration, m.peerConnected, m.contactAge, m.skew, m.unacked, m.queued, m.mayServe, m.mclt} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the counters, and gauges from a
// status snapshot taken by the session goroutine.
func (m *sessionMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.counters() {
		c.Collect(ch)
	}
	if !m.s.running.Load() {
		return
	}
	st, err := m.s.snapshot()
	if err != nil {
		return
	}
	now := m.s.clk.Now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range fsm.AllStates {
		name := s.String()
		gauge(m.state, metrics.Bool(name == st.State), "local", name)
		gauge(m.state, metrics.Bool(name == st.PeerState), "peer", name)
	}
	gauge(m.stateDuration, now.Sub(time.Unix(st.Since, 0)).Seconds())
	gauge(m.peerConnected, metrics.Bool(st.Connected))
	if st.LastContact != 0 {
		gauge(m.contactAge, now.Sub(time.Unix(st.LastContact, 0)).Seconds())
	}
	gauge(m.skew, float64(st.ClockSkew))
	gauge(m.unacked, float64(st.Unacked))
	gauge(m.queued, float64(st.Queued))
	gauge(m.mayServe, metrics.Bool(st.MayServe))
	gauge(m.mclt, float64(st.MCLT))
}
