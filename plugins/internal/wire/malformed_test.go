package wire

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
)

// frame builds a message: header fields, then raw option bytes. The length
// field is computed unless length >= 0.
func frame(length int, typ MessageType, payoff uint8, rest ...[]byte) []byte {
	b := appendHeader(nil, 0, typ, payoff, 1795554707, 42)
	for _, r := range rest {
		b = append(b, r...)
	}
	if length < 0 {
		length = len(b)
	}
	b[0], b[1] = byte(length>>8), byte(length)
	return b
}

// opt builds one raw option.
func opt(code OptionCode, data ...byte) []byte {
	return append(appendOptionHeader(nil, code, len(data)), data...)
}

func TestMalformedFrames(t *testing.T) {
	long := frame(-1, MsgBndUpd, 12, opt(OptAssignedIPAddress, 192, 0, 2, 1), opt(OptClientIdentifier, make([]byte, 2100)...))
	for _, tc := range []struct {
		name    string
		in      []byte
		max     int
		readErr error  // from ReadFrame, nil = reads a frame
		err     error  // from Decode (FromBytes + Validate), nil = accepted
		msg     string // substring of Decode's (or else ReadFrame's) error
	}{
		{name: "Empty stream", in: nil, readErr: io.EOF, err: ErrShortFrame, msg: "0 bytes, the header alone needs 12"},
		{name: "One byte", in: []byte{0}, readErr: ErrShortFrame, err: ErrShortFrame, msg: "1 bytes, the header alone needs 12"},
		{name: "Header cut short", in: frame(-1, MsgContact, 12)[:7], readErr: ErrShortFrame, err: ErrShortFrame, msg: "7 bytes"},
		{name: "Length below header", in: frame(11, MsgContact, 12), readErr: ErrBadLength, err: ErrBadLength, msg: "length field 11 is below the 12-byte header"},
		{name: "Length zero", in: frame(0, MsgContact, 12), readErr: ErrBadLength, err: ErrBadLength, msg: "length field 0"},
		{name: "Length beyond data", in: frame(13, MsgContact, 12), readErr: ErrShortFrame, err: ErrBadLength, msg: "length field 13 does not match the 12-byte frame"},
		{name: "Length above ReadFrame max", in: frame(-1, MsgState, 12, opt(OptServerState, 2)), max: 16, readErr: ErrFrameTooLong, msg: "length field 17 exceeds the maximum of 16"},
		{name: "Length above 2048", in: long, readErr: ErrFrameTooLong, err: ErrFrameTooLong, msg: "exceeds ISC's maximum of 2048"},
		{name: "Length 65535 with 12 bytes", in: frame(65535, MsgContact, 12), max: 65535, readErr: ErrShortFrame, err: ErrBadLength, msg: "length field 65535 does not match"},
		{name: "Payload offset 8 (draft)", in: frame(-1, MsgConnect, 8, opt(OptMCLT, 0, 0, 0, 30)), readErr: ErrPayloadOffset, err: ErrPayloadOffset, msg: "payload offset 8 is inside the 12-byte header"},
		{name: "Payload offset 0", in: frame(-1, MsgContact, 0), readErr: ErrPayloadOffset, err: ErrPayloadOffset, msg: "payload offset 0"},
		{name: "Payload offset past end", in: frame(-1, MsgContact, 20, []byte{1, 2, 3, 4}), readErr: ErrPayloadOffset, err: ErrPayloadOffset, msg: "payload offset 20 is beyond the end of the 16-byte message"},
		{name: "Option code cut", in: frame(-1, MsgState, 12, []byte{0}), readErr: ErrOptionOverflow, err: ErrOptionOverflow, msg: "option code at offset 12 needs 2 bytes, 1 left"},
		{name: "Option length cut", in: frame(-1, MsgState, 12, []byte{0, 24, 0}), readErr: ErrOptionOverflow, err: ErrOptionOverflow, msg: "length of option 24 (server-state) at offset 12 needs 2 bytes, 1 left"},
		{name: "Option data past end", in: frame(-1, MsgConnect, 12, opt(OptRelationshipName, 'i', 's', 'c')[:6]), readErr: ErrOptionOverflow, err: ErrOptionOverflow, msg: "option 22 (relationship-name) at offset 12 has length 3, 2 bytes left"},
		{name: "Second option past end", in: frame(-1, MsgState, 12, opt(OptServerState, 2), []byte{0, 23, 0, 9, 0}), readErr: ErrOptionOverflow, err: ErrOptionOverflow, msg: "option 23 (server-flags) at offset 17 has length 9, 1 bytes left"},
		{name: "Two bindings in one BNDUPD", in: frame(-1, MsgBndUpd, 12, opt(OptAssignedIPAddress, 192, 0, 2, 198), opt(OptBindingStatus, 1), opt(OptAssignedIPAddress, 192, 0, 2, 197)),
			err: ErrDuplicateOption, msg: "option 2 (assigned-IP-address) repeated in BNDUPD at offset 25"},
		{name: "Repeated relationship-name", in: frame(-1, MsgConnect, 12, opt(OptRelationshipName, 'a'), opt(OptRelationshipName, 'a')),
			err: ErrDuplicateOption, msg: "option 22 (relationship-name) repeated in CONNECT"},
		{name: "One-byte IP-flags", in: frame(-1, MsgBndUpd, 12, opt(OptAssignedIPAddress, 192, 0, 2, 198), opt(OptIPFlags, 0)),
			err: ErrOptionLength, msg: "option 12 (IP-flags) in BNDUPD at offset 20 has length 1, want 2"},
		{name: "Two-byte TLS-request", in: frame(-1, MsgConnect, 12, opt(OptTLSRequest, 0, 0)),
			err: ErrOptionLength, msg: "option 27 (TLS-request) in CONNECT at offset 12 has length 2, want 1"},
		{name: "Two-byte max-unacked", in: frame(-1, MsgConnectAck, 12, opt(OptMaxUnackedBndUpd, 0, 10)),
			err: ErrOptionLength, msg: "has length 2, want 4"},
		{name: "DDNS in BNDUPD", in: frame(-1, MsgBndUpd, 12, opt(OptDDNS, 0, 1, 'a')),
			err: ErrOptionLength, msg: "ISC 4.4 cannot parse DDNS"},
		{name: "Empty DDNS in BNDACK", in: frame(-1, MsgBndAck, 12, opt(OptDDNS)),
			err: ErrOptionLength, msg: "option 9 (DDNS) of length 0"},
		{name: "Type 200 with an option", in: frame(-1, 200, 12, opt(OptMessage, 'h', 'i')),
			err: ErrUnknownType, msg: "type 200 (above 12) with option 16"},
		// Accepted, as by ISC.
		{name: "Type 13 without options", in: frame(-1, 13, 12)},
		{name: "Type 0 with an option", in: frame(-1, 0, 12, opt(OptMessage, 'x'))},
		{name: "Payload offset 16 skips 4 bytes", in: frame(-1, MsgContact, 16, []byte{0xde, 0xad, 0xbe, 0xef})},
		{name: "Repeated option not parsed for the type", in: frame(-1, MsgState, 12, opt(OptMessage, 'a'), opt(OptMessage, 'b'))},
		{name: "Bad-size option not parsed for the type", in: frame(-1, MsgState, 12, opt(OptIPFlags, 0))},
		{name: "HBA of 16 bytes (policy: reject reason 18)", in: frame(-1, MsgConnect, 12, opt(OptHashBucketAssignment, make([]byte, 16)...))},
		{name: "Unknown option repeated", in: frame(-1, MsgBndAck, 12, opt(99, 1), opt(99, 2), opt(OptAssignedIPAddress, 192, 0, 2, 1))},
		{name: "Message digest skipped", in: frame(-1, MsgBndAck, 12, opt(OptMessageDigest, 1), opt(OptMessageDigest, 2))},
		{name: "Empty option", in: frame(-1, MsgConnectAck, 12, opt(OptMessage))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, rerr := ReadFrame(bytes.NewReader(tc.in), tc.max)
			switch {
			case tc.readErr == nil && rerr != nil:
				t.Errorf("ReadFrame: %v, want a frame", rerr)
			case tc.readErr != nil && !errors.Is(rerr, tc.readErr):
				t.Errorf("ReadFrame: %v, want %v", rerr, tc.readErr)
			case rerr == nil && !bytes.Equal(got, tc.in):
				t.Errorf("ReadFrame returned %x, want %x", got, tc.in)
			}
			if errors.Is(rerr, ErrShortFrame) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
				t.Errorf("ReadFrame: %v does not wrap io.ErrUnexpectedEOF", rerr)
			}
			m, err := Decode(tc.in)
			if tc.max != 0 && tc.err == nil { // only ReadFrame's limit applies
				if err != nil {
					t.Errorf("Decode: %v", err)
				}
				if !strings.Contains(rerr.Error(), tc.msg) {
					t.Errorf("ReadFrame error %q does not contain %q", rerr, tc.msg)
				}
				return
			}
			if tc.err == nil {
				if err != nil {
					t.Fatalf("Decode: %v, want success", err)
				}
				if enc, _ := m.ToBytes(); !bytes.Equal(enc, tc.in) {
					t.Errorf("Re-encoded %x, want %x", enc, tc.in)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("Decode: %v, want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Decode error %q does not contain %q", err, tc.msg)
			}
			if m != nil {
				t.Errorf("Decode returned a message with error %v", err)
			}
			if len(tc.in) > 2 && MessageType(tc.in[2]).Known() {
				if _, err := DecodeBody(tc.in); !errors.Is(err, tc.err) {
					t.Errorf("DecodeBody: %v, want %v", err, tc.err)
				}
			}
		})
	}
}

