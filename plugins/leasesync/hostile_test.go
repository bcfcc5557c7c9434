package leasesync

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/failover"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// The tests here play a hostile or buggy peer over loopback: a raw TCP
// client built on the wire codec, from 127.0.0.2, against a secondary
// session listening on 127.0.0.1 whose configured peer is 127.0.0.2.

// peerIP is the address the target accepts its peer from.
const peerIP = "127.0.0.2"

// target is the server under attack: a secondary session and its failover
// plugin over a memory store.
type target struct {
	t     *testing.T
	s     *Session
	srv   *failover.Server
	store *lease.MemoryStore
	addr  string
	id    net.IP
}

type targetOpts struct {
	clk   Clock
	extra string // more leasesync words
	delay int    // max-response-delay in seconds (0: 5)
	// saved is the failover state stored before the start (nil: none).
	saved *lease.RelState
	// rows are bindings stored before the start.
	rows  []lease.Binding
	tweak func(*Session)
	// wrap, if set, is the store the failover plugin writes through.
	wrap func(lease.Store) lease.Store
	// name, port and peer are the relationship's (""/0: lan1, a free
	// port, peerIP); failover, its failover line's pool words ("": pool).
	name, peer, failover string
	port                 int
}

func startTarget(t *testing.T, o targetOpts) *target {
	t.Helper()
	port := o.port
	if port == 0 {
		port = freePort(t)
	}
	if o.delay == 0 {
		o.delay = 5
	}
	if o.name == "" {
		o.name = "lan1"
	}
	if o.peer == "" {
		o.peer = peerIP
	}
	if o.failover == "" {
		o.failover = pool
	}
	line := fmt.Sprintf("name=%s role=secondary address=127.0.0.1 port=%d peer=%s peer-port=%d max-response-delay=%d %s",
		o.name, port, o.peer, freePort(t), o.delay, o.extra)
	s, err := SessionFromLine(strings.Fields(line), o.clk)
	if err != nil {
		t.Fatal(err)
	}
	s.reconnect = time.Hour // the target never reaches a peer by dialing: the tests connect to it
	s.startupTimeout = 1
	if o.tweak != nil {
		o.tweak(s)
	}
	store := lease.NewMemoryStore()
	if o.saved != nil {
		store.SaveState(*o.saved)
	}
	if len(o.rows) > 0 {
		store.Write(o.rows)
	}
	now := time.Now
	if o.clk != nil {
		now = o.clk.Now
	}
	var db lease.Store = store
	if o.wrap != nil {
		db = o.wrap(store)
	}
	srv, err := failover.StartFromLine(strings.Fields("name="+o.name+" db=/unused "+o.failover), db, now, s.Relationship())
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{t: t, s: s, srv: srv, store: store, addr: fmt.Sprintf("127.0.0.1:%d", port), id: net.IPv4(192, 0, 2, 2).To4()}
	t.Cleanup(func() { srv.Shutdown() })
	return tg
}

// dhcp runs one packet through the target's failover handler.
func (tg *target) dhcp(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	n := &node{t: tg.t, srv: tg.srv, id: tg.id}
	return n.dhcp(req)
}

// rawPeer is a failover peer that sends whatever the test says.
type rawPeer struct {
	t   *testing.T
	c   net.Conn
	r   *bufio.Reader
	xid uint32
	clk Clock
}

// dialFrom connects to tg from the local address from.
func dialFrom(t *testing.T, tg *target, from string) *rawPeer {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	clk := tg.s.clk
	return &rawPeer{t: t, c: c, r: bufio.NewReader(c), clk: clk}
}

func (p *rawPeer) send(b wire.Body) {
	p.t.Helper()
	h := b.Head()
	if h.Time == 0 {
		h.Time = uint32(p.clk.Now().Unix())
	}
	if h.XID == 0 {
		p.xid++
		h.XID = p.xid
	}
	raw, err := wire.ToBytes(b)
	if err != nil {
		p.t.Fatal(err)
	}
	p.write(raw)
}

