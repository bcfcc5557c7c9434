package failover

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// announced collects what the server tells its session (relation.Changed).
type announced chan lease.IP

// next returns the next announcement, failing if there is none.
func (a announced) next(t *testing.T, when string) lease.IP {
	t.Helper()
	select {
	case ip := <-a:
		return ip
	default:
		t.Fatalf("%s: nothing announced", when)
		return 0
	}
}

// drain forgets what was announced so far.
func (a announced) drain() {
	for {
		select {
		case <-a:
		default:
			return
		}
	}
}

// newStorePair is newPairHarnessOver for the primary in NORMAL, with the
// announcements to the session.
func newStorePair(t *testing.T, wrap func(*lease.MemoryStore) lease.Store) (*harness, announced) {
	t.Helper()
	h, rel := newPairHarnessOver(t, true, 0, fsm.Normal, wrap)
	ch := make(announced, 64)
	rel.SetNotify(func(ip lease.IP) { ch <- ip })
	return h, ch
}

// clientChanges are the changes a client makes to its address, each with
// the state it leaves the binding in. bound says whether it needs the
// address bound to client 1 first.
var clientChanges = []struct {
	name  string
	bound bool
	pkt   func(t *testing.T, ip string) *dhcpv4.DHCPv4
	state lease.State
}{
	{"request", false, func(t *testing.T, ip string) *dhcpv4.DHCPv4 {
		return packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip))
	}, lease.Active},
	{"renewal", true, func(t *testing.T, ip string) *dhcpv4.DHCPv4 {
		return packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip)))
	}, lease.Active},
	{"release", true, func(t *testing.T, ip string) *dhcpv4.DHCPv4 {
		return packet(t, 1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP(ip)))
	}, lease.Released},
	{"decline", true, func(t *testing.T, ip string) *dhcpv4.DHCPv4 {
		return packet(t, 1, dhcpv4.MessageTypeDecline, requested(ip))
	}, lease.Abandoned},
}

// While a client's change of an address is written, the binding in
// memory may never reach the disk: the session must not see it, so that
// the peer is never told of (nor acknowledges) a binding that may be
// undone. The address is announced once the write has settled, and the
// session then reads the durable binding. Before the fix Get showed a
// REQUEST's binding during its write, and RELEASE and DECLINE writes were
// not counted at all.
func TestTheSessionNeverSeesABindingWhileItIsWritten(t *testing.T) {
	const ip = "192.0.2.100"
	for _, tc := range clientChanges {
		t.Run(tc.name, func(t *testing.T) {
			var gs *gatedStore
			h, ch := newStorePair(t, func(m *lease.MemoryStore) lease.Store {
				gs = &gatedStore{Store: m, entered: make(chan struct{}), release: make(chan error)}
				return gs
			})
			if tc.bound {
				done := make(chan struct{})
				go func() { h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip))); close(done) }()
				<-gs.entered
				gs.release <- nil
				<-done
				h.clock.Advance(time.Minute)
			}
			ch.drain()
			before, _ := h.s.Get(mustIP(ip))
			done := make(chan struct{})
			go func() { h.do(tc.pkt(t, ip)); close(done) }()
			<-gs.entered // the change is in memory, its write under way
			// Errorf, not Fatalf: the write must be let go.
			if b, ok := h.s.Get(mustIP(ip)); ok {
				t.Errorf("During the write the session sees %s", b.String())
			}
			if tc.bound && h.s.Sent(before) {
				t.Error("During the write the binding it replaces was recorded as sent")
			}
			select {
			case got := <-ch:
				t.Errorf("During the write %s was announced", got)
			default:
			}
			gs.release <- nil
			<-done
			if got := ch.next(t, "after the write"); got != mustIP(ip) {
				t.Fatalf("Announced %s", got)
			}
			b, ok := h.s.Get(mustIP(ip))
			if !ok || b.State != tc.state {
				t.Fatalf("After the write the session sees %v %s, want %s", ok, b.String(), tc.state)
			}
			if st, _ := h.stored(ip); !sameUpdate(&st, &b) {
				t.Fatalf("The session sees %s, the disk holds %s", b.String(), st.String())
			}
		})
	}
	t.Run("peer update", func(t *testing.T) {
		var gs *gatedStore
		h, ch := newStorePair(t, func(m *lease.MemoryStore) lease.Store {
			gs = &gatedStore{Store: m, entered: make(chan struct{}), release: make(chan error)}
			return gs
		})
		now := h.clock.Now().Unix()
		in := lease.Binding{IP: mustIP(ip), State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 9}, Start: now, End: now + 600, CLTT: now}
		_, _, pc := h.s.ApplyPeer(in, now)
		<-gs.entered
		if b, ok := h.s.Get(mustIP(ip)); ok {
			t.Errorf("During the write of the peer's update the session sees %s", b.String())
		}
		gs.release <- errors.New("disk full")
		if pc.Wait() == nil {
			t.Fatal("The failed write settled without an error")
		}
		if got := ch.next(t, "after the write"); got != mustIP(ip) {
			t.Fatalf("Announced %s", got)
		}
		if b, ok := h.s.Get(mustIP(ip)); !ok || b.State != lease.Free {
			t.Fatalf("After the failed write the session sees %v %s, want the FREE the disk holds", ok, b.String())
		}
	})
}

