//go:build integration

package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Capture is dumpcap (from tshark's packages) writing a pcap of one
// interface of a node, with a capture filter.
type Capture struct {
	Path string
	proc *Proc
	node *Node
}

// StartCapture starts dumpcap on the node's interface iface with the
// capture filter and returns once it is capturing.
func (n *Node) StartCapture(label, iface, filter string) *Capture {
	t := n.Lab.T
	t.Helper()
	RequireTools(t, "dumpcap", "tshark")
	c := &Capture{Path: filepath.Join(n.Lab.Dir, label+".pcap"), node: n}
	c.proc = n.Start("dumpcap-"+label, "dumpcap", "-i", iface, "-f", filter, "-P", "-w", c.Path)
	err := Eventually(10*time.Second, func() error {
		if !c.proc.Running() {
			return fmt.Errorf("dumpcap exited: %v", c.proc.Wait(0))
		}
		if !strings.Contains(c.proc.Output(), "Capturing on") {
			return fmt.Errorf("dumpcap has not started capturing after 10s")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("capture on %s/%s: %v\n%s", n.NS, iface, err, c.proc.Output())
	}
	return c
}

// Stop ends the capture (SIGINT: dumpcap writes what it holds and exits).
func (c *Capture) Stop() {
	t := c.node.Lab.T
	t.Helper()
	c.proc.Signal(syscall.SIGINT)
	if err := c.proc.Wait(10 * time.Second); err != nil {
		t.Fatalf("dumpcap: %v\n%s", err, c.proc.Output())
	}
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
// option 4 as a NUL-terminated string; shared/protocol NOTES.md §F).
func DecodeFailoverPcap(path string) (FailoverDecode, error) {
	d := FailoverDecode{Types: map[string]int{}}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(Tool("tshark"), append([]string{"-r", path}, args...)...).Output()
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
