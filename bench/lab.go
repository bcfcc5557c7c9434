package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The lab: four network namespaces, every one named with the prefix pfb-.
//
//	pfb-sw   bridge br0: the client LAN, 198.51.100.0/24
//	pfb-s1   lan 198.51.100.1/24, peer 203.0.113.1/30   server (or primary)
//	pfb-s2   lan 198.51.100.3/24, peer 203.0.113.2/30   secondary of a pair
//	pfb-cli  lan 198.51.100.2/24                         perfdhcp, as a relay
//
// The peer link (s1 peer -- s2 peer) carries the failover sessions; it can
// be cut and healed. perfdhcp always acts as a relay (giaddr 198.51.100.2),
// so every reply goes to 198.51.100.2:67; the pool (198.18.0.0/15) lives
// only inside DHCP packets and is never a destination.
const (
	nsPrefix = "pfb-"
	nsSwitch = nsPrefix + "sw"
	nsS1     = nsPrefix + "s1"
	nsS2     = nsPrefix + "s2"
	nsCli    = nsPrefix + "cli"

	s1LAN   = "198.51.100.1"
	s2LAN   = "198.51.100.3"
	cliLAN  = "198.51.100.2"
	s1Peer  = "203.0.113.1"
	s2Peer  = "203.0.113.2"
	lanName = "lan"
	peerIf  = "peer"
)

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// labDown deletes every pfb- namespace, killing what still runs in it
// (only this harness starts processes there).
func labDown() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		pids, _ := exec.Command("ip", "netns", "pids", f[0]).Output()
		for _, p := range strings.Fields(string(pids)) {
			if pid, err := strconv.Atoi(p); err == nil {
				syscallKill(pid)
			}
		}
		exec.Command("ip", "netns", "delete", f[0]).Run()
	}
}

func labUp() error {
	labDown()
	for _, ns := range []string{nsSwitch, nsS1, nsS2, nsCli} {
		if err := sh("ip", "netns", "add", ns); err != nil {
			return err
		}
		if err := sh("ip", "netns", "exec", ns, "sysctl", "-qw",
			"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			return err
		}
		if err := sh("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"ip", "-n", nsSwitch, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"ip", "-n", nsSwitch, "link", "set", "br0", "up"},
	}
	for _, n := range []struct{ ns, port, addr string }{{nsS1, "s1", s1LAN}, {nsS2, "s2", s2LAN}, {nsCli, "cli", cliLAN}} {
		steps = append(steps,
			[]string{"ip", "link", "add", lanName, "netns", n.ns, "type", "veth", "peer", "name", n.port, "netns", nsSwitch},
			[]string{"ip", "-n", nsSwitch, "link", "set", n.port, "master", "br0"},
			[]string{"ip", "-n", nsSwitch, "link", "set", n.port, "up"},
			[]string{"ip", "-n", n.ns, "addr", "add", n.addr + "/24", "dev", lanName},
			[]string{"ip", "-n", n.ns, "link", "set", lanName, "up"})
	}
	steps = append(steps,
		[]string{"ip", "link", "add", peerIf, "netns", nsS1, "type", "veth", "peer", "name", peerIf, "netns", nsS2},
		[]string{"ip", "-n", nsS1, "addr", "add", s1Peer + "/30", "dev", peerIf},
		[]string{"ip", "-n", nsS2, "addr", "add", s2Peer + "/30", "dev", peerIf},
		[]string{"ip", "-n", nsS1, "link", "set", peerIf, "up"},
		[]string{"ip", "-n", nsS2, "link", "set", peerIf, "up"})
	for _, s := range steps {
		if err := sh(s[0], s[1:]...); err != nil {
			return err
		}
	}
	// The bridge forwards at once (no STP, no forward delay), but give
	// the links a moment to come up.
	time.Sleep(300 * time.Millisecond)
	return nil
}

// setPeerLink cuts (false) or heals (true) the failover peer link, on both
// ends so that both servers see it.
func setPeerLink(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	for _, ns := range []string{nsS1, nsS2} {
		if err := sh("ip", "-n", ns, "link", "set", peerIf, state); err != nil {
			return err
		}
	}
	return nil
}

// udpBound reports whether a socket in the namespace of pid has UDP port
// port bound.
func udpBound(pid, port int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/udp", pid))
	if err != nil {
		return false
	}
	want := fmt.Sprintf(":%04X ", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasSuffix(f[1]+" ", want) {
			return true
		}
	}
	return false
}
