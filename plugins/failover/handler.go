package failover

import (
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/sirupsen/logrus"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
)

// The DHCP message handlers: Handler4 and what it calls for each message.

// client is what identifies the sender of a request.
type client struct {
	key      string
	clientID []byte
	hwaddr   []byte
}

func clientOf(req *dhcpv4.DHCPv4) client {
	var c client
	if id := req.Options.Get(dhcpv4.OptionClientIdentifier); len(id) > 0 {
		c.clientID = id
	}
	hw := make([]byte, 1, 1+len(req.ClientHWAddr))
	hw[0] = byte(req.HWType)
	c.hwaddr = append(hw, req.ClientHWAddr...)
	c.key = lease.ClientKey(c.clientID, c.hwaddr)
	return c
}

// Handler4 is the plugin's handler: it answers DISCOVER, REQUEST and INFORM,
// and takes RELEASE and DECLINE, for clients of its network.
func (s *Server) Handler4(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.met.drops[dropOverload].Inc()
		log.Debugf("dropping %s from %s: %d requests in progress", req.MessageType(), req.ClientHWAddr, maxInFlight)
		return nil, true
	}
	if mine, pass, l := s.route(req); !mine {
		if pass {
			return resp, false // another failover line's subnet
		}
		s.met.drops[dropForeignRelay].Inc()
		log.Debugf("dropping %s from %s: %s is on no failover line's subnet", req.MessageType(), req.ClientHWAddr, l)
		return nil, true
	}
	c := clientOf(req)
	if c.key == "" {
		// Nothing tells this client from another (Kea drops these too):
		// every such client would share one lease.
		s.met.drops[dropNoIdentity].Inc()
		log.Debugf("dropping %s: no hardware address and no client identifier", req.MessageType())
		return nil, true
	}
	v := s.view()
	if v != nil && !v.MayServe {
		s.met.drops[dropStateForbids].Inc()
		log.Debugf("dropping %s from %s: failover state %s serves no client", req.MessageType(), req.ClientHWAddr, v.MyState)
		return nil, true
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		if v != nil && !s.mine(req, v) && !s.servesAnyway(c) {
			s.met.drops[dropNotOurBucket].Inc()
			log.Debugf("dropping DISCOVER from %s: its hash bucket belongs to the peer", req.ClientHWAddr)
			return nil, true
		}
		out, stop := s.discover(req, resp, c)
		if out != nil {
			s.met.answers[answerOffer].Inc()
		}
		return out, stop
	case dhcpv4.MessageTypeRequest:
		out, stop := s.request(req, resp, c)
		switch {
		case out == nil:
		case stop:
			s.met.answers[answerNak].Inc()
		default:
			s.met.answers[answerAck].Inc()
		}
		return out, stop
	case dhcpv4.MessageTypeRelease:
		s.release(req, c)
		return nil, true
	case dhcpv4.MessageTypeDecline:
		s.decline(req, c)
		return nil, true
	case dhcpv4.MessageTypeInform:
		s.met.answers[answerInform].Inc()
		resp.YourIPAddr = net.IPv4zero
		s.subnetOptions(resp)
		return resp, false
	}
	s.met.drops[dropNotClient].Inc()
	log.Debugf("dropping %s from %s: not a client message", req.MessageType(), req.ClientHWAddr)
	return nil, true
}

// mine is RFC 3074 load balancing as ISC applies it (docs/protocol.md §17): in
// NORMAL a DISCOVER is answered only by the server whose hash buckets hold
// the client, unless its secs field exceeds load-balance-max-seconds (0
// turns balancing off). Other requests and other states are not balanced.
func (s *Server) mine(req *dhcpv4.DHCPv4, v *relation.View) bool {
	if v.MyState != fsm.Normal {
		return true
	}
	if lbhash.SecsOverride(req.NumSeconds, v.LBMaxSecs, false) {
		return true
	}
	key := lbhash.PacketKey(req.Options.Get(dhcpv4.OptionClientIdentifier), req.ClientHWAddr)
	return v.HBA.Serves(lbhash.Bucket(key), v.Primary)
}

