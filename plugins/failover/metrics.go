package failover

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/metrics"
)

// answer is a kind of reply counted in coredhcp_failover_dhcp_answers_total.
type answer uint8

const (
	answerOffer answer = iota
	answerAck
	answerNak
	answerInform
	numAnswers
)

var answerNames = [numAnswers]string{"offer", "ack", "nak", "inform"}

// drop is why a request got no answer, counted in
// coredhcp_failover_dhcp_drops_total.
type drop uint8

const (
	dropOverload      drop = iota // maxInFlight requests in progress
	dropForeignRelay              // relayed from a network this line does not serve
	dropStateForbids              // the failover state serves no client
	dropNotOurBucket              // load balancing: the peer's hash bucket
	dropPoolExhausted             // no address this server may give
	dropWaitingPeer               // restarted without contact: renewals only
	dropOtherServer               // the client chose another server's offer
	dropPeerAddress               // a free address of the peer's, or outside the pools
	dropMalformed                 // a request that names no address
	dropStoreError                // the lease could not be stored
	dropNotClient                 // not a client message type
	dropNoIdentity                // neither a hardware address nor a client identifier
	dropPingAnswered              // every address probed answered a ping (ping-check)
	numDrops
)

var dropNames = [numDrops]string{"overload", "foreign_relay", "state_forbids", "not_our_bucket", "pool_exhausted",
	"waiting_for_peer", "other_server", "peer_address", "malformed", "store_error", "not_client_message",
	"no_client_identity", "ping_answered"}

// ping is the outcome of a ping-check probe, counted in
// coredhcp_failover_ping_checks_total.
type ping uint8

const (
	pingSilent   ping = iota // no reply: the address is offered
	pingAnswered             // a host answered: the address is abandoned
	pingError                // no probe could be sent: offered unchecked
	numPings
)

var pingNames = [numPings]string{"silent", "answered", "error"}

// serverMetrics counts the handler's answers and drops (counters created
// once, so that counting a packet allocates nothing) and reports the
// pools' addresses by state and owner when scraped.
type serverMetrics struct {
	s       *Server
	reg     *prometheus.Registry
	answers [numAnswers]prometheus.Counter
	drops   [numDrops]prometheus.Counter
	pings   [numPings]prometheus.Counter
	pool    *prometheus.Desc
	free    *prometheus.Desc
}

// registerMetrics creates the server's metrics in reg. The counters are
// shared by the lines of one relationship name (single servers all have
// the name ""); the pool gauges are an unchecked collector, one per line,
// told apart by their pool label, unregistered by Close.
func registerMetrics(s *Server, reg *prometheus.Registry) (*serverMetrics, error) {
	rel := prometheus.Labels{"relationship": s.cfg.Name}
	m := &serverMetrics{
		s:   s,
		reg: reg,
		pool: prometheus.NewDesc(metrics.Name("pool_addresses"),
			"Addresses of each pool by binding state (free: the primary's free addresses, backup: the secondary's).",
			[]string{"pool", "state"}, rel),
		free: prometheus.NewDesc(metrics.Name("pool_free_addresses"),
			"Free addresses of each pool by owner: this server (local) or its failover peer (peer).",
			[]string{"pool", "owner"}, rel),
	}
	vec := func(name, help, label string) (*prometheus.CounterVec, error) {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: metrics.Subsystem,
			Name: name, Help: help, ConstLabels: rel}, []string{label})
		if err := reg.Register(v); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if old, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					return old, nil
				}
			}
			return nil, err
		}
		return v, nil
	}
	answers, err := vec("dhcp_answers_total", "DHCP replies sent, by type.", "type")
	if err != nil {
		return nil, err
	}
	drops, err := vec("dhcp_drops_total", "DHCP requests left unanswered, by reason.", "reason")
	if err != nil {
		return nil, err
	}
	pings, err := vec("ping_checks_total", "Addresses probed before an offer (ping-check=), by outcome.", "result")
	if err != nil {
		return nil, err
	}
	for i, n := range pingNames {
		m.pings[i] = pings.WithLabelValues(n)
	}
	for i, n := range answerNames {
		m.answers[i] = answers.WithLabelValues(n)
	}
	for i, n := range dropNames {
		m.drops[i] = drops.WithLabelValues(n)
	}
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *serverMetrics) unregister() { m.reg.Unregister(m) }

// Dropped is how many requests this server left unanswered for reason
// (a reason label of coredhcp_failover_dhcp_drops_total, 0 for a name it
// does not know), read without gathering the whole registry: the
// simulation reads it around every DISCOVER.
func (s *Server) Dropped(reason string) float64 {
	for i, n := range dropNames {
		if n == reason {
			var m dto.Metric
			if err := s.met.drops[i].Write(&m); err != nil {
				return 0
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// Describe implements prometheus.Collector. It describes nothing: the pool
// gauges are unchecked, so that several lines may register them.
func (m *serverMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (m *serverMetrics) Collect(ch chan<- prometheus.Metric) {
	m.s.mu.Lock()
	counts := m.s.table.PoolCounts()
	m.s.mu.Unlock()
	for _, pc := range counts {
		r := pc.Range.String()
		for st := lease.Free; st <= lease.Backup; st++ {
			ch <- prometheus.MustNewConstMetric(m.pool, prometheus.GaugeValue, float64(pc.States[st]), r, st.String())
		}
		own, peer := pc.States[lease.Free], pc.States[lease.Backup]
		if !m.s.primary {
			own, peer = peer, own
		}
		ch <- prometheus.MustNewConstMetric(m.free, prometheus.GaugeValue, float64(own), r, "local")
		ch <- prometheus.MustNewConstMetric(m.free, prometheus.GaugeValue, float64(peer), r, "peer")
	}
}
