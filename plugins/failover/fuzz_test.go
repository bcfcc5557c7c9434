package failover

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// fuzzLine is the failover line of the fuzzed server: a pool that holds
// the captured clients' addresses, a relay, and short times so that leases
// and offers lapse within one input.
const fuzzLine = "db=/unused pool=192.0.2.140-192.0.2.159 relay=198.51.100.2 lease-time=300 max-lease-time=600 offer-hold=30 decline-hold=120"

// fuzzModes are the servers an input runs against.
var fuzzModes = []struct {
	name    string
	primary bool
	state   fsm.State
}{
	{name: "single"},
	{name: "primary in NORMAL", primary: true, state: fsm.Normal},
	{name: "secondary in PARTNER-DOWN", primary: false, state: fsm.PartnerDown},
	{name: "secondary in COMMUNICATIONS-INTERRUPTED", primary: false, state: fsm.CommInterrupted},
}

// fuzzSeeds are real client packets (testdata/clients.hex, captured from
// ISC dhcpd's clients) and packets built to reach what they do not:
// relayed with option 82, INFORM, a huge client identifier, an address
// outside the pools, a foreign relay.
func fuzzSeeds(t testing.TB) [][]byte {
	f, err := os.Open("testdata/clients.hex")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seeds [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<16)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Fields(line)
		raw, err := hex.DecodeString(fields[len(fields)-1])
		if err != nil {
			t.Fatalf("testdata/clients.hex: %q: %v", fields[0], err)
		}
		seeds = append(seeds, raw)
	}
	mk := func(mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) []byte {
		p, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac(7)), dhcpv4.WithMessageType(mt)}, mods...)...)
		if err != nil {
			t.Fatal(err)
		}
		return p.ToBytes()
	}
	relayed := []dhcpv4.Modifier{
		dhcpv4.WithGatewayIP(net.IPv4(198, 51, 100, 2)),
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(
			dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("eth0:12")),
			dhcpv4.OptGeneric(dhcpv4.AgentRemoteIDSubOption, []byte{1, 2, 3, 4, 5, 6}))),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 0, 0, 0, 0, 7})),
	}
	seeds = append(seeds,
		mk(dhcpv4.MessageTypeDiscover, relayed...),
		mk(dhcpv4.MessageTypeRequest, append(relayed, serverIdent("192.0.2.1"), requested("192.0.2.140"))...),
		mk(dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 50))),
		mk(dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(bytes.Repeat([]byte{0xab}, 255)))),
		mk(dhcpv4.MessageTypeRequest, requested("192.0.2.10")),
		mk(dhcpv4.MessageTypeRequest, requested("203.0.113.9")),
		mk(dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(net.IPv4(203, 0, 113, 1))),
		mk(dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 141)),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(0xffffffff*time.Second))),
	)
	return seeds
}

// frames joins packets into one fuzz input: each behind its length, two
// bytes big-endian.
func frames(pkts ...[]byte) []byte {
	var out []byte
	for _, p := range pkts {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
		out = append(out, p...)
	}
	return out
}

// unframe splits an input into at most 16 packets; what follows the last
// whole frame is one more packet.
func unframe(data []byte) [][]byte {
	var pkts [][]byte
	for len(data) > 0 && len(pkts) < 16 {
		if len(data) < 2 {
			return append(pkts, data)
		}
		n := int(binary.BigEndian.Uint16(data))
		if n > len(data)-2 {
			return append(pkts, data[2:])
		}
		pkts = append(pkts, data[2:2+n])
		data = data[2+n:]
	}
	return pkts
}

// ackRecord is what a client was told by an ACK.
type ackRecord struct {
	key string
	end int64
}

// fuzzServer starts the server of one mode, with three clients already
// bound, so that inputs meet existing leases.
func fuzzServer(t *testing.T, mode int) *harness {
	m := fuzzModes[mode%len(fuzzModes)]
	h := &harness{t: t, store: lease.NewMemoryStore(), clock: &clock{now: time.Unix(1_800_000_000, 0)}, line: fuzzLine}
	line := fuzzLine
	var rel *relation.Relationship
	if m.name != "single" {
		line = "name=fz " + fuzzLine
		rel = relation.New("fz", &relation.View{Primary: m.primary, MyState: m.state, MyStos: 1_700_000_000,
			PeerState: fsm.Normal, Connected: m.state == fsm.Normal, Contacted: true, MCLT: 60,
			HBA: lbhash.HBA{0x55, 0x55}, LBMaxSecs: 3, MayServe: m.state.ServesClients()})
	}
	cfg, err := parse(strings.Fields(line), lanAddrs)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadServer(cfg, h.store, h.clock.Now, rel)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	t.Cleanup(func() { s.commit.Close() })
	return h
}

