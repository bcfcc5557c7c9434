package leasesync

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/leasesync/control"
)

// The control socket: one JSON request per connection, one JSON answer.
// failoverctl speaks it; so can `socat - UNIX:PATH`.
//
//	{"command": "status"}
//	{"command": "maintenance-start"}   also: maintenance-stop, resync, rebalance,
//	                                   partner-down, paused, shutdown, recover, normal, reconnect
//
// Every command answers with the status after it; Message says what the
// command did when that is more than a state change.

// The control protocol's types live in package control, which
// failoverctl imports without this plugin (and so without cgo, sqlite,
// Prometheus or CoreDHCP).
type (
	ControlRequest = control.Request
	ControlReply   = control.Reply
	Status         = control.Status
	Next           = control.Next
	PoolStatus     = control.PoolStatus
)

// controlCommands maps the commands that change the state to the state.
var controlCommands = map[string]fsm.State{
	"partner-down": fsm.PartnerDown,
	"paused":       fsm.Paused,
	"shutdown":     fsm.Shutdown,
	"recover":      fsm.Recover,
	"normal":       fsm.Normal,
}

// operatorCommands are the commands that are methods of the session.
var operatorCommands = map[string]func(*Session) (string, error){
	"maintenance-start": (*Session).MaintenanceStart,
	"maintenance-stop":  (*Session).MaintenanceStop,
	"resync":            (*Session).Resync,
	"rebalance":         (*Session).Rebalance,
	"reconnect": func(s *Session) (string, error) {
		return "", s.Reconnect()
	},
}

// knownCommands is for error messages.
const knownCommands = "status, maintenance-start, maintenance-stop, resync, rebalance, partner-down, paused, shutdown, recover, normal, reconnect"

// listenControl opens the control socket at path, readable and writable
// by its owner only, and open to no one else at any moment, even in a
// directory that others may enter. A socket is created with the mode the
// umask leaves, so it is bound in a fresh directory of mode 0700 beside
// path (os.MkdirTemp), made 0600 there, and only then linked at path (as
// ssh-agent keeps its socket in a private mkdtemp directory). The link
// fails, rather than replace it, if anything but a socket left by a
// previous process is at path. A umask around the bind (PostgreSQL,
// systemd) would do as much in a single-threaded process; in Go the umask
// is the process's, and would change the files every other goroutine
// creates meanwhile.
func listenControl(path string) (net.Listener, error) {
	fail := func(err error) (net.Listener, error) {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		// A socket left by a previous process: nothing listens on it, or
		// the lease database's lock would have stopped us already.
		os.Remove(path)
	}
	private, err := os.MkdirTemp(dir, ".c")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(private)
	bound := filepath.Join(private, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return fail(err)
	}
	// Close removes path, not the name it was bound to.
	ln.SetUnlinkOnClose(false)
	controlStepped()
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return fail(err)
	}
	controlStepped()
	if err := os.Link(bound, path); err != nil {
		ln.Close()
		return fail(err)
	}
	controlStepped()
	return &controlListener{UnixListener: ln, path: path}, nil
}

// controlStep, set by tests, is called after each step of listenControl
// that changes the file system.
var controlStep func()

func controlStepped() {
	if controlStep != nil {
		controlStep()
	}
}

// controlListener removes its socket's path when closed.
type controlListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *controlListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

func (s *Session) serveControl(ln net.Listener) {
	defer s.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			// A request is one short line: read no more than the
			// limit, so a writer that never ends a line costs nothing.
			reply := s.control(bufio.NewReader(io.LimitReader(conn, maxRequest+1)))
			json.NewEncoder(conn).Encode(reply)
		}()
	}
}

// maxRequest is the longest request line accepted.
const maxRequest = 4096

// control reads one request and carries it out.
func (s *Session) control(r *bufio.Reader) ControlReply {
	line, err := r.ReadString('\n')
	if err != nil && line == "" {
		return ControlReply{Error: "no request: " + err.Error()}
	}
	if len(line) > maxRequest {
		return ControlReply{Error: fmt.Sprintf("request longer than %d bytes", maxRequest)}
	}
	var req ControlRequest
	if err := json.Unmarshal([]byte(line), &req); err != nil {
		return ControlReply{Error: "bad request: " + err.Error()}
	}
	cmd := strings.ToLower(req.Command)
	var reply ControlReply
	if cmd != "status" {
		if fn, ok := operatorCommands[cmd]; ok {
			msg, err := fn(s)
			if err != nil {
				return ControlReply{Error: err.Error()}
			}
			reply.Message = msg
		} else if to, ok := controlCommands[cmd]; ok {
			if err := s.Command(to); err != nil {
				return ControlReply{Error: err.Error()}
			}
		} else {
			return ControlReply{Error: fmt.Sprintf("unknown command %q (known: %s)", req.Command, knownCommands)}
		}
		log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "command": cmd}).Warn("operator command")
	}
	st, err := s.Status()
	if err != nil {
		return ControlReply{Error: err.Error()}
	}
	reply.Status = &st
	return reply
}

