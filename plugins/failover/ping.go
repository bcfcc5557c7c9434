package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// Conflict detection before offering (ping-check=TIMEOUT, as ISC dhcpd's
// ping-check and Kea's ping_check hook): before an address is offered to
// a client that does not hold it, one ICMP echo is sent to it; an answer
// within the timeout means another host uses the address, which is then
// ABANDONED for decline-hold (the peer is told, as for a DECLINE) and
// another address is chosen. Renewals and reserved addresses are never
// probed, so no ACK waits for a ping. A probe that cannot be sent (no
// permission, no route) lets the offer go, as ISC does: the check is a
// precaution, and DHCPDECLINE remains the client's.

// Pinger tells whether a host answers at an address.
type Pinger interface {
	// Alive sends one echo request to ip and reports whether a reply
	// came back before ctx ends. An error means no probe was made.
	Alive(ctx context.Context, ip netip.Addr) (bool, error)
}

// maxPingTries bounds the addresses one DISCOVER probes: past it, the
// client gets no offer this time (it retransmits).
const maxPingTries = 3

// icmpPinger probes with ICMP echo: a raw socket as root, else an
// unprivileged ICMP ("ping") socket where net.ipv4.ping_group_range
// allows it. A socket per probe: at most one probe is in flight per
// address (the address is held for the client while it is probed), and
// a reply is matched by its echo identifier, sequence and source.
type icmpPinger struct {
	seq atomic.Uint32
}

func (p *icmpPinger) Alive(ctx context.Context, ip netip.Addr) (bool, error) {
	network, addr := "ip4:icmp", net.Addr(&net.IPAddr{IP: ip.AsSlice()})
	conn, err := icmp.ListenPacket(network, "0.0.0.0")
	if err != nil {
		// Not root: the kernel's ping sockets, which set the identifier
		// themselves and deliver only this socket's replies.
		network, addr = "udp4", &net.UDPAddr{IP: ip.AsSlice()}
		if conn, err = icmp.ListenPacket(network, "0.0.0.0"); err != nil {
			return false, fmt.Errorf("opening an ICMP socket: %w", err)
		}
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	id := os.Getpid() & 0xffff
	seq := int(p.seq.Add(1) & 0xffff)
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("coredhcp-failover ping-check")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return false, err
	}
	if _, err := conn.WriteTo(b, addr); err != nil {
		return false, fmt.Errorf("sending an ICMP echo to %s: %w", ip, err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, nil
			}
			return false, err
		}
		if fromAddr(from) != ip {
			continue
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.Seq == seq && (network == "udp4" || e.ID == id) {
			return true, nil
		}
	}
}

func fromAddr(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	x, _ := netip.AddrFromSlice(ip.To4())
	return x
}

// probe reports whether another host answers at ip (false when
// ping-check is off or the probe could not be made).
func (s *Server) probe(ip netip.Addr) bool {
	if s.pinger == nil || s.cfg.PingCheck <= 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PingCheck)
	defer cancel()
	alive, err := s.pinger.Alive(ctx, ip)
	switch {
	case err != nil:
		s.met.pings[pingError].Inc()
		s.pingErrLog.Do(s.now(), func(n int) {
			log.WithError(err).Warnf("ping-check could not probe %s; offering it unchecked (%d such)", ip, n)
		})
		return false
	case alive:
		s.met.pings[pingAnswered].Inc()
		return true
	}
	s.met.pings[pingSilent].Inc()
	return false
}

// pingTimeoutMax bounds ping-check=: the client waits for its OFFER while
// the probe runs.
const pingTimeoutMax = 5 * time.Second
