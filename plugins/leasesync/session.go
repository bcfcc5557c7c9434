package leasesync

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/ratelimit"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// Session holds one failover relationship's link to its peer and drives
// its state machine. All its state is owned by the run goroutine; other
// goroutines talk to it through events.
type Session struct {
	cfg Config
	rel *relation.Relationship
	clk Clock

	events     chan event
	done       chan struct{}
	wantDial   chan struct{}
	handshakes chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
	// postMu and exited close the event queue when the run goroutine
	// exits (see post).
	postMu sync.RWMutex
	exited bool
	// ln is the listener on cfg.Address, shared with the other
	// relationships there (listener.go).
	ln        *sharedListener
	controlLn net.Listener
	// pending are connections in their handshake; Close closes them.
	pendingMu sync.Mutex
	pending   map[net.Conn]struct{}
	// handshakeTimeout bounds CONNECT/CONNECTACK on a new connection.
	handshakeTimeout time.Duration
	// linked is set while a link is up: a second connection is refused.
	linked atomic.Bool
	// Connection logs, at most one line per period each.
	pendingLog, handshakeLog ratelimit.Limiter

	// changed collects addresses whose bindings changed, from DHCP
	// handlers, without ever blocking them.
	changedMu sync.Mutex
	changed   map[lease.IP]struct{}

	// reconnect is the pause between attempts to reach the peer.
	reconnect time.Duration
	// startupTimeout is how long STARTUP waits for the peer, in seconds
	// (0: ISC's 15).
	startupTimeout int64

	roundMu   sync.Mutex
	roundDone chan struct{}

	// reg receives the session's metrics; running is set while the run
	// goroutine answers events.
	reg     *prometheus.Registry
	met     *sessionMetrics
	running atomic.Bool

	// Owned by run.
	timers
	m    *fsm.Machine
	db   relation.Bindings
	link *link
	// out is what we owe the peer: updates, BNDACKs, UPDDONE.
	out outbox
	// updReqXID is the xid of our latest UPDREQ/UPDREQALL on this link,
	// while updReqOut: only the UPDDONE that echoes it answers us (the
	// peer echoes the latest request it received).
	updReqXID uint32
	updReqOut bool
	// contacted: the peer's state has been heard since the process
	// started; operatorPD: the operator has declared partner-down since
	// (see relation.View).
	contacted bool
	// entered is when the state machine last changed state.
	entered      int64
	operatorPD   bool
	operatorPDAt int64
	skewLog      ratelimit.Limiter
	rejectLog    ratelimit.Limiter
	// resyncSince is when the operator's UPDREQALL was sent (0: none
	// outstanding).
	resyncSince int64
	// unsaved is the failover state whose write failed: it is written
	// again at each round until it succeeds (the machine asks only when
	// the state changes, and the disk must not stay behind: a server
	// restarted from a stale state may skip POTENTIAL-CONFLICT).
	unsaved *fsm.Persistent
}

// NewSession prepares the session of cfg's relationship. It starts when
// Start is called, once the failover line has attached its bindings.
func NewSession(cfg Config, rel *relation.Relationship, clk Clock) *Session {
	if clk == nil {
		clk = realClock{}
	}
	s := &Session{
		cfg:        cfg,
		rel:        rel,
		clk:        clk,
		events:     make(chan event, 256),
		done:       make(chan struct{}),
		wantDial:   make(chan struct{}, 1),
		handshakes: make(chan struct{}, maxPendingHandshakes),
		changed:    map[lease.IP]struct{}{},
		pending:    map[net.Conn]struct{}{},
		roundDone:  make(chan struct{}),
		reconnect:  reconnectInterval,

		handshakeTimeout: defaultHandshakeTimeout,
		out:              newOutbox(),
	}
	s.met = newSessionMetrics(s)
	s.handshakeLog.Period = time.Minute
	return s
}

