package wire

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (errors.Is), with a message naming the field and the numbers involved.
// Any of them received from a peer means ISC would drop the connection.
var (
	// ErrShortFrame: fewer bytes than the header or the length field needs
	// (a stream that ends inside a frame also wraps io.ErrUnexpectedEOF).
	ErrShortFrame = errors.New("wire: short frame")
	// ErrFrameTooLong: the length field exceeds the allowed maximum
	// (MaxMessageLen, or the max passed to ReadFrame).
	ErrFrameTooLong = errors.New("wire: frame too long")
	// ErrBadLength: the length field is below the 12-byte header or does not
	// match the number of bytes in the frame.
	ErrBadLength = errors.New("wire: inconsistent length field")
	// ErrPayloadOffset: the payload offset is below 12 or beyond the end of
	// the frame.
	ErrPayloadOffset = errors.New("wire: bad payload offset")
	// ErrOptionOverflow: an option's code, length or data runs past the end
	// of the frame.
	ErrOptionOverflow = errors.New("wire: option overflows frame")
	// ErrUnknownType: a message type above 12 that carries options.
	ErrUnknownType = errors.New("wire: invalid message type")
	// ErrDuplicateOption: an option ISC parses for the message type appears
	// more than once (this is what forbids batching bindings).
	ErrDuplicateOption = errors.New("wire: duplicate option")
	// ErrOptionLength: a fixed-size option ISC parses for the message type
	// has the wrong length, or is an option ISC cannot parse (DDNS).
	ErrOptionLength = errors.New("wire: bad option length")
	// ErrWrongType: a typed decoder was given a message of another type.
	ErrWrongType = errors.New("wire: wrong message type")
	// ErrInvalidValue: a value cannot be encoded (e.g. a non-IPv4 address,
	// an option longer than 65535 bytes).
	ErrInvalidValue = errors.New("wire: invalid value")
)
