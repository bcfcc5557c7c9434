package leasesync

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/failover"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
)

// benchPair starts a primary and a secondary on loopback over the given
// stores, and waits until both are NORMAL and the initial pool balance is
// acknowledged.
func benchPair(b *testing.B, pStore, sStore lease.Store) (p, s *node) {
	b.Helper()
	port := func() int {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	pp, sp := port(), port()
	// Values in memory only (the pool is never a destination).
	const line = "name=bench db=/unused pool=198.18.0.10-198.18.255.250 subnet=198.18.0.0/16 lease-time=3600"
	start := func(name, ls string, store lease.Store, id net.IP) *node {
		sess, err := SessionFromLine(strings.Fields(ls), nil)
		if err != nil {
			b.Fatal(err)
		}
		sess.reconnect = 50 * time.Millisecond
		sess.startupTimeout = 1
		srv, err := failover.StartFromLine(strings.Fields(line), store, time.Now, sess.Relationship())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { srv.Shutdown() })
		return &node{name: name, s: sess, srv: srv, id: id}
	}
	p = start("primary", fmt.Sprintf("name=bench role=primary address=127.0.0.1 port=%d peer=127.0.0.1 peer-port=%d mclt=3600 split=128", pp, sp),
		pStore, net.IPv4(192, 0, 2, 1).To4())
	s = start("secondary", fmt.Sprintf("name=bench role=secondary address=127.0.0.1 port=%d peer=127.0.0.1 peer-port=%d", sp, pp),
		sStore, net.IPv4(192, 0, 2, 2).To4())
	waitFor(b, "both NORMAL, the pool balance acknowledged", func() bool {
		for _, n := range []*node{p, s} {
			st, err := n.s.Status()
			if err != nil || st.State != fsm.Normal.String() || st.Queued+st.Unacked > 0 || st.FreeOwn == 0 {
				return false
			}
		}
		return true
	}, p, s)
	return p, s
}

// benchmarkReplicatedACK measures the pair's update path end to end: a
// DORA on the primary (lease stored before the ACK), the change queued to
// the session, sent as BNDUPD within max-unacked-updates, stored by the
// secondary, acknowledged with BNDACK and settled on the primary. ns/op is
// per lease; the clock stops only when every update is acknowledged.
func benchmarkReplicatedACK(b *testing.B, pStore, sStore lease.Store) {
	p, s := benchPair(b, pStore, sStore)
	// Clients whose hash bucket is the primary's; 30,000 of them, so
	// that after the first pass a DORA renews (and updates) a binding.
	var macs []net.HardwareAddr
	for i := 0; len(macs) < 30000; i++ {
		mac := net.HardwareAddr{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		if lbhash.Bucket(lbhash.PacketKey(nil, mac)) < 128 {
			macs = append(macs, mac)
		}
	}
	b.ReportAllocs()
	b.SetParallelism(16)
	var next atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mac := macs[next.Add(1)%uint64(len(macs))]
			d, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
			o := p.handle(d, dhcpv4.MessageTypeOffer)
			if o == nil {
				b.Fatal("no offer")
			}
			r, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.id)),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(o.YourIPAddr)))
			if a := p.handle(r, dhcpv4.MessageTypeAck); a == nil {
				b.Fatal("no ACK")
			}
		}
	})
	waitFor(b, "every update acknowledged", func() bool {
		st, err := p.s.Status()
		return err == nil && st.Queued+st.Unacked == 0
	}, p, s)
}

// handle runs the failover plugin on req as serve4 would, with the reply
// typed mt.
func (n *node) handle(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	resp, _ := dhcpv4.NewReplyFromRequest(req)
	resp.UpdateOption(dhcpv4.OptMessageType(mt))
	resp.UpdateOption(dhcpv4.OptServerIdentifier(n.id))
	out, _ := n.srv.Handler4(req, resp)
	return out
}

func BenchmarkReplicatedACKMemory(b *testing.B) {
	benchmarkReplicatedACK(b, lease.NewMemoryStore(), lease.NewMemoryStore())
}

func BenchmarkReplicatedACKSQLite(b *testing.B) {
	open := func(name string) lease.Store {
		st, err := lease.OpenSQLite(b.TempDir() + "/" + name)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	benchmarkReplicatedACK(b, open("primary.db"), open("secondary.db"))
}