// servesAnyway is ISC dhcpd's exceptions to load balancing (its
// dhcpdiscover): a DISCOVER from a client of the peer's hash bucket is
// answered all the same when the client has a lease this server may give
// it back (its active lease, or one of its own the rules let this server
// return: lease affinity, as ISC applies it), or when the peer has no
// free address left to give a new client (pool balancing has not caught
// up). Either way the address comes through the same rules (choose): who
// answers changes, never who may have an address.
func (s *Server) servesAnyway(c client) bool {
	p := s.policyAt(s.now().Unix())
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.table.ByClient(c.key); ok && s.usableFor(p, b.IP, c) {
		return true
	}
	peerFree := lease.Free
	if s.primary {
		peerFree = lease.Backup
	}
	return s.table.Count(peerFree) == 0
}

// leaseTime is what the client asked for (option 51) within bounds, else
// the configured time.
func (s *Server) leaseTime(req *dhcpv4.DHCPv4) time.Duration {
	want := req.IPAddressLeaseTime(0)
	if want <= 0 {
		return s.cfg.LeaseTime
	}
	return min(want, s.cfg.MaxLeaseTime)
}

// inUse reports whether ip is bound or offered to a client other than key,
// or abandoned: a request for it is refused with a NAK. A free address
// that is the peer's is not in use: the peer answers for it.
func (s *Server) inUse(ip lease.IP, key string, now int64) bool {
	if s.table.HeldByOther(ip, key, now) {
		return true
	}
	b, ok := s.table.Get(ip)
	return ok && (b.State == lease.Abandoned || b.State == lease.Active && b.Key() != key)
}

// usableFor is whether p lets ip go to client c, reservations included.
// It must be called with s.mu held.
func (s *Server) usableFor(p policy, ip lease.IP, c client) bool {
	return p.usableBy(s.table, ip, c.key) && !s.cfg.reserved.forOther(ip, c)
}

// choose picks the address to offer: the client's current or last
// binding, the address it holds an offer for, the address it asks for, or
// any available one. It must be called with s.mu held.
func (s *Server) choose(p policy, c client, requested lease.IP) (lease.IP, bool) {
	usable := func(ip lease.IP) bool { return s.usableFor(p, ip, c) }
	if b, ok := s.table.ByClient(c.key); ok && usable(b.IP) {
		return b.IP, true
	}
	if ip, ok := s.table.Held(c.key, p.now); ok {
		return ip, true
	}
	if requested != 0 && usable(requested) {
		return requested, true
	}
	if p.renewOnly() {
		return 0, false
	}
	// The queues are lazy: the policy has the last word on a candidate,
	// and one it refuses stays in the table for later.
	return s.table.Allocate(p.now, p.judge(s.table, c.key))
}

// inPool is table.InPool under s.mu.
func (s *Server) inPool(ip lease.IP) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.table.InPool(ip)
}

// reservedFree returns the address reserved for c, if it has one that no
// other client holds (one leased before the reservation was made, or
// bound by a peer that lacks it): until then c is served from the pools.
func (s *Server) reservedFree(c client, now int64) (lease.IP, bool, bool) {
	r, has := s.cfg.reserved.of(c)
	if !has {
		return 0, false, false
	}
	s.mu.Lock()
	busy := s.inUse(r, c.key, now)
	s.mu.Unlock()
	if busy {
		log.Warnf("%s is reserved for %s but in use by another client: serving it from the pools until that lease ends", r, c.key)
	}
	return r, true, !busy
}

