package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Header holds the fields every typed message shares.
type Header struct {
	Time uint32 // sender's clock, UNIX seconds
	XID  uint32
	// Present lists the options the message carried (set by FromBytes and
	// FromMessage; only options ISC parses for the type are recorded).
	// AppendTo writes an option if ISC always sends it for the type, if
	// its field is non-zero, or if Present has it: set a bit to send a
	// zero value, e.g. TLS-reply 0 in a CONNECTACK.
	Present OptionSet
}

// Head returns the header of a typed message, for a sender that stamps
// the time and xid just before writing it.
func (h *Header) Head() *Header { return h }

// Body is implemented by the typed message structs (pointers to them):
// PoolRequest, PoolResponse, BindingUpdate, BindingAck, Connect, ConnectAck,
// UpdateRequestAll, UpdateDone, UpdateRequest, State, Contact, Disconnect.
type Body interface {
	// Type returns the message type the struct encodes.
	Type() MessageType
	// Head returns the message's header.
	Head() *Header
	// AppendTo appends the encoded message to buf. On error buf is
	// returned unchanged.
	AppendTo(buf []byte) ([]byte, error)

	reset()
	setOption(c OptionCode, data []byte)
}

// NewBody returns an empty typed struct for t, or nil if t is not a defined
// message type.
func NewBody(t MessageType) Body {
	switch t {
	case MsgPoolReq:
		return new(PoolRequest)
	case MsgPoolResp:
		return new(PoolResponse)
	case MsgBndUpd:
		return new(BindingUpdate)
	case MsgBndAck:
		return new(BindingAck)
	case MsgConnect:
		return new(Connect)
	case MsgConnectAck:
		return new(ConnectAck)
	case MsgUpdReqAll:
		return new(UpdateRequestAll)
	case MsgUpdDone:
		return new(UpdateDone)
	case MsgUpdReq:
		return new(UpdateRequest)
	case MsgState:
		return new(State)
	case MsgContact:
		return new(Contact)
	case MsgDisconnect:
		return new(Disconnect)
	}
	return nil
}

// DecodeBody decodes one complete frame into the typed struct for its
// message type, applying ISC's receive rules. A frame of an undefined type
// gives ErrUnknownType, even without options (ISC silently ignores such a
// message; a session may do the same by checking MessageType.Known first).
func DecodeBody(b []byte) (Body, error) {
	if len(b) < HeaderLen {
		return nil, fmt.Errorf("%w: %d bytes, the header alone needs %d", ErrShortFrame, len(b), HeaderLen)
	}
	body := NewBody(MessageType(b[2]))
	if body == nil {
		if err := CheckFrame(b); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: type %d has no typed form", ErrUnknownType, b[2])
	}
	if err := decodeBody(b, body); err != nil {
		return nil, err
	}
	return body, nil
}

// Body returns the typed form of m (see DecodeBody).
func (m *Message) Body() (Body, error) {
	body := NewBody(m.Type)
	if body == nil {
		return nil, fmt.Errorf("%w: type %d has no typed form", ErrUnknownType, m.Type)
	}
	if err := fromMessage(m, body); err != nil {
		return nil, err
	}
	return body, nil
}

// ToBytes encodes any typed message into a new slice.
func ToBytes(b Body) ([]byte, error) { return b.AppendTo(make([]byte, 0, 128)) }

// decodeBody parses frame b into body, applying ISC's rules, without
// building a Message.
func decodeBody(b []byte, body Body) error {
	body.reset()
	payoff, err := checkHeader(b)
	if err != nil {
		return err
	}
	t := MessageType(b[2])
	if t != body.Type() {
		return fmt.Errorf("%w: got %v, want %v", ErrWrongType, t, body.Type())
	}
	if len(b) > MaxMessageLen {
		return fmt.Errorf("%w: message of %d bytes exceeds ISC's maximum of %d", ErrFrameTooLong, len(b), MaxMessageLen)
	}
	h := body.Head()
	h.Time = binary.BigEndian.Uint32(b[4:])
	h.XID = binary.BigEndian.Uint32(b[8:])
	v := validator{typ: t}
	parsed := t.Parsed()
	for off := payoff; off < len(b); {
		code, data, next, err := nextOption(b, off)
		if err != nil {
			return err
		}
		if err := v.check(code, data, off); err != nil {
			return err
		}
		if parsed.Has(code) {
			h.Present = h.Present.With(code)
			body.setOption(code, data)
		}
		off = next
	}
	return nil
}

