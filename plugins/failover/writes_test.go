package failover

import (
	"errors"
	"maps"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// TestARenewalWhileTheDiskFailsIsAnsweredDownTo10sLeft: while the
// database cannot be written, a renewal is answered with what is left of
// the stored lease, as long as that is at least minStoredRenewal (10 s).
func TestARenewalWhileTheDiskFailsIsAnsweredDownTo10sLeft(t *testing.T) {
	h, fs := newFailingHarness(t)
	ip := h.dora(1)
	b, _ := storedIn(t, fs, ip)
	h.clock.Advance(time.Duration(b.End-h.clock.Now().Unix()-minStoredRenewal) * time.Second)
	fs.fail(storageFailures[0].err)
	renew := packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip)))
	if lt := h.mustAck(renew).IPAddressLeaseTime(0); lt != minStoredRenewal*time.Second {
		t.Fatalf("With %ds left: ACK for %v", minStoredRenewal, lt)
	}
	h.clock.Advance(time.Second)
	h.mustDrop(renew)
}

// TestASelectingClientIsNotAnsweredFromTheStoredLease: while the
// database cannot be written, a client that comes back through DISCOVER
// and REQUEST (SELECTING) for the address of its stored lease gets no ACK:
// it holds no lease, it may have released this one to the peer, and an
// answer that nothing remembers would be lost to the peer's RELEASED
// (docs/simulation.md, seed 54722). Its renewal, from a client that holds
// the lease, is still answered.
func TestASelectingClientIsNotAnsweredFromTheStoredLease(t *testing.T) {
	h, fs := newFailingHarness(t)
	ip := h.dora(1)
	fs.fail(storageFailures[0].err)
	if got := h.offer(1); got != ip {
		t.Fatalf("Offered %s, want the stored %s", got, ip)
	}
	h.mustDrop(packet(t, 1, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip)))
	h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip))))
}

// TestEveryWriteOfAnAddressIsCounted: two copies of one REQUEST (a
// retransmission) are written one after the other. While either is being
// written the address counts as being written, so that no answer is taken
// from a binding that is not on disk (issue 15, path 4); the count goes
// down by one as each write ends.
func TestEveryWriteOfAnAddressIsCounted(t *testing.T) {
	h, gs := newGatedHarness(t, smallPool, nil)
	writes := func(ip lease.IP) int {
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		return h.s.writing[ip]
	}
	ip := h.offer(1)
	addr := mustIP(ip)
	req := packet(t, 1, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip))
	answers := make(chan *dhcpv4.DHCPv4, 2)
	send := func() {
		go func() {
			resp, _ := h.do(req)
			answers <- resp
		}()
	}
	send()
	<-gs.entered // the first copy's write is under way
	if n := writes(addr); n != 1 {
		t.Errorf("During the first write: %d writes counted, want 1", n)
	}
	h.clock.Advance(4 * time.Second)
	send()
	h.waitInMemory(addr, h.clock.Now().Unix()+3600)
	if n := writes(addr); n != 2 {
		t.Errorf("With the retransmission queued: %d writes counted, want 2", n)
	}
	gs.release <- nil
	if resp := <-answers; resp == nil {
		t.Fatal("The first copy, stored, got no ACK")
	}
	if n := writes(addr); n != 1 {
		t.Errorf("With the second write still to come: %d writes counted, want 1", n)
	}
	<-gs.entered
	gs.release <- errors.New("database is locked")
	<-answers
	if n := writes(addr); n != 0 {
		t.Errorf("After both writes: %d writes counted, want 0", n)
	}
}

// newGatedHarness starts a server for line over a memory store whose
// writes wait for the test (gatedStore); rel nil: a single server.
func newGatedHarness(t *testing.T, line string, rel *relation.Relationship) (*harness, *gatedStore) {
	t.Helper()
	mem := lease.NewMemoryStore()
	gs := &gatedStore{Store: mem, entered: make(chan struct{}), release: make(chan error)}
	return newHarnessOver(t, line, gs, mem, rel), gs
}

// newHarnessOver starts a server for line over st (mem, if not nil, is
// the memory store under it, for h.stored); rel nil: a single server.
func newHarnessOver(t *testing.T, line string, st lease.Store, mem *lease.MemoryStore, rel *relation.Relationship) *harness {
	t.Helper()
	h := &harness{t: t, store: mem, clock: &clock{now: time.Unix(1_800_000_000, 0)}, line: line}
	cfg, err := parse(strings.Fields(line), lanAddrs)
	if err != nil {
		t.Fatal(err)
	}
	if h.s, err = LoadServer(cfg, st, h.clock.Now, rel); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.s.commit.Close() })
	return h
}

