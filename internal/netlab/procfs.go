package netlab

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// WaitUDP waits until the process has bound UDP port (a server ready to
// answer), checking every 10 ms; it fails if the process exits first or
// timeout passes.
func (p *Proc) WaitUDP(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if !p.Running() {
			return fmt.Errorf("%s exited with %v", p.Name, p.Wait(0))
		}
		if UDPBound(p.PID(), port) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: UDP port %d not bound after %v", p.Name, port, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// UDPBound reports whether process pid holds a UDP socket on port (any
// address), looking only at the sockets among its own file descriptors.
func UDPBound(pid, port int) bool {
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/udp", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[0] == "sl" {
			continue
		}
		local := strings.SplitN(fields[1], ":", 2)
		if len(local) != 2 {
			continue
		}
		p, err := strconv.ParseUint(local[1], 16, 16)
		if err == nil && int(p) == port && inodes[fields[9]] {
			return true
		}
	}
	return false
}

var clkTck = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil || v <= 0 {
		return 100
	}
	return v
}()

// CPUSeconds is the user+system time of process pid so far (0 if it is
// gone), from /proc/PID/stat.
func CPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// After the command: state is field 3; utime and stime are 14 and 15.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clkTck
}

// StatusKiB reads a line of /proc/PID/status given in kB (VmRSS, VmHWM, …),
// in KiB; 0 if the process is gone.
func StatusKiB(pid int, key string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}
