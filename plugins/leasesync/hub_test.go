package leasesync

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/failover"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// Hub and spoke: relationships whose leasesync lines share address= and
// port= share one listener (listener.go), as ISC dhcpd's.

// The pools of the relationships in these tests, one subnet each.
const (
	poolR1 = "pool=192.0.2.100-192.0.2.199 subnet=192.0.2.0/24 lease-time=600"
	poolR2 = "pool=198.51.100.100-198.51.100.199 subnet=198.51.100.0/24 lease-time=600"
	poolR3 = "pool=203.0.113.100-203.0.113.199 subnet=203.0.113.0/24 lease-time=600"
)

// hubNode is one relationship of a server: its leasesync line (name,
// role, our address and port, the peer's address and port) and its
// store; node.startLine starts it with its failover line.
func hubNode(t *testing.T, who, name, role, addr string, port int, peer string, peerPort int) *node {
	line := fmt.Sprintf("name=%s role=%s address=%s port=%d peer=%s peer-port=%d max-response-delay=5", name, role, addr, port, peer, peerPort)
	if role == "primary" {
		line += " mclt=30 split=128"
	}
	return &node{t: t, name: who, id: net.IPv4(192, 0, 2, 1).To4(), store: lease.NewMemoryStore(), line: line}
}

// One standby (127.0.0.1) is the secondary of two primaries (127.0.0.2
// and 127.0.0.3), both relationships on one port: both reach NORMAL, and
// a primary that stops takes only its own relationship out of NORMAL.
func TestAHubServesTwoRelationshipsOnOnePort(t *testing.T) {
	hubPort, p1, p2 := freePort(t), freePort(t), freePort(t)
	hub1 := hubNode(t, "hub r1", "r1", "secondary", "127.0.0.1", hubPort, "127.0.0.2", p1)
	hub2 := hubNode(t, "hub r2", "r2", "secondary", "127.0.0.1", hubPort, "127.0.0.3", p2)
	spoke1 := hubNode(t, "spoke 1", "r1", "primary", "127.0.0.2", p1, "127.0.0.1", hubPort)
	spoke2 := hubNode(t, "spoke 2", "r2", "primary", "127.0.0.3", p2, "127.0.0.1", hubPort)
	// Both hub relationships start on one port: the second no longer
	// fails to bind.
	hub1.startLine("name=r1 db=/unused " + poolR1)
	hub2.startLine("name=r2 db=/unused " + poolR2)
	spoke1.startLine("name=r1 db=/unused " + poolR1)
	spoke2.startLine("name=r2 db=/unused " + poolR2)
	all := []*node{hub1, hub2, spoke1, spoke2}
	waitFor(t, "both relationships in NORMAL", func() bool { return bothNormal(spoke1, hub1)() && bothNormal(spoke2, hub2)() }, all...)

	disconnects := func(n *node) float64 {
		return counterValue(t, n.s.Registry(), "coredhcp_failover_peer_disconnects_total", "relationship", n.s.cfg.Name)
	}
	spoke1.stop()
	waitFor(t, "r1 on the hub to leave NORMAL", func() bool { return hub1.state() == fsm.CommInterrupted }, hub1, hub2)
	if hub2.state() != fsm.Normal || !hub2.s.Relationship().View().Connected || spoke2.state() != fsm.Normal {
		t.Fatalf("r2 moved when r1's primary stopped: hub %s (connected %t), spoke %s",
			hub2.state(), hub2.s.Relationship().View().Connected, spoke2.state())
	}
	if n := disconnects(hub2); n != 0 {
		t.Fatalf("r2 on the hub lost its link %v times when r1's primary stopped", n)
	}
	if n := disconnects(hub1); n != 1 {
		t.Fatalf("r1 on the hub counted %v disconnects, want 1", n)
	}
}