func (p *rawPeer) write(raw []byte) {
	p.t.Helper()
	p.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.c.Write(raw); err != nil {
		p.t.Fatalf("Writing to the target: %v", err)
	}
}

// next reads the target's next message; err is io.EOF once it closed.
func (p *rawPeer) next() (wire.Body, error) {
	p.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	frame, err := wire.ReadFrame(p.r, 0)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p.t.Fatal("The target neither answered nor closed the connection within 20s")
		}
		return nil, err
	}
	return wire.DecodeBody(frame)
}

// expect reads until a message of type T, skipping CONTACT and STATE.
func expect[T wire.Body](p *rawPeer) T {
	p.t.Helper()
	for {
		b, err := p.next()
		if err != nil {
			var zero T
			p.t.Fatalf("Waiting for %T: %v", zero, err)
		}
		if m, ok := b.(T); ok {
			return m
		}
	}
}

// expectClosed reads until the target closes the connection.
func (p *rawPeer) expectClosed() {
	p.t.Helper()
	for {
		if _, err := p.next(); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "connection reset") {
				p.t.Fatalf("Waiting for the target to close: %v", err)
			}
			return
		}
	}
}

// expectDisconnect reads the DISCONNECT that ends the link, checks its
// reason and that the connection closes after it.
func (p *rawPeer) expectDisconnect(reason wire.RejectReason, text string) {
	p.t.Helper()
	d := expect[*wire.Disconnect](p)
	if d.RejectReason != reason || !strings.Contains(d.Message, text) {
		p.t.Fatalf("DISCONNECT %s %q, want %s with %q", d.RejectReason, d.Message, reason, text)
	}
	p.expectClosed()
}

