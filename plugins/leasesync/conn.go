package leasesync

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

const (
	// defaultHandshakeTimeout is how long a new connection may take to
	// complete CONNECT/CONNECTACK (ISC: 15 s, "link startup timeout"); a
	// peer that sends part of a frame and stalls is cut there.
	defaultHandshakeTimeout = 15 * time.Second
	// reconnectInterval is the pause between attempts to reach the peer
	// (ISC: 5 s).
	reconnectInterval = 5 * time.Second
	// maxPendingHandshakes caps connections that have not finished their
	// handshake; more are closed at once. With the handshake deadline it
	// bounds what connection attempts from the peer's address can hold.
	maxPendingHandshakes = 4
	// maxFrame is the largest failover message accepted (ISC: 2048).
	maxFrame = 2048
)

// link is one TCP connection to the peer. Its reader goroutine posts frames
// to the session; only the session goroutine writes.
type link struct {
	conn   net.Conn
	r      *bufio.Reader
	xid    uint32 // next xid to originate on this connection
	params peerParams
	// clock measures the peer's clock against ours (skew.go).
	clock  skewEstimator
	dialed bool
	// fed: a driver hands the session this link's frames (the
	// simulation of a pair): no reader goroutine.
	fed  bool
	once sync.Once
	buf  []byte
	// held is set between hold and release: messages are encoded into
	// buf and written together, one write (and one TCP segment) for a
	// burst of updates or acknowledgements rather than one each.
	held bool
	// stamped counts the frames the reader has stamped with their
	// arrival time and handed to the session (read by tests, which must
	// know a frame was stamped before they move the clock).
	stamped atomic.Uint64
}

func (l *link) close() { l.once.Do(func() { l.conn.Close() }) }

func (l *link) String() string {
	dir := "accepted from"
	if l.dialed {
		dir = "dialed to"
	}
	return fmt.Sprintf("%s %s", dir, l.conn.RemoteAddr())
}

// nextXID numbers a message we originate. BNDUPD never uses 0, as ISC.
func (l *link) nextXID(bndupd bool) uint32 {
	x := l.xid
	l.xid++
	if bndupd && x == 0 {
		x = l.xid
		l.xid++
	}
	return x
}

// send writes one message within the write deadline.
func (l *link) send(b wire.Body, deadline time.Time) error {
	if !l.held {
		l.buf = l.buf[:0]
	}
	var err error
	n := len(l.buf)
	l.buf, err = b.AppendTo(l.buf)
	if err != nil {
		l.buf = l.buf[:n]
		return fmt.Errorf("encoding %s: %w", b.Type(), err)
	}
	if l.held {
		return nil
	}
	return l.write(deadline)
}

func (l *link) write(deadline time.Time) error {
	l.conn.SetWriteDeadline(deadline)
	_, err := l.conn.Write(l.buf)
	l.buf = l.buf[:0]
	return err
}

// hold starts collecting messages; release writes them at once.
func (l *link) hold() {
	if !l.held {
		l.held = true
		l.buf = l.buf[:0]
	}
}

func (l *link) release(deadline time.Time) error {
	l.held = false
	if len(l.buf) == 0 {
		return nil
	}
	return l.write(deadline)
}

// readBody reads and decodes the next frame.
func (l *link) readBody() (wire.Body, error) {
	frame, err := wire.ReadFrame(l.r, maxFrame)
	if err != nil {
		return nil, err
	}
	if t := wire.MessageType(frame[2]); !t.Known() {
		if err := wire.CheckFrame(frame); err != nil {
			return nil, err
		}
		if int(frame[3]) < len(frame) {
			// ISC drops the link over an undefined type with options.
			return nil, fmt.Errorf("%w: undefined type %d with options", wire.ErrUnknownType, frame[2])
		}
		return nil, nil // ISC ignores an undefined type without options
	}
	return wire.DecodeBody(frame)
}

// prefetched is the first message of an accepted connection, read by its
// shared listener to learn which relationship it is for (listener.go),
// and the reader that holds whatever followed it.
type prefetched struct {
	r    *bufio.Reader
	body wire.Body
}

