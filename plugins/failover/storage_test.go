package failover

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coredhcp/coredhcp/logger"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mattn/go-sqlite3"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// logs collects the process's log entries, for assertions.
var logs = test.NewLocal(logger.GetLogger("test").Logger)

func logged(level logrus.Level, text string) []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range logs.AllEntries() {
		if e.Level == level && strings.Contains(e.Message, text) {
			out = append(out, e)
		}
	}
	return out
}

// failingStore is a lease store whose writes fail with err while it is
// set, as a full disk, a read-only file system or a locked database make
// them fail; reads and everything else go to the real store.
type failingStore struct {
	lease.Store
	mu  sync.Mutex
	err error
}

func (f *failingStore) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *failingStore) Write(rows []lease.Binding) error {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Store.Write(rows)
}

// The errors the sqlite store gives in each case.
var storageFailures = []struct {
	name string
	err  error
}{
	{"disk full", fmt.Errorf("writing leases: %w", &os.PathError{Op: "write", Path: "lan1.db-wal", Err: syscall.ENOSPC})},
	{"read-only", fmt.Errorf("writing leases: %w", sqlite3.Error{Code: sqlite3.ErrReadonly})},
	{"locked", fmt.Errorf("writing leases: %w", sqlite3.Error{Code: sqlite3.ErrBusy})},
}

// newFailingHarness is a single server over a real sqlite file wrapped in a
// failingStore.
func newFailingHarness(t *testing.T) (*harness, *failingStore) {
	t.Helper()
	db, err := lease.OpenSQLite(filepath.Join(t.TempDir(), "lan1.db"))
	if err != nil {
		t.Fatal(err)
	}
	fs := &failingStore{Store: db}
	return newHarnessOver(t, smallPool, fs, nil, nil), fs
}

// storedIn returns the binding of ip on disk.
func storedIn(t *testing.T, st lease.Store, ip string) (lease.Binding, bool) {
	t.Helper()
	want := mustIP(ip)
	var found lease.Binding
	var ok bool
	if err := st.Load(func(b lease.Binding) error {
		if b.IP == want {
			found, ok = b, true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found, ok
}

func TestFailingStorageStopsNewLeasesAndRecoversByItself(t *testing.T) {
	for _, tc := range storageFailures {
		t.Run(tc.name, func(t *testing.T) {
			h, fs := newFailingHarness(t)
			renew := func(n int, ip string) *dhcpv4.DHCPv4 {
				return packet(t, n, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip)))
			}
			ip1 := h.dora(1) // a one-hour lease, stored
			before, _ := storedIn(t, fs, ip1)
			h.clock.Advance(10 * time.Minute)
			logs.Reset()
			fs.fail(tc.err)

			// A new client is offered an address (an offer promises
			// nothing) but its REQUEST gets no ACK: not a NAK, it
			// retransmits.
			ip2 := h.offer(2)
			h.mustDrop(packet(t, 2, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip2)))
			if b, ok := storedIn(t, fs, ip2); ok {
				t.Fatalf("A lease that failed to store is on disk: %s", b)
			}
			if !h.s.StoreFailing() {
				t.Fatal("StoreFailing() = false after a failed write")
			}

			// A renewal of the stored lease is answered with what is
			// left of it; nothing is written.
			resp := h.mustAck(renew(1, ip1))
			if got := resp.IPAddressLeaseTime(0); got != 50*time.Minute {
				t.Fatalf("Renewal while the disk fails: lease %v, want the 50m left", got)
			}
			if got := resp.IPAddressRenewalTime(0); got != 25*time.Minute {
				t.Fatalf("T1 %v, want half the lease", got)
			}
			if b, _ := storedIn(t, fs, ip1); b.End != before.End {
				t.Fatalf("Stored end moved from %d to %d", before.End, b.End)
			}
			// A release that cannot be stored leaves the lease as the
			// disk has it.
			h.do(packet(t, 1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP(ip1))))
			if b, _ := h.s.Get(mustIP(ip1)); b.State != lease.Active || b.End != before.End {
				t.Fatalf("After an unstored release memory holds %s, the disk %s", b, before)
			}

			// Loud, but not once per packet.
			for i := 0; i < 20; i++ {
				h.mustDrop(packet(t, 2, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip2)))
			}
			errs := logged(logrus.ErrorLevel, "LEASE DATABASE WRITE FAILED")
			if len(errs) != 1 || !errors.Is(errs[0].Data[logrus.ErrorKey].(error), tc.err) {
				t.Fatalf("Failures logged %d times (%v), want once with the error", len(errs), errs)
			}
			h.clock.Advance(11 * time.Second)
			h.mustDrop(packet(t, 2, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip2)))
			// Since the first line: the renewal's, the release's, the
			// 20 requests' and this one's failed writes.
			if errs = logged(logrus.ErrorLevel, "LEASE DATABASE WRITE FAILED"); len(errs) != 2 || errs[1].Data["failed-writes"] != 23 {
				t.Fatalf("A period later: %d lines, last %v; want 2, the last counting 23 failures", len(errs), errs[len(errs)-1].Data)
			}

			// Near its end a stored lease is not worth answering from.
			h.clock.Advance(time.Duration(before.End-h.clock.Now().Unix()-5) * time.Second)
			h.mustDrop(renew(1, ip1))

			// The disk recovers: the next request is ACKed and stored,
			// and the recovery is logged once.
			fs.fail(nil)
			h.mustAck(packet(t, 2, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip2)))
			if b, ok := storedIn(t, fs, ip2); !ok || b.State != lease.Active {
				t.Fatalf("After recovery the lease is not stored: %s", b)
			}
			h.mustAck(renew(1, ip1))
			if h.s.StoreFailing() || len(logged(logrus.WarnLevel, "lease database writable again")) != 1 {
				t.Fatalf("Recovery: failing=%v, logged %d times", h.s.StoreFailing(), len(logged(logrus.WarnLevel, "writable again")))
			}
		})
	}
}