// primaryCfg is the configuration the raw peer claims in its CONNECT.
func primaryCfg(t *testing.T) Config {
	cfg, err := parse(strings.Fields("name=lan1 role=primary address=127.0.0.2 peer=127.0.0.1 mclt=30 split=128"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// connect runs the handshake as a primary and returns the CONNECTACK;
// mods change the CONNECT first.
func (p *rawPeer) connect(mods ...func(*wire.Connect)) *wire.ConnectAck {
	p.t.Helper()
	cfg := primaryCfg(p.t)
	c := connectMsg(&cfg, p.clk.Now().Unix())
	for _, m := range mods {
		m(c)
	}
	p.send(c)
	a := expect[*wire.ConnectAck](p)
	if a.RejectReason != 0 {
		p.t.Fatalf("CONNECTACK refused: %s %q", a.RejectReason, a.Message)
	}
	return a
}

// logged returns the log entries since the last logs.Reset() whose
// message contains text.
func logged(text string) []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range logs.AllEntries() {
		if strings.Contains(e.Message, text) {
			out = append(out, e)
		}
	}
	return out
}

// linkedTarget starts a target and connects the raw peer to it.
func linkedTarget(t *testing.T) (*target, *rawPeer) {
	t.Helper()
	tg := startTarget(t, targetOpts{})
	p := dialFrom(t, tg, peerIP)
	p.connect()
	waitTarget(t, tg, "the link to come up", connected(tg))
	return tg, p
}

func connected(tg *target) func() bool {
	return func() bool { return tg.s.Relationship().View().Connected }
}

// waitTarget waits for cond, re-checking whenever the session ends a round.
func waitTarget(t *testing.T, tg *target, what string, cond func() bool) {
	t.Helper()
	waitFor(t, what, cond, &node{s: tg.s})
}

// inspect runs f on the session goroutine, where its state may be read.
func (s *Session) inspect(f func()) {
	done := make(chan struct{})
	if s.post(event{kind: evInspect, fn: func() { f(); close(done) }}) {
		<-done
	}
}

func TestOnlyThePeerAddressMayConnect(t *testing.T) {
	clk := &fakeClock{now: time.Now()}
	tg := startTarget(t, targetOpts{clk: clk})
	logs.Reset()
	for i := 0; i < 20; i++ {
		p := dialFrom(t, tg, "127.0.0.1")
		p.send(connectMsg(ptr(primaryCfg(t)), clk.Now().Unix()))
		p.expectClosed() // closed at once: no CONNECTACK, nothing read
	}
	// Each refusal is counted (and the first logged) before the close.
	got := logged("refused a failover connection")
	if len(got) != 1 || got[0].Data["from"] == nil || !strings.HasPrefix(got[0].Data["from"].(string), "127.0.0.1:") ||
		!strings.Contains(got[0].Message, "only 127.0.0.2 may connect") {
		t.Fatalf("Refusals logged %d times (%v), want once, naming the source", len(got), got)
	}
	// A period later the next refusal is logged with the count folded in.
	clk.Advance(11 * time.Second)
	dialFrom(t, tg, "127.0.0.1").expectClosed()
	waitTarget(t, tg, "the second refusal to be logged", func() bool { return len(logged("refused a failover connection")) > 1 })
	got = logged("refused a failover connection")
	if len(got) != 2 || !strings.Contains(got[1].Message, "(20 refused)") {
		t.Fatalf("After a period: %d log lines, last %q, want 2 with (20 refused)", len(got), got[len(got)-1].Message)
	}
	if tg.s.Relationship().View().Connected {
		t.Fatal("A stranger's connection became the link")
	}
	// The peer's own address is served.
	dialFrom(t, tg, peerIP).connect()
	waitTarget(t, tg, "the link to come up", connected(tg))
}

func ptr[T any](v T) *T { return &v }

func TestASecondConnectionIsRefusedAsADuplicate(t *testing.T) {
	tg := startTarget(t, targetOpts{})
	first := dialFrom(t, tg, peerIP)
	first.connect()
	waitTarget(t, tg, "the link to come up", connected(tg))
	logs.Reset()
	second := dialFrom(t, tg, peerIP)
	cfg := primaryCfg(t)
	second.send(connectMsg(&cfg, time.Now().Unix()))
	a := expect[*wire.ConnectAck](second)
	if a.RejectReason != wire.RejectDupConnection || a.Message != "already connected" {
		t.Fatalf("Second CONNECT answered %s %q, want DUP-CONNECTION", a.RejectReason, a.Message)
	}
	second.expectClosed()
	// Both servers dialling at once is ordinary: an operator is told at
	// info level, never warned, and the refusal is logged before the close.
	if got := logged("already connected"); len(got) != 1 || got[0].Level != logrus.InfoLevel ||
		!strings.Contains(got[0].Message, "the live link is kept") {
		t.Fatalf("The duplicate was logged as %v, want one info line saying the live link is kept", got)
	}
	if got := logged("handshake refused"); len(got) != 0 {
		t.Fatalf("The duplicate was logged as a refused handshake: %v", got)
	}
	// The first link lives on.
	first.send(&wire.Contact{})
	if !tg.s.Relationship().View().Connected {
		t.Fatal("The duplicate connection took the live link down")
	}
}

func TestPendingHandshakesAreCapped(t *testing.T) {
	tg := startTarget(t, targetOpts{})
	logs.Reset()
	var silent []*rawPeer
	for i := 0; i < maxPendingHandshakes; i++ {
		silent = append(silent, dialFrom(t, tg, peerIP))
	}
	// Only once the target has taken all of them in does the next one
	// meet a full set.
	waitTarget(t, tg, "the handshakes to be pending", func() bool {
		tg.s.pendingMu.Lock()
		defer tg.s.pendingMu.Unlock()
		return len(tg.s.pending) == maxPendingHandshakes
	})
	extra := dialFrom(t, tg, peerIP)
	extra.expectClosed()
	waitTarget(t, tg, "the closing to be logged", func() bool { return len(logged("handshakes already in progress")) > 0 })
	if got := logged("handshakes already in progress"); len(got) != 1 {
		t.Fatalf("Capped connection logged %d times, want once", len(got))
	}
	// When one of the pending ones goes, a new connection is served.
	silent[0].c.Close()
	waitTarget(t, tg, "a pending handshake to end", func() bool {
		tg.s.pendingMu.Lock()
		defer tg.s.pendingMu.Unlock()
		return len(tg.s.pending) < maxPendingHandshakes
	})
	dialFrom(t, tg, peerIP).connect()
}

func TestASlowHandshakeIsCutAtTheDeadline(t *testing.T) {
	tg := startTarget(t, targetOpts{tweak: func(s *Session) { s.handshakeTimeout = 200 * time.Millisecond }})
	logs.Reset()
	p := dialFrom(t, tg, peerIP)
	cfg := primaryCfg(t)
	raw, _ := wire.ToBytes(connectMsg(&cfg, time.Now().Unix()))
	p.write(raw[:7]) // most of a header, then nothing: slowloris
	p.expectClosed()
	waitTarget(t, tg, "the failure to be logged", func() bool { return len(logged("failover handshake failed")) > 0 })
	if e := logged("failover handshake failed")[0]; !strings.Contains(e.Message, "no complete CONNECT within 200ms") {
		t.Fatalf("Logged %q", e.Message)
	}
}

func TestAStalledFrameOnTheLinkIsCutByTheReceiveTimer(t *testing.T) {
	clk := &fakeClock{now: time.Now()}
	tg := startTarget(t, targetOpts{clk: clk})
	p := dialFrom(t, tg, peerIP)
	p.connect()
	waitTarget(t, tg, "the link to come up", connected(tg))
	p.write([]byte{0, 30, 1}) // a frame that never completes
	// Nothing counts as heard until a whole frame arrives: at
	// max-response-delay the link goes.
	clk.Advance(4 * time.Second)
	if !tg.s.Relationship().View().Connected {
		t.Fatal("Link dropped before max-response-delay")
	}
	clk.Advance(time.Second)
	waitTarget(t, tg, "the link to go down", func() bool { return !connected(tg)() })
	p.expectClosed()
}

func TestMalformedMessagesEndTheLinkWithAReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
		want string
	}{
		{name: "Garbage", raw: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), want: "frame too long"},
		{name: "Length below the header", raw: []byte{0, 5, 1, 2, 3}, want: "below the 12-byte header"},
		{name: "Oversize frame", raw: append([]byte{0xff, 0xff}, make([]byte, 100)...), want: "exceeds the maximum of 2048"},
		{name: "Option past the end", raw: []byte{0, 16, byte(wire.MsgBndUpd), 12, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 50}, want: "option overflows"},
		{name: "Undefined type with options", raw: []byte{0, 17, 99, 12, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 7}, want: "invalid message type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, p := linkedTarget(t)
			p.write(tc.raw)
			p.expectDisconnect(wire.RejectMiscReject, tc.want)
			waitTarget(t, tg, "the link to go down", func() bool { return !connected(tg)() })
		})
	}
}

