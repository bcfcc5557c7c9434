package failover

import (
	"net"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// threeLines is a server on 192.0.2.0/24 (its own link) with two relayed
// subnets: 198.51.100.0/24 (relay 192.0.2.254 too) and 203.0.113.0/24.
var threeLines = []string{
	"db=/a pool=192.0.2.100-192.0.2.199 router=192.0.2.1",
	"db=/b pool=198.51.100.10-198.51.100.99 subnet=198.51.100.0/24 relay=192.0.2.254 router=198.51.100.1 lease-time=1h",
	"db=/c pool=203.0.113.10-203.0.113.99 subnet=203.0.113.0/25 router=203.0.113.1 router=203.0.113.2",
}

func parseLines(t *testing.T, lines []string) []*Config {
	t.Helper()
	var cfgs []*Config
	for _, l := range lines {
		cfg, err := parse(strings.Fields(l), lanAddrs)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		cfgs = append(cfgs, &cfg)
	}
	return cfgs
}

func gw(ip string) dhcpv4.Modifier { return dhcpv4.WithGatewayIP(net.ParseIP(ip)) }

func ciaddr(ip string) dhcpv4.Modifier { return dhcpv4.WithClientIP(net.ParseIP(ip)) }

func subnetSelection(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionSubnetSelection, net.ParseIP(ip).To4()))
}

func linkSelection(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(
		dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("port7")),
		dhcpv4.OptGeneric(dhcpv4.LinkSelectionSubOption, net.ParseIP(ip).To4())))
}

func TestEachRequestGoesToTheLineOfItsSubnet(t *testing.T) {
	cfgs := parseLines(t, threeLines)
	if !cfgs[0].Local || cfgs[1].Local || cfgs[2].Local {
		t.Fatalf("Local = %v %v %v, want only the first line's subnet local", cfgs[0].Local, cfgs[1].Local, cfgs[2].Local)
	}
	for _, tc := range []struct {
		name string
		mt   dhcpv4.MessageType
		mods []dhcpv4.Modifier
		want int
		how  string
	}{
		{"a client of the listening link", dhcpv4.MessageTypeDiscover, nil, 0, "the listening link"},
		{"a relay inside a subnet", dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{gw("198.51.100.1")}, 1, "relay 198.51.100.1"},
		{"a relay that relay= lists", dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{gw("192.0.2.254")}, 1, "relay 192.0.2.254"},
		{"a relay on the listening link's subnet", dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{gw("192.0.2.253")}, 0, "relay 192.0.2.253"},
		{"a relay of no line", dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{gw("198.18.0.1")}, -1, "relay 198.18.0.1"},
		{"outside the /25 of the third line", dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{gw("203.0.113.200")}, -1, "relay 203.0.113.200"},
		{"link selection (RFC 3527) over the relay's own address", dhcpv4.MessageTypeDiscover,
			[]dhcpv4.Modifier{gw("198.18.0.1"), linkSelection("203.0.113.5")}, 2, "link-selection 203.0.113.5"},
		{"subnet selection (RFC 3011) over giaddr", dhcpv4.MessageTypeDiscover,
			[]dhcpv4.Modifier{gw("203.0.113.1"), subnetSelection("198.51.100.0")}, 1, "subnet-selection 198.51.100.0"},
		{"link selection over subnet selection, as ISC dhcpd and Kea", dhcpv4.MessageTypeDiscover,
			[]dhcpv4.Modifier{gw("198.51.100.1"), linkSelection("203.0.113.5"), subnetSelection("198.51.100.0")}, 2, "link-selection 203.0.113.5"},
		{"a unicast renewal of a relayed subnet's address", dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{ciaddr("203.0.113.50")}, 2, "ciaddr 203.0.113.50"},
		{"a renewal of an address no line has: the link's line answers (NAK)", dhcpv4.MessageTypeRequest,
			[]dhcpv4.Modifier{ciaddr("198.18.0.5")}, 0, "the listening link"},
		{"a renewal through a relay is judged by the relay", dhcpv4.MessageTypeRequest,
			[]dhcpv4.Modifier{ciaddr("203.0.113.50"), gw("198.51.100.1")}, 1, "relay 198.51.100.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, l := chooseLine(cfgs, packet(t, 1, tc.mt, tc.mods...))
			if got != tc.want || l.String() != tc.how {
				t.Fatalf("chooseLine = %d (by %s), want %d (by %s)", got, l, tc.want, tc.how)
			}
		})
	}
}

func TestWithoutALocalLineTheFirstServesTheListeningLink(t *testing.T) {
	cfgs := parseLines(t, threeLines[1:])
	if got, _ := chooseLine(cfgs, packet(t, 1, dhcpv4.MessageTypeDiscover)); got != 0 {
		t.Fatalf("chooseLine = %d, want the first line", got)
	}
}