func TestReadFrameStream(t *testing.T) {
	var stream []byte
	c := Contact{}
	c.XID = 7
	stream, _ = c.AppendTo(stream)
	s := State{ServerState: StateNormal, StartTimeOfState: 5}
	stream, _ = s.AppendTo(stream)
	for _, r := range []io.Reader{bytes.NewReader(stream), iotest.OneByteReader(bytes.NewReader(stream)), iotest.HalfReader(bytes.NewReader(stream))} {
		a, err := ReadFrame(r, 0)
		if err != nil || MessageType(a[2]) != MsgContact {
			t.Fatalf("First frame %x, %v", a, err)
		}
		b, err := ReadFrame(r, 0)
		if err != nil || MessageType(b[2]) != MsgState || len(b) != 30 {
			t.Fatalf("Second frame %x, %v", b, err)
		}
		if _, err := ReadFrame(r, 0); err != io.EOF {
			t.Fatalf("After the last frame: %v, want io.EOF", err)
		}
	}
	boom := errors.New("boom")
	if _, err := ReadFrame(iotest.ErrReader(boom), 0); err != boom {
		t.Errorf("Reader error: %v, want it passed through", err)
	}
	if _, err := ReadFrame(io.MultiReader(bytes.NewReader(stream[:5]), iotest.ErrReader(boom)), 0); !errors.Is(err, boom) {
		t.Errorf("Reader error mid-frame: %v, want it passed through", err)
	}
}

