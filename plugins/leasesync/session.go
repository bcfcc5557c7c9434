package leasesync

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/ratelimit"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wallclock"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// Clock is the session's time source; tests pass a fake one.
type Clock interface {
	Now() time.Time
	// AfterFunc runs f after d; Stop cancels it.
	AfterFunc(d time.Duration, f func()) interface{ Stop() bool }
}

type realClock struct{}

func (realClock) Now() time.Time { return wallclock.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) interface{ Stop() bool } {
	return time.AfterFunc(d, f)
}

type eventKind uint8

// maxEventsPerSettle bounds the events handled before their results are
// acted on (the BNDACKs sent, the queue flushed).
const maxEventsPerSettle = 256

const (
	evLinkUp eventKind = iota
	evLinkDown
	evFrame
	evDialFailed
	evTick
	evChanged
	evCommand
	evDrop
	evStatus
	evDo
	evInspect // tests: run fn on the session goroutine
)

type event struct {
	kind   eventKind
	link   *link
	body   wire.Body
	at     time.Time // evFrame: when the frame arrived
	err    error
	cmd    fsm.State
	reply  chan error
	status chan Status
	// do runs on the session goroutine (operator commands).
	do func(now time.Time) error
	fn func()
}

// inflight is an update sent and not yet acknowledged.
type inflight struct {
	xid  uint32
	sent lease.Binding
	at   time.Time
	// earlier are the updates of the same address sent on this link
	// before sent, oldest first, whose BNDACKs have not come. An update
	// the peer sends meanwhile duels at the peer with each of them in
	// turn, and loses to the peer's copy of ours if any of them wins:
	// ApplyPeer must judge it against them all, not against the latest
	// alone (docs/protocol.md §13.4).
	earlier []sentUpdate
}

// sentUpdate is one update of an address superseded by a later one
// before its BNDACK came.
type sentUpdate struct {
	xid  uint32
	sent lease.Binding
}

// unacked returns the bindings of every update of in not yet
// acknowledged, oldest first.
func (in *inflight) unacked() []lease.Binding {
	out := make([]lease.Binding, 0, len(in.earlier)+1)
	for _, e := range in.earlier {
		out = append(out, e.sent)
	}
	return append(out, in.sent)
}

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
	postMu    sync.RWMutex
	exited    bool
	ln        net.Listener
	controlLn net.Listener
	// pending are connections in their handshake; Close closes them.
	pendingMu sync.Mutex
	pending   map[net.Conn]struct{}
	// handshakeTimeout bounds CONNECT/CONNECTACK on a new connection.
	handshakeTimeout time.Duration
	// linked is set while a link is up: a second connection is refused.
	linked atomic.Bool
	// Connection logs, at most one line per period each.
	refusedLog, pendingLog, handshakeLog ratelimit.Limiter

	// changed collects addresses whose bindings changed, from DHCP
	// handlers, without ever blocking them.
	changedMu sync.Mutex
	changed   map[lease.IP]struct{}

	// reconnect is the pause between attempts to reach the peer.
	reconnect time.Duration
	// startupTimeout is how long STARTUP waits for the peer, in seconds
	// (0: ISC's 15).
	startupTimeout int64

	settledMu sync.Mutex
	settled   chan struct{}

	// reg receives the session's metrics; running is set while the run
	// goroutine answers events.
	reg     *prometheus.Registry
	met     *sessionMetrics
	running atomic.Bool

	// Owned by run.
	m        *fsm.Machine
	db       relation.Bindings
	link     *link
	lastSend time.Time
	lastRecv time.Time
	queue    []lease.IP
	queued   map[lease.IP]bool
	inflight map[lease.IP]inflight
	// deferred holds the queued addresses the bindings hid while they
	// were written (relation.Bindings.Get): each comes back through
	// notify, and UPDDONE waits for them.
	deferred map[lease.IP]bool
	// retry holds the updates the peer refused with reject reason 6
	// (its write failed, or a miscellaneous refusal): they stay pending
	// and are queued again at retryAt, not at once (a peer whose store
	// fails would refuse them as fast as they go). UPDDONE waits for them.
	retry   map[lease.IP]bool
	retryAt time.Time
	// peerReq is the peer's UPDREQ/UPDREQALL being answered: UPDDONE
	// (with its xid) goes when the queue, the in-flight list and
	// deferred are empty.
	peerReq *uint32
	// updReqXID is the xid of our latest UPDREQ/UPDREQALL on this link,
	// while updReqOut: only the UPDDONE that echoes it answers us (the
	// peer echoes the latest request it received).
	updReqXID   uint32
	updReqOut   bool
	wake        interface{ Stop() bool }
	wakeAt      time.Time
	fsmTimer    int64
	dialPending bool
	nextDial    time.Time
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
	// balanceAt is when the pool balance runs next (zero: not armed);
	// asked is set when the last run sent POOLREQ.
	balanceAt time.Time
	asked     bool
	acks      []pendingAck
	// resyncSince is when the operator's UPDREQALL was sent (0: none
	// outstanding).
	resyncSince int64
	// acksHigh is the most BNDACKs ever held at once (bounded by
	// maxEventsPerSettle).
	acksHigh int
}

