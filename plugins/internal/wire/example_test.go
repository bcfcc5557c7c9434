package wire_test

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// A session encodes with AppendTo into a reused buffer, reads with
// ReadFrame and dispatches on the typed body.
func Example() {
	var conn bytes.Buffer // stands in for the TCP connection
	buf := make([]byte, 0, 256)

	u := wire.BindingUpdate{
		Header: wire.Header{Time: 1795554731, XID: 164},
		Binding: wire.Binding{
			Addr:             netip.MustParseAddr("192.0.2.150"),
			Status:           wire.StatusActive,
			ClientID:         []byte{1, 2, 0, 0, 0, 0, 1},
			HWAddr:           []byte{1, 2, 0, 0, 0, 0, 1},
			LeaseExpiry:      1795554761,
			PotentialExpiry:  1795555346,
			StartTimeOfState: 1795554731,
			CLTT:             1795554731,
		},
	}
	buf, err := u.AppendTo(buf[:0])
	if err != nil {
		panic(err)
	}
	if err := wire.WriteFrame(&conn, buf); err != nil {
		panic(err)
	}

	frame, err := wire.ReadFrame(&conn, wire.MaxMessageLen)
	if err != nil {
		panic(err) // a session drops the link here
	}
	body, err := wire.DecodeBody(frame)
	if err != nil {
		panic(err)
	}
	switch m := body.(type) {
	case *wire.BindingUpdate:
		ack := wire.BindingAck{Header: wire.Header{Time: 1795554732, XID: m.XID}, Binding: wire.Binding{Addr: m.Addr}}
		out, _ := ack.AppendTo(nil)
		fmt.Printf("%v %v %v xid=%d, %d bytes; ack %d bytes\n", body.Type(), m.Addr, m.Status, m.XID, len(frame), len(out))
	}
	// Output: BNDUPD 192.0.2.150 ACTIVE xid=164, 79 bytes; ack 20 bytes
}
