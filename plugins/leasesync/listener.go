package leasesync

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/ratelimit"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// Relationships whose leasesync lines share address= and port= share one
// TCP listener, as ISC dhcpd accepts every relationship on port 647 (hub
// and spoke: one standby for several primaries). A connection goes to
// the relationship whose peer= is its source address. When several
// relationships have that peer (two relationships between the same two
// servers), the listener reads the first message, the primary's CONNECT,
// within the handshake timeout, and hands it to the relationship it
// names; a name it does not know goes to the first of them, whose
// handshake refuses it as ISC does (CONNECTACK reason 8, the name
// echoed). So between two servers with several relationships, an
// accepted connection is recognised only when the peer is the primary of
// one of them; a connection that waits for our CONNECT is closed at the
// handshake timeout, and our own dial connects that relationship.

// sharedListener is one listen address and the relationships on it. It
// closes when the last of them stops.
type sharedListener struct {
	addr netip.AddrPort
	ln   net.Listener
	done chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	sessions []*Session // in the order they started
	// reading holds connections whose CONNECT the listener is reading
	// (one slot each, maxPendingHandshakes in all); pending, the same
	// connections, closed when the listener closes.
	reading chan struct{}
	pending map[net.Conn]struct{}

	refusedLog, readLog, nameLog ratelimit.Limiter
}

// listeners are the process's shared listeners, by address.
var listeners = struct {
	sync.Mutex
	m map[netip.AddrPort]*sharedListener
}{m: map[netip.AddrPort]*sharedListener{}}

// acquireListener adds s to the listener on its address, opening it if s
// is the first relationship there.
func acquireListener(s *Session) (*sharedListener, error) {
	listeners.Lock()
	defer listeners.Unlock()
	if sl := listeners.m[s.cfg.Address]; sl != nil {
		sl.mu.Lock()
		defer sl.mu.Unlock()
		for _, o := range sl.sessions {
			if o.cfg.Name == s.cfg.Name {
				return nil, fmt.Errorf("relationship %q already listens on %s: give each leasesync line its own name=", s.cfg.Name, s.cfg.Address)
			}
			if o.cfg.Peer.Addr() == s.cfg.Peer.Addr() && (o.cfg.tls != nil || s.cfg.tls != nil) {
				return nil, fmt.Errorf("relationships %q and %q share this address and the peer %s, and one uses TLS: the relationship name is inside TLS, so the listener cannot tell them apart; give one of them another port=",
					o.cfg.Name, s.cfg.Name, s.cfg.Peer.Addr())
			}
		}
		sl.sessions = append(sl.sessions, s)
		return sl, nil
	}
	ln, err := net.Listen("tcp4", s.cfg.Address.String())
	if err != nil {
		return nil, err
	}
	sl := &sharedListener{
		addr:     s.cfg.Address,
		ln:       ln,
		done:     make(chan struct{}),
		sessions: []*Session{s},
		reading:  make(chan struct{}, maxPendingHandshakes),
		pending:  map[net.Conn]struct{}{},
	}
	listeners.m[s.cfg.Address] = sl
	sl.wg.Add(1)
	go sl.accept()
	return sl, nil
}

// release takes s off the listener; the last relationship closes it and
// waits for its goroutines. The others keep listening.
func (sl *sharedListener) release(s *Session) {
	listeners.Lock()
	sl.mu.Lock()
	found := false
	for i, o := range sl.sessions {
		if o == s {
			sl.sessions = append(sl.sessions[:i:i], sl.sessions[i+1:]...)
			found = true
			break
		}
	}
	last := found && len(sl.sessions) == 0
	if last {
		// Closed under the registry's lock: a relationship started
		// right after finds the port free.
		delete(listeners.m, sl.addr)
		close(sl.done)
		sl.ln.Close()
		for c := range sl.pending {
			c.Close()
		}
	}
	sl.mu.Unlock()
	listeners.Unlock()
	if last {
		sl.wg.Wait()
	}
}

func (sl *sharedListener) accept() {
	defer sl.wg.Done()
	for {
		conn, err := sl.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.WithError(err).Warn("accepting a peer connection")
			select {
			case <-sl.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		sl.dispatch(conn)
	}
}

// peerOf returns the relationships whose peer is addr, and the first
// relationship on the listener (nil once it is closing).
func (sl *sharedListener) peerOf(addr netip.Addr) (cands []*Session, first *Session) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	for _, s := range sl.sessions {
		if s.cfg.Peer.Addr() == addr {
			cands = append(cands, s)
		}
	}
	if len(sl.sessions) > 0 {
		first = sl.sessions[0]
	}
	return cands, first
}