// pendingAck is a BNDACK waiting for the binding it acknowledges to be
// durable.
type pendingAck struct {
	ack  *wire.BindingAck
	done *lease.Batch
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
		settled:    make(chan struct{}),
		reconnect:  reconnectInterval,

		handshakeTimeout: defaultHandshakeTimeout,
		queued:           map[lease.IP]bool{},
		inflight:         map[lease.IP]inflight{},
		deferred:         map[lease.IP]bool{},
		retry:            map[lease.IP]bool{},
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
	ln, err := net.Listen("tcp4", s.cfg.Address.String())
	if err != nil {
		return fmt.Errorf("plugins/leasesync: relationship %q: argument \"address=%s\" (port %d): cannot listen for the failover peer: %w",
			s.cfg.Name, s.cfg.Address.Addr(), s.cfg.Address.Port(), err)
	}
	s.ln = ln
	if s.cfg.Control != "" {
		cl, err := listenControl(s.cfg.Control)
		if err != nil {
			ln.Close()
			return fmt.Errorf("plugins/leasesync: relationship %q: argument \"control=%s\": %w", s.cfg.Name, s.cfg.Control, err)
		}
		s.controlLn = cl
	}
	if s.reg != nil {
		if err := s.reg.Register(s.met); err != nil {
			ln.Close()
			if s.controlLn != nil {
				s.controlLn.Close()
			}
			return fmt.Errorf("metrics of relationship %q: %w", s.cfg.Name, err)
		}
	}
	log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "role": s.cfg.Role, "address": s.cfg.Address,
		"peer": s.cfg.Peer, "saved": saved}).Info("failover session starting")
	s.running.Store(true)
	s.wg.Add(3)
	go s.listen(ln)
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
// pair drives a prepared session itself, through handle and settle). It
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
	p := fsm.Persistent{
		MyState: fsm.State(saved.MyState), MyStos: saved.MyStos,
		PeerState: fsm.State(saved.PeerState), PeerStos: saved.PeerStos,
		MCLT: saved.MCLT,
	}
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
	s.db.Pending(func(ip lease.IP) { s.enqueue(ip) })
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
			s.ln.Close()
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

// post hands an event to the run goroutine; false once the session is
// closed. An event accepted into the queue while the run goroutine exits
// is never handled: a link in it is closed by that goroutine, and callers
// waiting for an answer use call.
func (s *Session) post(e event) bool {
	s.postMu.RLock()
	defer s.postMu.RUnlock()
	if !s.exited {
		select {
		case s.events <- e:
			return true
		case <-s.done:
		}
	}
	if e.link != nil && e.kind == evLinkUp {
		e.link.close()
	}
	return false
}