func (s *Server) discover(req, resp *dhcpv4.DHCPv4, c client) (*dhcpv4.DHCPv4, bool) {
	now := s.now().Unix()
	if r, _, free := s.reservedFree(c, now); free {
		// A reserved address is nobody else's, whoever owns it in
		// the pools: no hold, no probe. Its lease time is what the
		// REQUEST will get (MCLT rule in a pool, as any lease).
		lt := s.leaseTime(req)
		if p := s.policyAt(now); p.v != nil && s.inPool(r) {
			s.mu.Lock()
			b, _ := s.table.Get(r)
			s.mu.Unlock()
			g, _ := grant(int64(lt/time.Second), now, b.PeerExpiry, p.v.MCLT)
			lt = time.Duration(g) * time.Second
		}
		log.Debugf("offering %s to %s (reserved)", r, req.ClientHWAddr)
		s.fill(req, resp, r, lt)
		return resp, false
	}
	requested, _ := lease.IPFromNet(req.RequestedIPAddress())
	var (
		p  policy
		ip lease.IP
		ok bool
	)
	for try := 1; ; try++ {
		p = s.policyAt(now)
		var probe bool
		s.mu.Lock()
		if ip, ok = s.choose(p, c, requested); ok {
			if freed, ok := s.table.Hold(ip, c.key, now+int64(s.cfg.OfferHold/time.Second)); ok {
				s.offerLocked(freed)
			}
			// Probe only an address the client does not hold: a
			// client's own lease is in use by that client.
			b, had := s.table.Get(ip)
			probe = !had || b.State != lease.Active || b.Key() != c.key
		}
		s.mu.Unlock()
		if !ok || !probe || !s.probe(ip.Addr()) {
			break
		}
		// Held for this client while probed: no one else was offered it.
		s.abandonHeld(ip, c, "answered a ping before it was offered")
		if try == maxPingTries {
			s.met.drops[dropPingAnswered].Inc()
			log.Debugf("dropping DISCOVER from %s: %d addresses in a row answered a ping", req.ClientHWAddr, try)
			return nil, true
		}
		now = s.now().Unix()
	}
	if !ok {
		if p.renewOnly() {
			s.met.drops[dropWaitingPeer].Inc()
			log.Debugf("dropping DISCOVER from %s: restarted without reaching the peer, renewals only", req.ClientHWAddr)
			return nil, true
		}
		s.met.drops[dropPoolExhausted].Inc()
		s.exhaustedLog.Do(s.now(), func(n int) {
			log.WithFields(logrus.Fields{"pools": s.cfg.Pools, "dropped": n}).Warn("no free address to offer")
		})
		return nil, true
	}
	lt := s.leaseTime(req)
	if p.v != nil {
		s.mu.Lock()
		b, _ := s.table.Get(ip)
		s.mu.Unlock()
		g, _ := grant(int64(lt/time.Second), now, b.PeerExpiry, p.v.MCLT)
		lt = time.Duration(p.renewOnlyCap(g, &b)) * time.Second
	}
	log.Debugf("offering %s to %s", ip, req.ClientHWAddr)
	s.fill(req, resp, ip, lt)
	return resp, false
}

// fill sets the address and lease times of an OFFER or ACK.
func (s *Server) fill(req, resp *dhcpv4.DHCPv4, ip lease.IP, lt time.Duration) {
	resp.YourIPAddr = ip.Net()
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lt))
	resp.UpdateOption(dhcpv4.OptRenewTimeValue(lt / 2))
	resp.UpdateOption(dhcpv4.OptRebindingTimeValue(lt * 7 / 8))
	s.subnetOptions(resp)
}

// subnetOptions sets the options that differ from one failover line's
// subnet to another's: the subnet mask (option 1, as ISC dhcpd sends it
// from the subnet declaration) and the routers (option 3) of router=.
// A plugin later in the chain (netmask, router) may overwrite them.
func (s *Server) subnetOptions(resp *dhcpv4.DHCPv4) {
	resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(s.cfg.Subnet.Bits(), 32)))
	if len(s.cfg.Routers) > 0 {
		rs := make([]net.IP, len(s.cfg.Routers))
		for i, r := range s.cfg.Routers {
			rs[i] = r.AsSlice()
		}
		resp.UpdateOption(dhcpv4.OptRouter(rs...))
	}
}

// nak turns resp into a DHCPNAK and stops the chain (no options after it).
func nak(req, resp *dhcpv4.DHCPv4, why string) (*dhcpv4.DHCPv4, bool) {
	log.Debugf("NAK to %s: %s", req.ClientHWAddr, why)
	n, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
	)
	if err != nil {
		return nil, true
	}
	if sid := resp.ServerIdentifier(); sid != nil {
		n.UpdateOption(dhcpv4.OptServerIdentifier(sid))
	}
	n.YourIPAddr = net.IPv4zero
	n.ClientIPAddr = net.IPv4zero
	return n, true
}

