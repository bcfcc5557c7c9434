//go:build integration

package integration

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// DHCP message types seen by the sniffer.
const (
	DHCPOffer = 2
	DHCPAck   = 5
	DHCPNak   = 6
)

// Reply is one DHCP server reply (BOOTREPLY) seen on the wire.
type Reply struct {
	Type     byte // option 53
	From     net.IP
	YourIP   net.IP
	HW       net.HardwareAddr
	Outgoing bool // sent by this node rather than received
	At       time.Time
}

// Sniffer records every BOOTREPLY crossing a node's LAN interface (an
// AF_PACKET socket, no tcpdump needed). It gives exact accounting of what a
// server answered: every ACK with its chaddr and yiaddr.
type Sniffer struct {
	fd      int
	stop    atomic.Bool
	done    chan struct{}
	mu      sync.Mutex
	replies []Reply
	err     error
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Sniff starts capturing on node n's LAN interface until Stop.
func Sniff(n *netlab.Node) *Sniffer {
	t := n.Lab.T
	t.Helper()
	s := &Sniffer{fd: -1, done: make(chan struct{})}
	var err error
	s.fd, err = packetSocket(n, n.Iface, syscall.ETH_P_IP, 4<<20)
	if err != nil {
		t.Fatalf("sniffer on %s/%s: %v", n.NS, n.Iface, err)
	}
	go s.loop()
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *Sniffer) loop() {
	defer close(s.done)
	buf := make([]byte, 65536)
	for !s.stop.Load() {
		nr, from, err := syscall.Recvfrom(s.fd, buf, 0)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			continue
		}
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		r, ok := parseReply(buf[:nr])
		if !ok {
			continue
		}
		if ll, isLL := from.(*syscall.SockaddrLinklayer); isLL && ll.Pkttype == 4 { // PACKET_OUTGOING
			r.Outgoing = true
		}
		r.At = time.Now()
		s.mu.Lock()
		s.replies = append(s.replies, r)
		s.mu.Unlock()
	}
}

// parseReply decodes IPv4/UDP/BOOTP far enough to return a server reply.
func parseReply(b []byte) (Reply, bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != syscall.IPPROTO_UDP {
		return Reply{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 || len(b) < ihl+8 { // later fragment
		return Reply{}, false
	}
	dport := binary.BigEndian.Uint16(b[ihl+2 : ihl+4])
	if dport != 67 && dport != 68 {
		return Reply{}, false
	}
	p := b[ihl+8:]
	if len(p) < 240 || p[0] != 2 || p[2] > 16 || binary.BigEndian.Uint32(p[236:240]) != 0x63825363 {
		return Reply{}, false
	}
	r := Reply{
		From:   net.IP(append([]byte(nil), b[12:16]...)),
		YourIP: net.IP(append([]byte(nil), p[16:20]...)),
		HW:     net.HardwareAddr(append([]byte(nil), p[28:28+int(p[2])]...)),
	}
	for o := p[240:]; len(o) > 0; {
		code := o[0]
		if code == 255 {
			break
		}
		if code == 0 {
			o = o[1:]
			continue
		}
		if len(o) < 2 || len(o) < 2+int(o[1]) {
			break
		}
		if code == 53 && o[1] == 1 {
			r.Type = o[2]
		}
		o = o[2+int(o[1]):]
	}
	return r, r.Type != 0
}

// Replies returns a copy of what was captured so far, of the given message
// type (0 for all), received by the node.
func (s *Sniffer) Replies(typ byte) []Reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Reply
	for _, r := range s.replies {
		if !r.Outgoing && (typ == 0 || r.Type == typ) {
			out = append(out, r)
		}
	}
	return out
}

// Stop ends the capture and returns the first receive error, if any.
func (s *Sniffer) Stop() error {
	if s.stop.CompareAndSwap(false, true) {
		<-s.done
		syscall.Close(s.fd)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return fmt.Errorf("sniffer: %w", s.err)
	}
	return nil
}
