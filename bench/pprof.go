package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// unixHTTP is an HTTP client over a unix socket (the server's pprof
// socket, COREDHCP_FAILOVER_PPROF).
type httpClient = http.Client

func unixHTTP(path string) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}
}

// goroutines reads the total of the server's goroutine profile.
func goroutines(c *http.Client) int {
	resp, err := c.Get("http://pprof/debug/pprof/goroutine?debug=1")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	// "goroutine profile: total N"
	f := strings.Fields(line)
	if len(f) < 4 {
		return -1
	}
	n, err := strconv.Atoi(f[3])
	if err != nil {
		return -1
	}
	return n
}

// goroutineDump saves the server's goroutines, grouped by stack.
func goroutineDump(c *http.Client, path string) {
	resp, err := c.Get("http://pprof/debug/pprof/goroutine?debug=1")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if f, err := os.Create(path); err == nil {
		io.Copy(f, resp.Body)
		f.Close()
	}
}

// cpuProfile fetches a CPU profile of seconds from the server into path.
func cpuProfile(c *http.Client, seconds int, path string) error {
	resp, err := c.Get(fmt.Sprintf("http://pprof/debug/pprof/profile?seconds=%d", seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}