// drainEvents runs as the run goroutine exits: nothing handles the queue
// any more, so links queued in it are closed and later posts refused.
func (s *Session) drainEvents() {
	s.postMu.Lock()
	defer s.postMu.Unlock()
	s.exited = true
	for {
		select {
		case e := <-s.events:
			if e.link != nil && e.kind == evLinkUp {
				e.link.close()
			}
		default:
			return
		}
	}
}

var errSessionClosed = errors.New("session closed")

// call posts e and waits for the run goroutine's answer on e.reply, or
// for the session to close: an event posted as it closes may never be
// handled, and its caller (a control socket request, say) must not wait
// forever -- Close waits for that caller.
func (s *Session) call(e event) error {
	if !s.post(e) {
		return errSessionClosed
	}
	err, ok := await(s.done, e.reply)
	if !ok {
		return errSessionClosed
	}
	return err
}

// await waits for the answer on reply, or for done; an answer given as
// done closes still counts. ok is false if there was none.
func await[T any](done <-chan struct{}, reply <-chan T) (v T, ok bool) {
	select {
	case v = <-reply:
		return v, true
	case <-done:
		select {
		case v = <-reply:
			return v, true
		default:
			return v, false
		}
	}
}

// notify is called by the failover plugin, from DHCP handlers, after a
// binding change is durable. It never blocks.
func (s *Session) notify(ip lease.IP) {
	s.changedMu.Lock()
	first := len(s.changed) == 0
	s.changed[ip] = struct{}{}
	s.changedMu.Unlock()
	if first {
		select {
		case s.events <- event{kind: evChanged}:
		default:
			// The loop is busy; it drains changed on its next event.
		}
	}
}

// Command asks the state machine for an operator transition.
func (s *Session) Command(to fsm.State) error {
	return s.call(event{kind: evCommand, cmd: to, reply: make(chan error, 1)})
}

// Reconnect drops the link to the peer; the session connects again. The
// peer's view of what we have not acknowledged is exchanged again on the
// new link.
func (s *Session) Reconnect() error {
	return s.call(event{kind: evDrop, reply: make(chan error, 1)})
}

func (s *Session) run() {
	defer s.wg.Done()
	defer func() {
		s.drainEvents()
		if s.link != nil {
			s.link.close()
		}
		if s.wake != nil {
			s.wake.Stop()
		}
	}()
	s.requestDial()
	s.settle()
	for {
		select {
		case <-s.done:
			return
		case e := <-s.events:
			s.handle(e)
			// Handle whatever else is already waiting before acting on
			// the results: BNDUPDs that arrived together share one
			// commit and their BNDACKs go out together. A peer that
			// never pauses is served maxEventsPerSettle at a time,
			// which bounds the BNDACKs held.
			for n := 1; n < maxEventsPerSettle; n++ {
				select {
				case e := <-s.events:
					s.handle(e)
					continue
				default:
				}
				break
			}
			s.settle()
		}
	}
}