func TestMessagesOutOfSequenceAreRefused(t *testing.T) {
	t.Run("BNDUPD before CONNECT", func(t *testing.T) {
		tg := startTarget(t, targetOpts{})
		p := dialFrom(t, tg, peerIP)
		u := &wire.BindingUpdate{}
		u.Addr, u.Status, u.HWAddr = netip.MustParseAddr("192.0.2.150"), wire.StatusActive, []byte{1, 2, 0, 0, 0, 0, 1}
		p.send(u)
		p.expectDisconnect(wire.RejectMiscReject, "BNDUPD received before CONNECT")
	})
	t.Run("CONNECT on an established link", func(t *testing.T) {
		_, p := linkedTarget(t)
		cfg := primaryCfg(t)
		p.send(connectMsg(&cfg, time.Now().Unix()))
		p.expectDisconnect(wire.RejectMiscReject, "unexpected CONNECT on an established link")
	})
	t.Run("Unsolicited UPDDONE is ignored", func(t *testing.T) {
		// ISC too only notes a spurious update-done: a peer that sends
		// one late (our request was on an earlier link) is not broken.
		tg, p := linkedTarget(t)
		before := tg.s.Relationship().View().MyState
		p.send(&wire.UpdateDone{})
		p.send(&wire.PoolResponse{AddressesTransferred: 1 << 31})
		ack := &wire.BindingAck{}
		ack.Addr = netip.MustParseAddr("192.0.2.199")
		p.send(ack) // acknowledges nothing of ours
		// Messages are handled in order: once this one is answered, the
		// ones before it have been.
		u := &wire.BindingUpdate{}
		u.Addr, u.Status = netip.MustParseAddr("198.51.100.1"), wire.StatusFree
		p.send(u)
		expect[*wire.BindingAck](p)
		if v := tg.s.Relationship().View(); !v.Connected || v.MyState != before {
			t.Fatalf("After unsolicited messages: %+v (state before %s)", *v, before)
		}
	})
}

