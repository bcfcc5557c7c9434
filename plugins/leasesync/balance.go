package leasesync

import (
	"time"

	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// balanceMode says why a pool balance runs.
type balanceMode uint8

const (
	balanceOnNormal balanceMode = iota // entering NORMAL: move what is due, never ask
	balanceTimer                       // periodic: move beyond the tolerance, ask if starved
	balanceAsked                       // the peer sent POOLREQ: move what is due
	balanceOperator                    // failoverctl rebalance: move what is due, ask if short
)

// balance moves free addresses between the servers as ISC's pool
// balancing does (balanceGive decides how many). It returns how many
// addresses this server gave.
func (s *Session) balance(now time.Time, mode balanceMode) int {
	if !s.m.MayBalance() {
		return 0
	}
	own, peer := s.db.FreeCounts()
	give, ask := balanceGive(s.cfg.Role, mode, own, peer, s.cfg.MaxLeaseMisbalance, s.cfg.MaxLeaseOwnership)
	if ask && s.link != nil {
		log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "own": own, "peer": peer}).
			Info("owning far fewer free addresses than the peer: requesting a pool rebalance")
		if err := s.send(&wire.PoolRequest{}, now); err != nil {
			s.linkDown(err.Error(), now)
			return 0
		}
		s.asked = true
	}
	if give <= 0 {
		return 0
	}
	moved := s.db.Transfer(give, now.Unix())
	for _, ip := range moved {
		s.out.enqueue(ip)
	}
	if len(moved) > 0 {
		log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "own": own, "peer": peer, "moved": len(moved)}).Info("balanced the free addresses with the peer")
	}
	return len(moved)
}

// balanceGive is ISC's pool balance arithmetic (docs/protocol.md §15), pure:
// how many of its free addresses this server gives to the peer, and
// whether it asks the peer for some with POOLREQ. Each side should own half
// of the free addresses; lts, the leases to send, is half the difference
// between what we own and what the peer owns. The primary gives when lts
// is positive (on the timer: only beyond misbalance percent of the free
// addresses); the secondary gives back only what it holds beyond ownership
// percent (max-lease-ownership), so that it keeps a reserve to serve from
// if the link breaks. On the timer and on the operator's rebalance, a
// server that owns far fewer than its share (lts below twice the
// misbalance, negated; on the operator's, any shortfall) asks.
func balanceGive(role Role, mode balanceMode, own, peer, misbalance, ownership int) (give int, ask bool) {
	total := own + peer
	lts := (own - peer) / 2
	thresh := total * misbalance / 100
	hold := total * ownership / 100
	give = lts
	switch {
	case role == Secondary:
		give = lts - hold
	case mode == balanceTimer && lts <= thresh:
		give = 0
	}
	if mode == balanceTimer || mode == balanceOperator {
		panicAt := -2 * thresh
		if panicAt == 0 || mode == balanceOperator {
			panicAt = -1
		}
		ask = lts < panicAt
	}
	return max(give, 0), ask
}