func (s *Session) handle(e event) {
	now := s.clk.Now()
	switch e.kind {
	case evLinkUp:
		if e.link.dialed {
			s.dialPending = false
		}
		if s.link != nil {
			log.WithField("peer", e.link.String()).Info("closing a second connection: a link is already up")
			e.link.close()
			return
		}
		s.linkUp(e.link, now)
	case evLinkDown:
		if e.link != s.link {
			return
		}
		if rej := malformed(e.err); rej != nil {
			s.refuse(rej, now)
			return
		}
		s.linkDown(fmt.Sprintf("connection lost: %v", e.err), now)
	case evDialFailed:
		s.dialPending = false
		s.nextDial = now.Add(s.reconnect)
	case evFrame:
		if e.link != s.link {
			return
		}
		s.lastRecv = now
		at := e.at
		if at.IsZero() {
			at = now
		}
		if err := s.receive(e.body, now, at); err != nil {
			var rej *rejection
			if errors.As(err, &rej) {
				s.refuse(rej, now)
				return
			}
			log.WithField("peer", s.link.String()).Warnf("dropping the failover link: %v", err)
			s.linkDown(err.Error(), now)
		}
	case evChanged:
	case evTick:
	case evCommand:
		from := s.m.State()
		err := s.command(e.cmd, now, "operator command")
		if err == nil && e.cmd == fsm.PartnerDown {
			// The operator vouches that the peer is down now.
			s.operatorPD, s.operatorPDAt = true, now.Unix()
			if from == fsm.Shutdown {
				// In SHUTDOWN the peer took over in PARTNER-DOWN
				// and may have given our free addresses too: what
				// we know of them is as stale as after a restart.
				s.contacted = false
			}
		}
		e.reply <- err
	case evDrop:
		s.linkDown("dropped by the operator", now)
		e.reply <- nil
	case evStatus:
		e.status <- s.status()
	case evDo:
		e.reply <- e.do(now)
	case evInspect:
		e.fn()
	}
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
	if len(s.queued) > 0 || len(s.inflight) > 0 {
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
	s.acks = nil
	s.peerReq = nil
	s.updReqOut = false
	// Updates in flight were not acknowledged: they go again, and so
	// do the deferred ones (in address order, so that a simulated run
	// replays exactly).
	s.requeueInflight()
	for _, ip := range sortedIPs(s.deferred) {
		s.enqueue(ip)
	}
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
		if st := fsm.State(msg.ServerState); !st.Valid() || (st == fsm.Unknown || st == fsm.Startup) && msg.Flags&wire.FlagStartup == 0 {
			return &rejection{wire.RejectMiscReject, fmt.Sprintf("peer reports the impossible state %d", msg.ServerState)}
		}
		s.contacted = true
		s.m.PeerState(fsm.State(msg.ServerState), msg.Flags&wire.FlagStartup != 0, now.Unix())
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

// enqueue queues ip's binding for a BNDUPD. The queue holds each address
// at most once plus the entries withdrawn since (a peer's update
// supersedes ours); when those outnumber the live ones it is compacted,
// so that it stays within twice the addresses of the pools however the
// peer interleaves updates and update requests.
func (s *Session) enqueue(ip lease.IP) {
	delete(s.deferred, ip)
	if s.queued[ip] {
		return
	}
	s.queued[ip] = true
	s.queue = append(s.queue, ip)
	if len(s.queue) > 2*len(s.queued)+64 {
		live := s.queue[:0]
		seen := make(map[lease.IP]bool, len(s.queued))
		for _, q := range s.queue {
			if s.queued[q] && !seen[q] {
				seen[q] = true
				live = append(live, q)
			}
		}
		clear(s.queue[len(live):])
		s.queue = live
	}
}

// answerRequest queues what the peer asked for; UPDDONE follows when it
// has all been acknowledged.
func (s *Session) answerRequest(xid uint32, all bool) {
	if all {
		s.db.All(func(ip lease.IP) { s.enqueue(ip) })
	} else {
		s.db.Pending(func(ip lease.IP) { s.enqueue(ip) })
	}
	s.peerReq = &xid
}

// applyUpdate stores a binding the peer announced (durably, through the
// failover plugin's store) and queues the BNDACK.
func (s *Session) applyUpdate(u *wire.BindingUpdate, now time.Time) {
	s.met.updatesReceived.Inc()
	b, err := bindingFromWire(&u.Binding, s.link.clock.correction())
	ack := &wire.BindingAck{Header: wire.Header{XID: u.XID}}
	ack.Addr = u.Addr
	if err != nil {
		ack.RejectReason, ack.Message = wire.RejectMissingBindInfo, err.Error()
	} else {
		// A binding we announced and the peer changed at the same time:
		// the peer's copy is now the one in force (ISC's duel rules are
		// applied by ApplyPeer against the stored binding and against
		// each of our updates of it still in flight).
		var unacked []lease.Binding
		if in, ok := s.inflight[b.IP]; ok {
			unacked = in.unacked()
		}
		reason, msg, done := s.db.ApplyPeer(b, now.Unix(), unacked...)
		if reason != 0 {
			ack.RejectReason, ack.Message = wire.RejectReason(reason), msg
		} else {
			// The peer's copy is in force: ours, if queued or in
			// flight, is not sent (its ack would be ignored).
			delete(s.inflight, b.IP)
			delete(s.queued, b.IP)
			delete(s.retry, b.IP)
			s.acks = append(s.acks, pendingAck{ack: ack, done: done})
			return
		}
	}
	s.logReject(ack)
	s.acks = append(s.acks, pendingAck{ack: ack})
}

// logReject logs a rejected update, at most once per period: a peer
// flooding bad updates must not flood the log.
func (s *Session) logReject(ack *wire.BindingAck) {
	s.met.rejectedByUs.Inc()
	s.rejectLog.Do(s.clk.Now(), func(n int) {
		log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "address": ack.Addr.String(),
			"reason": ack.RejectReason.String(), "rejected": n}).Warnf("rejected the peer's binding update: %s", ack.Message)
	})
}