// A client's change whose write fails is announced too: the session
// sends the binding on disk (memory was put back to it), which may carry
// a change the session asked for while the write ran. Before the fix a
// failed write announced nothing, and such a change was never sent.
func TestAFailedWriteAnnouncesWhatTheDiskHolds(t *testing.T) {
	const ip = "192.0.2.100"
	for _, tc := range clientChanges {
		t.Run(tc.name, func(t *testing.T) {
			h, ch := newStorePair(t, func(m *lease.MemoryStore) lease.Store { return m })
			if tc.bound {
				h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip)))
				h.clock.Advance(time.Minute)
			}
			ch.drain()
			h.store.SetFail(errors.New("disk full"))
			h.do(tc.pkt(t, ip))
			h.store.SetFail(nil)
			if got := ch.next(t, "after the failed write"); got != mustIP(ip) {
				t.Fatalf("Announced %s", got)
			}
			b, ok := h.s.Get(mustIP(ip))
			st, stored := h.stored(ip)
			if ok != (stored || !tc.bound) || stored && !sameUpdate(&st, &b) {
				t.Fatalf("The session sees %v %s, the disk holds %v %s", ok, b.String(), stored, st.String())
			}
			if b.State == tc.state && tc.state != lease.Active {
				t.Fatalf("Memory kept the failed change: %s", b.String())
			}
		})
	}
}

// relation.Bindings.Sent refuses an update read before the binding
// changed: the session sends the newer one instead, and the stale one is
// not recorded as transmitted.
func TestSentRefusesABindingThatChangedSinceItWasRead(t *testing.T) {
	const ip = "192.0.2.100"
	h, _ := newStorePair(t, func(m *lease.MemoryStore) lease.Store { return m })
	h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, requested(ip)))
	old, _ := h.s.Get(mustIP(ip))
	h.clock.Advance(time.Minute)
	h.mustAck(packet(t, 1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip))))
	if h.s.Sent(old) {
		t.Fatal("Sent accepted the binding read before the renewal")
	}
	if b, _ := h.s.Get(mustIP(ip)); b.Transmitted {
		t.Fatal("The renewal was recorded as transmitted when the update before it went")
	}
	cur, _ := h.s.Get(mustIP(ip))
	if !h.s.Sent(cur) {
		t.Fatal("Sent refused the current binding")
	}
	if b, _ := h.s.Get(mustIP(ip)); !b.Transmitted {
		t.Fatal("The current binding was not recorded as transmitted")
	}
	// Changes that sameBinding does not see go on the wire too.
	changed := cur
	changed.SentExpiry++
	if h.s.Sent(changed) {
		t.Fatal("Sent accepted a binding with another potential expiry")
	}
}
