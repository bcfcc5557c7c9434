// Package wire encodes and decodes DHCPv4 failover messages exactly as ISC
// dhcpd 4.4 puts them on the wire (draft-ietf-dhc-failover-12 as implemented
// by ISC; the project's protocol reference is docs/protocol.md).
//
// The package is a codec only: it holds no state, does no I/O beyond the
// io.Reader/io.Writer handed to ReadFrame and WriteFrame, never reads a clock
// and imports neither net, os, time nor any logging package. Policy (which
// reply to send, when to drop the link) belongs to the caller.
//
// # Frame layout
//
// The failover link is a TCP stream of self-delimiting messages. Several
// messages are routinely packed into one TCP segment, so a receiver must
// split the stream by the length field only:
//
//	offset size field
//	0      2    message length, big-endian, of the whole message including
//	            these two bytes: 12 … 2048 (ISC drops the link otherwise)
//	2      1    message type (MessageType)
//	3      1    payload offset: offset of the first option from the start
//	            of the message, always 12 from ISC
//	4      4    time: the sender's clock, UNIX seconds, big-endian
//	8      4    transaction id (xid), big-endian
//	12     …    bytes 12 … payload offset-1 (normally none), then options
//
// Each option is a 2-byte code, a 2-byte length and length bytes of data,
// all big-endian. Times are absolute UNIX seconds as uint32, 0 meaning
// "never".
//
// # Deviations from the draft that this codec follows
//
//   - The payload offset is 12, not the 8 printed in the draft; an offset
//     below 12 makes ISC drop the link, so it is an error here too (bytes
//     between 12 and a larger offset are skipped by ISC and kept verbatim in
//     Message.Pad).
//   - RECOVER-WAIT travels as server-state 254 (StateRecoverWait).
//   - IP-flags is 2 bytes; TLS-request and TLS-reply are 1 byte.
//   - A known option that ISC parses for the message type may appear only
//     once (ISC drops the link on a repeat), so a BNDUPD or BNDACK carries
//     exactly one binding: no batching.
//   - ISC cannot parse a DDNS option in a BNDUPD or BNDACK at all: its option
//     table gives DDNS a fixed element count of one element of size zero, so
//     any DDNS option there drops the link. Validate reports it.
//   - Options that ISC does not parse for a message type are skipped without
//     any check (length, repetition), as are unknown option codes (> 29).
//   - A message type above 12 is a protocol error only when it carries
//     options; without options ISC ignores the message.
//   - In the hash bucket assignment a set bit means the primary serves the
//     bucket (the draft says the secondary); see package lbhash.
//
// # Two layers
//
// Message is the lossless layer: FromBytes checks only the framing (length,
// payload offset, option boundaries) and keeps every option, known or not,
// repeated or not, in wire order, plus any bytes between the header and the
// payload offset, so that ToBytes reproduces the input byte for byte.
// Validate applies ISC's receive rules on top; Decode does both and is what a
// session should call on a received frame.
//
// The typed layer has one struct per message type (BindingUpdate, Connect,
// State, …, all implementing Body). Their FromBytes/FromMessage validate and
// extract the options ISC parses for that type; AppendTo writes the options
// in ISC's transmit order, so a message ISC sent re-encodes byte for byte.
// AppendTo appends to a caller-owned buffer and does not allocate when the
// buffer is large enough, which lets a session encode a BNDUPD cheaply.
//
// Decoded byte slices (option data, ClientID, HWAddr, HBA, …) alias the
// input buffer; copy them if the buffer is reused. The package has no
// global mutable state: its functions are safe for concurrent use, the
// values they return are not synchronized.
//
// # Errors
//
// Every error wraps one of the ErrXxx sentinels (test with errors.Is) and
// names the field, offset and numbers involved. Length fields are checked
// before they are used, so no input can cause an allocation larger than
// the frame itself (ReadFrame allocates at most max bytes per frame).
package wire