// fromMessage fills body from a lossless Message, applying ISC's rules.
func fromMessage(m *Message, body Body) error {
	body.reset()
	if m.Type != body.Type() {
		return fmt.Errorf("%w: got %v, want %v", ErrWrongType, m.Type, body.Type())
	}
	if err := m.Validate(); err != nil {
		return err
	}
	h := body.Head()
	h.Time, h.XID = m.Time, m.XID
	parsed := m.Type.Parsed()
	for _, o := range m.Options {
		if parsed.Has(o.Code) {
			h.Present = h.Present.With(o.Code)
			body.setOption(o.Code, o.Data)
		}
	}
	return nil
}

// encoder appends one message; the first error sticks.
type encoder struct {
	b      []byte
	start  int
	always OptionSet // options written even when zero
	err    error
}

func newEncoder(buf []byte, t MessageType, h *Header, always OptionSet) encoder {
	e := encoder{start: len(buf), always: always | h.Present}
	e.b = appendHeader(buf, 0, t, HeaderLen, h.Time, h.XID)
	return e
}

// want reports whether option c is to be written.
func (e *encoder) want(c OptionCode, nonZero bool) bool { return nonZero || e.always.Has(c) }

func (e *encoder) uint8(c OptionCode, v uint8, nonZero bool) {
	if e.want(c, nonZero) {
		e.b = append(appendOptionHeader(e.b, c, 1), v)
	}
}

func (e *encoder) uint16(c OptionCode, v uint16) {
	if e.want(c, v != 0) {
		e.b = binary.BigEndian.AppendUint16(appendOptionHeader(e.b, c, 2), v)
	}
}

func (e *encoder) uint32(c OptionCode, v uint32) {
	if e.want(c, v != 0) {
		e.b = binary.BigEndian.AppendUint32(appendOptionHeader(e.b, c, 4), v)
	}
}

func (e *encoder) addr(c OptionCode, a netip.Addr) {
	if !e.want(c, a.IsValid()) {
		return
	}
	a = a.Unmap()
	if !a.Is4() {
		e.fail(fmt.Errorf("%w: option %d (%v): %q is not an IPv4 address", ErrInvalidValue, c, c, a))
		return
	}
	v := a.As4()
	e.b = append(appendOptionHeader(e.b, c, 4), v[:]...)
}

func (e *encoder) bytes(c OptionCode, v []byte) {
	if !e.want(c, v != nil) {
		return
	}
	if len(v) > maxOptionLen {
		e.fail(fmt.Errorf("%w: option %d (%v) has %d bytes, at most %d fit", ErrInvalidValue, c, c, len(v), maxOptionLen))
		return
	}
	e.b = append(appendOptionHeader(e.b, c, len(v)), v...)
}

func (e *encoder) string(c OptionCode, v string) {
	if !e.want(c, v != "") {
		return
	}
	if len(v) > maxOptionLen {
		e.fail(fmt.Errorf("%w: option %d (%v) has %d bytes, at most %d fit", ErrInvalidValue, c, c, len(v), maxOptionLen))
		return
	}
	e.b = append(appendOptionHeader(e.b, c, len(v)), v...)
}

