package serve4

import (
	"encoding/binary"
	"errors"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// packetSocket sends IPv4 datagrams to a hardware address: a client that
// has no address yet and did not ask for broadcast can be reached only so.
// The kernel adds the Ethernet header (SOCK_DGRAM). Sendto on one socket is
// safe from several goroutines.
type packetSocket struct{ fd int }

func openPacketSocket() (*packetSocket, error) {
	// Protocol 0: the socket receives nothing; each send names its
	// protocol in the address.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &packetSocket{fd: fd}, nil
}

func (l *listener) sendL2(ifindex int, resp *dhcpv4.DHCPv4, clientPort int) error {
	if len(resp.ClientHWAddr) != 6 {
		return errors.New("link-layer unicast needs a 6-byte hardware address")
	}
	if l.l2 == nil {
		return errors.New("no packet socket for link-layer unicast (needs CAP_NET_RAW)")
	}
	src := resp.ServerIPAddr.To4()
	if src == nil || src.IsUnspecified() {
		src = serverAddr(ifindex)
	}
	frame := ipv4UDP(src, resp.YourIPAddr.To4(), dhcpv4.ServerPort, clientPort, resp.ToBytes())
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex, Halen: 6}
	copy(sa.Addr[:], resp.ClientHWAddr)
	return unix.Sendto(l.l2.fd, frame, 0, sa)
}

func (l *listener) closeL2() {
	if l.l2 != nil {
		unix.Close(l.l2.fd)
	}
}

// serverAddr is the first IPv4 address of the interface, the source of a
// link-layer reply when no server identifier is configured.
func serverAddr(ifindex int) net.IP {
	if ifi, err := net.InterfaceByIndex(ifindex); err == nil {
		if addrs, err := ifi.Addrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
					return n.IP.To4()
				}
			}
		}
	}
	return net.IPv4zero.To4()
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ipv4UDP builds an IPv4 header and a UDP header (with checksums) around
// payload.
func ipv4UDP(src, dst net.IP, sport, dport int, payload []byte) []byte {
	const ihl, udpLen = 20, 8
	total := ihl + udpLen + len(payload)
	b := make([]byte, total)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	binary.BigEndian.PutUint16(b[6:], 0x4000) // don't fragment
	b[8] = 64                                 // TTL
	b[9] = unix.IPPROTO_UDP
	copy(b[12:16], src)
	copy(b[16:20], dst)
	binary.BigEndian.PutUint16(b[10:], checksum(b[:ihl], 0))
	u := b[ihl:]
	binary.BigEndian.PutUint16(u[0:], uint16(sport))
	binary.BigEndian.PutUint16(u[2:], uint16(dport))
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen+len(payload)))
	copy(u[udpLen:], payload)
	// Pseudo-header: addresses, protocol, UDP length.
	var pseudo uint32
	for i := 12; i < 20; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	pseudo += unix.IPPROTO_UDP + uint32(udpLen+len(payload))
	cs := checksum(u, pseudo)
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], cs)
	return b
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// setReadBuffer asks for a receive buffer of n bytes: beyond the system's
// rmem_max with SO_RCVBUFFORCE when the process may (it runs as root or
// with CAP_NET_ADMIN), else as much as SO_RCVBUF allows.
func setReadBuffer(conn *net.UDPConn, n int) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	var forced error
	raw.Control(func(fd uintptr) {
		forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	})
	if forced != nil {
		if err := conn.SetReadBuffer(n); err != nil {
			log.Debugf("setting the receive buffer: %v", err)
		}
	}
}