func TestImpossibleStatesEndTheLinkWithAReason(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state wire.ServerState
		flags wire.ServerFlags
	}{
		{name: "Undefined state number", state: 99},
		{name: "Unknown-state outside startup", state: wire.StateUnknown},
		{name: "Startup without the startup flag", state: wire.StateStartup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, p := linkedTarget(t)
			p.send(&wire.State{ServerState: tc.state, Flags: tc.flags})
			p.expectDisconnect(wire.RejectMiscReject, fmt.Sprintf("impossible state %d", tc.state))
			if s := tg.s.Relationship().View().MyState; s == fsm.Shutdown {
				t.Fatal("A buggy peer's state shut this server down")
			}
		})
	}
}

// normalTarget is a secondary that was in NORMAL with its peer before it
// stopped, with BACKUP addresses to give and one client bound; a peer
// that reports NORMAL brings it back to NORMAL.
func normalTarget(t *testing.T, mods ...func(*wire.Connect)) (*target, *rawPeer) {
	return normalTargetWith(t, targetOpts{}, mods...)
}

func normalTargetWith(t *testing.T, o targetOpts, mods ...func(*wire.Connect)) (*target, *rawPeer) {
	now := time.Now().Unix()
	rows := []lease.Binding{{IP: mustIP("192.0.2.150"), State: lease.Active, HWAddr: []byte{1, 2, 0, 0, 0, 0, 0xa},
		Start: now - 10, End: now + 3600, CLTT: now - 10, PeerExpiry: now + 3600, SentExpiry: now + 3600}}
	for i := 180; i < 190; i++ {
		rows = append(rows, lease.Binding{IP: mustIP(fmt.Sprintf("192.0.2.%d", i)), State: lease.Backup, PeerExpiry: now, SentExpiry: now})
	}
	o.rows = rows
	o.saved = &lease.RelState{MyState: uint8(wire.StateNormal), MyStos: now - 100, PeerState: uint8(wire.StateNormal), PeerStos: now - 100, MCLT: 30}
	tg := startTarget(t, o)
	p := dialFrom(t, tg, peerIP)
	p.connect(mods...)
	p.send(&wire.State{ServerState: wire.StateNormal, StartTimeOfState: uint32(now - 100)})
	waitTarget(t, tg, "NORMAL", func() bool { return tg.s.Relationship().View().MyState == fsm.Normal })
	return tg, p
}

