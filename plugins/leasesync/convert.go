package leasesync

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// bindingToWire is the BNDUPD body ISC sends for a binding (docs/protocol.md
// §6.7): expiry and potential expiry always (0 for never), the lease start
// as start-time-of-state, cltt when known. It fails for a binding whose
// state is none of lease's (the store loads no such binding).
func bindingToWire(b *lease.Binding) (wire.Binding, error) {
	st, err := bindingStatuses.toWire(b.State)
	if err != nil {
		return wire.Binding{}, fmt.Errorf("%s: %w", b.IP, err)
	}
	return wire.Binding{
		Addr:             b.IP.Addr(),
		Status:           st,
		ClientID:         b.ClientID,
		HWAddr:           b.HWAddr,
		LeaseExpiry:      uint32(b.End),
		PotentialExpiry:  uint32(b.SentExpiry),
		StartTimeOfState: uint32(b.Start),
		CLTT:             uint32(b.CLTT),
	}, nil
}

// maxHWAddr is the longest client-hardware-address ISC accepts (htype
// byte and up to 20 bytes).
const maxHWAddr = 21

// bindingFromWire reads a peer's BNDUPD. The peer's potential expiry
// becomes our PeerExpiry (ISC: tsfp): the bound the peer has promised not
// to exceed. Times are brought into our clock by subtracting c (the
// peer's clock minus ours, skew.go): the expiries by c.expiry, which never
// makes them earlier than they are, the others by c.order; 0 stays
// "never". It copies the byte slices out of the frame.
func bindingFromWire(w *wire.Binding, c timeCorrection) (lease.Binding, error) {
	local := func(t uint32, skew int64) int64 {
		if t == 0 {
			return 0
		}
		return int64(t) - skew
	}
	ip, ok := lease.IPFromAddr(w.Addr)
	if !ok {
		return lease.Binding{}, errors.New("binding update lacks required options (assigned-IP-address)")
	}
	st, err := bindingStatuses.fromWire(w.Status)
	if err != nil {
		return lease.Binding{}, fmt.Errorf("binding update lacks required options (%w)", err)
	}
	if len(w.HWAddr) > maxHWAddr {
		return lease.Binding{}, fmt.Errorf("chaddr too long (%d bytes)", len(w.HWAddr))
	}
	return lease.Binding{
		IP:         ip,
		State:      st,
		ClientID:   bytes.Clone(w.ClientID),
		HWAddr:     bytes.Clone(w.HWAddr),
		Start:      local(w.StartTimeOfState, c.order),
		End:        local(w.LeaseExpiry, c.expiry),
		PeerExpiry: local(w.PotentialExpiry, c.expiry),
		// The peer's cltt decides dueling updates; it is not stored.
		CLTT: local(w.CLTT, c.order),
	}, nil
}