func (s *Server) request(req, resp *dhcpv4.DHCPv4, c client) (*dhcpv4.DHCPv4, bool) {
	now := s.now().Unix()
	sid := req.ServerIdentifier()
	requested, _ := lease.IPFromNet(req.RequestedIPAddress())
	ciaddr, _ := lease.IPFromNet(req.ClientIPAddr)
	var ip lease.IP
	selecting := sid != nil && !sid.IsUnspecified()
	switch {
	case selecting:
		// SELECTING: the client chose an offer.
		if our := resp.ServerIdentifier(); our != nil && !sid.Equal(our) {
			s.mu.Lock()
			s.unholdLocked(c.key)
			s.mu.Unlock()
			s.met.drops[dropOtherServer].Inc()
			log.Debugf("%s chose server %s", req.ClientHWAddr, sid)
			return nil, true
		}
		if requested == 0 {
			s.met.drops[dropMalformed].Inc()
			log.Debugf("dropping REQUEST from %s: SELECTING without a requested address", req.ClientHWAddr)
			return nil, true
		}
		ip = requested
	case ciaddr != 0:
		ip = ciaddr // RENEWING or REBINDING
	case requested != 0:
		ip = requested // INIT-REBOOT
	default:
		s.met.drops[dropMalformed].Inc()
		log.Debugf("dropping REQUEST from %s: no address named", req.ClientHWAddr)
		return nil, true
	}
	if !s.cfg.Subnet.Contains(ip.Addr()) {
		// The client is on the wrong network, or remembers another one.
		return nak(req, resp, "address not on this network")
	}
	lt := s.leaseTime(req)
	// reserved: ip is c's reserved address, in a pool: its lease is
	// recorded and announced as any other, but the reservation, not the
	// ownership of free addresses, says who may have it.
	reserved := false
	if r, has, free := s.reservedFree(c, now); has {
		switch {
		case ip == r && free && !s.inPool(r):
			// Outside the pools, as a fixed address in ISC dhcpd: no
			// record, no update to the peer, which never had it.
			log.Debugf("ACK %s to %s for %v (reserved)", ip, req.ClientHWAddr, lt)
			s.fill(req, resp, ip, lt)
			return resp, false
		case ip == r && free:
			reserved = true
		case ip == r:
			return nak(req, resp, "address in use")
		case free:
			// Back through DISCOVER to its own address.
			return nak(req, resp, "this client has another address reserved")
		}
	}
	if s.cfg.reserved.forOther(ip, c) {
		return nak(req, resp, "address reserved for another client")
	}
	s.mu.Lock()
	if !s.table.InPool(ip) {
		s.mu.Unlock()
		// Not ours to speak for: another server may own it.
		s.met.drops[dropPeerAddress].Inc()
		log.Debugf("ignoring REQUEST from %s for %s: not in a pool", req.ClientHWAddr, ip)
		return nil, true
	}
	p := s.policyAt(now)
	if reserved && s.inUse(ip, c.key, now) {
		// Taken since reservedFree looked (a second client on the
		// reservation's hardware address).
		s.mu.Unlock()
		return nak(req, resp, "address in use")
	}
	if !reserved && !p.usableBy(s.table, ip, c.key) {
		busy := s.inUse(ip, c.key, now)
		s.mu.Unlock()
		if busy {
			return nak(req, resp, "address in use")
		}
		s.met.drops[dropPeerAddress].Inc()
		log.Debugf("ignoring REQUEST from %s for %s: a free address of the peer's", req.ClientHWAddr, ip)
		return nil, true
	}
	old, had := s.table.Get(ip)
	// Only a binding on disk may answer for a failed write below.
	durable := s.writing[ip] == 0
	b := lease.Binding{
		IP:         ip,
		State:      lease.Active,
		ClientID:   c.clientID,
		HWAddr:     c.hwaddr,
		Hostname:   req.HostName(),
		Start:      now,
		End:        now + int64(lt/time.Second),
		CLTT:       now,
		PeerExpiry: old.PeerExpiry,
	}
	if p.v != nil {
		g, potential := grant(int64(lt/time.Second), now, old.PeerExpiry, p.v.MCLT)
		if !reserved {
			// A reserved address is no one else's: the peer, which has
			// the same reservations, gives it to no one else even if
			// it has declared this server down.
			g = p.renewOnlyCap(g, &old)
		}
		lt = time.Duration(g) * time.Second
		b.End = now + g
		// Never below what the peer may already hold: a shorter
		// potential expiry can be lost, and the peer then renews up to
		// the longer one (partnerDownReuse waits for SentExpiry).
		potential = max(potential, old.SentExpiry)
		b.SentExpiry = potential
		if potential < b.PeerExpiry {
			b.PeerExpiry = potential
		}
		b.Pending = true
	}
	s.table.ClearHold(ip)
	err := s.writeClient(b, old, had, "lease")
	if err != nil {
		if !selecting && durable && had && old.State == lease.Active && old.Key() == c.key && old.End-now >= minStoredRenewal {
			// A renewal: the stored lease runs until old.End. Answer
			// with what remains of it; nothing new to remember. Not
			// to a client SELECTING after a DISCOVER: it holds no
			// lease, and may have released this one to the peer,
			// whose RELEASED would then free the lease we answered
			// from without our knowing of the answer
			// (docs/simulation.md, seed 54722).
			lt = time.Duration(old.End-now) * time.Second
			log.Debugf("ACK %s to %s for the %v left of its stored lease (database failing)", ip, req.ClientHWAddr, lt)
			s.fill(req, resp, ip, lt)
			return resp, false
		}
		s.met.drops[dropStoreError].Inc()
		log.Debugf("no ACK of %s to %s: the lease cannot be stored", ip, req.ClientHWAddr)
		return nil, true
	}
	log.Debugf("ACK %s to %s for %v", ip, req.ClientHWAddr, lt)
	s.fill(req, resp, ip, lt)
	return resp, false
}