// Status reports the relationship as the session goroutine sees it, with
// the pools' counts.
func (s *Session) Status() (Status, error) {
	st, err := s.snapshot()
	if err != nil {
		return st, err
	}
	primary := s.cfg.Role == Primary
	for _, pc := range s.db.PoolCounts() {
		free, backup := int(pc.States[lease.Free]), int(pc.States[lease.Backup])
		ps := PoolStatus{Range: pc.Range.String(), FreeOwn: free, FreePeer: backup,
			Active: int(pc.States[lease.Active]), Expired: int(pc.States[lease.Expired]),
			Released: int(pc.States[lease.Released]), Abandoned: int(pc.States[lease.Abandoned]),
			Reset: int(pc.States[lease.Reset])}
		if !primary {
			ps.FreeOwn, ps.FreePeer = backup, free
		}
		st.Pools = append(st.Pools, ps)
		st.FreeOwn += ps.FreeOwn
		st.FreePeer += ps.FreePeer
	}
	return st, nil
}

// snapshot is Status without the pools: cheap, for metrics.
func (s *Session) snapshot() (Status, error) {
	reply := make(chan Status, 1)
	if !s.post(event{kind: evStatus, status: reply}) {
		return Status{}, errSessionClosed
	}
	st, ok := await(s.done, reply)
	if !ok {
		return Status{}, errSessionClosed
	}
	return st, nil
}

// status is built by the run goroutine.
func (s *Session) status() Status {
	// Changes the handlers have announced count as queued.
	s.drainChanged()
	st := s.m.Status()
	out := Status{
		Name: s.cfg.Name, Role: s.cfg.Role.String(),
		State: st.State.String(), Since: st.Entered, Reason: st.Reason,
		PeerState: st.PeerState.String(), PeerSince: st.PeerStos, PeerAddress: s.cfg.Peer.String(),
		Connected: s.link != nil, Contacted: s.contacted, MayServe: s.m.MayServe(),
		MCLT: st.MCLT, NextTimer: st.NextTimer, NextTimerWhat: st.NextTimerWhat,
		ResyncSince: s.resyncSince,
		Unacked:     len(s.out.inflight), Queued: len(s.out.queued),
	}
	if st.Stos != st.Entered {
		out.Stos = st.Stos
	}
	if !s.lastRecv.IsZero() {
		out.LastContact = s.lastRecv.Unix()
	}
	if s.link != nil {
		out.ClockSkew = s.link.clock.seconds()
	}
	if v := s.rel.View(); v != nil && st.State == fsm.PartnerDown {
		out.TakeoverAt = v.PartnerDownStart() + v.MCLT
	}
	out.Next = s.next(st, out.TakeoverAt)
	return out
}

// next says what happens next in the current state, and when.
func (s *Session) next(st fsm.Status, takeoverAt int64) []Next {
	var out []Next
	add := func(at int64, format string, args ...any) {
		out = append(out, Next{What: fmt.Sprintf(format, args...), At: at})
	}
	switch st.NextTimerWhat {
	case "startup-timeout":
		add(st.NextTimer, "leave startup without the peer (saved state %s)", st.SavedState)
	case "recover-wait":
		add(st.NextTimer, "recover-done (MCLT after the start of recover, or of the state saved before a restart that went straight to recover, or after hearing a recovering peer)")
	case "auto-partner-down":
		add(st.NextTimer, "partner-down by auto-partner-down")
	}
	switch st.State {
	case fsm.CommInterrupted:
		if st.NextTimerWhat != "auto-partner-down" {
			add(0, "partner-down when the operator declares it (failoverctl partner-down), if the peer is really down; the peer's free addresses follow MCLT later")
		}
		add(0, "normal when the peer is reachable again")
	case fsm.PartnerDown:
		if now := s.clk.Now().Unix(); takeoverAt > now {
			add(takeoverAt, "may use the peer's free addresses")
		} else {
			add(0, "serving from every pool address (the peer's free addresses since MCLT); normal once the peer recovers")
		}
	case fsm.Recover:
		add(0, "recover-wait or recover-done when the peer has sent every binding (UPDDONE)")
	case fsm.RecoverDone:
		if st.AwaitingUpdateDone {
			add(0, "normal when the peer's UPDDONE arrives (UPDREQ sent: every binding the peer gave while partner-down must reach us first)")
		} else {
			add(0, "UPDREQ to the peer when it reaches recover-done or normal, then normal at its UPDDONE (potential-conflict if it resolves a conflict, partner-down if it is shutdown)")
		}
	case fsm.Paused, fsm.Shutdown:
		add(0, "no service until failoverctl maintenance stop (through recover, or straight to normal from paused when the peer allows)")
	case fsm.PotentialConflict, fsm.ConflictDone, fsm.ResolutionInterrupted:
		add(0, "normal once the conflicting bindings are exchanged with the peer")
	case fsm.Normal:
		if !s.balanceAt.IsZero() {
			add(s.balanceAt.Unix(), "pool balance check")
		}
	}
	if s.link == nil && !s.nextDial.IsZero() {
		add(s.nextDial.Unix(), "connect to the peer again")
	}
	if s.resyncSince != 0 {
		add(0, "resynchronisation complete when the peer sends UPDDONE")
	}
	return out
}

