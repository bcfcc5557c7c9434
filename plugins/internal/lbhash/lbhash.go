// Package lbhash implements DHCP failover load balancing (RFC 3074) exactly
// as ISC dhcpd 4.4 applies it (server/failover.c load_balance_mine and
// peer_wants_lease), so that a CoreDHCP peer and an ISC peer split the
// clients without overlap or gap.
//
// A client is hashed to a bucket 0…255 by the RFC 3074 Pearson hash of its
// key (Bucket): the data of DHCP option 61 (client identifier) if the
// client sent one, otherwise the first hlen bytes of chaddr (PacketKey).
// The 32-byte hash bucket assignment (HBA), sent by the primary in CONNECT,
// has one bit per bucket: bucket b is bit b%8, counted from the
// least-significant bit, of byte b/8. In ISC a set bit means the PRIMARY
// serves the bucket (the draft says the secondary); `split N` sets buckets
// 0…N-1 (FromSplit).
//
// Only DHCPDISCOVER and dynamic BOOTREQUEST are load balanced, only in the
// NORMAL state, and only when `load balance max seconds` is configured:
// SecsOverride tells when the secs field makes a server answer regardless
// of the hash. The package has no state and imports only fmt.
package lbhash

import "fmt"

// mix is the RFC 3074 section 6 mixing table, a permutation of 0…255.
var mix = [256]uint8{
	251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232,
	31, 32, 55, 60, 152, 58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223,
	59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65,
	180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16,
	40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67,
	207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5,
	20, 113, 71, 35, 128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245,
	230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241, 73, 88, 105,
	39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84,
	82, 163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239,
	195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253,
	137, 185, 99, 164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238,
	56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171, 72, 50,
	33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213,
	96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4,
	216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151,
}

// Bucket returns the RFC 3074 hash bucket of key: a Pearson hash seeded
// with the key length (mod 256) over the key bytes from the last to the
// first, h = mix[h ^ key[i]].
func Bucket(key []byte) uint8 {
	h := uint8(len(key))
	for i := len(key) - 1; i >= 0; i-- {
		h = mix[h^key[i]]
	}
	return h
}

// PacketKey returns the bytes ISC hashes for a DHCP request: the complete
// data of option 61 if the client sent it (clientID non-nil, even if
// empty), otherwise chaddr, which must be the first hlen bytes of the
// packet's chaddr field, without the htype byte (ISC discards packets with
// hlen > 16).
func PacketKey(clientID, chaddr []byte) []byte {
	if clientID != nil {
		return clientID
	}
	return chaddr
}

// LeaseKey returns the bytes ISC hashes for a stored binding when it decides
// lease affinity (peer_wants_lease): the client identifier if non-empty,
// otherwise the failover hardware address (htype byte + address, as in the
// client-hardware-address option) without its htype byte. ok is false when
// neither is usable (no client-id and a hardware address of at most one
// byte); ISC then leaves the lease where it is.
func LeaseKey(clientID, hwAddr []byte) (key []byte, ok bool) {
	switch {
	case len(clientID) > 0:
		return clientID, true
	case len(hwAddr) > 1:
		return hwAddr[1:], true
	}
	return nil, false
}

// HBA is a hash bucket assignment: bit b%8 (least-significant first) of
// byte b/8 is set when the primary serves bucket b.
type HBA [32]byte

// FromSplit returns the HBA ISC builds from `split N`: buckets 0…N-1 are
// served by the primary. N must be 0…256, as in ISC's configuration parser.
func FromSplit(n int) (HBA, error) {
	var h HBA
	if n < 0 || n > 256 {
		return h, fmt.Errorf("lbhash: split %d: must be between 0 and 256, inclusive", n)
	}
	for b := 0; b < n; b++ {
		h[b/8] |= 1 << (b % 8)
	}
	return h, nil
}

// FromBytes returns the HBA carried by a CONNECT's hash-bucket-assignment
// option, which must be exactly 32 bytes (an ISC secondary refuses anything
// else with reject reason 18).
func FromBytes(b []byte) (HBA, error) {
	var h HBA
	if len(b) != len(h) {
		return h, fmt.Errorf("lbhash: hash bucket assignment of %d bytes, want %d", len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// PrimaryServes reports whether the primary serves the bucket.
func (h *HBA) PrimaryServes(bucket uint8) bool {
	return h[bucket>>3]&(1<<(bucket&7)) != 0
}

// Serves reports whether the server in the given role serves the bucket.
func (h *HBA) Serves(bucket uint8, primary bool) bool {
	return h.PrimaryServes(bucket) == primary
}

// SecsOverride reports whether ISC answers a load-balanced request
// regardless of the hash bucket, given the packet's secs field and the
// server's own `load balance max seconds` (maxSecs; it is not exchanged
// between peers): when maxSecs is 0 (the default, meaning no load
// balancing) or secs is strictly greater than maxSecs. With
// checkSecsByteOrder (ISC's `check-secs-byte-order`), a secs value of the
// form 0xNN00 is taken to be byte-swapped first.
func SecsOverride(secs, maxSecs uint16, checkSecsByteOrder bool) bool {
	if checkSecsByteOrder && secs > 255 && secs&0xff == 0 {
		secs = secs>>8 | secs<<8
	}
	return maxSecs == 0 || secs > maxSecs
}
