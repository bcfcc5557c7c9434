package failover

import (
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/ratelimit"
)

// When the lease database cannot be written (disk full, read-only,
// locked), this server must not hand out what it cannot remember (docs/invariants.md,
// invariant 2): a REQUEST whose lease cannot be stored gets no ACK -- not
// a NAK, which would make the client drop an address it may still hold;
// it retransmits, and is answered once a write succeeds. What it can
// answer safely it still does: a renewal whose stored lease still runs is
// ACKed for what remains of it (RFC 2131 §4.3.2 lets the server choose the
// lease time), since nothing new needs remembering -- but not a client
// SELECTING after a DISCOVER, which holds no lease and may have released
// that one to the peer. Every request still
// tries its write, so service resumes by itself with the first write that
// succeeds. Failures are logged at Error, at most once per period with
// their count; the recovery is logged once.

// minStoredRenewal is the least remaining time of a stored lease worth
// answering a renewal with while the database fails: below it the client
// would be back before the answer is of use.
const minStoredRenewal = 10

// storeHealth follows the outcome of the writes.
type storeHealth struct {
	failing  atomic.Bool
	failures atomic.Int64
	log      ratelimit.Limiter
}

// wrote records the outcome of a write of what (e.g. "lease") and returns
// err.
func (s *Server) wrote(err error, what string) error {
	h := &s.health
	if err == nil {
		if h.failing.CompareAndSwap(true, false) {
			log.WithField("failed-writes", h.failures.Swap(0)).Warn("lease database writable again: new leases are ACKed again")
		}
		return nil
	}
	h.failing.Store(true)
	h.failures.Add(1)
	h.log.Do(s.now(), func(n int) {
		log.WithError(err).WithFields(logrus.Fields{"db": s.cfg.DB, "failed-writes": n, "writing": what}).
			Error("LEASE DATABASE WRITE FAILED: no new lease is ACKed until it works again; renewals within stored leases are still answered")
	})
	return err
}

// StoreFailing reports whether the last write to the lease database failed.
func (s *Server) StoreFailing() bool { return s.health.failing.Load() }
