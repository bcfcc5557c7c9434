// Command failoverctl asks a coredhcp-failover server about its failover
// relationship, and steers it, through the control socket of its leasesync
// line (control=PATH).
//
//	failoverctl status        (every socket in /run/coredhcp-failover)
//	failoverctl -s /run/coredhcp-failover/lan1.sock status
//	failoverctl -s /run/coredhcp-failover/lan1.sock maintenance start
//	failoverctl -s /run/coredhcp-failover/lan1.sock --yes partner-down
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/leasesync/control"
)

var (
	flagSocket = flag.StringArrayP("socket", "s", nil, "control socket of a relationship (leasesync control=PATH), repeatable for status; default $FAILOVERCTL_SOCKET, else every "+runDir+"/*.sock")
	flagJSON   = flag.Bool("json", false, "print the answer as JSON")
	flagYes    = flag.BoolP("yes", "y", false, "do not ask for confirmation")
	flagWait   = flag.Duration("wait", 60*time.Second, "maintenance start: how long to wait for the peer to take over (0: do not wait)")
)

// confirm is the question asked before each command that changes the state.
var confirm = map[string]string{
	"maintenance-start": "Hand the pools to the peer and stop serving (SHUTDOWN)? The peer goes to PARTNER-DOWN and serves every client",
	"maintenance-stop":  "Return this server to service (through RECOVER, resynchronising from the peer)",
	"resync":            "Ask the peer to send every binding again (UPDREQALL)",
	"rebalance":         "Run the pool balance now (may move free addresses between the servers)",
	"partner-down":      "Declare the peer DOWN? Do this only if it is not running: this server will take its addresses after MCLT",
	"paused":            "Pause this server? It stops serving; the peer serves alone (COMMUNICATIONS-INTERRUPTED)",
	"shutdown":          "Shut down this server's service? The peer may take over (PARTNER-DOWN)",
	"recover":           "Move this server to RECOVER? It stops serving and resynchronises from the peer",
	"normal":            "Return this server from PAUSED to NORMAL",
	"reconnect":         "Drop and re-establish the connection to the peer",
}

const commands = `commands:
  status                 state of both servers, why, what happens next and when, updates, pools
  maintenance start      hand the pools to the peer (SHUTDOWN; the peer goes PARTNER-DOWN), wait for it
  maintenance stop       return to service through RECOVER (or PAUSED -> NORMAL)
  resync                 ask the peer for every binding (UPDREQALL)
  rebalance              run the pool balance now
  partner-down           declare the peer down (only when it is not running)
  paused | shutdown | recover | normal | reconnect
`

func usage() {
	fmt.Fprintf(os.Stderr, "usage: failoverctl [-s SOCKET] [--json] [--yes] COMMAND\n\n%s\nflags:\n", commands)
	flag.PrintDefaults()
}

// runDir is the systemd unit's RuntimeDirectory, where control sockets go.
const runDir = "/run/coredhcp-failover"

// sockets are the control sockets to ask: -s, else $FAILOVERCTL_SOCKET,
// else every socket in runDir.
func sockets(given []string, env string, glob func(string) ([]string, error)) ([]string, error) {
	switch {
	case len(given) > 0:
		return given, nil
	case env != "":
		return []string{env}, nil
	}
	found, _ := glob(filepath.Join(runDir, "*.sock"))
	if len(found) == 0 {
		return nil, fmt.Errorf("no control socket: give -s PATH (the control= of a leasesync line), or set FAILOVERCTL_SOCKET; none in %s", runDir)
	}
	return found, nil
}

// command joins the words of a command: "maintenance start" is
// maintenance-start on the socket.
func command(args []string) (string, error) {
	switch {
	case len(args) == 2 && args[0] == "maintenance" && (args[1] == "start" || args[1] == "stop"):
		return "maintenance-" + args[1], nil
	case len(args) == 1 && args[0] == "maintenance":
		return "", errors.New("maintenance needs start or stop")
	case len(args) == 1:
		return args[0], nil
	}
	return "", fmt.Errorf("want one command, got %q", strings.Join(args, " "))
}

