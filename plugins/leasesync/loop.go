package leasesync

import (
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// The run goroutine's loop: events come in from the link, the dialer,
// the DHCP handlers (notify), the control socket and the timers; handle
// takes each, and endRound acts on the results of a round of them.

type eventKind uint8

// maxEventsPerRound bounds the events handled before their results are
// acted on (the BNDACKs sent, the queue flushed).
const maxEventsPerRound = 256

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
		s.out.enqueue(ip)
	}
	// Free addresses were taken or returned: check the balance soon.
	if soon := s.clk.Now().Add(s.cfg.MinBalance); !s.balanceAt.IsZero() && s.balanceAt.After(soon) {
		s.balanceAt = soon
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
	s.endRound()
	for {
		select {
		case <-s.done:
			return
		case e := <-s.events:
			s.handle(e)
			// Handle whatever else is already waiting before acting on
			// the results: BNDUPDs that arrived together share one
			// commit and their BNDACKs go out together. A peer that
			// never pauses is served maxEventsPerRound at a time,
			// which bounds the BNDACKs held.
			for n := 1; n < maxEventsPerRound; n++ {
				select {
				case e := <-s.events:
					s.handle(e)
					continue
				default:
				}
				break
			}
			s.endRound()
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

// endRound carries out what the state machine decided, sends what can be
// sent, publishes the view, and arms the next wake-up.
func (s *Session) endRound() {
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
	if p := rd.Persist; p != nil {
		s.saveState(*p)
	} else if s.unsaved != nil {
		s.saveState(*s.unsaved)
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
	s.roundMu.Lock()
	close(s.roundDone)
	s.roundDone = make(chan struct{})
	s.roundMu.Unlock()
}

// saveState writes the failover state p. A failed write is kept in
// s.unsaved and tried again at each round until it succeeds.
func (s *Session) saveState(p fsm.Persistent) {
	rs, err := relStateOf(&p)
	if err != nil {
		log.WithError(err).Error("cannot store the failover state")
		return
	}
	if err := s.db.SaveState(rs); err != nil {
		if s.unsaved == nil {
			log.WithError(err).Error("cannot store the failover state: trying again at each round")
		}
		s.unsaved = &p
		return
	}
	if s.unsaved != nil {
		log.WithField("relationship", s.cfg.Name).Info("failover state stored after failed writes")
		s.unsaved = nil
	}
}

// RoundDone returns a channel closed when the session next finishes
// handling a round of events: tests wait on it instead of sleeping.
func (s *Session) RoundDone() <-chan struct{} {
	s.roundMu.Lock()
	defer s.roundMu.Unlock()
	return s.roundDone
}