// chained starts one harness per line, chained in order as setup4 chains
// the lines of the plugin chain.
func chained(t *testing.T, lines []string) []*harness {
	t.Helper()
	c := &chain{}
	var hs []*harness
	for _, l := range lines {
		h := newHarness(t, l)
		c.add(h.s)
		hs = append(hs, h)
	}
	return hs
}

// throughChain runs req through the lines of hs as CoreDHCP runs a plugin
// chain: each handler gets the reply the one before it returned, until one
// stops the chain. It returns what the option plugins after the lines
// would get (nil: dropped).
func throughChain(t *testing.T, hs []*harness, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	resp, stop := hs[0].do(req)
	for _, h := range hs[1:] {
		if stop || resp == nil {
			break
		}
		resp, stop = h.s.Handler4(req, resp)
	}
	return resp
}

func TestALineLetsAnotherLinesRequestByAndDropsWhatNoLineServes(t *testing.T) {
	hs := chained(t, threeLines)
	req := packet(t, 1, dhcpv4.MessageTypeDiscover, gw("203.0.113.1"))
	for i, h := range hs[:2] {
		resp, stop := h.do(req)
		if resp == nil || stop || !resp.YourIPAddr.IsUnspecified() {
			t.Fatalf("line %d: resp %v stop %v, want the request passed on untouched", i, resp, stop)
		}
	}
	resp, stop := hs[2].do(req)
	if resp == nil || stop || resp.MessageType() != dhcpv4.MessageTypeOffer || resp.YourIPAddr.String() != "203.0.113.10" {
		t.Fatalf("third line: %v stop %v, want an OFFER of 203.0.113.10", resp, stop)
	}
	// Each line's answer goes through the lines after it untouched, to
	// the option plugins.
	for _, tc := range []struct {
		req  *dhcpv4.DHCPv4
		want string
	}{
		{packet(t, 5, dhcpv4.MessageTypeDiscover), "192.0.2.100"},
		{packet(t, 6, dhcpv4.MessageTypeDiscover, gw("198.51.100.1")), "198.51.100.10"},
		{packet(t, 7, dhcpv4.MessageTypeDiscover, gw("203.0.113.1")), "203.0.113.11"},
	} {
		if out := throughChain(t, hs, tc.req); out == nil || out.YourIPAddr.String() != tc.want {
			t.Errorf("through the chain: %v, want an OFFER of %s", out, tc.want)
		}
	}
	if m := net.IP(resp.Options.Get(dhcpv4.OptionSubnetMask)).String(); m != "255.255.255.128" {
		t.Errorf("subnet mask %s, want the third line's 255.255.255.128", m)
	}
	if r := resp.Router(); len(r) != 2 || r[0].String() != "203.0.113.1" || r[1].String() != "203.0.113.2" {
		t.Errorf("routers %v, want the third line's 203.0.113.1, 203.0.113.2", r)
	}
	// The second line's lease time and router.
	h := hs[1]
	resp, _ = hs[0].do(packet(t, 2, dhcpv4.MessageTypeDiscover, gw("198.51.100.1")))
	if !resp.YourIPAddr.IsUnspecified() {
		t.Fatalf("the first line answered a request of the second's subnet: %v", resp)
	}
	ip := h.offer(2, gw("198.51.100.1"))
	ack := h.mustAck(packet(t, 2, dhcpv4.MessageTypeRequest, gw("198.51.100.1"), serverIdent("192.0.2.1"), requested(ip)))
	if lt := ack.IPAddressLeaseTime(0); lt.Hours() != 1 || ack.Router()[0].String() != "198.51.100.1" {
		t.Errorf("ACK lease time %v router %v, want the second line's 1h and 198.51.100.1", lt, ack.Router())
	}
	// No line serves this relay: each line drops it (the last one that
	// sees it counts it).
	for i, h := range hs {
		before := h.s.Dropped("foreign_relay")
		h.mustDrop(packet(t, 3, dhcpv4.MessageTypeDiscover, gw("198.18.0.1")))
		if h.s.Dropped("foreign_relay") != before+1 {
			t.Errorf("line %d: foreign_relay drops not counted", i)
		}
	}
}

func TestALineOutOfTheChainStopsClaimingRequests(t *testing.T) {
	hs := chained(t, threeLines)
	if err := hs[2].s.Close(); err != nil {
		t.Fatal(err)
	}
	hs[0].mustDrop(packet(t, 1, dhcpv4.MessageTypeDiscover, gw("203.0.113.1")))
}

func TestASingleLineAnswersItsLinkWithItsMask(t *testing.T) {
	h := newHarness(t, "db=/unused pool=192.0.2.100-192.0.2.199")
	resp, _ := h.do(packet(t, 1, dhcpv4.MessageTypeInform))
	if m := net.IP(resp.Options.Get(dhcpv4.OptionSubnetMask)).String(); m != "255.255.255.0" || resp.Router() != nil {
		t.Fatalf("INFORM: mask %s routers %v, want 255.255.255.0 and no router (none given)", m, resp.Router())
	}
}