// Start listens for the peer, loads the stored state and runs the session.
// The bindings must be attached.
func (s *Session) Start() error {
	saved, err := s.prepare()
	if err != nil {
		return err
	}
	if s.cfg.Control != "" {
		cl, err := listenControl(s.cfg.Control)
		if err != nil {
			return fmt.Errorf("plugins/leasesync: relationship %q: argument \"control=%s\": %w", s.cfg.Name, s.cfg.Control, err)
		}
		s.controlLn = cl
	}
	if s.reg != nil {
		if err := s.reg.Register(s.met); err != nil {
			if s.controlLn != nil {
				s.controlLn.Close()
			}
			return fmt.Errorf("metrics of relationship %q: %w", s.cfg.Name, err)
		}
	}
	// The listener last: from here the peer's connections reach this
	// session (its events queue until run starts).
	ln, err := acquireListener(s)
	if err != nil {
		if s.controlLn != nil {
			s.controlLn.Close()
		}
		if s.reg != nil {
			s.reg.Unregister(s.met)
		}
		return fmt.Errorf("plugins/leasesync: relationship %q: argument \"address=%s\" (port %d): cannot listen for the failover peer: %w",
			s.cfg.Name, s.cfg.Address.Addr(), s.cfg.Address.Port(), err)
	}
	s.ln = ln
	log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "role": s.cfg.Role, "address": s.cfg.Address,
		"peer": s.cfg.Peer, "saved": saved}).Info("failover session starting")
	s.running.Store(true)
	s.wg.Add(2)
	go s.dial()
	go s.run()
	if s.controlLn != nil {
		s.wg.Add(1)
		go s.serveControl(s.controlLn)
	}
	return nil
}

// prepare loads the stored state and builds the state machine: the part
// of Start that needs no socket and no goroutine (the simulation of a
// pair drives a prepared session itself, through handle and endRound). It
// returns the saved state.
func (s *Session) prepare() (fsm.State, error) {
	s.db = s.rel.Bindings()
	if s.db == nil {
		return 0, fmt.Errorf("relationship %q has no failover line", s.cfg.Name)
	}
	saved, _, err := s.db.LoadState()
	if err != nil {
		return 0, err
	}
	now := s.clk.Now().Unix()
	p := persistentOf(s.cfg.Name, &saved)
	mclt := int64(s.cfg.MCLT.Seconds())
	if mclt == 0 {
		mclt = p.MCLT
	}
	s.m = fsm.New(fsm.Config{
		Role:            fsm.Role(s.cfg.Role),
		MCLT:            mclt,
		AutoPartnerDown: int64(s.cfg.AutoPartnerDown.Seconds()),
		StartupTimeout:  s.startupTimeout,
	}, p, now)
	s.rel.SetNotify(s.notify)
	// Updates not acknowledged before the restart are sent again.
	s.db.Pending(func(ip lease.IP) { s.out.enqueue(ip) })
	return p.MyState, nil
}

// Close stops the session: it closes the link and the listener and waits
// for its goroutines.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.pendingMu.Lock()
		close(s.done)
		for c := range s.pending {
			c.Close()
		}
		s.pendingMu.Unlock()
		if s.ln != nil {
			s.ln.release(s)
		}
		if s.controlLn != nil {
			s.controlLn.Close()
		}
		if s.reg != nil {
			s.reg.Unregister(s.met)
		}
		s.running.Store(false)
		relation.Unregister(s.rel)
	})
	s.wg.Wait()
	return nil
}

// command is an operator transition. The state machine learns first
// whether updates of ours are unacknowledged: it skips the MCLT wait of
// SHUTDOWN → RECOVER (peer in PARTNER-DOWN) only if none are.
func (s *Session) command(to fsm.State, now time.Time, reason string) error {
	s.m.SetUpdatesPending(s.updatesPending())
	return s.m.CommandReason(to, now.Unix(), reason)
}

// updatesPending reports whether the peer may not know a change of ours:
// an update queued or waiting for its BNDACK, or a binding the store
// still marks as unacknowledged (after a restart, before it is queued).
func (s *Session) updatesPending() bool {
	s.drainChanged()
	if s.out.pending() {
		return true
	}
	pending := false
	s.db.Pending(func(lease.IP) { pending = true })
	return pending
}