// acked settles an update of ours; the BNDACK arrived at at.
func (s *Session) acked(a *wire.BindingAck, now, at time.Time) {
	ip, ok := lease.IPFromAddr(a.Addr)
	in, sent := s.inflight[ip]
	if ok && sent && in.xid != a.XID {
		// An update superseded before its BNDACK: the peer has
		// handled it, and those before it (it takes ours in order).
		for i, e := range in.earlier {
			if e.xid == a.XID {
				in.earlier = slices.Delete(in.earlier, 0, i+1)
				s.inflight[ip] = in
				break
			}
		}
	}
	if !ok || !sent || in.xid != a.XID {
		log.WithField("address", a.Addr.String()).Debugf("ignoring a BNDACK with xid %d: no update of ours waits for it", a.XID)
		if s.link != nil {
			s.link.clock.oneWay(a.Time, at)
		}
		return
	}
	if s.link != nil {
		// It answers the update sent at in.at: a round trip.
		s.link.clock.roundTrip(a.Time, in.at, at)
		s.checkSkew(now)
	}
	delete(s.inflight, ip)
	s.met.rtt.Observe(at.Sub(in.at).Seconds())
	if a.RejectReason != 0 {
		s.met.rejectedByPeer.Inc()
		log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "address": ip.String(), "status": in.sent.State.String(),
			"reason": a.RejectReason.String()}).Warnf("the peer rejected our binding update: %s", a.Message)
		if a.RejectReason == wire.RejectMiscReject {
			// The peer's answer when its write failed: the binding
			// stays pending and goes again after rejectRetry.
			s.retry[ip] = true
			if s.retryAt.IsZero() {
				s.retryAt = now.Add(rejectRetry)
			}
		}
		return
	}
	s.met.updatesAcked.Inc()
	if !s.db.Acked(in.sent, now.Unix()) {
		s.enqueue(ip) // changed since it was sent
	}
}

// settle carries out what the state machine decided, sends what can be
// sent, publishes the view, and arms the next wake-up.
func (s *Session) settle() {
	now := s.clk.Now()
	s.drainChanged()
	s.checkTimers(now)
	rd := s.m.Ready()
	for _, t := range rd.Transitions {
		s.entered = t.At
		log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "from": t.From.String(), "to": t.To.String(),
			"reason": t.Reason}).Info("failover state change")
		s.met.stateChanges.Inc()
	}
	for _, n := range rd.Notes {
		log.WithField("relationship", s.cfg.Name).Info(n)
	}
	if rd.Persist != nil {
		if err := s.db.SaveState(lease.RelState{
			MyState: uint8(rd.Persist.MyState), MyStos: rd.Persist.MyStos,
			PeerState: uint8(rd.Persist.PeerState), PeerStos: rd.Persist.PeerStos, MCLT: rd.Persist.MCLT,
		}); err != nil {
			log.WithError(err).Error("cannot store the failover state")
		}
	}
	for _, a := range rd.Actions {
		s.act(a, now)
	}
	if s.link != nil {
		for _, m := range rd.Send {
			if err := s.sendFSM(m, now); err != nil {
				s.linkDown(err.Error(), now)
				break
			}
		}
	}
	s.fsmTimer = rd.NextTimer
	if s.link != nil {
		if err := s.flush(now); err != nil {
			s.linkDown(err.Error(), now)
		}
	}
	if s.link == nil && !s.dialPending && !now.Before(s.nextDial) {
		s.requestDial()
	}
	s.publish()
	s.arm(now)
	s.settledMu.Lock()
	close(s.settled)
	s.settled = make(chan struct{})
	s.settledMu.Unlock()
}