// A peer's update that cannot be stored is refused (leasesync sends the
// BNDACK with a reject reason) and memory goes back to what the disk has
// before that BNDACK can leave.
func TestFailingStorageRefusesPeerUpdates(t *testing.T) {
	h, _ := newPairHarness(t, true, 128, fsm.Normal)
	h.store.SetFail(storageFailures[0].err)
	now := h.clock.Now().Unix()
	var dones []*lease.Batch
	// The second address is updated twice in the same commit (its
	// client renewed): both changes come off.
	for i, ip := range []string{"192.0.2.101", "192.0.2.102", "192.0.2.102"} {
		in := lease.Binding{IP: mustIP(ip), State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, byte(min(i, 1)), 9}, End: now + 600 + int64(i)}
		r, msg, done := h.s.ApplyPeer(in, now)
		if r != 0 {
			t.Fatalf("ApplyPeer(%s) = %d %s", ip, r, msg)
		}
		dones = append(dones, done)
	}
	for i, done := range dones {
		if err := done.Wait(); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Update %d settled with %v, want the disk's error", i, err)
		}
	}
	for _, ip := range []string{"192.0.2.101", "192.0.2.102"} {
		if b, ok := h.s.Get(mustIP(ip)); ok && b.State == lease.Active {
			t.Errorf("After the failed commit settled, memory still holds the peer's %s", b)
		}
	}

	// Once the disk works, the update the peer sends again is stored.
	h.store.SetFail(nil)
	in := lease.Binding{IP: mustIP("192.0.2.101"), State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 9}, End: now + 600}
	if r, msg, done := h.s.ApplyPeer(in, now); r != 0 || done.Wait() != nil {
		t.Fatalf("ApplyPeer after recovery = %d %s %v", r, msg, done.Err())
	}
	if b, _ := h.s.Get(in.IP); b.State != lease.Active {
		t.Fatalf("After recovery memory holds %s", b)
	}
}

// Pool balancing that cannot be stored moves nothing: the addresses stay
// ours in memory as on disk, and nothing is left pending to reach the
// peer later.
func TestFailingStorageTransfersNothing(t *testing.T) {
	h, _ := newPairHarness(t, true, 128, fsm.Normal)
	now := h.clock.Now().Unix()
	ownBefore, _ := h.s.FreeCounts()
	h.store.SetFail(storageFailures[1].err)
	if moved := h.s.Transfer(2, now); len(moved) != 0 {
		t.Fatalf("Transfer with a failing disk moved %v", moved)
	}
	if own, _ := h.s.FreeCounts(); own != ownBefore {
		t.Fatalf("Free addresses of ours: %d after a failed transfer, %d before", own, ownBefore)
	}
	var pending []lease.IP
	h.s.Pending(func(ip lease.IP) { pending = append(pending, ip) })
	if len(pending) != 0 {
		t.Fatalf("Pending after a failed transfer: %v", pending)
	}

	h.store.SetFail(nil)
	moved := h.s.Transfer(2, now)
	if len(moved) != 2 {
		t.Fatalf("Transfer after recovery moved %v, want 2 addresses", moved)
	}
	for _, ip := range moved {
		if b, _ := h.s.Get(ip); b.State != lease.Backup || !b.Pending {
			t.Errorf("Moved %s is %s in memory, want BACKUP and pending", ip, b)
		}
	}
}

// Two changes of one address whose writes fail in separate commits: the
// first, already replaced in memory when its write fails, cannot come off
// then; when the second's write fails memory goes back to what preceded
// both (the disk's), not to the first change, which was never stored.
func TestUndoOfTwoFailedChangesInSeparateCommits(t *testing.T) {
	h, _ := newPairHarness(t, true, 128, fsm.Normal)
	ip := mustIP("192.0.2.101")
	orig := lease.Binding{IP: ip, State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 9}, End: 1_800_000_300}
	first, second := orig, orig
	first.End, second.End = orig.End+600, orig.End+1200
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.setLocked(second)
	h.s.undoLocked(first, orig, true) // the first commit fails
	if b, _ := h.s.table.Get(ip); b.End != second.End {
		t.Fatalf("Undoing a replaced change changed memory to %s", b)
	}
	h.s.undoLocked(second, first, true) // then the second
	if b, _ := h.s.table.Get(ip); b.End != orig.End {
		t.Fatalf("After both writes failed memory holds %s, want the stored %s", b, orig)
	}
	if len(h.s.superseded) != 0 {
		t.Fatalf("superseded not emptied: %v", h.s.superseded)
	}
}