// refuse ends the link over a peer's protocol error: DISCONNECT with the
// reason (best effort: the peer may not be reading), then close.
func (s *Session) refuse(rej *rejection, now time.Time) {
	log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "peer": s.link.String(), "reason": rej.reason.String()}).
		Warnf("disconnecting the failover peer: %s", rej.text)
	s.link.send(disconnectMsg(now.Unix(), s.link.nextXID(false), rej), time.Now().Add(time.Second))
	s.linkDown(rej.Error(), now)
}

// malformed is the rejection for a frame the codec refused, nil for
// other read errors (the connection closed or failed).
func malformed(err error) *rejection {
	for _, e := range []error{wire.ErrShortFrame, wire.ErrFrameTooLong, wire.ErrBadLength, wire.ErrPayloadOffset,
		wire.ErrOptionOverflow, wire.ErrUnknownType, wire.ErrDuplicateOption, wire.ErrOptionLength} {
		if errors.Is(err, e) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return &rejection{wire.RejectMiscReject, "malformed message: " + err.Error()}
		}
	}
	return nil
}

func (s *Session) linkUp(l *link, now time.Time) {
	s.link = l
	s.linked.Store(true)
	s.lastRecv, s.lastSend = now, now
	if l.params.maxUnacked <= 0 {
		l.params.maxUnacked = 1
	}
	if s.cfg.Role == Secondary {
		s.m.SetMCLT(l.params.mclt)
	}
	direction := "accepted"
	if l.dialed {
		direction = "dialed"
	}
	fields := logrus.Fields{"relationship": s.cfg.Name, "peer": l.String(), "direction": direction, "vendor": l.params.vendor,
		"max-unacked": l.params.maxUnacked, "receive-timer": l.params.receiveTimer}
	if skew := l.clock.seconds(); skew > 5 || skew < -5 {
		fields["clock-skew-seconds"] = skew
	}
	log.WithFields(fields).Info("failover peer connected")
	s.met.connects.Inc()
	if !l.fed {
		s.wg.Add(1)
		go s.read(l)
	}
	s.m.Connected(now.Unix())
}

func (s *Session) linkDown(why string, now time.Time) {
	if s.link == nil {
		return
	}
	log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "peer": s.link.String(), "reason": why}).Warn("failover peer disconnected")
	s.met.disconnects.Inc()
	s.resyncSince = 0
	s.link.close()
	s.link = nil
	s.linked.Store(false)
	s.updReqOut = false
	// Updates in flight were not acknowledged: they go again, and so
	// do the deferred ones.
	s.out.linkLost()
	s.m.Disconnected(now.Unix())
	s.nextDial = now.Add(s.reconnect)
}

// receive handles one message from the established link, which arrived
// at at.
func (s *Session) receive(b wire.Body, now, at time.Time) error {
	if _, ack := b.(*wire.BindingAck); !ack {
		// Every message is stamped when sent: each bounds the peer's
		// clock (a BNDACK, answering ours, does better: see acked).
		s.link.clock.oneWay(b.Head().Time, at)
		s.checkSkew(now)
	}
	switch msg := b.(type) {
	case *wire.State:
		// A server past its startup is never in unknown-state or
		// startup: only a STATE flagged as startup may say so.
		st, err := serverStates.fromWire(msg.ServerState)
		if err != nil || (st == fsm.Unknown || st == fsm.Startup) && msg.Flags&wire.FlagStartup == 0 {
			return &rejection{wire.RejectMiscReject, fmt.Sprintf("peer reports the impossible state %d", msg.ServerState)}
		}
		s.contacted = true
		s.m.PeerState(st, msg.Flags&wire.FlagStartup != 0, now.Unix())
	case *wire.BindingUpdate:
		s.applyUpdate(msg, now)
	case *wire.BindingAck:
		s.acked(msg, now, at)
	case *wire.UpdateRequest:
		s.answerRequest(msg.XID, false)
	case *wire.UpdateRequestAll:
		s.answerRequest(msg.XID, true)
	case *wire.UpdateDone:
		if !s.updReqOut || msg.XID != s.updReqXID {
			// An answer to an earlier request (an UPDREQ, when an
			// UPDREQALL followed it), or to none: it does not say
			// that the peer sent what we asked for last.
			log.WithField("relationship", s.cfg.Name).Infof("ignoring an UPDDONE with xid %d: our latest update request has xid %d (outstanding: %t)",
				msg.XID, s.updReqXID, s.updReqOut)
			return nil
		}
		s.updReqOut = false
		if s.resyncSince != 0 {
			log.WithField("relationship", s.cfg.Name).Infof("resynchronisation requested by the operator complete after %.1fs",
				now.Sub(time.Unix(s.resyncSince, 0)).Seconds())
			s.resyncSince = 0
		}
		s.m.UpdateDone(now.Unix())
	case *wire.PoolRequest:
		// Outside NORMAL balance moves nothing: POOLRESP 0, as ISC.
		n := s.balance(now, balanceAsked)
		log.WithField("relationship", s.cfg.Name).Infof("pool request from the peer in %s: %d addresses transferred", s.m.State(), n)
		if err := s.send(&wire.PoolResponse{Header: wire.Header{XID: msg.XID}, AddressesTransferred: uint32(n)}, now); err != nil {
			return err
		}
	case *wire.PoolResponse:
		log.WithField("relationship", s.cfg.Name).Infof("pool response: %d addresses", msg.AddressesTransferred)
	case *wire.Disconnect:
		return fmt.Errorf("peer sent DISCONNECT: %s (%s)", msg.Message, msg.RejectReason)
	case *wire.Connect, *wire.ConnectAck:
		return &rejection{wire.RejectMiscReject, fmt.Sprintf("unexpected %s on an established link", b.Type())}
	}
	return nil
}