// Settled returns a channel closed when the session next finishes handling
// its events: tests wait on it instead of sleeping.
func (s *Session) Settled() <-chan struct{} {
	s.settledMu.Lock()
	defer s.settledMu.Unlock()
	return s.settled
}

func (s *Session) drainChanged() {
	s.changedMu.Lock()
	if len(s.changed) == 0 {
		s.changedMu.Unlock()
		return
	}
	ch := s.changed
	s.changed = map[lease.IP]struct{}{}
	s.changedMu.Unlock()
	for _, ip := range sortedIPs(ch) {
		s.enqueue(ip)
	}
	// Free addresses were taken or returned: check the balance soon.
	if soon := s.clk.Now().Add(s.cfg.MinBalance); !s.balanceAt.IsZero() && s.balanceAt.After(soon) {
		s.balanceAt = soon
	}
}

// requeueInflight queues again every update waiting for its BNDACK.
func (s *Session) requeueInflight() {
	for _, ip := range sortedIPs(s.inflight) {
		s.enqueue(ip)
	}
	clear(s.inflight)
	s.requeueRefused()
}

// rejectRetry is how long an update the peer refused for a failed write
// waits before it goes again.
const rejectRetry = time.Second

// requeueRefused queues again the updates the peer refused (retry).
func (s *Session) requeueRefused() {
	for _, ip := range sortedIPs(s.retry) {
		s.enqueue(ip)
	}
	clear(s.retry)
	s.retryAt = time.Time{}
}

// sortedIPs are the keys of m in address order: updates queued from a
// map go out in the same order every time, so that a run of the
// simulation of the pair replays exactly.
func sortedIPs[V any](m map[lease.IP]V) []lease.IP {
	ips := make([]lease.IP, 0, len(m))
	for ip := range m {
		ips = append(ips, ip)
	}
	slices.Sort(ips)
	return ips
}

