package serve4

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/coredhcp/coredhcp/handler"
	"github.com/coredhcp/coredhcp/logger"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

func init() { logger.WithNoStdOutErr(logger.GetLogger("test")) }

// peer is a UDP socket on loopback standing for a relay (or a client with
// an address): it receives the server's replies.
func peer(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func freePort(t *testing.T) int {
	c := peer(t)
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return port
}

// start serves handlers on loopback and returns the server's address.
func start(t *testing.T, replyPort int, opts Options, handlers ...handler.Handler4) (*Server, *net.UDPAddr) {
	t.Helper()
	addr := net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: freePort(t)}
	opts.ServerPort, opts.ClientPort = replyPort, replyPort
	s, err := Start([]net.UDPAddr{addr}, handlers, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, &addr
}

func send(t *testing.T, from *net.UDPConn, to *net.UDPAddr, p *dhcpv4.DHCPv4) {
	t.Helper()
	if _, err := from.WriteToUDP(p.ToBytes(), to); err != nil {
		t.Fatal(err)
	}
}

func receive(t *testing.T, c *net.UDPConn) *dhcpv4.DHCPv4 {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1500)
	n, _, err := c.ReadFromUDP(b)
	if err != nil {
		t.Fatalf("No reply: %v", err)
	}
	p, err := dhcpv4.FromBytes(b[:n])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func offerAll(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
	resp.YourIPAddr = net.IPv4(192, 0, 2, 100)
	return resp, false
}

func msg(t *testing.T, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	p, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(mt),
		dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 1})}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRelayedDiscoverIsAnsweredToTheRelay(t *testing.T) {
	relay := peer(t)
	_, srv := start(t, relay.LocalAddr().(*net.UDPAddr).Port, Options{}, offerAll)
	send(t, relay, srv, msg(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(net.IPv4(127, 0, 0, 1))))
	resp := receive(t, relay)
	if resp.MessageType() != dhcpv4.MessageTypeOffer || !resp.YourIPAddr.Equal(net.IPv4(192, 0, 2, 100)) {
		t.Fatalf("Reply %s", resp.Summary())
	}
}

func TestRequestFromAClientWithAnAddressIsAnsweredToCiaddr(t *testing.T) {
	client := peer(t)
	_, srv := start(t, client.LocalAddr().(*net.UDPAddr).Port, Options{}, offerAll)
	send(t, client, srv, msg(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1))))
	if resp := receive(t, client); resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("Reply %s", resp.Summary())
	}
}

func TestDeclineAndReleaseReachThePluginsAndAreNotAnswered(t *testing.T) {
	relay := peer(t)
	seen := make(chan dhcpv4.MessageType, 4)
	record := func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
		seen <- req.MessageType()
		return resp, false // a plugin that forgets to drop: still no reply
	}
	_, srv := start(t, relay.LocalAddr().(*net.UDPAddr).Port, Options{}, record)
	gw := dhcpv4.WithGatewayIP(net.IPv4(127, 0, 0, 1))
	send(t, relay, srv, msg(t, dhcpv4.MessageTypeDecline, gw))
	send(t, relay, srv, msg(t, dhcpv4.MessageTypeRelease, gw))
	got := map[dhcpv4.MessageType]bool{}
	for i := 0; i < 2; i++ {
		select {
		case mt := <-seen:
			got[mt] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("The plugin saw only %v", got)
		}
	}
	if !got[dhcpv4.MessageTypeDecline] || !got[dhcpv4.MessageTypeRelease] {
		t.Fatalf("The plugin saw %v", got)
	}
	// Neither is answered: the next datagram the relay gets is the OFFER.
	send(t, relay, srv, msg(t, dhcpv4.MessageTypeDiscover, gw))
	<-seen
	if resp := receive(t, relay); resp.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("First reply was %s", resp.Summary())
	}
}

func TestOverloadDropsInsteadOfQueueing(t *testing.T) {
	relay := peer(t)
	release := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	block := func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
		once.Do(func() { close(entered) })
		<-release
		return nil, true
	}
	reads := make(chan struct{}, 11)
	opts := Options{Workers: 1, Queue: 2, afterRead: func() { reads <- struct{}{} }}
	s, srv := start(t, relay.LocalAddr().(*net.UDPAddr).Port, opts, block)
	gw := dhcpv4.WithGatewayIP(net.IPv4(127, 0, 0, 1))
	send(t, relay, srv, msg(t, dhcpv4.MessageTypeDiscover, gw))
	<-entered // the one worker is busy
	for i := 0; i < 10; i++ {
		send(t, relay, srv, msg(t, dhcpv4.MessageTypeDiscover, gw))
	}
	for i := 0; i < 11; i++ {
		select {
		case <-reads:
		case <-time.After(5 * time.Second):
			t.Fatalf("The server read only %d of 11 datagrams", i)
		}
	}
	if _, _, dropped := s.Stats(); dropped != 8 {
		t.Fatalf("Dropped %d of 10 with a queue of 2, want 8", dropped)
	}
	close(release)
	s.Close()
	if received, handled, dropped := s.Stats(); received != 11 || handled != 3 || dropped != 8 {
		t.Fatalf("After Close: received %d handled %d dropped %d", received, handled, dropped)
	}
}

func TestMalformedAndNonRequestPacketsAreIgnored(t *testing.T) {
	relay := peer(t)
	calls := make(chan struct{}, 10)
	count := func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
		calls <- struct{}{}
		return offerAll(req, resp)
	}
	s, srv := start(t, relay.LocalAddr().(*net.UDPAddr).Port, Options{}, count)
	if _, err := relay.WriteToUDP([]byte{1, 2, 3}, srv); err != nil {
		t.Fatal(err)
	}
	reply := msg(t, dhcpv4.MessageTypeOffer, dhcpv4.WithGatewayIP(net.IPv4(127, 0, 0, 1)))
	reply.OpCode = dhcpv4.OpcodeBootReply
	send(t, relay, srv, reply)
	send(t, relay, srv, msg(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(net.IPv4(127, 0, 0, 1))))
	if resp := receive(t, relay); resp.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("Reply %s", resp.Summary())
	}
	s.Close()
	if n := len(calls); n != 1 {
		t.Fatalf("The chain ran %d times, want once (for the DISCOVER only)", n)
	}
}

func TestIPv4UDPChecksums(t *testing.T) {
	// A datagram whose checksums, recomputed over the whole header or
	// segment (with the pseudo-header), come to zero.
	src, dst := net.IPv4(192, 0, 2, 1).To4(), net.IPv4(192, 0, 2, 100).To4()
	b := ipv4UDP(src, dst, 67, 68, []byte("hello, odd length"))
	if c := checksum(b[:20], 0); c != 0 {
		t.Fatalf("IPv4 header checksum does not verify: %#x", c)
	}
	var pseudo uint32 = 0xc000 + 0x0201 + 0xc000 + 0x0264 + 17 + uint32(len(b)-20)
	if c := checksum(b[20:], pseudo); c != 0 {
		t.Fatalf("UDP checksum does not verify: %#x", c)
	}
}