func (e *encoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// finish patches the length field; on error it returns the original buffer.
func (e *encoder) finish() ([]byte, error) {
	if e.err != nil {
		return e.b[:e.start], e.err
	}
	n := len(e.b) - e.start
	if n > MaxMessageLen {
		return e.b[:e.start], fmt.Errorf("%w: message of %d bytes exceeds ISC's maximum of %d", ErrFrameTooLong, n, MaxMessageLen)
	}
	binary.BigEndian.PutUint16(e.b[e.start:], uint16(n))
	return e.b, nil
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// Binding is the lease information carried by BNDUPD (and accepted, though
// never sent by ISC, in BNDACK). Times are absolute UNIX seconds, 0 for
// "never" or absent.
type Binding struct {
	Addr   netip.Addr    // assigned-IP-address (IPv4)
	Status BindingStatus // binding-status
	// ClientID is the DHCP option 61 data, type byte included
	// (client-identifier); nil if absent.
	ClientID []byte
	// HWAddr is the htype byte followed by the hardware address, e.g. 7
	// bytes for Ethernet (client-hardware-address); nil if absent.
	HWAddr           []byte
	LeaseExpiry      uint32  // lease-expiration-time
	PotentialExpiry  uint32  // potential-expiration-time ("tstp")
	StartTimeOfState uint32  // start-time-of-state: ISC sends the lease start
	CLTT             uint32  // client-last-transaction-time, omitted when 0
	IPFlags          IPFlags // IP-flags, omitted when 0
	// RequestOptions and ReplyOptions (client-request-options,
	// client-reply-options) are accepted and discarded by ISC, which never
	// sends them; nil if absent.
	RequestOptions []byte
	ReplyOptions   []byte
}

func (b *Binding) setOption(c OptionCode, d []byte) {
	switch c {
	case OptAssignedIPAddress:
		b.Addr = netip.AddrFrom4([4]byte(d))
	case OptBindingStatus:
		b.Status = BindingStatus(d[0])
	case OptClientIdentifier:
		b.ClientID = d
	case OptClientHardwareAddress:
		b.HWAddr = d
	case OptLeaseExpirationTime:
		b.LeaseExpiry = be32(d)
	case OptPotentialExpiration:
		b.PotentialExpiry = be32(d)
	case OptStartTimeOfState:
		b.StartTimeOfState = be32(d)
	case OptCLTT:
		b.CLTT = be32(d)
	case OptIPFlags:
		b.IPFlags = IPFlags(be16(d))
	case OptClientRequestOptions:
		b.RequestOptions = d
	case OptClientReplyOptions:
		b.ReplyOptions = d
	}
}

// encode writes the binding options in ISC's BNDUPD order.
func (b *Binding) encode(e *encoder) {
	e.addr(OptAssignedIPAddress, b.Addr)
	e.uint8(OptBindingStatus, uint8(b.Status), b.Status != 0)
	e.bytes(OptClientIdentifier, b.ClientID)
	e.bytes(OptClientHardwareAddress, b.HWAddr)
	e.uint32(OptLeaseExpirationTime, b.LeaseExpiry)
	e.uint32(OptPotentialExpiration, b.PotentialExpiry)
	e.uint32(OptStartTimeOfState, b.StartTimeOfState)
	e.uint32(OptCLTT, b.CLTT)
	e.uint16(OptIPFlags, uint16(b.IPFlags))
	e.bytes(OptClientRequestOptions, b.RequestOptions)
	e.bytes(OptClientReplyOptions, b.ReplyOptions)
}

func (b *Binding) len() int {
	n := 4 + 4 + 4 + 1 + 3*(4+4)
	if b.ClientID != nil {
		n += 4 + len(b.ClientID)
	}
	if b.HWAddr != nil {
		n += 4 + len(b.HWAddr)
	}
	n += 4 + 4 + 4 + 2 // CLTT, IP-flags (upper bound)
	if b.RequestOptions != nil {
		n += 4 + len(b.RequestOptions)
	}
	if b.ReplyOptions != nil {
		n += 4 + len(b.ReplyOptions)
	}
	return n
}

// bndupdAlways: ISC always sends these in a BNDUPD, even when zero.
var bndupdAlways = optionSet(OptAssignedIPAddress, OptBindingStatus,
	OptLeaseExpirationTime, OptPotentialExpiration, OptStartTimeOfState)

// BindingUpdate is a BNDUPD: one binding (ISC never batches). AppendTo
// always writes assigned-IP-address, binding-status, lease-expiration-time,
// potential-expiration-time and start-time-of-state, as ISC does.
type BindingUpdate struct {
	Header
	Binding
}

// Type returns MsgBndUpd.
func (*BindingUpdate) Type() MessageType { return MsgBndUpd }

func (u *BindingUpdate) reset() { *u = BindingUpdate{} }

// FromBytes decodes a BNDUPD frame, applying ISC's receive rules. Byte
// slices alias b.
func (u *BindingUpdate) FromBytes(b []byte) error { return decodeBody(b, u) }

// FromMessage fills u from a decoded message.
func (u *BindingUpdate) FromMessage(m *Message) error { return fromMessage(m, u) }

// AppendTo appends the BNDUPD to buf; it does not allocate when buf has
// room for Len bytes.
func (u *BindingUpdate) AppendTo(buf []byte) ([]byte, error) {
	e := newEncoder(buf, MsgBndUpd, &u.Header, bndupdAlways)
	u.Binding.encode(&e)
	return e.finish()
}

// Len returns an upper bound of the encoded length.
func (u *BindingUpdate) Len() int { return HeaderLen + u.Binding.len() }

// ToBytes encodes u into a new slice (one allocation).
func (u *BindingUpdate) ToBytes() ([]byte, error) { return u.AppendTo(make([]byte, 0, u.Len())) }

// BindingAck is a BNDACK. ISC sends only the address, plus reject-reason
// and message when it refuses the update; it parses the other binding
// options but ignores them, except that (an ISC bug) a BNDACK carrying a
// client-identifier makes ISC take its potential-expiration-time as
// acknowledged. Leave the other Binding fields zero.
type BindingAck struct {
	Header
	Binding
	RejectReason RejectReason // 0 = accepted
	Message      string       // text for a rejection, no NUL
}

// Type returns MsgBndAck.
func (*BindingAck) Type() MessageType { return MsgBndAck }

func (a *BindingAck) reset() { *a = BindingAck{} }

func (a *BindingAck) setOption(c OptionCode, d []byte) {
	switch c {
	case OptRejectReason:
		a.RejectReason = RejectReason(d[0])
	case OptMessage:
		a.Message = string(d)
	default:
		a.Binding.setOption(c, d)
	}
}

// FromBytes decodes a BNDACK frame, applying ISC's receive rules.
func (a *BindingAck) FromBytes(b []byte) error { return decodeBody(b, a) }

// FromMessage fills a from a decoded message.
func (a *BindingAck) FromMessage(m *Message) error { return fromMessage(m, a) }

// AppendTo appends the BNDACK to buf: assigned-IP-address (always), any
// non-zero binding field, then reject-reason and message when set.
func (a *BindingAck) AppendTo(buf []byte) ([]byte, error) {
	e := newEncoder(buf, MsgBndAck, &a.Header, optionSet(OptAssignedIPAddress))
	a.Binding.encode(&e)
	e.uint8(OptRejectReason, uint8(a.RejectReason), a.RejectReason != 0)
	e.string(OptMessage, a.Message)
	return e.finish()
}

// ToBytes encodes a into a new slice.
func (a *BindingAck) ToBytes() ([]byte, error) { return ToBytes(a) }

// Connect is a CONNECT, sent by the primary only. ISC sends all eight
// options; AppendTo writes TLS-request (value 0) always and the others when
// non-zero (or in Present). An ISC secondary requires RelationshipName, an
// HBA of exactly 32 bytes and MCLT, and should get MaxUnacked and
// ReceiveTimer (it keeps stale values otherwise).
type Connect struct {
	Header
	RelationshipName string // the failover peer name, no NUL
	MaxUnacked       uint32 // max-unacked-bndupd: BNDUPDs the sender accepts in flight
	ReceiveTimer     uint32 // seconds of silence after which the sender drops the link
	VendorClass      string // vendor-class-identifier, e.g. "isc-4.4.3-P1"
	ProtocolVersion  uint8  // ISC sends 1 and never checks it
	TLSRequest       uint8  // always 0
	MCLT             uint32 // seconds
	HBA              []byte // hash-bucket-assignment: 32 bytes, bit set = primary serves
}

// Type returns MsgConnect.
func (*Connect) Type() MessageType { return MsgConnect }

func (c *Connect) reset() { *c = Connect{} }

func (c *Connect) setOption(code OptionCode, d []byte) {
	switch code {
	case OptRelationshipName:
		c.RelationshipName = string(d)
	case OptMaxUnackedBndUpd:
		c.MaxUnacked = be32(d)
	case OptReceiveTimer:
		c.ReceiveTimer = be32(d)
	case OptVendorClassIdentifier:
		c.VendorClass = string(d)
	case OptProtocolVersion:
		c.ProtocolVersion = d[0]
	case OptTLSRequest:
		c.TLSRequest = d[0]
	case OptMCLT:
		c.MCLT = be32(d)
	case OptHashBucketAssignment:
		c.HBA = d
	}
}

// FromBytes decodes a CONNECT frame, applying ISC's receive rules.
func (c *Connect) FromBytes(b []byte) error { return decodeBody(b, c) }

// FromMessage fills c from a decoded message.
func (c *Connect) FromMessage(m *Message) error { return fromMessage(m, c) }

// AppendTo appends the CONNECT to buf in ISC's option order.
func (c *Connect) AppendTo(buf []byte) ([]byte, error) {
	e := newEncoder(buf, MsgConnect, &c.Header, optionSet(OptTLSRequest))
	e.string(OptRelationshipName, c.RelationshipName)
	e.uint32(OptMaxUnackedBndUpd, c.MaxUnacked)
	e.uint32(OptReceiveTimer, c.ReceiveTimer)
	e.string(OptVendorClassIdentifier, c.VendorClass)
	e.uint8(OptProtocolVersion, c.ProtocolVersion, c.ProtocolVersion != 0)
	e.uint8(OptTLSRequest, c.TLSRequest, c.TLSRequest != 0)
	e.uint32(OptMCLT, c.MCLT)
	e.bytes(OptHashBucketAssignment, c.HBA)
	return e.finish()
}

// ToBytes encodes c into a new slice.
func (c *Connect) ToBytes() ([]byte, error) { return ToBytes(c) }

// ConnectAck is a CONNECTACK, sent by the secondary only, with the
// CONNECT's xid. ISC includes TLS-reply (0) only when the CONNECT carried
// TLS-request: set Present to OptionSet(0).With(OptTLSReply) for that.
// A non-zero RejectReason refuses the connection.
type ConnectAck struct {
	Header
	RelationshipName string
	MaxUnacked       uint32
	ReceiveTimer     uint32
	VendorClass      string
	ProtocolVersion  uint8
	TLSReply         uint8
	RejectReason     RejectReason
	Message          string
}

// Type returns MsgConnectAck.
func (*ConnectAck) Type() MessageType { return MsgConnectAck }

func (c *ConnectAck) reset() { *c = ConnectAck{} }

func (c *ConnectAck) setOption(code OptionCode, d []byte) {
	switch code {
	case OptRelationshipName:
		c.RelationshipName = string(d)
	case OptMaxUnackedBndUpd:
		c.MaxUnacked = be32(d)
	case OptReceiveTimer:
		c.ReceiveTimer = be32(d)
	case OptVendorClassIdentifier:
		c.VendorClass = string(d)
	case OptProtocolVersion:
		c.ProtocolVersion = d[0]
	case OptTLSReply:
		c.TLSReply = d[0]
	case OptRejectReason:
		c.RejectReason = RejectReason(d[0])
	case OptMessage:
		c.Message = string(d)
	}
}

// FromBytes decodes a CONNECTACK frame, applying ISC's receive rules.
func (c *ConnectAck) FromBytes(b []byte) error { return decodeBody(b, c) }

// FromMessage fills c from a decoded message.
func (c *ConnectAck) FromMessage(m *Message) error { return fromMessage(m, c) }

// AppendTo appends the CONNECTACK to buf in ISC's option order.
func (c *ConnectAck) AppendTo(buf []byte) ([]byte, error) {
	e := newEncoder(buf, MsgConnectAck, &c.Header, 0)
	e.string(OptRelationshipName, c.RelationshipName)
	e.uint32(OptMaxUnackedBndUpd, c.MaxUnacked)
	e.uint32(OptReceiveTimer, c.ReceiveTimer)
	e.string(OptVendorClassIdentifier, c.VendorClass)
	e.uint8(OptProtocolVersion, c.ProtocolVersion, c.ProtocolVersion != 0)
	e.uint8(OptTLSReply, c.TLSReply, c.TLSReply != 0)
	e.uint8(OptRejectReason, uint8(c.RejectReason), c.RejectReason != 0)
	e.string(OptMessage, c.Message)
	return e.finish()
}

// ToBytes encodes c into a new slice.
func (c *ConnectAck) ToBytes() ([]byte, error) { return ToBytes(c) }

// State is a STATE message. AppendTo always writes all three options, as
// ISC does.
type State struct {
	Header
	ServerState ServerState // while in STARTUP: the remembered state, with FlagStartup
	Flags       ServerFlags
	// StartTimeOfState is when the sender entered ServerState; ISC ignores
	// the peer's value.
	StartTimeOfState uint32
}

var stateAlways = optionSet(OptServerState, OptServerFlags, OptStartTimeOfState)

// Type returns MsgState.
func (*State) Type() MessageType { return MsgState }

func (s *State) reset() { *s = State{} }

func (s *State) setOption(code OptionCode, d []byte) {
	switch code {
	case OptServerState:
		s.ServerState = ServerState(d[0])
	case OptServerFlags:
		s.Flags = ServerFlags(d[0])
	case OptStartTimeOfState:
		s.StartTimeOfState = be32(d)
	}
}

// FromBytes decodes a STATE frame, applying ISC's receive rules.
func (s *State) FromBytes(b []byte) error { return decodeBody(b, s) }

// FromMessage fills s from a decoded message.
func (s *State) FromMessage(m *Message) error { return fromMessage(m, s) }

// AppendTo appends the STATE to buf.
func (s *State) AppendTo(buf []byte) ([]byte, error) {
	e := newEncoder(buf, MsgState, &s.Header, stateAlways)
	e.uint8(OptServerState, uint8(s.ServerState), s.ServerState != 0)
	e.uint8(OptServerFlags, uint8(s.Flags), s.Flags != 0)
	e.uint32(OptStartTimeOfState, s.StartTimeOfState)
	return e.finish()
}

// ToBytes encodes s into a new slice.
func (s *State) ToBytes() ([]byte, error) { return ToBytes(s) }

// Disconnect is a DISCONNECT: AppendTo always writes reject-reason, then
// message when non-empty.
type Disconnect struct {
	Header
	RejectReason RejectReason
	Message      string
}

// Type returns MsgDisconnect.
func (*Disconnect) Type() MessageType { return MsgDisconnect }

func (d *Disconnect) reset() { *d = Disconnect{} }

func (d *Disconnect) setOption(code OptionCode, data []byte) {
	switch code {
	case OptRejectReason:
		d.RejectReason = RejectReason(data[0])
	case OptMessage:
		d.Message = string(data)
	}
}

// FromBytes decodes a DISCONNECT frame, applying ISC's receive rules.
func (d *Disconnect) FromBytes(b []byte) error { return decodeBody(b, d) }

// FromMessage fills d from a decoded message.
func (d *Disconnect) FromMessage(m *Message) error { return fromMessage(m, d) }

// AppendTo appends the DISCONNECT to buf.
func (d *Disconnect) AppendTo(buf []byte) ([]byte, error) {
	e := newEncoder(buf, MsgDisconnect, &d.Header, optionSet(OptRejectReason))
	e.uint8(OptRejectReason, uint8(d.RejectReason), d.RejectReason != 0)
	e.string(OptMessage, d.Message)
	return e.finish()
}

// ToBytes encodes d into a new slice.
func (d *Disconnect) ToBytes() ([]byte, error) { return ToBytes(d) }

// PoolResponse is a POOLRESP, with the POOLREQ's xid; AppendTo always
// writes addresses-transferred (0 when nothing was moved).
type PoolResponse struct {
	Header
	AddressesTransferred uint32
}

// Type returns MsgPoolResp.
func (*PoolResponse) Type() MessageType { return MsgPoolResp }

func (p *PoolResponse) reset() { *p = PoolResponse{} }

func (p *PoolResponse) setOption(code OptionCode, d []byte) {
	if code == OptAddressesTransferred {
		p.AddressesTransferred = be32(d)
	}
}

// FromBytes decodes a POOLRESP frame, applying ISC's receive rules.
func (p *PoolResponse) FromBytes(b []byte) error { return decodeBody(b, p) }

// FromMessage fills p from a decoded message.
func (p *PoolResponse) FromMessage(m *Message) error { return fromMessage(m, p) }

// AppendTo appends the POOLRESP to buf.
func (p *PoolResponse) AppendTo(buf []byte) ([]byte, error) {
	e := newEncoder(buf, MsgPoolResp, &p.Header, optionSet(OptAddressesTransferred))
	e.uint32(OptAddressesTransferred, p.AddressesTransferred)
	return e.finish()
}

// ToBytes encodes p into a new slice.
func (p *PoolResponse) ToBytes() ([]byte, error) { return ToBytes(p) }

// empty is the body of the five messages that carry no options: POOLREQ,
// UPDREQALL, UPDDONE, UPDREQ and CONTACT. ISC parses no option in them; any
// option present on receipt is skipped (and kept only in Message). K names
// the message type, so that each is a type of its own for a type switch.
type empty[K emptyKind] struct{ Header }

// emptyKind gives the message type of an empty body.
type emptyKind interface{ msgType() MessageType }

type (
	poolReqKind   struct{}
	updReqAllKind struct{}
	updDoneKind   struct{}
	updReqKind    struct{}
	contactKind   struct{}
)

func (poolReqKind) msgType() MessageType   { return MsgPoolReq }
func (updReqAllKind) msgType() MessageType { return MsgUpdReqAll }
func (updDoneKind) msgType() MessageType   { return MsgUpdDone }
func (updReqKind) msgType() MessageType    { return MsgUpdReq }
func (contactKind) msgType() MessageType   { return MsgContact }

type (
	// PoolRequest is a POOLREQ (type 1, no options): give me addresses.
	PoolRequest = empty[poolReqKind]
	// UpdateRequestAll is an UPDREQALL (type 7, no options): send me
	// every binding.
	UpdateRequestAll = empty[updReqAllKind]
	// UpdateDone is an UPDDONE (type 8, no options), with the xid of the
	// latest UPDREQ/UPDREQALL received.
	UpdateDone = empty[updDoneKind]
	// UpdateRequest is an UPDREQ (type 9, no options): send me the
	// bindings I have not acknowledged.
	UpdateRequest = empty[updReqKind]
	// Contact is a CONTACT (type 11, no options), the keep-alive.
	Contact = empty[contactKind]
)

func (*empty[K]) setOption(OptionCode, []byte) {}

// Type returns the message type: MsgPoolReq, MsgUpdReqAll, MsgUpdDone,
// MsgUpdReq or MsgContact.
func (*empty[K]) Type() MessageType {
	var k K
	return k.msgType()
}

func (e *empty[K]) reset() { *e = empty[K]{} }

// FromBytes decodes the frame, applying ISC's receive rules.
func (e *empty[K]) FromBytes(b []byte) error { return decodeBody(b, e) }

// FromMessage fills e from a decoded message.
func (e *empty[K]) FromMessage(m *Message) error { return fromMessage(m, e) }

// AppendTo appends the message to buf.
func (e *empty[K]) AppendTo(buf []byte) ([]byte, error) {
	enc := newEncoder(buf, e.Type(), &e.Header, 0)
	return enc.finish()
}