func (s *Session) act(a fsm.Action, now time.Time) {
	switch a {
	case fsm.ActRequeueUnacked:
		s.requeueInflight()
	case fsm.ActSendPending:
		s.db.Pending(func(ip lease.IP) { s.enqueue(ip) })
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
		return s.send(&wire.State{Header: h, ServerState: wire.ServerState(m.State), Flags: flags, StartTimeOfState: uint32(m.Stos)}, now)
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

// flush sends the queued BNDACKs, then as many BNDUPDs as the peer
// accepts in flight, then UPDDONE if an update request is answered, then
// CONTACT if the link has been quiet.
func (s *Session) flush(now time.Time) error {
	// What flush sends goes out in one write.
	s.link.hold()
	err := s.flushHeld(now)
	if rerr := s.link.release(time.Now().Add(s.cfg.MaxResponseDelay)); err == nil && rerr != nil {
		err = fmt.Errorf("sending: %w", rerr)
	}
	return err
}

func (s *Session) flushHeld(now time.Time) error {
	// The updates were submitted together: they share one commit.
	s.acksHigh = max(s.acksHigh, len(s.acks))
	for _, a := range s.acks {
		if a.done != nil {
			if err := a.done.Wait(); err != nil {
				a.ack.RejectReason, a.ack.Message = wire.RejectMiscReject, "database update failed"
				s.logReject(a.ack)
			}
		}
		if err := s.send(a.ack, now); err != nil {
			return err
		}
	}
	s.acks = s.acks[:0]
	if !s.retryAt.IsZero() && !now.Before(s.retryAt) {
		s.requeueRefused()
	}
	var stale []lease.IP
	for len(s.queue) > 0 && len(s.inflight) < s.link.params.maxUnacked {
		ip := s.queue[0]
		s.queue = s.queue[1:]
		if !s.queued[ip] {
			continue // withdrawn since it was queued
		}
		delete(s.queued, ip)
		b, ok := s.db.Get(ip)
		if !ok {
			// Being written: the failover plugin announces it
			// when the write settles. An update request is not
			// done until then.
			s.deferred[ip] = true
			continue
		}
		u := &wire.BindingUpdate{}
		u.Binding = bindingToWire(&b)
		// Before the write: a write that fails may still have
		// reached the peer.
		if !s.db.Sent(b) {
			// Changed since Get read it: the newer binding goes,
			// at the next flush (not in this loop, which would
			// spin while the change is written).
			stale = append(stale, ip)
			continue
		}
		if err := s.send(u, now); err != nil {
			s.enqueue(ip)
			return err
		}
		// Taken after the update is encoded: it leaves no earlier.
		next := inflight{xid: u.XID, sent: b, at: s.clk.Now()}
		if prev, ok := s.inflight[ip]; ok {
			next.earlier = append(slices.Clip(prev.earlier), sentUpdate{xid: prev.xid, sent: prev.sent})
			if over := len(next.earlier) - s.link.params.maxUnacked; over > 0 {
				// A peer that stops acknowledging must not grow
				// it without end: the oldest go.
				next.earlier = next.earlier[over:]
			}
		}
		s.inflight[ip] = next
		s.met.updatesSent.Inc()
	}
	for _, ip := range stale {
		s.enqueue(ip)
	}
	if len(stale) > 0 {
		// Flush again soon. A full queue of events means a flush
		// follows anyway.
		select {
		case s.events <- event{kind: evTick}:
		default:
		}
	}
	if len(s.queue) == 0 {
		s.queue = nil // let the backing array go
	}
	if s.peerReq != nil && len(s.queue) == 0 && len(s.inflight) == 0 && len(s.deferred) == 0 && len(s.retry) == 0 {
		if err := s.send(&wire.UpdateDone{Header: wire.Header{XID: *s.peerReq}}, now); err != nil {
			return err
		}
		s.peerReq = nil
	}
	if every := s.contactInterval(); now.Sub(s.lastSend) >= every {
		if err := s.send(&wire.Contact{}, now); err != nil {
			return err
		}
	}
	return nil
}

// contactInterval is a third of the peer's receive timer, as ISC.
func (s *Session) contactInterval() time.Duration {
	rt := s.link.params.receiveTimer
	if rt < 3 {
		rt = 3
	}
	return time.Duration(rt/3) * time.Second
}

// checkTimers fires what is due: the state machine's timers and the
// receive timer.
func (s *Session) checkTimers(now time.Time) {
	if s.fsmTimer != 0 && now.Unix() >= s.fsmTimer {
		s.m.Tick(now.Unix())
	}
	if !s.balanceAt.IsZero() && !now.Before(s.balanceAt) {
		// As ISC: again after min-balance if this run found work, else
		// after max-balance unless bindings change first (drainChanged
		// brings it forward). Counting the free addresses walks the
		// bindings, so never more often than min-balance.
		if s.balance(now, balanceTimer) > 0 || s.asked {
			s.balanceAt = now.Add(s.cfg.MinBalance)
		} else {
			s.balanceAt = now.Add(s.cfg.MaxBalance)
		}
		s.asked = false
	}
	if s.link != nil && now.Sub(s.lastRecv) >= s.cfg.MaxResponseDelay {
		s.linkDown(fmt.Sprintf("nothing heard for %v (max-response-delay)", s.cfg.MaxResponseDelay), now)
	}
}

func (s *Session) requestDial() {
	s.dialPending = true
	select {
	case s.wantDial <- struct{}{}:
	default:
	}
}

// arm sets the wake-up for the earliest deadline.
func (s *Session) arm(now time.Time) {
	var at time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if s.fsmTimer != 0 {
		consider(time.Unix(s.fsmTimer, 0))
	}
	if s.m.State() == fsm.Normal {
		consider(s.balanceAt)
	}
	if s.link != nil {
		consider(s.lastRecv.Add(s.cfg.MaxResponseDelay))
		consider(s.lastSend.Add(s.contactInterval()))
		consider(s.retryAt)
	} else if !s.dialPending {
		consider(s.nextDial)
	}
	if at.IsZero() || at.Equal(s.wakeAt) && s.wake != nil {
		return
	}
	if s.wake != nil {
		s.wake.Stop()
	}
	s.wakeAt = at
	d := at.Sub(now)
	if d < 0 {
		d = 0
	}
	s.wake = s.clk.AfterFunc(d, func() {
		select {
		case s.events <- event{kind: evTick}:
		case <-s.done:
		}
	})
}

// publish gives the failover plugin a fresh view.
func (s *Session) publish() {
	st := s.m.Status()
	v := &relation.View{
		Primary:   s.cfg.Role == Primary,
		MyState:   st.State,
		MyStos:    st.Stos,
		Entered:   s.entered,
		PeerState: st.PeerState,
		Connected: s.link != nil,
		Contacted: s.contacted,

		OperatorPartnerDown:   s.operatorPD,
		OperatorPartnerDownAt: s.operatorPDAt,
		MCLT:                  st.MCLT,
		LBMaxSecs:             uint16(s.cfg.LBMaxSecs),
		MayServe:              s.m.MayServe(),
	}
	if s.cfg.Role == Primary {
		v.HBA = s.cfg.HBA
	} else if s.link != nil {
		v.HBA = s.link.params.hba
	} else if old := s.rel.View(); old != nil {
		v.HBA = old.HBA
	}
	if old := s.rel.View(); old == nil || *old != *v {
		s.rel.SetView(v)
	}
}

// balanceMode says why a pool balance runs.
type balanceMode uint8

const (
	balanceOnNormal balanceMode = iota // entering NORMAL: move what is due, never ask
	balanceTimer                       // periodic: move beyond the tolerance, ask if starved
	balanceAsked                       // the peer sent POOLREQ: move what is due
	balanceOperator                    // failoverctl rebalance: move what is due, ask if short
)

// balance moves free addresses between the servers as ISC's pool
// balancing does (balanceGive decides how many). It returns how many
// addresses this server gave.
func (s *Session) balance(now time.Time, mode balanceMode) int {
	if s.m.State() != fsm.Normal {
		// Ownership moves only while both serve in NORMAL (ISC
		// dhcp_failover_pool_dobalance), a POOLREQ included.
		return 0
	}
	own, peer := s.db.FreeCounts()
	give, ask := balanceGive(s.cfg.Role, mode, own, peer, s.cfg.MaxLeaseMisbalance, s.cfg.MaxLeaseOwnership)
	if ask && s.link != nil {
		log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "own": own, "peer": peer}).
			Info("owning far fewer free addresses than the peer: requesting a pool rebalance")
		if err := s.send(&wire.PoolRequest{}, now); err != nil {
			s.linkDown(err.Error(), now)
			return 0
		}
		s.asked = true
	}
	if give <= 0 {
		return 0
	}
	moved := s.db.Transfer(give, now.Unix())
	for _, ip := range moved {
		s.enqueue(ip)
	}
	if len(moved) > 0 {
		log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "own": own, "peer": peer, "moved": len(moved)}).Info("balanced the free addresses with the peer")
	}
	return len(moved)
}
