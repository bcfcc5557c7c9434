package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"testing"
	"testing/iotest"
)

// fuzzSeeds returns one captured frame per distinct (type, option codes)
// shape, and the first bytes of every captured stream direction.
func fuzzSeeds(f *testing.F) (frames, streams [][]byte) {
	f.Helper()
	seen := map[string]bool{}
	for _, gc := range goldenCaptures {
		cf, _, err := failoverFrames(filepath.Join("testdata", "captures", gc.name+".pcap"))
		if err != nil {
			f.Fatal(err)
		}
		byStream := map[string][]byte{}
		for _, c := range cf {
			if s := byStream[c.tag()]; len(s) < 256 {
				byStream[c.tag()] = append(s, c.frame...)
			}
			shape := fmt.Sprint(c.frame[2], c.frame[3])
			var m Message
			if m.FromBytes(c.frame) == nil {
				for _, o := range m.Options {
					shape += fmt.Sprint(" ", o.Code, len(o.Data))
				}
			}
			if !seen[shape] {
				seen[shape] = true
				frames = append(frames, c.frame)
			}
		}
		for _, s := range byStream {
			streams = append(streams, s)
		}
	}
	return frames, streams
}

// FuzzDecode checks that no input panics the decoders, that the lossless
// layer reproduces its input byte for byte (so decode(encode(decode(x))) ==
// decode(x)), and that the typed layer is stable: decoding its own encoding
// gives the same value back.
func FuzzDecode(f *testing.F) {
	frames, _ := fuzzSeeds(f)
	for _, fr := range frames {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		err := m.FromBytes(data)
		if cerr := CheckFrame(data); fmt.Sprint(cerr) != fmt.Sprint(err) {
			t.Fatalf("CheckFrame says %v, FromBytes %v", cerr, err)
		}
		if err != nil {
			if _, derr := DecodeBody(data); derr == nil {
				t.Fatalf("DecodeBody accepts a frame FromBytes rejects (%v)", err)
			}
			return
		}
		enc, err := m.ToBytes()
		if err != nil {
			t.Fatalf("ToBytes of a decoded message: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("Re-encoded %x, input %x", enc, data)
		}
		var m2 Message
		if err := m2.FromBytes(enc); err != nil || !reflect.DeepEqual(&m, &m2) {
			t.Fatalf("Decode(encode(decode(x))) = %+v (%v), decode(x) = %+v", m2, err, m)
		}

		verr := m.Validate()
		body, berr := DecodeBody(data)
		switch {
		case verr != nil:
			if berr == nil {
				t.Fatalf("DecodeBody accepts a message Validate rejects (%v)", verr)
			}
			return
		case !m.Type.Known():
			if !errors.Is(berr, ErrUnknownType) {
				t.Fatalf("DecodeBody of type %d: %v, want ErrUnknownType", m.Type, berr)
			}
			return
		case berr != nil:
			t.Fatalf("DecodeBody: %v, Validate accepted", berr)
		}
		body2, err := m.Body()
		if err != nil || !reflect.DeepEqual(body, body2) {
			t.Fatalf("Message.Body = %+v (%v), DecodeBody = %+v", body2, err, body)
		}

		typed, err := body.AppendTo(nil)
		if err != nil {
			// Options ISC always sends may have been added.
			if errors.Is(err, ErrFrameTooLong) || errors.Is(err, ErrInvalidValue) {
				return
			}
			t.Fatalf("Typed AppendTo: %v", err)
		}
		again, err := DecodeBody(typed)
		if err != nil {
			t.Fatalf("Typed encoding %x does not decode: %v", typed, err)
		}
		again.Head().Present = body.Head().Present
		if !reflect.DeepEqual(body, again) {
			t.Fatalf("Typed round trip changed\n%+v\ninto\n%+v", body, again)
		}
		typed2, err := again.AppendTo(nil)
		if err != nil || !bytes.Equal(typed, typed2) {
			t.Fatalf("Typed encoding is not stable: %x then %x (%v)", typed, typed2, err)
		}
	})
}

// FuzzReadFrame feeds arbitrary streams, in arbitrary read sizes, to
// ReadFrame: no panic, every frame within bounds and consistent with
// CheckFrame, and the frames read are exactly the start of the stream.
func FuzzReadFrame(f *testing.F) {
	frames, streams := fuzzSeeds(f)
	for _, s := range streams {
		f.Add(s, uint16(MaxMessageLen), uint8(0))
	}
	for _, fr := range frames {
		f.Add(fr, uint16(len(fr)), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, max uint16, mode uint8) {
		var r io.Reader = bytes.NewReader(data)
		switch mode % 3 {
		case 1:
			r = iotest.OneByteReader(r)
		case 2:
			r = iotest.DataErrReader(r)
		}
		limit := int(max)
		if limit <= 0 {
			limit = MaxMessageLen
		}
		var read []byte
		for {
			frame, err := ReadFrame(r, int(max))
			if frame != nil {
				if len(frame) < HeaderLen || len(frame) > limit {
					t.Fatalf("Frame of %d bytes with max %d", len(frame), limit)
				}
				if cerr := CheckFrame(frame); fmt.Sprint(cerr) != fmt.Sprint(err) {
					t.Fatalf("ReadFrame says %v, CheckFrame %v", err, cerr)
				}
				read = append(read, frame...)
			}
			if err != nil {
				if frame == nil && !errors.Is(err, io.EOF) && !errors.Is(err, ErrShortFrame) &&
					!errors.Is(err, ErrBadLength) && !errors.Is(err, ErrFrameTooLong) {
					t.Fatalf("Unexpected error %v", err)
				}
				if errors.Is(err, io.EOF) && len(read) != len(data) {
					t.Fatalf("Got io.EOF after %d of %d bytes", len(read), len(data))
				}
				if frame == nil {
					break
				}
			}
		}
		if !bytes.HasPrefix(data, read) {
			t.Fatalf("Frames read are not the start of the stream")
		}
	})
}