func main() {
	flag.Usage = usage
	flag.Parse()
	cmd, err := command(flag.Args())
	if err != nil {
		fmt.Fprintf(os.Stderr, "failoverctl: %v\n", err)
		usage()
		os.Exit(2)
	}
	socks, err := sockets(*flagSocket, os.Getenv("FAILOVERCTL_SOCKET"), filepath.Glob)
	if err == nil && len(socks) > 1 && cmd != "status" {
		err = fmt.Errorf("%s acts on one relationship: give one -s (found %s)", cmd, strings.Join(socks, ", "))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "failoverctl: %v\n", err)
		os.Exit(2)
	}
	if cmd == "status" && len(socks) > 1 {
		os.Exit(statusAll(socks))
	}
	socket := socks[0]
	if q, ok := confirm[cmd]; ok && !*flagYes {
		fmt.Fprintf(os.Stderr, "%s [y/N] ", q)
		answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(os.Stderr, "not done")
			os.Exit(1)
		}
	}
	reply, err := ask(socket, cmd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failoverctl: %v\n", err)
		os.Exit(1)
	}
	if reply.Error == "" && cmd == "maintenance-start" && *flagWait > 0 {
		reply = waitHandover(socket, reply, *flagWait)
	}
	if *flagJSON {
		out, _ := json.MarshalIndent(reply, "", "  ")
		fmt.Println(string(out))
	} else {
		if reply.Message != "" {
			fmt.Println(reply.Message)
		}
		if reply.Status != nil {
			printStatus(os.Stdout, reply.Status, time.Now())
		}
	}
	if reply.Error != "" {
		fmt.Fprintf(os.Stderr, "failoverctl: %s: %s\n", cmd, reply.Error)
		os.Exit(1)
	}
}

// statusAll prints the status of every relationship; it returns the exit
// status (1 if one could not be read).
func statusAll(socks []string) int {
	rc := 0
	var all []control.Reply
	for i, sock := range socks {
		reply, err := ask(sock, "status")
		if err != nil {
			reply.Error = err.Error()
		}
		if reply.Error != "" {
			fmt.Fprintf(os.Stderr, "failoverctl: %s: %s\n", sock, reply.Error)
			rc = 1
		}
		if *flagJSON {
			all = append(all, reply)
			continue
		}
		if i > 0 {
			fmt.Println()
		}
		if reply.Status != nil {
			printStatus(os.Stdout, reply.Status, time.Now())
		}
	}
	if *flagJSON {
		out, _ := json.MarshalIndent(all, "", "  ")
		fmt.Println(string(out))
	}
	return rc
}

// waitHandover polls the status after maintenance start until the peer
// reports PARTNER-DOWN and no update is queued or unacknowledged: then
// this server may be stopped.
func waitHandover(socket string, reply control.Reply, wait time.Duration) control.Reply {
	deadline := time.Now().Add(wait)
	for {
		if st := reply.Status; st != nil && handedOver(st) {
			reply.Message = "the peer is partner-down and has every update: this server may be stopped"
			return reply
		}
		if st := reply.Status; st != nil && bothShutDown(st) {
			reply.Error = "the peer went to shutdown as well (maintenance started on both servers?): neither serves clients now; run `failoverctl maintenance stop` on one of them"
			return reply
		}
		if time.Now().After(deadline) {
			reply.Error = fmt.Sprintf("after %v the peer is not yet partner-down with every update (see status); do not stop this server yet", wait)
			return reply
		}
		time.Sleep(250 * time.Millisecond)
		next, err := ask(socket, "status")
		if err != nil {
			reply.Error = err.Error()
			return reply
		}
		reply.Status = next.Status
	}
}

