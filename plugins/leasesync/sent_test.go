package leasesync

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// Issue 15, path 2, end to end: the session tells the bindings when an
// update leaves, so that a RELEASED the peer may already hold as FREE
// (its BNDACK not back yet) is not given back to its old client.
func TestAReleasedAddressIsNotReturnedOnceItsUpdateLeft(t *testing.T) {
	tg, p := normalTarget(t)
	const ip = "192.0.2.150" // bound to client 10
	release(t, tg, 10, ip)
	expectReleased(p, ip)
	// The peer holds it as FREE and keeps its BNDACK.
	req, err := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(10)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip))))
	if err != nil {
		t.Fatal(err)
	}
	if resp := tg.dhcp(req); resp != nil {
		t.Fatalf("The old client's REQUEST got %s %s while the peer may have given the address away", resp.MessageType(), resp.YourIPAddr)
	}
}

// release has client n release ip.
func release(t *testing.T, tg *target, n int, ip string) {
	t.Helper()
	rel, err := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(n)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(net.ParseIP(ip)))
	if err != nil {
		t.Fatal(err)
	}
	tg.dhcp(rel)
}

// expectReleased reads until the BNDUPD that announces ip RELEASED.
func expectReleased(p *rawPeer, ip string) *wire.BindingUpdate {
	for {
		u := expect[*wire.BindingUpdate](p)
		if u.Binding.Addr.String() == ip && u.Binding.Status == wire.StatusReleased {
			return u
		}
	}
}
