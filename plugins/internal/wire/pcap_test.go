package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"testing"
)

// A minimal pcap reader and TCP reassembler, standard library only, enough
// for the captures in testdata/captures: classic pcap (either byte order,
// micro- or nanosecond timestamps), Ethernet (with 802.1Q tags), Linux
// cooked v1/v2 or raw IPv4 link layers, IPv4, TCP.

// pcapPacket is one captured packet.
type pcapPacket struct {
	ts   float64 // seconds since the epoch
	data []byte  // link-layer frame
}

// readPcap returns the link type and packets of a classic pcap file.
func readPcap(path string) (linkType uint32, pkts []pcapPacket, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	if len(b) < 24 {
		return 0, nil, fmt.Errorf("%s: %d bytes, no pcap global header", path, len(b))
	}
	var bo binary.ByteOrder
	var nano bool
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4:
		bo = binary.LittleEndian
	case 0xa1b23c4d:
		bo, nano = binary.LittleEndian, true
	case 0xd4c3b2a1:
		bo = binary.BigEndian
	case 0x4d3cb2a1:
		bo, nano = binary.BigEndian, true
	default:
		return 0, nil, fmt.Errorf("%s: not a classic pcap file (magic %x)", path, b[:4])
	}
	linkType = bo.Uint32(b[20:]) & 0x0fffffff
	for off := 24; off < len(b); {
		if len(b)-off < 16 {
			return 0, nil, fmt.Errorf("%s: truncated record header at %d", path, off)
		}
		sec, frac, incl := bo.Uint32(b[off:]), bo.Uint32(b[off+4:]), int(bo.Uint32(b[off+8:]))
		off += 16
		if incl > len(b)-off {
			return 0, nil, fmt.Errorf("%s: record at %d claims %d bytes, %d left", path, off, incl, len(b)-off)
		}
		div := 1e6
		if nano {
			div = 1e9
		}
		pkts = append(pkts, pcapPacket{ts: float64(sec) + float64(frac)/div, data: b[off : off+incl]})
		off += incl
	}
	return linkType, pkts, nil
}

// ipv4Payload strips the link layer and returns the IPv4 packet, or nil.
func ipv4Payload(linkType uint32, f []byte) []byte {
	var etype uint16
	switch linkType {
	case 1: // Ethernet
		if len(f) < 14 {
			return nil
		}
		etype, f = binary.BigEndian.Uint16(f[12:]), f[14:]
		for etype == 0x8100 || etype == 0x88a8 { // VLAN tags
			if len(f) < 4 {
				return nil
			}
			etype, f = binary.BigEndian.Uint16(f[2:]), f[4:]
		}
	case 113: // Linux cooked v1
		if len(f) < 16 {
			return nil
		}
		etype, f = binary.BigEndian.Uint16(f[14:]), f[16:]
	case 276: // Linux cooked v2
		if len(f) < 20 {
			return nil
		}
		etype, f = binary.BigEndian.Uint16(f[0:]), f[20:]
	case 101, 228: // raw IP, raw IPv4
		etype = 0x0800
	default:
		return nil
	}
	if etype != 0x0800 {
		return nil
	}
	return f
}

// tcpSegment is the part of a TCP/IPv4 packet the reassembler needs.
type tcpSegment struct {
	src, dst netip.AddrPort
	seq      uint32
	flags    uint8
	payload  []byte
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
)

// parseTCP decodes an IPv4 packet carrying TCP; ok is false otherwise.
func parseTCP(ip []byte) (s tcpSegment, ok bool) {
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 6 {
		return s, false
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || total < ihl || total > len(ip) {
		return s, false
	}
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 { // fragment
		return s, false
	}
	tcp := ip[ihl:total]
	if len(tcp) < 20 {
		return s, false
	}
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return s, false
	}
	s.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(tcp[0:]))
	s.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(tcp[2:]))
	s.seq = binary.BigEndian.Uint32(tcp[4:])
	s.flags = tcp[13]
	s.payload = tcp[doff:]
	return s, true
}

// capturedFrame is one failover message found in a capture.
type capturedFrame struct {
	pkt   int     // index of the packet that completed it
	ts    float64 // that packet's time
	src   netip.AddrPort
	dst   netip.AddrPort
	frame []byte
	err   error // framing error from ReadFrame, if any
}

func (f *capturedFrame) tag() string { return f.src.String() + ">" + f.dst.String() }

// tcpStream is one direction of one TCP connection.
type tcpStream struct {
	src, dst netip.AddrPort
	synced   bool
	next     uint32            // next expected sequence number
	pending  map[uint32][]byte // out-of-order segments by sequence number
	data     []byte            // reassembled bytes
	ends     []streamMark      // data length after each packet that added bytes
}