// handshake runs CONNECT/CONNECTACK on a new connection and returns the
// link, ready for the session, or why it was refused. pre, when not nil,
// is the connection's first message, already read: it is answered as a
// CONNECT to a secondary is (a primary refuses it as such), since only a
// CONNECT tells the listener the relationship.
func (s *Session) handshake(conn net.Conn, dialed bool, pre *prefetched) (*link, error) {
	deadline := time.Now().Add(s.handshakeTimeout)
	conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	l := &link{dialed: dialed}
	if pre != nil {
		// Never with TLS: the listener reads a CONNECT only in plain
		// TCP (acquireListener refuses TLS on a shared peer address).
		l.conn, l.r = conn, pre.r
	} else {
		if s.cfg.tls != nil {
			tc, err := s.cfg.tls.wrap(conn, dialed)
			if err != nil {
				return nil, err
			}
			conn = tc
		}
		l.conn, l.r = conn, bufio.NewReaderSize(conn, 4096)
	}
	start := s.clk.Now()
	now := start.Unix()
	if s.cfg.Role == Primary && pre == nil {
		// The primary sends CONNECT first on every connection, dialed or
		// accepted (xid 0), and waits for CONNECTACK.
		l.nextXID(false)
		if err := l.send(connectMsg(&s.cfg, now), deadline); err != nil {
			return nil, fmt.Errorf("sending CONNECT: %w", err)
		}
		for {
			body, err := l.readBody()
			if err != nil {
				return nil, fmt.Errorf("waiting for CONNECTACK: %w", err)
			}
			if c, ok := body.(*wire.Connect); ok {
				// Only a primary sends CONNECT: the peer is one too.
				rej := &rejection{wire.RejectInvalidPartner, "CONNECT received by a primary: both servers are configured as primary"}
				l.send(connectAckMsg(&s.cfg, c, rej, s.clk.Now().Unix()), time.Now().Add(time.Second))
				return nil, rej
			}
			a, ok := body.(*wire.ConnectAck)
			if !ok {
				if body == nil {
					continue // an undefined type without options: ISC ignores it
				}
				rej := outOfSequence("CONNECTACK", body)
				l.send(disconnectMsg(now, l.nextXID(false), rej), time.Now().Add(time.Second))
				return nil, rej
			}
			arrived := s.clk.Now()
			p, rej := checkConnectAck(&s.cfg, a, arrived.Unix())
			if rej == nil && s.linked.Load() {
				rej = dupConnection()
			}
			if rej != nil {
				if a.RejectReason == 0 {
					l.send(disconnectMsg(now, l.nextXID(false), rej), time.Now().Add(time.Second))
				}
				return nil, rej
			}
			l.params = p
			// CONNECTACK answers our CONNECT: the first round trip.
			l.clock.roundTrip(a.Time, start, arrived)
			return l, nil
		}
	}
	// The secondary waits for CONNECT and answers CONNECTACK with its xid.
	for {
		var body wire.Body
		var err error
		if pre != nil {
			body, pre = pre.body, nil
		} else {
			body, err = l.readBody()
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, fmt.Errorf("no complete CONNECT within %v (is the peer configured as secondary too?)", s.handshakeTimeout)
			}
			return nil, fmt.Errorf("waiting for CONNECT: %w", err)
		}
		c, ok := body.(*wire.Connect)
		if !ok {
			if body == nil {
				continue // an undefined type without options: ISC ignores it
			}
			rej := outOfSequence("CONNECT", body)
			l.send(disconnectMsg(now, l.nextXID(false), rej), time.Now().Add(time.Second))
			return nil, rej
		}
		arrived := s.clk.Now()
		now = arrived.Unix()
		p, rej := checkConnect(&s.cfg, c, now)
		if rej == nil && s.linked.Load() {
			rej = dupConnection()
		}
		if err := l.send(connectAckMsg(&s.cfg, c, rej, now), deadline); err != nil {
			return nil, fmt.Errorf("sending CONNECTACK: %w", err)
		}
		if rej != nil {
			return nil, rej
		}
		l.params = p
		l.clock.oneWay(c.Time, arrived)
		return l, nil
	}
}

