package leasesync

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