func handedOver(st *control.Status) bool {
	return st.State == "shutdown" && st.PeerState == "partner-down" && st.Connected && st.Unacked == 0 && st.Queued == 0
}

// bothShutDown reports the two servers handing their pools to each other:
// neither will ever be partner-down.
func bothShutDown(st *control.Status) bool {
	return st.State == "shutdown" && st.PeerState == "shutdown"
}

func ask(socket, cmd string) (control.Reply, error) {
	var reply control.Reply
	conn, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return reply, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(conn).Encode(control.Request{Command: cmd}); err != nil {
		return reply, err
	}
	if err := json.NewDecoder(conn).Decode(&reply); err != nil {
		return reply, fmt.Errorf("reading the answer: %w", err)
	}
	return reply, nil
}

// ago prints a time and how long ago it was.
func ago(t int64, now time.Time) string {
	if t == 0 {
		return "never"
	}
	return fmt.Sprintf("%s (%s ago)", clock(t, now), now.Sub(time.Unix(t, 0)).Round(time.Second))
}

// clock prints a time of day, with the date when it is not within a day
// of now.
func clock(t int64, now time.Time) string {
	at := time.Unix(t, 0)
	if d := now.Sub(at); d > 20*time.Hour || d < -20*time.Hour {
		return at.Format(time.DateTime)
	}
	return at.Format(time.TimeOnly)
}

// when prints a future time and how long until it.
func when(t int64, now time.Time) string {
	d := time.Unix(t, 0).Sub(now).Round(time.Second)
	if d <= 0 {
		return fmt.Sprintf("at %s (due now)", clock(t, now))
	}
	return fmt.Sprintf("in %s, at %s", d, clock(t, now))
}

func printStatus(w io.Writer, s *control.Status, now time.Time) {
	fmt.Fprintf(w, "relationship %s: this server is the %s, peer %s\n", s.Name, s.Role, s.PeerAddress)
	serving := "serving clients"
	if !s.MayServe {
		serving = "NOT serving clients"
	}
	fmt.Fprintf(w, "  my state     %s since %s, %s\n", strings.ToUpper(s.State), ago(s.Since, now), serving)
	if s.Stos != 0 {
		fmt.Fprintf(w, "  counted from %s (the protocol's start of state: MCLT waits count from it)\n", ago(s.Stos, now))
	}
	fmt.Fprintf(w, "  why          %s\n", s.Reason)
	link := "connected"
	if !s.Connected {
		link = "NOT connected"
	}
	peerSince := ""
	if s.PeerSince != 0 {
		peerSince = ", learned at " + ago(s.PeerSince, now)
	}
	fmt.Fprintf(w, "  peer state   %s%s, %s\n", strings.ToUpper(s.PeerState), peerSince, link)
	fmt.Fprintf(w, "  last contact %s, clock skew %ds, MCLT %s\n", ago(s.LastContact, now), s.ClockSkew, time.Duration(s.MCLT)*time.Second)
	for _, n := range s.Next {
		if n.At != 0 {
			fmt.Fprintf(w, "  next         %s %s\n", n.What, when(n.At, now))
		} else {
			fmt.Fprintf(w, "  next         %s\n", n.What)
		}
	}
	if s.ResyncSince != 0 {
		fmt.Fprintf(w, "  resync       asked for every binding %s\n", ago(s.ResyncSince, now))
	}
	fmt.Fprintf(w, "  updates      %d unacknowledged, %d queued\n", s.Unacked, s.Queued)
	fmt.Fprintf(w, "  %-31s %8s %9s %8s %8s %9s\n", "pool", "free-own", "free-peer", "active", "expired", "abandoned")
	for _, p := range s.Pools {
		fmt.Fprintf(w, "  %-31s %8d %9d %8d %8d %9d\n", p.Range, p.FreeOwn, p.FreePeer, p.Active, p.Expired+p.Released+p.Reset, p.Abandoned)
	}
}
