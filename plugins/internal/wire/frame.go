package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ReadFrame reads one message from a failover byte stream and returns it
// whole, length field included, in a newly allocated slice.
//
// max bounds the length field (and so the allocation): values <= 0 mean
// MaxMessageLen, which is also ISC's limit. The length field is checked
// against 12 and max before anything is allocated.
//
// A stream that ends cleanly before a frame returns io.EOF. A stream that
// ends inside a frame returns an error wrapping both ErrShortFrame and
// io.ErrUnexpectedEOF. A length field below 12 (ErrBadLength) or above max
// (ErrFrameTooLong) leaves the stream out of sync. If the frame itself is
// malformed (ErrPayloadOffset, ErrOptionOverflow) the whole frame has been
// consumed and is returned together with the error. Every error means ISC
// would drop the connection.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	if max <= 0 {
		max = MaxMessageLen
	}
	hdr := make([]byte, 2)
	if k, err := io.ReadFull(r, hdr); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: stream ended after %d of the 2 length bytes: %w", ErrShortFrame, k, io.ErrUnexpectedEOF)
		}
		return nil, err // io.EOF or the reader's own error
	}
	n := int(binary.BigEndian.Uint16(hdr))
	if n < HeaderLen {
		return nil, fmt.Errorf("%w: length field %d is below the %d-byte header", ErrBadLength, n, HeaderLen)
	}
	if n > max {
		return nil, fmt.Errorf("%w: length field %d exceeds the maximum of %d", ErrFrameTooLong, n, max)
	}
	frame := make([]byte, n)
	copy(frame, hdr)
	if k, err := io.ReadFull(r, frame[2:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: stream ended after %d of %d bytes: %w", ErrShortFrame, 2+k, n, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	if err := CheckFrame(frame); err != nil {
		return frame, err
	}
	return frame, nil
}

// CheckFrame checks the framing of one whole frame without allocating: the
// length field equals len(frame), the payload offset lies in 12…length, and
// every option lies inside the frame. It does not apply ISC's rules on
// option contents (see Validate).
func CheckFrame(frame []byte) error {
	payoff, err := checkHeader(frame)
	if err != nil {
		return err
	}
	for off := payoff; off < len(frame); {
		if _, _, off, err = nextOption(frame, off); err != nil {
			return err
		}
	}
	return nil
}

// WriteFrame writes one complete frame (as produced by AppendTo or ToBytes)
// to w in a single Write call, after checking it with CheckFrame and against
// MaxMessageLen, so that a malformed frame never reaches the peer.
func WriteFrame(w io.Writer, frame []byte) error {
	if err := CheckFrame(frame); err != nil {
		return err
	}
	if len(frame) > MaxMessageLen {
		return fmt.Errorf("%w: frame of %d bytes exceeds ISC's maximum of %d", ErrFrameTooLong, len(frame), MaxMessageLen)
	}
	n, err := w.Write(frame)
	if err == nil && n != len(frame) {
		err = io.ErrShortWrite
	}
	return err
}