// applyClientChange changes the binding of ip if it belongs to the client
// (a release or a decline), and waits until the change is durable.
func (s *Server) applyClientChange(ip lease.IP, c client, what string, change func(*lease.Binding)) {
	s.mu.Lock()
	b, ok := s.table.Get(ip)
	if !ok || b.Key() != c.key || (b.State != lease.Active && what != "decline") {
		s.mu.Unlock()
		if what == "decline" {
			s.declineUnbound(ip, c)
			return
		}
		log.Debugf("ignoring %s of %s from %s: not its lease", what, ip, c.key)
		return
	}
	orig := b
	change(&b)
	s.mark(&b)
	// Memory never runs ahead of the disk on what a client holds.
	s.writeClient(b, orig, true, what)
}

func (s *Server) release(req *dhcpv4.DHCPv4, c client) {
	ip, ok := lease.IPFromNet(req.ClientIPAddr)
	if !ok || ip == 0 {
		return
	}
	now := s.now().Unix()
	s.applyClientChange(ip, c, "release", func(b *lease.Binding) {
		b.State = lease.Released
		b.End = now
		b.CLTT = now
	})
}

func (s *Server) decline(req *dhcpv4.DHCPv4, c client) {
	ip, ok := lease.IPFromNet(req.RequestedIPAddress())
	if !ok || ip == 0 {
		return
	}
	s.applyClientChange(ip, c, "decline", func(b *lease.Binding) { s.abandon(b, "declined by a client") })
}

// declineUnbound handles a DECLINE of an address that was offered to (held
// for) the client but not yet bound to it.
func (s *Server) declineUnbound(ip lease.IP, c client) {
	s.abandonHeld(ip, c, "declined by a client")
}

// abandonHeld marks ABANDONED an address held for client c (offered, not
// bound): another host uses it (why says how we know).
func (s *Server) abandonHeld(ip lease.IP, c client, why string) {
	now := s.now().Unix()
	s.mu.Lock()
	held, ok := s.table.Held(c.key, now)
	if !ok || held != ip {
		s.mu.Unlock()
		log.Debugf("not abandoning %s (%s): not offered to %s", ip, why, c.key)
		return
	}
	b, had := s.table.Get(ip)
	orig := b
	b.IP = ip
	s.abandon(&b, why)
	s.mark(&b)
	s.table.ClearHold(ip)
	s.writeClient(b, orig, had, "abandon")
}

// abandon marks b as in use by an unknown host until decline-hold passes.
func (s *Server) abandon(b *lease.Binding, why string) {
	now := s.now().Unix()
	log.WithField("address", b.IP.String()).Warnf("address %s: another host may be using it", why)
	*b = lease.Binding{
		IP:         b.IP,
		State:      lease.Abandoned,
		Start:      now,
		End:        now + int64(s.cfg.DeclineHold/time.Second),
		CLTT:       now,
		SentExpiry: b.SentExpiry,
		PeerExpiry: b.PeerExpiry,
	}
	if b.End == now {
		b.End = now + 1 // the heap needs a non-zero end
	}
}
