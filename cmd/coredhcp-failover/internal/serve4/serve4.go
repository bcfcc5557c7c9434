// Package serve4 is the DHCPv4 packet loop of coredhcp-failover: it reads
// datagrams, runs CoreDHCP's plugin chain on each and sends the reply, as
// CoreDHCP's server package does, with three differences that a production
// server needs:
//
//   - Bounded work: a fixed pool of workers takes packets from a bounded
//     queue; when the queue is full the packet is dropped at once and
//     counted. CoreDHCP starts a goroutine per datagram, and under overload
//     its memory grows without bound while every reply comes too late.
//   - DHCPDECLINE reaches the plugins (CoreDHCP drops it before the chain),
//     so a declined address can be taken out of service.
//   - Dropped requests are logged at debug level, not once per packet at
//     info level.
//
// Replies are addressed as CoreDHCP addresses them (RFC 2131 section 4.1):
// to the relay (giaddr) on the server port; a NAK by broadcast; to ciaddr
// when set; by broadcast when the client asks; else by link-layer unicast
// to chaddr, through a packet socket.
package serve4

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredhcp/coredhcp/handler"
	"github.com/coredhcp/coredhcp/logger"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/net/ipv4"
)

var log = logger.GetLogger("server4")

// Options tune the loop; zero values take the defaults.
type Options struct {
	// Workers run the plugin chain; a worker waits while its request's
	// lease is written, so there must be enough of them to fill a group
	// commit. Default 256.
	Workers int
	// Queue is how many received packets may wait for a worker; beyond
	// that, packets are dropped. Default 4096.
	Queue int
	// ServerPort and ClientPort are where replies go (67 and 68; tests
	// change them).
	ServerPort, ClientPort int
	// ReadBuffer is the socket receive buffer in bytes, which absorbs
	// bursts while the reader is not scheduled. Default 4 MiB.
	ReadBuffer int

	// afterRead, in tests, runs after each datagram is queued or dropped.
	afterRead func()
}

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 256
	}
	if o.Queue <= 0 {
		o.Queue = 4096
	}
	if o.ServerPort == 0 {
		o.ServerPort = dhcpv4.ServerPort
	}
	if o.ClientPort == 0 {
		o.ClientPort = dhcpv4.ClientPort
	}
	if o.ReadBuffer == 0 {
		o.ReadBuffer = 4 << 20
	}
}

// maxDatagram bounds what is read of one datagram: a DHCPv4 message over
// Ethernet fits in 1500 bytes; a larger one is truncated and fails to parse.
const maxDatagram = 4096

var bufs = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

type packet struct {
	l       *listener
	buf     *[]byte
	n       int
	ifindex int
}

// Server is a running DHCPv4 packet loop.
type Server struct {
	opts      Options
	handlers  []handler.Handler4
	listeners []*listener
	queue     chan packet
	readers   sync.WaitGroup
	workers   sync.WaitGroup
	errs      chan error
	closeOnce sync.Once

	received, dropped, handled atomic.Uint64
	lastDropLog                atomic.Int64
}

type listener struct {
	pc    *ipv4.PacketConn
	iface net.Interface // zero when not bound to one interface
	l2    *packetSocket // for link-layer unicast; nil if it could not be opened
}

// Start listens on every address and serves until Close. handlers is the
// plugin chain, as plugins.LoadPlugins returns it.
func Start(addrs []net.UDPAddr, handlers []handler.Handler4, opts Options) (*Server, error) {
	opts.defaults()
	s := &Server{
		opts:     opts,
		handlers: handlers,
		queue:    make(chan packet, opts.Queue),
		errs:     make(chan error, len(addrs)),
	}
	for i := range addrs {
		l, err := listen(&addrs[i], opts.ReadBuffer)
		if err != nil {
			s.closeListeners()
			return nil, err
		}
		s.listeners = append(s.listeners, l)
	}
	for i := 0; i < opts.Workers; i++ {
		s.workers.Add(1)
		go s.work()
	}
	for _, l := range s.listeners {
		s.readers.Add(1)
		go s.read(l)
	}
	return s, nil
}

func listen(a *net.UDPAddr, readBuffer int) (*listener, error) {
	conn, err := server4.NewIPv4UDPConn(a.Zone, a)
	if err != nil {
		return nil, fmt.Errorf("DHCPv4: listen on %s: %w", a, err)
	}
	setReadBuffer(conn, readBuffer)
	l := &listener{pc: ipv4.NewPacketConn(conn)}
	if a.Zone != "" {
		ifi, err := net.InterfaceByName(a.Zone)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("DHCPv4: listen on %s: %w", a, err)
		}
		l.iface = *ifi
	} else if err := l.pc.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("DHCPv4: listen on %s: %w", a, err)
	}
	if ps, err := openPacketSocket(); err != nil {
		log.Warnf("no packet socket (%v): clients that neither have an address nor ask for broadcast cannot be answered", err)
	} else {
		l.l2 = ps
	}
	log.Infof("Listen %s", conn.LocalAddr())
	return l, nil
}

