package serve4

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// BenchmarkHandleRelayedDiscover is the packet path around the plugins:
// parse a relayed DISCOVER, build the reply, run a one-plugin chain,
// serialise and send it to the relay (a loopback socket that nobody
// reads; the kernel drops what overflows).
func BenchmarkHandleRelayedDiscover(b *testing.B) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	l, err := listen(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer l.pc.Close()
	defer l.closeL2()
	s := &Server{handlers: nil}
	s.opts.defaults()
	s.opts.ServerPort = sink.LocalAddr().(*net.UDPAddr).Port
	s.handlers = append(s.handlers, offerAll)
	req, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 1}),
		dhcpv4.WithGatewayIP(net.IPv4(127, 0, 0, 1)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer))
	raw := req.ToBytes()
	b.ReportAllocs()
	for b.Loop() {
		bp := bufs.Get().(*[]byte)
		n := copy(*bp, raw)
		s.handle(packet{l: l, buf: bp, n: n})
	}
}
