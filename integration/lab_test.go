//go:build integration

package integration

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/internal/netlab"
)

// listenUDP opens a UDP socket inside the node's namespace.
func listenUDP(t *testing.T, n *netlab.Node, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := n.Do(func() error {
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", a)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, n.NS, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// delivered sends one datagram from one socket to an address and reports
// whether the other socket received it within wait.
func delivered(from, to *net.UDPConn, dst string, wait time.Duration) bool {
	msg := fmt.Sprintf("probe %d", time.Now().UnixNano())
	d, _ := net.ResolveUDPAddr("udp4", dst)
	if _, err := from.WriteToUDP([]byte(msg), d); err != nil {
		return false
	}
	buf := make([]byte, 128)
	to.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := to.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		if string(buf[:n]) == msg {
			return true
		}
	}
}

// The lab itself: namespaces exist while the test runs, the LAN and a
// point-to-point link carry traffic, a cut bridge port stops it and healing
// restores it, and a second lab with the same prefix removes the leftovers
// (namespaces and the processes inside them) of the first.
func TestLab(t *testing.T) {
	lab := netlab.NewLab(t, prefix)
	a := lab.AddNode("a", "192.0.2.11/24")
	b := lab.AddNode("b", "192.0.2.12/24")
	lab.Connect(a, b, "peer", "203.0.113.1/30", "203.0.113.2/30")

	ca, cb := listenUDP(t, a, "0.0.0.0:7001"), listenUDP(t, b, "0.0.0.0:7001")
	if !delivered(ca, cb, "192.0.2.12:7001", 2*time.Second) {
		t.Fatal("a cannot reach b over the LAN")
	}
	if !delivered(cb, ca, "203.0.113.1:7001", 2*time.Second) {
		t.Fatal("b cannot reach a over the peer link")
	}
	b.SetLAN(false)
	if delivered(ca, cb, "192.0.2.12:7001", 500*time.Millisecond) {
		t.Error("the LAN still carries traffic to b with b's bridge port down")
	}
	if !delivered(ca, cb, "203.0.113.2:7001", 2*time.Second) {
		t.Error("cutting b's LAN port also cut the peer link")
	}
	b.SetLAN(true)
	if err := netlab.Eventually(5*time.Second, func() error {
		if !delivered(ca, cb, "192.0.2.12:7001", 200*time.Millisecond) {
			return fmt.Errorf("LAN still cut after SetLAN(true)")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if mac := b.MAC.String(); !strings.HasPrefix(mac, "02:cf:") || mac == a.MAC.String() {
		t.Errorf("node MACs %s and %s: want distinct, locally administered 02:cf:...", a.MAC, mac)
	}

	// A process left behind in a namespace (as after a crashed run) is
	// killed, and the namespace deleted, when the next lab starts.
	p := b.Start("sleeper", "sleep", "600")
	if err := netlab.RemoveNamespaces(prefix); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(5 * time.Second); err == nil || p.Running() {
		t.Errorf("process in a removed namespace: running=%v, exit %v; want killed", p.Running(), err)
	}
	out, _ := exec.Command(netlab.Tool("ip"), "netns", "list").Output()
	for _, ns := range []string{a.NS, b.NS, lab.Switch} {
		if strings.Contains(string(out), ns) {
			t.Errorf("namespace %s survived RemoveNamespaces: %s", ns, out)
		}
	}
}