func (s *Server) read(l *listener) {
	defer s.readers.Done()
	for {
		bp := bufs.Get().(*[]byte)
		n, cm, _, err := l.pc.ReadFrom(*bp)
		if err != nil {
			bufs.Put(bp)
			if !errors.Is(err, net.ErrClosed) {
				s.errs <- fmt.Errorf("DHCPv4: reading: %w", err)
			}
			return
		}
		s.received.Add(1)
		p := packet{l: l, buf: bp, n: n}
		if cm != nil {
			p.ifindex = cm.IfIndex
		}
		select {
		case s.queue <- p:
		default:
			bufs.Put(bp)
			s.drop()
		}
		if s.opts.afterRead != nil {
			s.opts.afterRead()
		}
	}
}

// drop counts a packet the queue had no room for, and says so at most
// once every 10 seconds.
func (s *Server) drop() {
	n := s.dropped.Add(1)
	now := time.Now().Unix()
	if last := s.lastDropLog.Load(); now-last >= 10 && s.lastDropLog.CompareAndSwap(last, now) {
		log.Warnf("overloaded: %d requests dropped so far (queue of %d full)", n, s.opts.Queue)
	}
}

func (s *Server) work() {
	defer s.workers.Done()
	for p := range s.queue {
		s.handle(p)
		s.handled.Add(1)
	}
}

func (s *Server) handle(p packet) {
	req, err := dhcpv4.FromBytes((*p.buf)[:p.n])
	bufs.Put(p.buf)
	if err != nil {
		log.Debugf("ignoring a malformed DHCPv4 packet: %v", err)
		return
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		log.Debugf("ignoring opcode %d: only BootRequest is served", req.OpCode)
		return
	}
	resp, err := dhcpv4.NewReplyFromRequest(req)
	if err != nil {
		log.Debugf("cannot build a reply: %v", err)
		return
	}
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		// No reply is due; the plugins take note.
	default:
		log.Debugf("ignoring DHCP message type %v", mt)
		return
	}
	var stop bool
	for _, h := range s.handlers {
		if resp, stop = h(req, resp); stop {
			break
		}
	}
	if resp == nil {
		return
	}
	if t := resp.MessageType(); t == dhcpv4.MessageTypeNone || t == dhcpv4.MessageTypeRelease || t == dhcpv4.MessageTypeDecline {
		return // nothing answers a RELEASE or a DECLINE
	}
	if err := s.send(p, req, resp); err != nil {
		log.Warnf("sending %s to %s: %v", resp.MessageType(), req.ClientHWAddr, err)
	}
}

// send addresses the reply as RFC 2131 section 4.1 (and CoreDHCP) do.
func (s *Server) send(p packet, req, resp *dhcpv4.DHCPv4) error {
	var dst *net.UDPAddr
	l2 := false
	switch {
	case !req.GatewayIPAddr.IsUnspecified():
		dst = &net.UDPAddr{IP: req.GatewayIPAddr, Port: s.opts.ServerPort}
	case resp.MessageType() == dhcpv4.MessageTypeNak:
		dst = &net.UDPAddr{IP: net.IPv4bcast, Port: s.opts.ClientPort}
	case !req.ClientIPAddr.IsUnspecified():
		dst = &net.UDPAddr{IP: req.ClientIPAddr, Port: s.opts.ClientPort}
	case req.IsBroadcast():
		dst = &net.UDPAddr{IP: net.IPv4bcast, Port: s.opts.ClientPort}
	default:
		dst = &net.UDPAddr{IP: resp.YourIPAddr, Port: s.opts.ClientPort}
		l2 = true
	}
	ifindex := p.l.iface.Index
	if ifindex == 0 {
		ifindex = p.ifindex
	}
	if l2 || dst.IP.Equal(net.IPv4bcast) {
		if ifindex == 0 {
			return errors.New("no interface to send on")
		}
	}
	if l2 {
		return p.l.sendL2(ifindex, resp, s.opts.ClientPort)
	}
	var cm *ipv4.ControlMessage
	if dst.IP.Equal(net.IPv4bcast) {
		cm = &ipv4.ControlMessage{IfIndex: ifindex}
	}
	_, err := p.l.pc.WriteTo(resp.ToBytes(), cm, dst)
	return err
}

// Wait blocks until a listener fails or Close is called, and returns the
// first listener error.
func (s *Server) Wait() error {
	done := make(chan struct{})
	go func() { s.readers.Wait(); close(done) }()
	select {
	case err := <-s.errs:
		s.Close()
		<-done
		return err
	case <-done:
		return nil
	}
}

// Close stops reading, lets the workers finish what is queued, and closes
// the sockets.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.closeListeners()
		s.readers.Wait()
		close(s.queue)
		s.workers.Wait()
		for _, l := range s.listeners {
			l.closeL2()
		}
		log.Infof("DHCPv4: %d received, %d handled, %d dropped on overload",
			s.received.Load(), s.handled.Load(), s.dropped.Load())
	})
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.pc.Close()
	}
}

// Stats returns how many packets were received, handled and dropped.
func (s *Server) Stats() (received, handled, dropped uint64) {
	return s.received.Load(), s.handled.Load(), s.dropped.Load()
}
