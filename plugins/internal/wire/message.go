package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

const (
	// HeaderLen is the size of the fixed message header and the payload
	// offset ISC always sends.
	HeaderLen = 12
	// MaxMessageLen is the largest message ISC accepts (and the largest the
	// typed encoders and WriteFrame produce).
	MaxMessageLen = 2048
	// maxPayloadOffset is the largest value of the one-byte payload offset.
	maxPayloadOffset = 255
	// maxOptionLen is the largest value of the two-byte option length.
	maxOptionLen = 0xffff
)

// Option is one option as it appeared on the wire.
type Option struct {
	Code OptionCode
	Data []byte
}

// Message is the lossless form of one failover message: ToBytes reproduces
// the bytes FromBytes was given, including unknown, repeated or misplaced
// options and any bytes between the header and the payload offset.
type Message struct {
	Type MessageType
	Time uint32 // sender's clock, UNIX seconds
	XID  uint32
	// Pad holds the bytes between the 12-byte header and the payload
	// offset; ISC skips them. Nil when the payload offset is 12.
	Pad []byte
	// Options in wire order.
	Options []Option
}

// Decode parses one complete frame and applies ISC's receive rules: it is
// FromBytes followed by Validate. The message's byte slices alias b.
func Decode(b []byte) (*Message, error) {
	m := new(Message)
	if err := m.FromBytes(b); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// FromBytes parses one complete frame (length field included) without
// judging its contents: it checks only the length field, the payload offset
// and that every option lies inside the frame. Pad and option data alias b.
// Use Validate (or Decode) to apply ISC's rules.
func (m *Message) FromBytes(b []byte) error {
	payoff, err := checkHeader(b)
	if err != nil {
		return err
	}
	n := 0
	for off := payoff; off < len(b); n++ {
		if _, _, off, err = nextOption(b, off); err != nil {
			return err
		}
	}
	*m = Message{
		Type: MessageType(b[2]),
		Time: binary.BigEndian.Uint32(b[4:]),
		XID:  binary.BigEndian.Uint32(b[8:]),
	}
	if payoff > HeaderLen {
		m.Pad = b[HeaderLen:payoff:payoff]
	}
	if n > 0 {
		m.Options = make([]Option, 0, n)
		for off := payoff; off < len(b); {
			var o Option
			o.Code, o.Data, off, _ = nextOption(b, off)
			m.Options = append(m.Options, o)
		}
	}
	return nil
}

// Len returns the encoded length of m.
func (m *Message) Len() int {
	n := HeaderLen + len(m.Pad)
	for _, o := range m.Options {
		n += 4 + len(o.Data)
	}
	return n
}

// ToBytes encodes m into a new slice.
func (m *Message) ToBytes() ([]byte, error) {
	return m.AppendTo(make([]byte, 0, m.Len()))
}

// AppendTo appends the encoding of m to buf. It fails (returning buf
// unchanged) only if m cannot be represented: padding that pushes the
// payload offset past 255, an option longer than 65535 bytes or a message
// longer than 65535 bytes. It does not apply ISC's rules; see Validate.
func (m *Message) AppendTo(buf []byte) ([]byte, error) {
	n := m.Len()
	if n > 0xffff {
		return buf, fmt.Errorf("%w: message of %d bytes does not fit the 16-bit length field", ErrInvalidValue, n)
	}
	if HeaderLen+len(m.Pad) > maxPayloadOffset {
		return buf, fmt.Errorf("%w: %d bytes of padding give a payload offset of %d, above %d",
			ErrInvalidValue, len(m.Pad), HeaderLen+len(m.Pad), maxPayloadOffset)
	}
	b := appendHeader(buf, uint16(n), m.Type, uint8(HeaderLen+len(m.Pad)), m.Time, m.XID)
	b = append(b, m.Pad...)
	for _, o := range m.Options {
		// n <= 0xffff bounds every option length too.
		b = appendOptionHeader(b, o.Code, len(o.Data))
		b = append(b, o.Data...)
	}
	return b, nil
}

// Validate applies ISC dhcpd 4.4's receive rules (server/failover.c
// dhcp_failover_link_signal and do_a_failover_option) to m; a non-nil error
// is a message on which ISC drops the connection:
//
//   - the message is longer than MaxMessageLen (ErrFrameTooLong);
//   - the payload offset would exceed 255 (ErrPayloadOffset);
//   - the type is above 12 and the message has options (ErrUnknownType);
//   - an option ISC parses for this type is repeated (ErrDuplicateOption)
//     or has the wrong fixed size, DDNS included (ErrOptionLength).
//
// Unknown option codes and options ISC does not parse for the type are not
// checked, as in ISC. Required options (e.g. a relationship name in
// CONNECT) are policy and left to the caller.
func (m *Message) Validate() error {
	if n := m.Len(); n > MaxMessageLen {
		return fmt.Errorf("%w: message of %d bytes exceeds ISC's maximum of %d", ErrFrameTooLong, n, MaxMessageLen)
	}
	if HeaderLen+len(m.Pad) > maxPayloadOffset {
		return fmt.Errorf("%w: %d bytes of padding give a payload offset above %d", ErrPayloadOffset, len(m.Pad), maxPayloadOffset)
	}
	v := validator{typ: m.Type}
	off := HeaderLen + len(m.Pad)
	for _, o := range m.Options {
		if err := v.check(o.Code, o.Data, off); err != nil {
			return err
		}
		off += 4 + len(o.Data)
	}
	return nil
}

// Get returns the data of the first option with the given code.
func (m *Message) Get(code OptionCode) ([]byte, bool) {
	for _, o := range m.Options {
		if o.Code == code {
			return o.Data, true
		}
	}
	return nil, false
}

// Uint8 returns the option's value if it is exactly 1 byte long.
func (o Option) Uint8() (uint8, bool) {
	if len(o.Data) != 1 {
		return 0, false
	}
	return o.Data[0], true
}

// Uint16 returns the option's value if it is exactly 2 bytes long.
func (o Option) Uint16() (uint16, bool) {
	if len(o.Data) != 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(o.Data), true
}

// Uint32 returns the option's value if it is exactly 4 bytes long (counts,
// seconds and UNIX times).
func (o Option) Uint32() (uint32, bool) {
	if len(o.Data) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(o.Data), true
}

// Addr returns the option's value as an IPv4 address if it is exactly 4
// bytes long.
func (o Option) Addr() (netip.Addr, bool) {
	if len(o.Data) != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(o.Data)), true
}