func TestBindingUpdatesThatWouldBreakTheTableAreRejectedWithAReason(t *testing.T) {
	tg, p := normalTarget(t)
	now := uint32(time.Now().Unix())
	for _, tc := range []struct {
		name   string
		b      wire.Binding
		reason wire.RejectReason
		text   string
	}{
		{name: "A second client for a bound address",
			b:      wire.Binding{Addr: netip.MustParseAddr("192.0.2.150"), Status: wire.StatusActive, HWAddr: []byte{1, 2, 0, 0, 0, 0, 0xb}, LeaseExpiry: now + 600},
			reason: wire.RejectFatalConflict, text: "bound to another client"},
		{name: "Outside the pools",
			b:      wire.Binding{Addr: netip.MustParseAddr("198.51.100.7"), Status: wire.StatusActive, HWAddr: []byte{1, 2, 0, 0, 0, 0, 0xb}},
			reason: wire.RejectIllegalIPAddr, text: "unknown IP address"},
		{name: "Active without a chaddr",
			b:      wire.Binding{Addr: netip.MustParseAddr("192.0.2.151"), Status: wire.StatusActive},
			reason: wire.RejectMissingBindInfo, text: "without CHADDR"},
		{name: "Undefined binding status",
			b:      wire.Binding{Addr: netip.MustParseAddr("192.0.2.151"), Status: 77},
			reason: wire.RejectMissingBindInfo, text: "binding-status 77"},
		{name: "Hardware address too long",
			b:      wire.Binding{Addr: netip.MustParseAddr("192.0.2.151"), Status: wire.StatusActive, HWAddr: make([]byte, 40)},
			reason: wire.RejectMissingBindInfo, text: "chaddr too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.send(&wire.BindingUpdate{Binding: tc.b})
			a := expect[*wire.BindingAck](p)
			if a.RejectReason != tc.reason || !strings.Contains(a.Message, tc.text) || a.Addr != tc.b.Addr {
				t.Fatalf("BNDACK %s %s %q, want %s with %q", a.Addr, a.RejectReason, a.Message, tc.reason, tc.text)
			}
		})
	}
	b, _ := tg.srv.Get(mustIP("192.0.2.150"))
	if b.HWAddr[6] != 0xa || b.State != lease.Active {
		t.Fatalf("The bound address changed hands: %s", b)
	}
	if !connected(tg)() {
		t.Fatal("A rejected update took the link down")
	}
}

func TestAFloodOfBindingUpdatesOutsideThePoolsNeitherBlocksNorGrows(t *testing.T) {
	tg, p := normalTarget(t)
	logs.Reset()
	const flood = 5000
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; i < flood; i++ {
			u := &wire.BindingUpdate{}
			u.Addr = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
			u.Status, u.HWAddr = wire.StatusActive, []byte{1, 2, 0, 0, byte(i >> 8), byte(i)}
			u.Header = wire.Header{Time: uint32(time.Now().Unix()), XID: uint32(i + 1)}
			raw, _ := wire.ToBytes(u)
			if _, err := p.c.Write(raw); err != nil {
				return
			}
		}
	}()
	served := make(chan *dhcpv4.DHCPv4)
	go func() {
		req, _ := dhcpv4.New(dhcpv4.WithHwAddr(clientMAC(77)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
		req.NumSeconds = 10 // beyond load-balance-max-seconds: this server answers
		served <- tg.dhcp(req)
	}()
	rejected := 0
	for rejected < flood {
		a := expect[*wire.BindingAck](p)
		if a.RejectReason != wire.RejectIllegalIPAddr {
			t.Fatalf("BNDACK %s for %s, want ILLEGAL-IP-ADDR", a.RejectReason, a.Addr)
		}
		rejected++
		if rejected == flood/2 {
			// DHCP is served in the middle of the flood.
			if offer := <-served; offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
				t.Fatalf("DISCOVER during the flood: %v", offer)
			}
		}
	}
	<-sent
	var high, queued int
	tg.s.inspect(func() {
		high, queued = tg.s.out.acksHigh, len(tg.s.out.acks)+len(tg.s.out.queue)+len(tg.s.out.inflight)
	})
	if high > maxEventsPerRound || queued != 0 {
		t.Fatalf("BNDACKs held at most %d (cap %d); %d left queued", high, maxEventsPerRound, queued)
	}
	if n := len(logged("rejected the peer's binding update")); n > 2 {
		t.Fatalf("%d rejected updates logged %d times, want at most 2 (rate-limited)", flood, n)
	}
	if !connected(tg)() {
		t.Fatal("The link went down")
	}
}

