package failover

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// heldCommitter is a Committer whose writes settle only when the test
// finishes their batches.
type heldCommitter struct {
	mu      sync.Mutex
	batches []*lease.Batch
	rows    []lease.Binding
}

func (c *heldCommitter) Submit(b lease.Binding) *lease.Batch {
	c.mu.Lock()
	defer c.mu.Unlock()
	bt := lease.NewPending()
	c.batches = append(c.batches, bt)
	c.rows = append(c.rows, b)
	return bt
}

func (c *heldCommitter) Close() error { return nil }

// submitted is how many writes were submitted, and the last of them.
func (c *heldCommitter) submitted() (int, *lease.Batch, lease.Binding) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.batches) == 0 {
		return 0, nil, lease.Binding{}
	}
	return len(c.batches), c.batches[len(c.batches)-1], c.rows[len(c.rows)-1]
}

// TestASweepExpiryWhoseWriteFailsIsNeitherSeenNorKept: the sweep's expiry
// of an ended lease is hidden from the session while it is written, and
// if the write fails memory goes back to the ended ACTIVE lease, which is
// what the disk holds; the next sweep expires it again. Before the fix the
// EXPIRED was visible while written and stayed in memory after the
// failure: the session sent it, the peer freed the address and gave it to
// another client, while this server, restarted from its disk, still held
// the lease for the first (docs/simulation.md, seed 402780).
func TestASweepExpiryWhoseWriteFailsIsNeitherSeenNorKept(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	t0 := clk.Now().Unix()
	hba, err := lbhash.FromSplit(128)
	if err != nil {
		t.Fatal(err)
	}
	rel := relation.New("lan1", &relation.View{Primary: true, MyState: fsm.Normal, PeerState: fsm.Normal,
		Connected: true, Contacted: true, MCLT: 30, HBA: hba, LBMaxSecs: 3, MayServe: true})
	var mu sync.Mutex
	var told []lease.Binding
	cfg, err := parse(strings.Fields("name=lan1 db=/unused pool=192.0.2.100-192.0.2.103 lease-time=600"), lanAddrs)
	if err != nil {
		t.Fatal(err)
	}
	commit := &heldCommitter{}
	s, err := loadServerWith(cfg, lease.NewMemoryStore(), clk.Now, rel, prometheus.NewRegistry(), commit)
	if err != nil {
		t.Fatal(err)
	}
	rel.SetNotify(func(ip lease.IP) {
		b, _ := s.Get(ip)
		mu.Lock()
		told = append(told, b)
		mu.Unlock()
	})
	ip := mustIP("192.0.2.101")
	ended := lease.Binding{IP: ip, State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 7}, Start: t0 - 100, End: t0 - 1}
	s.mu.Lock()
	s.setLocked(ended)
	s.mu.Unlock()

	sweep := func() (done chan struct{}) {
		done = make(chan struct{})
		go func() { s.Sweep(); close(done) }()
		return done
	}
	n0, _, _ := commit.submitted()
	done := sweep()
	waitFor(t, "the expiry submitted", func() bool { n, _, _ := commit.submitted(); return n > n0 })
	_, batch, row := commit.submitted()
	if row.State != lease.Expired {
		t.Fatalf("The sweep wrote %s, want expired", row)
	}
	if b, ok := s.Get(ip); ok {
		t.Fatalf("While its write runs the session sees %s", b)
	}
	if s.Sent(row) {
		t.Fatal("The expiry being written was let go to the peer")
	}
	batch.Finish(errors.New("database is locked"))
	<-done
	if b, _ := s.Observe(ip); b.State != lease.Active || b.End != ended.End {
		t.Fatalf("In memory after the failed write: %s, want the ended ACTIVE lease the disk holds", b)
	}
	mu.Lock()
	if len(told) != 1 || told[0].State != lease.Active {
		t.Fatalf("The session was told %v, want the ACTIVE lease once", told)
	}
	mu.Unlock()

	// The next sweep expires it again, and this time it is stored.
	n0, _, _ = commit.submitted()
	done = sweep()
	waitFor(t, "the expiry submitted again", func() bool { n, _, _ := commit.submitted(); return n > n0 })
	_, batch, row = commit.submitted()
	if row.State != lease.Expired || row.IP != ip {
		t.Fatalf("The next sweep wrote %s, want %s expired", row, ip)
	}
	batch.Finish(nil)
	<-done
	if b, ok := s.Get(ip); !ok || b.State != lease.Expired {
		t.Fatalf("After the stored expiry the session sees %s", b)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(told) != 2 || told[1].State != lease.Expired {
		t.Fatalf("The session was told %v, want the EXPIRED last", told)
	}
}
