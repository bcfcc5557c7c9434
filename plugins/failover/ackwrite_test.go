package failover

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// An acknowledgement that lowers PeerExpiry and whose write fails is
// written again by the next Sweep once the store works: before the fix
// the disk kept the higher value, which came back at a restart, and the
// server renewed a client up to MCLT past an expiry the peer no longer
// knew (the simulation's storefail finding, seed 127).
func TestALoweredPeerExpiryWhoseWriteFailedIsWrittenAgain(t *testing.T) {
	mem := lease.NewMemoryStore()
	const ip = "192.0.2.100"
	now := int64(1_800_000_000)
	if err := mem.Write([]lease.Binding{{IP: mustIP(ip), State: lease.Active, HWAddr: []byte{1, 2, 3, 4, 5, 6},
		Start: now - 10, End: now + 100, PeerExpiry: now + 1000, SentExpiry: now + 200, Pending: true}}); err != nil {
		t.Fatal(err)
	}
	fs := &failingStore{Store: mem}
	h := newHarnessOver(t, smallPool, fs, mem, nil)
	fs.fail(errors.New("database is locked"))
	b, _ := h.s.Get(mustIP(ip))
	if !h.s.Acked(b, now) {
		t.Fatal("Acked refused the binding as sent")
	}
	if m, _ := h.s.Get(mustIP(ip)); m.PeerExpiry != now+200 {
		t.Fatalf("In memory after the ack: PeerExpiry %d, want the lower %d", m.PeerExpiry-now, 200)
	}
	// The failed write is recorded once its commit settles.
	waitFor(t, "the failed write", func() bool {
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		return h.s.unsaved[mustIP(ip)]
	})
	if d, _ := h.stored(ip); d.PeerExpiry != now+1000 {
		t.Fatalf("The failing store holds PeerExpiry now+%d", d.PeerExpiry-now)
	}
	fs.fail(nil)
	h.s.Sweep()
	waitFor(t, "the lowered PeerExpiry on disk", func() bool {
		d, _ := h.stored(ip)
		return d.PeerExpiry == now+200 && !d.Pending
	})
}

// waitFor polls cond (another goroutine settles a write) for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("Waited 5s for %s", what)
		}
	}
}