func TestBindingUpdatesThatCannotBeStoredAreRejected(t *testing.T) {
	tg, p := normalTarget(t)
	tg.store.SetFail(errors.New("disk full"))
	u := &wire.BindingUpdate{}
	u.Addr, u.Status, u.HWAddr = netip.MustParseAddr("192.0.2.160"), wire.StatusActive, []byte{1, 2, 0, 0, 0, 0, 0xc}
	u.LeaseExpiry = uint32(time.Now().Unix() + 600)
	p.send(u)
	if a := expect[*wire.BindingAck](p); a.RejectReason != wire.RejectMiscReject || a.Message != "database update failed" {
		t.Fatalf("BNDACK %s %q, want MISC-REJECT: database update failed", a.RejectReason, a.Message)
	}
	// The disk recovers: the peer's retransmission is stored.
	tg.store.SetFail(nil)
	p.send(u)
	if a := expect[*wire.BindingAck](p); a.RejectReason != 0 {
		t.Fatalf("BNDACK after recovery: %s %q", a.RejectReason, a.Message)
	}
	if b, ok := tg.srv.Get(mustIP("192.0.2.160")); !ok || b.State != lease.Active {
		t.Fatalf("After recovery: %s", b)
	}
}

// The update queue holds each address at most once plus withdrawn
// entries, compacted: a peer that never acknowledges and keeps
// superseding our updates and asking for all of them again cannot grow it.
func TestTheUpdateQueueIsBoundedByThePool(t *testing.T) {
	tg, p := normalTarget(t, func(c *wire.Connect) { c.MaxUnacked = 1 })
	marker := netip.MustParseAddr("198.51.100.1")
	done := make(chan struct{})
	go func() {
		// The target's BNDUPDs are never acknowledged; the BNDACK of
		// the marker, sent last, says everything before it was handled.
		for {
			b, err := p.next()
			if err != nil {
				return
			}
			if a, ok := b.(*wire.BindingAck); ok && a.Addr == marker {
				close(done)
			}
		}
	}()
	for i := 0; i < 2000; i++ {
		u := &wire.BindingUpdate{}
		u.Addr, u.Status = netip.AddrFrom4([4]byte{192, 0, 2, byte(180 + i%10)}), wire.StatusBackup
		p.send(u)
		p.send(&wire.UpdateRequestAll{})
	}
	u := &wire.BindingUpdate{}
	u.Addr, u.Status = marker, wire.StatusFree
	p.send(u)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("The target did not answer the last update")
	}
	var queue, queued int
	tg.s.inspect(func() { queue, queued = len(tg.s.out.queue), len(tg.s.out.queued) })
	if queued == 0 || queue > 2*queued+64 {
		t.Fatalf("Queue of %d entries for %d addresses queued", queue, queued)
	}
	if !connected(tg)() {
		t.Fatal("The link went down")
	}
}

// A peer that stops reading blocks the session's writes, never the DHCP
// handlers; the write deadline (max-response-delay) then ends the link.
func TestAPeerThatStopsReadingDoesNotBlockDHCP(t *testing.T) {
	tg, p := normalTargetWith(t, targetOpts{delay: 3})
	go func() {
		// BNDACKs are owed for each of these; none is ever read.
		u := &wire.BindingUpdate{}
		u.Status, u.HWAddr = wire.StatusActive, []byte{1, 2, 0, 0, 0, 0, 1}
		for i := 0; ; i++ {
			u.Addr = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
			u.Header = wire.Header{Time: uint32(time.Now().Unix()), XID: uint32(i + 1)}
			raw, _ := wire.ToBytes(u)
			p.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := p.c.Write(raw); err != nil {
				return
			}
		}
	}()
	// While the session is stuck writing, clients are served, and their
	// leases wait in the session's changed set.
	for i := 0; i < 10; i++ { // the secondary owns 10 addresses
		mac := clientMAC(100 + i)
		disc, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
		disc.NumSeconds = 10
		offer := tg.dhcp(disc)
		if offer == nil {
			t.Fatalf("Client %d got no offer while the peer does not read", i)
		}
		req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(tg.id)), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)))
		if ack := tg.dhcp(req); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("Client %d: %v", i, ack)
		}
	}
	waitTarget(t, tg, "the blocked link to be dropped", func() bool { return !connected(tg)() })
}