type shortWriter struct{ bytes.Buffer }

func (w *shortWriter) Write(p []byte) (int, error) { return w.Buffer.Write(p[:len(p)/2]) }

func TestWriteFrame(t *testing.T) {
	ok := frame(-1, MsgState, 12, opt(OptServerState, 2))
	var buf bytes.Buffer
	if err := WriteFrame(&buf, ok); err != nil || !bytes.Equal(buf.Bytes(), ok) {
		t.Fatalf("WriteFrame wrote %x, %v", buf.Bytes(), err)
	}
	buf.Reset()
	for _, tc := range []struct {
		in  []byte
		err error
	}{
		{frame(13, MsgContact, 12), ErrBadLength},
		{frame(-1, MsgContact, 8), ErrPayloadOffset},
		{frame(-1, MsgState, 12, []byte{0, 24, 0, 5}), ErrOptionOverflow},
		{frame(-1, MsgBndUpd, 12, opt(OptClientIdentifier, make([]byte, 2100)...)), ErrFrameTooLong},
	} {
		if err := WriteFrame(&buf, tc.in); !errors.Is(err, tc.err) {
			t.Errorf("WriteFrame(%x…): %v, want %v", tc.in[:4], err, tc.err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("WriteFrame wrote %d bytes of malformed frames", buf.Len())
	}
	if err := WriteFrame(&shortWriter{}, ok); err != io.ErrShortWrite {
		t.Errorf("Short write: %v, want io.ErrShortWrite", err)
	}
	// ISC's limit is inclusive: a frame of exactly MaxMessageLen bytes
	// goes out, one byte more does not.
	for _, n := range []int{MaxMessageLen, MaxMessageLen + 1} {
		f := frame(-1, MsgBndUpd, 12, opt(OptClientIdentifier, make([]byte, n-12-4)...))
		err := WriteFrame(io.Discard, f)
		if want := n > MaxMessageLen; want != errors.Is(err, ErrFrameTooLong) {
			t.Errorf("WriteFrame of %d bytes: %v", len(f), err)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body Body
		err  error
		msg  string
	}{
		{"Missing address", &BindingUpdate{}, ErrInvalidValue, `option 2 (assigned-IP-address): "invalid IP" is not an IPv4 address`},
		{"IPv6 address", &BindingUpdate{Binding: Binding{Addr: netip.MustParseAddr("2001:db8::1")}}, ErrInvalidValue, "is not an IPv4 address"},
		{"Client-id over 65535 bytes", &BindingUpdate{Binding: Binding{Addr: netip.MustParseAddr("192.0.2.1"), ClientID: make([]byte, 70000)}}, ErrInvalidValue, "option 4 (client-identifier) has 70000 bytes, at most 65535 fit"},
		{"Message over 2048 bytes", &BindingUpdate{Binding: Binding{Addr: netip.MustParseAddr("192.0.2.1"), ClientID: make([]byte, 3000)}}, ErrFrameTooLong, "message of 3053 bytes exceeds ISC's maximum of 2048"},
		{"Long text", &Disconnect{Message: strings.Repeat("x", 70000)}, ErrInvalidValue, "option 16 (message) has 70000 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := []byte("keep")
			out, err := tc.body.AppendTo(buf)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("AppendTo: %v, want %v containing %q", err, tc.err, tc.msg)
			}
			if string(out) != "keep" {
				t.Errorf("AppendTo changed the buffer to %q on error", out)
			}
		})
	}
	m := Message{Type: MsgContact, Pad: make([]byte, 250)}
	if _, err := m.ToBytes(); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("Padding past offset 255: %v, want ErrInvalidValue", err)
	}
	if err := m.Validate(); !errors.Is(err, ErrPayloadOffset) {
		t.Errorf("Validate with padding past offset 255: %v, want ErrPayloadOffset", err)
	}
	m = Message{Type: MsgBndUpd, Options: []Option{{OptClientIdentifier, make([]byte, 70000)}}}
	if _, err := m.ToBytes(); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("Option over 65535 bytes: %v, want ErrInvalidValue", err)
	}
}

func TestWrongType(t *testing.T) {
	s := State{ServerState: StateNormal}
	b, _ := s.AppendTo(nil)
	var u BindingUpdate
	if err := u.FromBytes(b); !errors.Is(err, ErrWrongType) || !strings.Contains(err.Error(), "got STATE, want BNDUPD") {
		t.Errorf("BindingUpdate.FromBytes(STATE): %v, want ErrWrongType", err)
	}
	m, _ := Decode(b)
	var c Connect
	if err := c.FromMessage(m); !errors.Is(err, ErrWrongType) {
		t.Errorf("Connect.FromMessage(STATE): %v, want ErrWrongType", err)
	}
	if _, err := DecodeBody(frame(-1, 13, 12)); !errors.Is(err, ErrUnknownType) {
		t.Errorf("DecodeBody(type 13): %v, want ErrUnknownType", err)
	}
	if _, err := DecodeBody([]byte{0, 12}); !errors.Is(err, ErrShortFrame) {
		t.Errorf("DecodeBody(2 bytes): %v, want ErrShortFrame", err)
	}
}