// do runs fn on the session goroutine.
func (s *Session) do(fn func(now time.Time) error) error {
	return s.call(event{kind: evDo, do: fn, reply: make(chan error, 1)})
}

// MaintenanceStart hands the pools to the peer before this server is
// stopped: it moves to SHUTDOWN, on which the peer moves to PARTNER-DOWN
// at once (draft-12, ISC) and serves every client, using our free
// addresses MCLT later. Queued binding updates still go to the peer; stop
// the process once the peer is partner-down and nothing is queued
// (failoverctl waits for it). It needs the peer connected: otherwise it
// would not learn that it may take over.
func (s *Session) MaintenanceStart() (string, error) {
	var msg string
	err := s.do(func(now time.Time) error {
		already, err := s.m.CheckMaintenanceStart()
		if err != nil || already {
			if already {
				msg = "already in shutdown"
			}
			return err
		}
		msg = "shutdown sent: the peer goes to partner-down; stop this server once it has and no update is queued"
		return s.command(fsm.Shutdown, now, "maintenance: pools handed to the peer")
	})
	return msg, err
}

// MaintenanceStop returns from maintenance: from SHUTDOWN (or PAUSED when
// the peer has taken over) through RECOVER, which fetches every binding
// from the peer; from PAUSED straight to NORMAL when the peer is normal,
// communications-interrupted or paused and the link is up.
func (s *Session) MaintenanceStop() (string, error) {
	var msg string
	err := s.do(func(now time.Time) error {
		to, err := s.m.MaintenanceStopTarget()
		if err != nil {
			return err
		}
		if to == fsm.Normal {
			msg = "back to normal"
			return s.command(fsm.Normal, now, "maintenance over")
		}
		msg = "recover: fetching every binding from the peer, then recover-done and normal"
		return s.command(fsm.Recover, now, "maintenance over: resynchronising from the peer")
	})
	return msg, err
}

// Resync asks the peer for every binding it has (UPDREQALL); the peer
// answers with BNDUPDs and UPDDONE. The state does not change.
func (s *Session) Resync() (string, error) {
	var msg string
	err := s.do(func(now time.Time) error {
		if err := s.m.CheckResync(); err != nil {
			return err
		}
		if err := s.send(&wire.UpdateRequestAll{}, now); err != nil {
			s.linkDown(err.Error(), now)
			return err
		}
		s.resyncSince = now.Unix()
		msg = "UPDREQALL sent: the peer sends every binding, then UPDDONE"
		return nil
	})
	return msg, err
}

// Rebalance runs pool balancing now (NORMAL only): it gives the peer what
// is due, or asks the peer (POOLREQ) when we own fewer free addresses.
func (s *Session) Rebalance() (string, error) {
	var msg string
	err := s.do(func(now time.Time) error {
		if err := s.m.CheckRebalance(); err != nil {
			return err
		}
		own, peer := s.db.FreeCounts()
		s.asked = false
		moved := s.balance(now, balanceOperator)
		s.balanceAt = now.Add(s.cfg.MinBalance)
		switch {
		case moved > 0:
			msg = fmt.Sprintf("gave %d free addresses to the peer (owned %d, peer %d)", moved, own, peer)
		case s.asked:
			msg = fmt.Sprintf("asked the peer for free addresses (POOLREQ; owned %d, peer %d)", own, peer)
		default:
			msg = fmt.Sprintf("nothing to move (owned %d, peer %d)", own, peer)
		}
		return nil
	})
	return msg, err
}
