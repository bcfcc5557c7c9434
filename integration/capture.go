//go:build integration

package integration

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// Capture writes a pcap (link type RAW: IPv4 packets) of the TCP segments
// to or from one port crossing a node's interface. It reads an AF_PACKET
// socket, like Sniffer, rather than running dumpcap: dumpcap (libpcap's
// TPACKET_V3 blocks) loses the last second or so of traffic when it is
// stopped, and every segment of the peer link must be in the file.
type Capture struct {
	Path  string
	node  *netlab.Node
	fd    int
	port  uint16
	file  *os.File
	stop  atomic.Bool
	done  chan struct{}
	count int
	err   error
}

// StartCapture starts capturing TCP port `port` on node n's interface
// iface into LAB/label.pcap.
func StartCapture(n *netlab.Node, label, iface string, port uint16) *Capture {
	t := n.Lab.T
	t.Helper()
	c := &Capture{Path: filepath.Join(n.Lab.Dir, label+".pcap"), node: n, fd: -1, port: port, done: make(chan struct{})}
	f, err := os.Create(c.Path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	c.file = f
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 101) // LINKTYPE_RAW
	if _, err := f.Write(hdr); err != nil {
		t.Fatalf("%v", err)
	}
	// ETH_P_ALL: a socket bound to one protocol sees only what comes in,
	// not what the node sends.
	c.fd, err = packetSocket(n, iface, syscall.ETH_P_ALL, 8<<20)
	if err != nil {
		f.Close()
		t.Fatalf("capture on %s/%s: %v", n.NS, iface, err)
	}
	go c.loop()
	t.Cleanup(func() { c.close() })
	return c
}

// packetSocket opens an AF_PACKET datagram socket (network-layer
// payloads) in node n's namespace, bound to iface and protocol proto
// (an ETH_P_ value), with a receive buffer of rcvbuf bytes and a 100 ms
// receive timeout so that a reader can notice it was stopped.
func packetSocket(n *netlab.Node, iface string, proto uint16, rcvbuf int) (int, error) {
	fd := -1
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		if fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(proto))); err != nil {
			return err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index}); err != nil {
			return err
		}
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf); err != nil {
			return err
		}
		tv := syscall.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	})
	if err != nil && fd >= 0 {
		syscall.Close(fd)
		fd = -1
	}
	return fd, err
}

func (c *Capture) loop() {
	defer close(c.done)
	buf := make([]byte, 65536)
	rec := make([]byte, 16)
	for {
		nr, from, err := syscall.Recvfrom(c.fd, buf, 0)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			if c.stop.Load() {
				return // stopped, and nothing more is queued
			}
			continue
		}
		if err != nil {
			c.err = err
			return
		}
		p := buf[:nr]
		if ll, ok := from.(*syscall.SockaddrLinklayer); !ok || ll.Protocol != htons(syscall.ETH_P_IP) || !c.matches(p) {
			continue
		}
		now := time.Now()
		binary.LittleEndian.PutUint32(rec[0:], uint32(now.Unix()))
		binary.LittleEndian.PutUint32(rec[4:], uint32(now.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(rec[8:], uint32(nr))
		binary.LittleEndian.PutUint32(rec[12:], uint32(nr))
		if _, err := c.file.Write(append(rec, p...)); err != nil {
			c.err = err
			return
		}
		c.count++
	}
}

// matches reports whether an IPv4 packet is a TCP segment from or to the port.
func (c *Capture) matches(b []byte) bool {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != syscall.IPPROTO_TCP {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+4 {
		return false
	}
	return binary.BigEndian.Uint16(b[ihl:]) == c.port || binary.BigEndian.Uint16(b[ihl+2:]) == c.port
}

func (c *Capture) close() error {
	if c.stop.CompareAndSwap(false, true) {
		<-c.done
		syscall.Close(c.fd)
		if err := c.file.Close(); err != nil && c.err == nil {
			c.err = err
		}
	}
	return c.err
}

// Stop ends the capture once the socket's queue is drained, closes the
// file and returns the number of segments written.
func (c *Capture) Stop() int {
	t := c.node.Lab.T
	t.Helper()
	if err := c.close(); err != nil {
		t.Fatalf("capture %s: %v", c.Path, err)
	}
	return c.count
}

// FailoverDecode is what tshark's dhcpfo dissector made of a capture.
type FailoverDecode struct {
	Messages int            // failover messages decoded
	Types    map[string]int // message type number -> count
	Problems []string       // malformed frames and expert infos beyond the known artefact
}

// tshark's expert severities (_ws.expert.severity).
const (
	expertWarn  = 0x600000
	expertError = 0x800000
)

// DecodeFailoverPcap decodes a capture of TCP 647 with tshark (-Y dhcpfo)
// and collects every failover message's type, every malformed frame and
// every expert info of severity warning or above, except tshark's
// "Trailing stray characters" on client identifiers (its dissector reads
// option 4 as a NUL-terminated string; docs/protocol.md §24).
func DecodeFailoverPcap(path string) (FailoverDecode, error) {
	d := FailoverDecode{Types: map[string]int{}}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(netlab.Tool("tshark"), append([]string{"-r", path}, args...)...).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			return "", fmt.Errorf("tshark %v: %v: %s", args, err, stderr)
		}
		return string(out), nil
	}
	out, err := run("-Y", "dhcpfo", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
		"-e", "frame.number", "-e", "dhcpfo.type", "-e", "_ws.expert.severity", "-e", "_ws.expert.message", "-e", "_ws.malformed")
	if err != nil {
		return d, err
	}
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		for len(f) < 5 {
			f = append(f, "")
		}
		for _, typ := range strings.Split(f[1], "|") {
			if typ != "" {
				d.Messages++
				d.Types[typ]++
			}
		}
		sev, msg := strings.Split(f[2], "|"), strings.Split(f[3], "|")
		for i, s := range sev {
			v, _ := strconv.ParseInt(s, 0, 64)
			m := ""
			if i < len(msg) {
				m = msg[i]
			}
			if v >= expertWarn && m != "Trailing stray characters" {
				d.Problems = append(d.Problems, fmt.Sprintf("frame %s: expert %#x %q", f[0], v, m))
			}
		}
		if f[4] != "" {
			d.Problems = append(d.Problems, fmt.Sprintf("frame %s: malformed (%s)", f[0], f[4]))
		}
	}
	// Frames tshark could not even attribute to dhcpfo but found malformed.
	if out, err = run("-Y", "_ws.malformed && tcp.port == 647", "-T", "fields", "-e", "frame.number"); err != nil {
		return d, err
	}
	for _, n := range strings.Fields(out) {
		if !strings.Contains(strings.Join(d.Problems, "\n"), "frame "+n+": malformed") {
			d.Problems = append(d.Problems, "frame "+n+": malformed")
		}
	}
	return d, nil
}

// TypeList is the decoded types with counts, sorted, for messages.
func (d FailoverDecode) TypeList() string {
	var ks []string
	for k, v := range d.Types {
		ks = append(ks, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}