type streamMark struct {
	pkt int
	ts  float64
	n   int
}

// add inserts a segment, trimming retransmitted bytes and holding back
// segments that arrive ahead of a gap.
func (s *tcpStream) add(seq uint32, p []byte) {
	if !s.synced {
		s.synced, s.next = true, seq
	}
	if len(p) == 0 {
		return
	}
	if d := int32(seq - s.next); d > 0 {
		if old, ok := s.pending[seq]; !ok || len(old) < len(p) {
			s.pending[seq] = p
		}
		return
	} else if d < 0 {
		if -int(d) >= len(p) {
			return // pure retransmission
		}
		p = p[-d:]
	}
	s.data = append(s.data, p...)
	s.next += uint32(len(p))
	for progress := true; progress; {
		progress = false
		for seq, q := range s.pending {
			d := int32(seq - s.next)
			if d > 0 {
				continue
			}
			delete(s.pending, seq)
			if -int(d) < len(q) {
				s.data = append(s.data, q[-d:]...)
				s.next += uint32(len(q) + int(d))
			}
			progress = true
		}
	}
}

// failoverFrames reassembles every TCP connection on port 647 in a pcap,
// splits each direction into frames with ReadFrame and returns them in the
// order in which they became complete (packet order, then stream order).
func failoverFrames(path string) ([]capturedFrame, float64, error) {
	lt, pkts, err := readPcap(path)
	if err != nil {
		return nil, 0, err
	}
	var t0 float64
	if len(pkts) > 0 {
		t0 = pkts[0].ts
	}
	type key struct{ src, dst netip.AddrPort }
	live := map[key]*tcpStream{}
	var all []*tcpStream
	for i, pk := range pkts {
		ip := ipv4Payload(lt, pk.data)
		if ip == nil {
			continue
		}
		seg, ok := parseTCP(ip)
		if !ok || (seg.src.Port() != 647 && seg.dst.Port() != 647) {
			continue
		}
		k := key{seg.src, seg.dst}
		st := live[k]
		if seg.flags&tcpSYN != 0 || st == nil {
			st = &tcpStream{src: seg.src, dst: seg.dst, pending: map[uint32][]byte{}}
			live[k] = st
			all = append(all, st)
			if seg.flags&tcpSYN != 0 {
				st.synced, st.next = true, seg.seq+1
				continue
			}
		}
		before := len(st.data)
		st.add(seg.seq, seg.payload)
		if len(st.data) > before {
			st.ends = append(st.ends, streamMark{pkt: i, ts: pk.ts, n: len(st.data)})
		}
	}
	var out []capturedFrame
	for _, st := range all {
		if len(st.pending) > 0 {
			return nil, 0, fmt.Errorf("%s: stream %v>%v has a gap before %d held-back segments", path, st.src, st.dst, len(st.pending))
		}
		r := bytes.NewReader(st.data)
		for r.Len() > 0 {
			frame, err := ReadFrame(r, MaxMessageLen)
			if frame == nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, 0, fmt.Errorf("%s: stream %v>%v at byte %d: %w", path, st.src, st.dst, len(st.data)-r.Len(), err)
			}
			end := len(st.data) - r.Len()
			j := sort.Search(len(st.ends), func(j int) bool { return st.ends[j].n >= end })
			m := st.ends[j]
			out = append(out, capturedFrame{pkt: m.pkt, ts: m.ts - t0, src: st.src, dst: st.dst, frame: frame, err: err})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].pkt < out[j].pkt })
	return out, t0, nil
}

func TestPcapReaderFindsEveryMessage(t *testing.T) {
	// A hand-made stream: two frames split across three out-of-order,
	// partly retransmitted segments must come back whole and in order.
	st := &tcpStream{pending: map[uint32][]byte{}, synced: true, next: 1000}
	a := []byte{0, 12, 11, 12, 0, 0, 0, 1, 0, 0, 0, 7} // CONTACT xid 7
	b := []byte{0, 12, 11, 12, 0, 0, 0, 1, 0, 0, 0, 8} // CONTACT xid 8
	all := append(append([]byte{}, a...), b...)
	st.add(1010, all[10:20])
	st.add(1000, all[0:12]) // overlaps the held-back segment
	st.add(1005, all[5:15]) // retransmission
	st.add(1020, all[20:])
	if !bytes.Equal(st.data, all) {
		t.Fatalf("Reassembled %x, want %x", st.data, all)
	}
}