// checkSkew says loudly when the peer's clock is beyond what ISC
// tolerates at CONNECT.
func (s *Session) checkSkew(now time.Time) {
	if skew := s.link.clock.seconds(); skew > maxSkew || skew < -maxSkew {
		s.skewLog.Do(now, func(int) {
			log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "clock-skew-seconds": skew}).
				Error("the peer's clock is far from ours: times from it are corrected, but fix the clocks (NTP)")
		})
	}
}

func (s *Session) act(a fsm.Action, now time.Time) {
	switch a {
	case fsm.ActRequeueUnacked:
		s.out.requeueInflight()
	case fsm.ActSendPending:
		s.db.Pending(func(ip lease.IP) { s.out.enqueue(ip) })
	case fsm.ActPoolBalance, fsm.ActPoolCheck:
		s.balance(now, balanceOnNormal)
		s.balanceAt = now.Add(s.cfg.MinBalance)
	case fsm.ActPartnerDownEntered:
		s.db.PartnerDownEntered(s.m.Status().Stos)
	}
}

func (s *Session) sendFSM(m fsm.Message, now time.Time) error {
	h := wire.Header{}
	switch m.Type {
	case fsm.MsgState:
		var flags wire.ServerFlags
		if m.Startup {
			flags = wire.FlagStartup
		}
		st, err := serverStates.toWire(m.State)
		if err != nil {
			return err
		}
		return s.send(&wire.State{Header: h, ServerState: st, Flags: flags, StartTimeOfState: uint32(m.Stos)}, now)
	case fsm.MsgUpdReq:
		return s.send(&wire.UpdateRequest{Header: h}, now)
	case fsm.MsgUpdReqAll:
		return s.send(&wire.UpdateRequestAll{Header: h}, now)
	}
	return nil
}

// send stamps and writes a message we originate (or, with its xid set, an
// answer).
func (s *Session) send(b wire.Body, now time.Time) error {
	h := b.Head()
	h.Time = uint32(now.Unix())
	switch b.(type) {
	case *wire.BindingAck, *wire.PoolResponse, *wire.UpdateDone:
		// Answers carry the request's xid.
	case *wire.BindingUpdate:
		h.XID = s.link.nextXID(true)
	case *wire.UpdateRequest, *wire.UpdateRequestAll:
		h.XID = s.link.nextXID(false)
		s.updReqXID, s.updReqOut = h.XID, true
	default:
		h.XID = s.link.nextXID(false)
	}
	if err := s.link.send(b, time.Now().Add(s.cfg.MaxResponseDelay)); err != nil {
		return fmt.Errorf("sending %s: %w", b.Type(), err)
	}
	s.lastSend = now
	return nil
}