// outOfSequence refuses a message that came before the handshake ended.
func outOfSequence(want string, got wire.Body) *rejection {
	return &rejection{wire.RejectMiscReject, fmt.Sprintf("%s received before %s: out of sequence", got.Type(), want)}
}

// dupConnection refuses a second connection while a link is up, as ISC
// does ("already connected"); the live link is kept.
func dupConnection() *rejection {
	return &rejection{wire.RejectDupConnection, "already connected"}
}

func disconnectMsg(now int64, xid uint32, rej *rejection) *wire.Disconnect {
	return &wire.Disconnect{Header: wire.Header{Time: uint32(now), XID: xid}, RejectReason: rej.reason, Message: rej.text}
}

// dial keeps trying to reach the peer while no link is up.
func (s *Session) dial() {
	defer s.wg.Done()
	d := net.Dialer{
		Timeout:   s.handshakeTimeout,
		LocalAddr: &net.TCPAddr{IP: s.cfg.Address.Addr().AsSlice()},
	}
	for {
		select {
		case <-s.done:
			return
		case <-s.wantDial:
		}
		conn, err := d.Dial("tcp4", s.cfg.Peer.String())
		if err != nil {
			log.Debugf("connecting to %s: %v", s.cfg.Peer, err)
			s.post(event{kind: evDialFailed})
			continue
		}
		s.startHandshake(conn, true, nil)
	}
}

func (s *Session) startHandshake(conn net.Conn, dialed bool, pre *prefetched) {
	select {
	case s.handshakes <- struct{}{}:
	default:
		conn.Close()
		s.pendingLog.Do(s.clk.Now(), func(n int) {
			log.WithField("from", conn.RemoteAddr().String()).Warnf("closed a failover connection: %d handshakes already in progress (%d closed)", maxPendingHandshakes, n)
		})
		return
	}
	s.pendingMu.Lock()
	select {
	case <-s.done:
		s.pendingMu.Unlock()
		conn.Close()
		<-s.handshakes
		return
	default:
	}
	s.pending[conn] = struct{}{}
	// Added before the unlock: Close closes done under pendingMu and
	// then waits, so the wait sees this goroutine (a shared listener
	// calls this from outside the session's goroutines).
	s.wg.Add(1)
	s.pendingMu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() { <-s.handshakes }()
		defer func() {
			s.pendingMu.Lock()
			delete(s.pending, conn)
			s.pendingMu.Unlock()
		}()
		l, err := s.handshake(conn, dialed, pre)
		if err != nil {
			e := log.WithFields(logrus.Fields{"relationship": s.cfg.Name, "peer": conn.RemoteAddr().String()})
			var rej *rejection
			switch {
			case errors.As(err, &rej) && rej.reason == wire.RejectDupConnection && s.linked.Load():
				// Both servers dialled at once and the other
				// connection won: nothing is wrong (ISC pairs race the
				// same way). Logged before the close, so that a peer
				// that sees the close has been logged.
				e.Infof("second failover connection closed: %v; the live link is kept", err)
			default:
				// The session retries every few seconds: one line
				// a minute says it still fails, and how often.
				s.handshakeLog.Do(s.clk.Now(), func(n int) {
					e = e.WithField("failures", n)
					if rej != nil || errors.Is(err, errTLSRefused) {
						e.Warnf("failover handshake refused: %v", err)
					} else {
						e.Infof("failover handshake failed: %v", err)
					}
				})
			}
			conn.Close()
			if dialed {
				s.post(event{kind: evDialFailed})
			}
			return
		}
		s.post(event{kind: evLinkUp, link: l})
	}()
}

// read posts every frame of an established link to the session, then its
// end. Each frame carries the time it arrived: the session may handle it
// much later (behind a commit, or other events), and the measure of the
// peer's clock must not include that wait.
func (s *Session) read(l *link) {
	defer s.wg.Done()
	for {
		body, err := l.readBody()
		if err != nil {
			s.post(event{kind: evLinkDown, link: l, err: err})
			return
		}
		if body == nil {
			continue
		}
		ev := event{kind: evFrame, link: l, body: body, at: s.clk.Now()}
		l.stamped.Add(1)
		if !s.post(ev) {
			return
		}
	}
}
