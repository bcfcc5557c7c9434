// Command failoverctl asks a coredhcp-failover server about its failover
// relationship, and steers it, through the control socket of its leasesync
// line (control=PATH).
//
//	failoverctl -s /run/coredhcp-failover/lan1.sock status
//	failoverctl -s /run/coredhcp-failover/lan1.sock partner-down
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/leasesync"
)

var (
	flagSocket = flag.StringP("socket", "s", os.Getenv("FAILOVERCTL_SOCKET"), "control socket of the relationship (leasesync control=PATH); default $FAILOVERCTL_SOCKET")
	flagJSON   = flag.Bool("json", false, "print the answer as JSON")
	flagYes    = flag.BoolP("yes", "y", false, "do not ask for confirmation")
)

// confirm is the question asked before each command that changes the state.
var confirm = map[string]string{
	"partner-down": "Declare the peer DOWN? Do this only if it is not running: this server will take its addresses after MCLT",
	"paused":       "Pause this server? It stops serving; the peer serves alone (COMMUNICATIONS-INTERRUPTED)",
	"shutdown":     "Shut down this server's service? The peer may take over (PARTNER-DOWN)",
	"recover":      "Move this server to RECOVER? It stops serving and resynchronises from the peer",
	"normal":       "Return this server from PAUSED to NORMAL",
	"reconnect":    "Drop and re-establish the connection to the peer",
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: failoverctl -s SOCKET [--json] [--yes] status|partner-down|paused|shutdown|recover|normal|reconnect\n")
	flag.PrintDefaults()
}

func main() {
	flag.Usage = usage
	flag.Parse()
	if flag.NArg() != 1 || *flagSocket == "" {
		usage()
		os.Exit(2)
	}
	cmd := flag.Arg(0)
	if q, ok := confirm[cmd]; ok && !*flagYes {
		fmt.Fprintf(os.Stderr, "%s [y/N] ", q)
		answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(os.Stderr, "not done")
			os.Exit(1)
		}
	}
	reply, err := ask(*flagSocket, cmd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failoverctl: %v\n", err)
		os.Exit(1)
	}
	if *flagJSON {
		out, _ := json.MarshalIndent(reply, "", "  ")
		fmt.Println(string(out))
	} else if reply.Status != nil {
		printStatus(os.Stdout, reply.Status, time.Now())
	}
	if reply.Error != "" {
		fmt.Fprintf(os.Stderr, "failoverctl: %s: %s\n", cmd, reply.Error)
		os.Exit(1)
	}
}

func ask(socket, cmd string) (leasesync.ControlReply, error) {
	var reply leasesync.ControlReply
	conn, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return reply, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(conn).Encode(leasesync.ControlRequest{Command: cmd}); err != nil {
		return reply, err
	}
	if err := json.NewDecoder(conn).Decode(&reply); err != nil {
		return reply, fmt.Errorf("reading the answer: %w", err)
	}
	return reply, nil
}

func ago(t int64, now time.Time) string {
	if t == 0 {
		return "never"
	}
	return fmt.Sprintf("%s (%s ago)", time.Unix(t, 0).Format(time.DateTime), now.Sub(time.Unix(t, 0)).Round(time.Second))
}

func printStatus(w io.Writer, s *leasesync.Status, now time.Time) {
	fmt.Fprintf(w, "relationship %s, %s, peer %s\n", s.Name, s.Role, s.PeerAddress)
	fmt.Fprintf(w, "  state        %s since %s\n", s.State, ago(s.Since, now))
	fmt.Fprintf(w, "  why          %s\n", s.Reason)
	fmt.Fprintf(w, "  serving      %v\n", s.MayServe)
	fmt.Fprintf(w, "  peer state   %s (connected %v, heard since start %v)\n", s.PeerState, s.Connected, s.Contacted)
	fmt.Fprintf(w, "  last contact %s, clock skew %ds\n", ago(s.LastContact, now), s.ClockSkew)
	if s.NextTimer != 0 {
		fmt.Fprintf(w, "  next         %s at %s (in %s)\n", s.NextTimerWhat, time.Unix(s.NextTimer, 0).Format(time.TimeOnly),
			time.Unix(s.NextTimer, 0).Sub(now).Round(time.Second))
	}
	if s.State == "partner-down" {
		at := time.Unix(s.Since+s.MCLT, 0)
		if at.After(now) {
			fmt.Fprintf(w, "  takeover     may use the peer's free addresses at %s (in %s)\n", at.Format(time.TimeOnly), at.Sub(now).Round(time.Second))
		} else {
			fmt.Fprintf(w, "  takeover     using the peer's free addresses since %s\n", at.Format(time.TimeOnly))
		}
	}
	fmt.Fprintf(w, "  updates      %d unacknowledged, %d queued\n", s.Unacked, s.Queued)
	fmt.Fprintf(w, "  free         %d ours, %d the peer's (MCLT %ds)\n", s.FreeOwn, s.FreePeer, s.MCLT)
}