// waitInMemory waits until the binding of ip in memory ends at end (a
// request running in another goroutine has put it there).
func (h *harness) waitInMemory(ip lease.IP, end int64) {
	for {
		h.s.mu.Lock()
		b, _ := h.s.table.Get(ip)
		h.s.mu.Unlock()
		if b.End == end {
			return
		}
		runtime.Gosched()
	}
}

// asyncRequests: send runs a request on its own goroutine, its answer
// (nil if none) goes to answers, of room n; request builds client n's
// REQUEST of ip, SELECTING.
func asyncRequests(t *testing.T, h *harness, n int) (send func(*dhcpv4.DHCPv4), request func(int, string) *dhcpv4.DHCPv4, answers chan *dhcpv4.DHCPv4) {
	answers = make(chan *dhcpv4.DHCPv4, n)
	send = func(req *dhcpv4.DHCPv4) {
		go func() {
			resp, _ := h.do(req)
			answers <- resp
		}()
	}
	request = func(n int, ip string) *dhcpv4.DHCPv4 {
		return packet(t, n, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(ip))
	}
	return send, request, answers
}

// twoCopies sends hold, whose write holds the committer, then each
// client's REQUEST of its address (they share the next commit) and,
// 4 s later, its retransmission (the commit after). It returns when the
// first copies' commit has entered the store and the retransmissions are
// in memory; the caller settles the two commits.
func twoCopies(h *harness, gs *gatedStore, send func(*dhcpv4.DHCPv4), request func(int, string) *dhcpv4.DHCPv4,
	answers chan *dhcpv4.DHCPv4, hold *dhcpv4.DHCPv4, clients map[int]string) {
	send(hold)
	<-gs.entered
	end := h.clock.Now().Unix() + 3600
	each := func(at int64) {
		for _, n := range slices.Sorted(maps.Keys(clients)) {
			send(request(n, clients[n]))
		}
		for _, ip := range clients {
			h.waitInMemory(mustIP(ip), at)
		}
	}
	each(end)
	gs.release <- nil
	<-answers
	<-gs.entered // the first copies
	h.clock.Advance(4 * time.Second)
	each(end + 4)
}

// TestFailedWritesOfTwoAddressesBothGoBackToTheDisk: on two addresses at
// once, a REQUEST's write fails while its retransmission's is queued, and
// then that one fails too. Memory must go back to what the disk holds for
// both (nothing), not to the first copy's binding, which never reached it:
// the record of what a superseded write replaced is kept per address, and
// the records of two addresses live side by side.
func TestFailedWritesOfTwoAddressesBothGoBackToTheDisk(t *testing.T) {
	h, gs := newGatedHarness(t, smallPool, nil)
	send, request, answers := asyncRequests(t, h, 5)
	ipC, ipA, ipB := h.offer(3), h.offer(1), h.offer(2)
	// A third client's write holds the committer, so that both first
	// copies share the next commit and both retransmissions the one after.
	twoCopies(h, gs, send, request, answers, request(3, ipC), map[int]string{1: ipA, 2: ipB})
	busy := errors.New("database is locked")
	gs.release <- busy
	<-gs.entered // the retransmissions
	gs.release <- busy
	for range 4 {
		if resp := <-answers; resp != nil {
			t.Errorf("A copy whose write failed got %s", resp.MessageType())
		}
	}
	for _, ip := range []string{ipA, ipB} {
		if b, ok := h.s.Get(mustIP(ip)); ok && b.State == lease.Active {
			t.Errorf("After both writes failed, memory holds %s, which never reached the disk", b)
		}
	}
}

// TestASucceededWriteEndsTheRecordOfTheFailedOneItReplaced: a REQUEST's
// write fails while its retransmission's is queued, and that one is
// stored. The record of what the failed write replaced (superseded) is
// of no use any more and must go: left behind, such records pile up, one
// per address, until maxSuperseded clears them all at once -- the record
// of a chain still under way included, whose second failure then puts
// back a binding that never reached the disk, and a renewal while the
// store fails is answered from it (durable, writing 0), beyond the lease
// the disk holds.
func TestASucceededWriteEndsTheRecordOfTheFailedOneItReplaced(t *testing.T) {
	h, gs := newGatedHarness(t, smallPool, nil)
	send, request, answers := asyncRequests(t, h, 3)
	ipC, ipA := h.offer(3), h.offer(1)
	// A third client's write holds the committer: the first copy goes
	// in the next commit, its retransmission in the one after.
	twoCopies(h, gs, send, request, answers, request(3, ipC), map[int]string{1: ipA})
	gs.release <- errors.New("database is locked")
	<-gs.entered // the retransmission
	gs.release <- nil
	got := 0
	for range 2 {
		if resp := <-answers; resp != nil {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("%d of the two copies answered, want the stored one", got)
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if rec, ok := h.s.superseded[mustIP(ipA)]; ok {
		t.Fatalf("After the retransmission was stored, the record of the failed copy stays: %+v", rec)
	}
}
