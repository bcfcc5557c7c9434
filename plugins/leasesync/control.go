package leasesync

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
)

// The control socket: one JSON request per connection, one JSON answer.
// failoverctl speaks it; so can `socat - UNIX:PATH`.
//
//	{"command": "status"}
//	{"command": "partner-down"}   also: paused, shutdown, recover, normal, reconnect

// ControlRequest is a request on the control socket.
type ControlRequest struct {
	Command string `json:"command"`
}

// ControlReply is the answer: Error is empty on success.
type ControlReply struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Status is what `failoverctl status` shows of a relationship.
type Status struct {
	Name          string `json:"name"`
	Role          string `json:"role"`
	State         string `json:"state"`
	Since         int64  `json:"since"`
	Reason        string `json:"reason"`
	PeerState     string `json:"peer_state"`
	PeerAddress   string `json:"peer_address"`
	Connected     bool   `json:"connected"`
	Contacted     bool   `json:"contacted"`
	MayServe      bool   `json:"may_serve"`
	MCLT          int64  `json:"mclt"`
	NextTimer     int64  `json:"next_timer,omitempty"`
	NextTimerWhat string `json:"next_timer_what,omitempty"`
	LastContact   int64  `json:"last_contact,omitempty"`
	ClockSkew     int64  `json:"clock_skew"`
	Unacked       int    `json:"unacked_updates"`
	Queued        int    `json:"queued_updates"`
	FreeOwn       int    `json:"free_own"`
	FreePeer      int    `json:"free_peer"`
}

// controlCommands maps the commands that change the state to the state.
var controlCommands = map[string]fsm.State{
	"partner-down": fsm.PartnerDown,
	"paused":       fsm.Paused,
	"shutdown":     fsm.Shutdown,
	"recover":      fsm.Recover,
	"normal":       fsm.Normal,
}

// listenControl opens the control socket at path, readable and writable
// by its owner only.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		// A socket left by a previous process: nothing listens on it, or
		// the lease database's lock would have stopped us already.
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
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
			reply := s.control(bufio.NewReader(conn))
			json.NewEncoder(conn).Encode(reply)
		}()
	}
}

// control reads one request and carries it out.
func (s *Session) control(r *bufio.Reader) ControlReply {
	line, err := r.ReadString('\n')
	if err != nil && line == "" {
		return ControlReply{Error: "no request: " + err.Error()}
	}
	if len(line) > 4096 {
		return ControlReply{Error: "request too long"}
	}
	var req ControlRequest
	if err := json.Unmarshal([]byte(line), &req); err != nil {
		return ControlReply{Error: "bad request: " + err.Error()}
	}
	switch cmd := strings.ToLower(req.Command); cmd {
	case "status":
		st, err := s.Status()
		if err != nil {
			return ControlReply{Error: err.Error()}
		}
		return ControlReply{Status: &st}
	case "reconnect":
		if err := s.Reconnect(); err != nil {
			return ControlReply{Error: err.Error()}
		}
	default:
		to, ok := controlCommands[cmd]
		if !ok {
			return ControlReply{Error: fmt.Sprintf("unknown command %q (known: status, partner-down, paused, shutdown, recover, normal, reconnect)", req.Command)}
		}
		if err := s.Command(to); err != nil {
			return ControlReply{Error: err.Error()}
		}
		log.WithField("relationship", s.cfg.Name).Warnf("operator command: %s", cmd)
	}
	st, err := s.Status()
	if err != nil {
		return ControlReply{Error: err.Error()}
	}
	return ControlReply{Status: &st}
}

// Status reports the relationship as the session goroutine sees it.
func (s *Session) Status() (Status, error) {
	reply := make(chan Status, 1)
	if !s.post(event{kind: evStatus, status: reply}) {
		return Status{}, errors.New("session closed")
	}
	return <-reply, nil
}

// status is built by the run goroutine.
func (s *Session) status() Status {
	st := s.m.Status()
	out := Status{
		Name: s.cfg.Name, Role: s.cfg.Role.String(),
		State: st.State.String(), Since: st.Stos, Reason: st.Reason,
		PeerState: st.PeerState.String(), PeerAddress: s.cfg.Peer.String(),
		Connected: s.link != nil, Contacted: s.contacted, MayServe: s.m.MayServe(),
		MCLT: st.MCLT, NextTimer: st.NextTimer, NextTimerWhat: st.NextTimerWhat,
		Unacked: len(s.inflight), Queued: len(s.queued),
	}
	if !s.lastRecv.IsZero() {
		out.LastContact = s.lastRecv.Unix()
	}
	if s.link != nil {
		out.ClockSkew = s.link.params.skew
	}
	out.FreeOwn, out.FreePeer = s.db.FreeCounts()
	return out
}