// hubTargets starts secondary sessions on one port of 127.0.0.1: a and b
// with the peer 127.0.0.2 (two relationships between the same servers),
// c with the peer 127.0.0.3. None dials: the tests connect to them.
func hubTargets(t *testing.T) (a, b, c *target) {
	port := freePort(t)
	a = startTarget(t, targetOpts{name: "a", port: port, failover: poolR1})
	b = startTarget(t, targetOpts{name: "b", port: port, failover: poolR2})
	c = startTarget(t, targetOpts{name: "c", port: port, peer: "127.0.0.3", failover: poolR3})
	return a, b, c
}

// named sets the relationship name of a CONNECT.
func named(name string) func(*wire.Connect) {
	return func(c *wire.Connect) { c.RelationshipName = name }
}

func TestRelationshipsWithTheSamePeerAreToldApartByName(t *testing.T) {
	a, b, c := hubTargets(t)
	// b first, then a, from the same address: each CONNECT reaches the
	// relationship it names.
	if ack := dialFrom(t, b, peerIP).connect(named("b")); ack.RelationshipName != "b" {
		t.Fatalf("CONNECT for b answered by %q", ack.RelationshipName)
	}
	waitTarget(t, b, "b's link to come up", connected(b))
	if a.s.Relationship().View().Connected {
		t.Fatal("b's CONNECT linked a")
	}
	if ack := dialFrom(t, a, peerIP).connect(named("a")); ack.RelationshipName != "a" {
		t.Fatalf("CONNECT for a answered by %q", ack.RelationshipName)
	}
	waitTarget(t, a, "a's link to come up", connected(a))
	if ack := dialFrom(t, c, "127.0.0.3").connect(named("c")); ack.RelationshipName != "c" {
		t.Fatalf("CONNECT for c answered by %q", ack.RelationshipName)
	}
	waitTarget(t, c, "c's link to come up", connected(c))
}

func TestAnUnknownRelationshipNameIsRejectedAsISCDoes(t *testing.T) {
	a, _, _ := hubTargets(t)
	logs.Reset()
	p := dialFrom(t, a, peerIP)
	cfg := primaryCfg(t)
	cfg.Name = "nosuch"
	p.send(connectMsg(&cfg, p.clk.Now().Unix()))
	ack := expect[*wire.ConnectAck](p)
	// ISC: reason 8, the name echoed, no max-unacked-bndupd.
	if ack.RejectReason != wire.RejectInvalidPartner || ack.RelationshipName != "nosuch" ||
		!strings.Contains(ack.Message, "unknown failover relationship name") || ack.MaxUnacked != 0 {
		t.Fatalf("CONNECT naming no relationship answered %s %q (name %q, max-unacked %d)",
			ack.RejectReason, ack.Message, ack.RelationshipName, ack.MaxUnacked)
	}
	p.expectClosed()
	got := logged("unknown relationship")
	if len(got) != 1 || got[0].Data["name"] != "nosuch" || !strings.Contains(got[0].Message, `"a", "b"`) {
		t.Fatalf("The unknown name was logged as %v, want one line naming it and the relationships a and b", got)
	}
	// A stranger is still closed unread, told who may connect.
	dialFrom(t, a, "127.0.0.4").expectClosed()
	if got := logged("refused a failover connection"); len(got) != 1 || !strings.Contains(got[0].Message, "only 127.0.0.2, 127.0.0.3 may connect") {
		t.Fatalf("The stranger was logged as %v", got)
	}
}