// peers lists the addresses that may connect, for the log.
func (sl *sharedListener) peers() string {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	var out []string
	seen := map[netip.Addr]bool{}
	for _, s := range sl.sessions {
		if a := s.cfg.Peer.Addr(); !seen[a] {
			seen[a] = true
			out = append(out, a.String())
		}
	}
	return strings.Join(out, ", ")
}

// dispatch hands an accepted connection to its relationship. A source no
// relationship names is closed before a byte is read, and logged at most
// once per period with the number refused.
func (sl *sharedListener) dispatch(conn net.Conn) {
	from, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
	cands, first := sl.peerOf(from.Addr().Unmap())
	switch {
	case first == nil:
		conn.Close()
	case len(cands) == 0:
		// Counted before the close, so that a stranger who sees the
		// connection closed has been counted.
		sl.refusedLog.Do(first.clk.Now(), func(n int) {
			log.WithField("from", from.String()).Warnf("refused a failover connection: only %s may connect (%d refused)", sl.peers(), n)
		})
		conn.Close()
	case len(cands) == 1:
		cands[0].startHandshake(conn, false, nil)
	default:
		sl.readConnect(conn, from, cands[0])
	}
}

// readConnect reads the first message of a connection from a peer with
// several relationships here, in its own goroutine, and hands the
// connection to the relationship the CONNECT names.
func (sl *sharedListener) readConnect(conn net.Conn, from netip.AddrPort, first *Session) {
	select {
	case sl.reading <- struct{}{}:
	default:
		conn.Close()
		first.pendingLog.Do(first.clk.Now(), func(n int) {
			log.WithField("from", from.String()).Warnf("closed a failover connection: %d handshakes already in progress (%d closed)", maxPendingHandshakes, n)
		})
		return
	}
	sl.mu.Lock()
	select {
	case <-sl.done:
		sl.mu.Unlock()
		conn.Close()
		<-sl.reading
		return
	default:
	}
	sl.pending[conn] = struct{}{}
	sl.wg.Add(1)
	sl.mu.Unlock()
	go func() {
		defer sl.wg.Done()
		defer func() { <-sl.reading }()
		pre, err := readFirst(conn, first.handshakeTimeout)
		sl.mu.Lock()
		delete(sl.pending, conn)
		sl.mu.Unlock()
		if err != nil {
			sl.readLog.Do(first.clk.Now(), func(n int) {
				log.WithFields(logrus.Fields{"from": from.String(), "failures": n}).
					Infof("failover connection closed before its CONNECT named a relationship: %v", err)
			})
			conn.Close()
			return
		}
		cands, _ := sl.peerOf(from.Addr().Unmap())
		if len(cands) == 0 {
			conn.Close() // the relationships stopped meanwhile
			return
		}
		to := cands[0]
		c, isConnect := pre.body.(*wire.Connect)
		known := false
		for _, s := range cands {
			if isConnect && s.cfg.Name == c.RelationshipName {
				to, known = s, true
				break
			}
		}
		if isConnect && !known {
			names := make([]string, len(cands))
			for i, s := range cands {
				names[i] = fmt.Sprintf("%q", s.cfg.Name)
			}
			sl.nameLog.Do(first.clk.Now(), func(n int) {
				log.WithFields(logrus.Fields{"from": from.String(), "name": c.RelationshipName, "refused": n}).
					Warnf("failover CONNECT names the unknown relationship %q: this server's relationships with %s on %s are %s",
						c.RelationshipName, from.Addr(), sl.addr, strings.Join(names, ", "))
			})
		}
		// The relationship's handshake answers: an unknown name or a
		// message other than CONNECT is refused there, as from a peer
		// with one relationship.
		to.startHandshake(conn, false, pre)
	}()
}

// readFirst reads a connection's first message within timeout, skipping
// undefined types without options as the handshake does.
func readFirst(conn net.Conn, timeout time.Duration) (*prefetched, error) {
	conn.SetReadDeadline(time.Now().Add(timeout))
	defer conn.SetReadDeadline(time.Time{})
	l := &link{conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	for {
		body, err := l.readBody()
		if err != nil {
			return nil, err
		}
		if body != nil {
			return &prefetched{r: l.r, body: body}, nil
		}
	}
}