// Uint8Option returns a 1-byte option.
func Uint8Option(c OptionCode, v uint8) Option { return Option{c, []byte{v}} }

// Uint16Option returns a 2-byte big-endian option.
func Uint16Option(c OptionCode, v uint16) Option {
	return Option{c, binary.BigEndian.AppendUint16(nil, v)}
}

// Uint32Option returns a 4-byte big-endian option.
func Uint32Option(c OptionCode, v uint32) Option {
	return Option{c, binary.BigEndian.AppendUint32(nil, v)}
}

// AddrOption returns a 4-byte IPv4 address option; a zero or non-IPv4
// address gives 0.0.0.0.
func AddrOption(c OptionCode, a netip.Addr) Option {
	a = a.Unmap()
	if !a.Is4() {
		return Option{c, make([]byte, 4)}
	}
	b := a.As4()
	return Option{c, b[:]}
}

// checkHeader checks the framing of one whole frame and returns its payload
// offset.
func checkHeader(b []byte) (payoff int, err error) {
	if len(b) < HeaderLen {
		return 0, fmt.Errorf("%w: %d bytes, the header alone needs %d", ErrShortFrame, len(b), HeaderLen)
	}
	n := int(binary.BigEndian.Uint16(b))
	if n < HeaderLen {
		return 0, fmt.Errorf("%w: length field %d is below the %d-byte header", ErrBadLength, n, HeaderLen)
	}
	if n != len(b) {
		return 0, fmt.Errorf("%w: length field %d does not match the %d-byte frame", ErrBadLength, n, len(b))
	}
	payoff = int(b[3])
	if payoff < HeaderLen {
		return 0, fmt.Errorf("%w: payload offset %d is inside the %d-byte header (ISC needs 12, not the draft's 8)",
			ErrPayloadOffset, payoff, HeaderLen)
	}
	if payoff > n {
		return 0, fmt.Errorf("%w: payload offset %d is beyond the end of the %d-byte message", ErrPayloadOffset, payoff, n)
	}
	return payoff, nil
}

// nextOption reads the option at b[off:] and returns the offset after it.
func nextOption(b []byte, off int) (code OptionCode, data []byte, next int, err error) {
	left := len(b) - off
	if left < 2 {
		return 0, nil, off, fmt.Errorf("%w: option code at offset %d needs 2 bytes, %d left", ErrOptionOverflow, off, left)
	}
	code = OptionCode(binary.BigEndian.Uint16(b[off:]))
	if left < 4 {
		return 0, nil, off, fmt.Errorf("%w: length of option %d (%v) at offset %d needs 2 bytes, %d left",
			ErrOptionOverflow, code, code, off, left-2)
	}
	n := int(binary.BigEndian.Uint16(b[off+2:]))
	if n > left-4 {
		return 0, nil, off, fmt.Errorf("%w: option %d (%v) at offset %d has length %d, %d bytes left",
			ErrOptionOverflow, code, code, off, n, left-4)
	}
	next = off + 4 + n
	return code, b[off+4 : next : next], next, nil
}

// validator applies ISC's per-option rules to the options of one message.
type validator struct {
	typ  MessageType
	seen OptionSet
}

func (v *validator) check(code OptionCode, data []byte, off int) error {
	if v.typ > maxMessageType {
		return fmt.Errorf("%w: type %d (above %d) with option %d at offset %d", ErrUnknownType, v.typ, maxMessageType, code, off)
	}
	if !v.typ.Parsed().Has(code) {
		return nil // unknown code, or not parsed for this type: skipped by ISC
	}
	if v.seen.Has(code) {
		return fmt.Errorf("%w: option %d (%v) repeated in %v at offset %d", ErrDuplicateOption, code, code, v.typ, off)
	}
	v.seen = v.seen.With(code)
	switch size := optionInfos[code].size; {
	case size == sizeDDNS:
		return fmt.Errorf("%w: option %d (%v) of length %d in %v at offset %d: ISC 4.4 cannot parse DDNS and drops the link",
			ErrOptionLength, code, code, len(data), v.typ, off)
	case size > 0 && len(data) != size:
		return fmt.Errorf("%w: option %d (%v) in %v at offset %d has length %d, want %d",
			ErrOptionLength, code, code, v.typ, off, len(data), size)
	}
	return nil
}

func appendHeader(b []byte, n uint16, t MessageType, payoff uint8, time, xid uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, n)
	b = append(b, byte(t), payoff)
	b = binary.BigEndian.AppendUint32(b, time)
	return binary.BigEndian.AppendUint32(b, xid)
}

func appendOptionHeader(b []byte, c OptionCode, n int) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(c))
	return binary.BigEndian.AppendUint16(b, uint16(n))
}