// A relationship that stops leaves the listener to the others; the last
// one closes it.
func TestStoppingOneRelationshipKeepsTheOthersListening(t *testing.T) {
	a, b, c := hubTargets(t)
	pb := dialFrom(t, b, peerIP)
	pb.connect(named("b"))
	waitTarget(t, b, "b's link to come up", connected(b))
	a.srv.Shutdown()
	// c's peer connects after a stopped; b's link is intact.
	dialFrom(t, c, "127.0.0.3").connect(named("c"))
	waitTarget(t, c, "c's link to come up", connected(c))
	pb.send(&wire.Contact{})
	if !b.s.Relationship().View().Connected {
		t.Fatal("b lost its link when a stopped")
	}
	// A CONNECT for a now goes to b, the only relationship left with that
	// peer, and is refused by name.
	p := dialFrom(t, b, peerIP)
	cfg := primaryCfg(t)
	cfg.Name = "a"
	p.send(connectMsg(&cfg, p.clk.Now().Unix()))
	if ack := expect[*wire.ConnectAck](p); ack.RejectReason != wire.RejectInvalidPartner || ack.RelationshipName != "a" {
		t.Fatalf("CONNECT for the stopped a answered %s %q (name %q)", ack.RejectReason, ack.Message, ack.RelationshipName)
	}
	b.srv.Shutdown()
	c.srv.Shutdown()
	// The last one closed the listener: the port is free.
	ln, err := net.Listen("tcp4", c.addr)
	if err != nil {
		t.Fatalf("The listener outlived its relationships: %v", err)
	}
	ln.Close()
}

// Two relationships' metrics go to one registry (the process's) side by
// side, told apart by their relationship label.
func TestTwoRelationshipsShareTheMetricsRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, name := range []string{"r1", "r2"} {
		cfg, err := parse(strings.Fields("name=" + name + " role=secondary address=127.0.0.1 peer=127.0.0.2"))
		if err != nil {
			t.Fatal(err)
		}
		if err := reg.Register(newRelationship(cfg, nil, reg).met); err != nil {
			t.Fatalf("Registering %s beside another relationship: %v", name, err)
		}
	}
	for _, name := range []string{"r1", "r2"} {
		if _, ok := value(t, reg, "coredhcp_failover_peer_connects_total", "relationship", name); !ok {
			t.Fatalf("No series for relationship %s", name)
		}
	}
}

// A first message other than CONNECT, from a peer with several
// relationships here, is refused by the handshake as out of sequence.
func TestAFirstMessageOtherThanConnectIsOutOfSequence(t *testing.T) {
	a, _, _ := hubTargets(t)
	p := dialFrom(t, a, peerIP)
	p.send(&wire.UpdateRequestAll{})
	p.expectDisconnect(wire.RejectMiscReject, "received before CONNECT: out of sequence")
}

// TLS works on a shared listener for a relationship alone with its peer
// address (the connection is handed over unread); two relationships with
// the same peer cannot use it, since the name is inside TLS: the second
// is refused at its start, saying why.
func TestTLSOnASharedListener(t *testing.T) {
	ca := newTestCA(t, "lan1 failover CA")
	port := freePort(t)
	tg := startTarget(t, targetOpts{port: port, extra: ca.tlsWords(t, "secondary.lan1", "primary.lan1"),
		tweak: func(s *Session) { s.handshakeTimeout = 5 * time.Second }})
	startTarget(t, targetOpts{name: "c", port: port, peer: "127.0.0.3", failover: poolR3})
	_, _, cert := ca.issue(t, "primary.lan1", time.Now().Add(24*time.Hour))
	if err := tlsDial(t, tg, cert); err != nil {
		t.Fatalf("TLS through the shared listener: %v", err)
	}

	s, err := SessionFromLine(strings.Fields(fmt.Sprintf("name=b role=secondary address=127.0.0.1 port=%d peer=%s", port, peerIP)), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := failover.StartFromLine(strings.Fields("name=b db=/unused "+poolR2), lease.NewMemoryStore(), time.Now, s.Relationship())
	if err == nil {
		srv.Shutdown()
		t.Fatal("A second relationship with the TLS relationship's peer started on its listener")
	}
	if !strings.Contains(err.Error(), `argument "address=127.0.0.1"`) || !strings.Contains(err.Error(), "the relationship name is inside TLS") {
		t.Fatalf("Refused with %v, want the argument and the reason", err)
	}
}