// checkInvariants is what no input may break: the table's indexes agree,
// every binding is in a pool, and the ACK just given (if any) is in a pool,
// is remembered by the table and the store for its client, and does not
// take an address ACKed to another client whose lease has not ended.
func checkInvariants(t *testing.T, h *harness, req, resp *dhcpv4.DHCPv4, acks map[lease.IP]ackRecord) {
	now := h.clock.Now().Unix()
	h.s.mu.Lock()
	if err := h.s.table.Validate(); err != nil {
		h.s.mu.Unlock()
		t.Fatalf("table corrupt after %s: %v", req.MessageType(), err)
	}
	var outside []string
	h.s.table.Range(func(b *lease.Binding) bool {
		if !h.s.table.InPool(b.IP) {
			outside = append(outside, b.String())
		}
		return true
	})
	h.s.mu.Unlock()
	if len(outside) > 0 {
		t.Fatalf("bindings outside the pools after %s: %v", req.MessageType(), outside)
	}
	c := clientOf(req)
	switch req.MessageType() {
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		// The client gave its address back: what it was told no longer
		// binds the server, for addresses the table no longer holds for it.
		for ip, a := range acks {
			h.s.mu.Lock()
			b, ok := h.s.table.Get(ip)
			h.s.mu.Unlock()
			if a.key == c.key && (!ok || b.State != lease.Active || b.Key() != c.key) {
				delete(acks, ip)
			}
		}
	}
	if resp == nil {
		return
	}
	ip, _ := lease.IPFromNet(resp.YourIPAddr)
	switch resp.MessageType() {
	case dhcpv4.MessageTypeOffer:
		if !h.s.table.InPool(ip) {
			t.Fatalf("OFFER of %s, outside the pools", resp.YourIPAddr)
		}
	case dhcpv4.MessageTypeAck:
		if ip == 0 {
			return // INFORM
		}
		if !h.s.table.InPool(ip) {
			t.Fatalf("ACK of %s, outside the pools", resp.YourIPAddr)
		}
		end := now + int64(resp.IPAddressLeaseTime(0)/time.Second)
		if prev, ok := acks[ip]; ok && prev.key != c.key && prev.end > now {
			t.Fatalf("%s ACKed to %q until %d, and to %q at %d", ip, prev.key, prev.end, c.key, now)
		}
		h.s.mu.Lock()
		b, _ := h.s.table.Get(ip)
		h.s.mu.Unlock()
		if b.State != lease.Active || b.Key() != c.key || b.End < end {
			t.Fatalf("ACK of %s to %q until %d, but the table holds %s", ip, c.key, end, b)
		}
		if d, ok := h.stored(ip.String()); !ok || d.State != lease.Active || d.Key() != c.key || d.End < end {
			t.Fatalf("ACK of %s to %q until %d, but the store holds %s (%v)", ip, c.key, end, d, ok)
		}
		acks[ip] = ackRecord{key: c.key, end: end}
	}
}

// FuzzHandler4 feeds arbitrary DHCP packets (a sequence per input, seeded
// from real clients) to the handler of a single server and of servers in
// a relationship, checking after each that nothing panicked and no
// binding was corrupted: docs/invariants.md, invariants 1 and 2, for what the handler
// decides alone.
func FuzzHandler4(f *testing.F) {
	seeds := fuzzSeeds(f)
	for mode := range fuzzModes {
		for _, s := range seeds {
			f.Add(uint8(mode), frames(s))
		}
		// A captured client's whole exchange: DISCOVER, REQUEST, renewal,
		// then the other's DECLINE and RELEASE.
		f.Add(uint8(mode), frames(seeds...))
	}
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		h := fuzzServer(t, int(mode))
		for i := 1; i <= 3; i++ {
			// Best effort: a secondary may own nothing to give.
			if o, _ := h.do(packet(t, i, dhcpv4.MessageTypeDiscover)); o != nil {
				h.do(packet(t, i, dhcpv4.MessageTypeRequest, serverIdent("192.0.2.1"), requested(o.YourIPAddr.String())))
			}
		}
		acks := map[lease.IP]ackRecord{}
		for _, raw := range unframe(data) {
			req, err := dhcpv4.FromBytes(raw)
			if err != nil {
				continue // CoreDHCP drops what does not parse
			}
			resp, err := dhcpv4.NewReplyFromRequest(req)
			if err != nil {
				continue
			}
			switch req.MessageType() {
			case dhcpv4.MessageTypeDiscover:
				resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
			case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
				resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
			}
			resp.UpdateOption(dhcpv4.OptServerIdentifier(serverID))
			out, _ := h.s.Handler4(req, resp)
			checkInvariants(t, h, req, out, acks)
			h.clock.Advance(37 * time.Second)
			h.s.Sweep()
		}
	})
}

// TestFuzzSeedsAreTheCapturedPackets keeps the seed file honest: each
// captured packet parses and is the message its line says.
func TestFuzzSeedsAreTheCapturedPackets(t *testing.T) {
	want := []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeRequest,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline}
	seeds := fuzzSeeds(t)
	for i, mt := range want {
		p, err := dhcpv4.FromBytes(seeds[i])
		if err != nil {
			t.Fatalf("Seed %d: %v", i, err)
		}
		if p.MessageType() != mt {
			t.Errorf("Seed %d is a %s, want %s", i, p.MessageType(), mt)
		}
	}
	if got := fmt.Sprint(len(unframe(frames(seeds...)))); got != fmt.Sprint(len(seeds)) {
		t.Errorf("unframe(frames(seeds)) gave %s packets, want %d", got, len(seeds))
	}
}
