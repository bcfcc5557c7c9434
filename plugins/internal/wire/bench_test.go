package wire

import (
	"net/netip"
	"testing"
)

// A BNDUPD as ISC sends it for a first lease (02-leases, 192.0.2.150).
var benchUpdate = BindingUpdate{
	Header: Header{Time: 1795554731, XID: 164},
	Binding: Binding{
		Addr:             netip.AddrFrom4([4]byte{192, 0, 2, 150}),
		Status:           StatusActive,
		ClientID:         []byte{1, 2, 0, 0, 0, 0, 1},
		HWAddr:           []byte{1, 2, 0, 0, 0, 0, 1},
		LeaseExpiry:      1795554761,
		PotentialExpiry:  1795555346,
		StartTimeOfState: 1795554731,
		CLTT:             1795554731,
	},
}

func TestBindingUpdateAllocations(t *testing.T) {
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf, _ = benchUpdate.AppendTo(buf[:0]) }); n != 0 {
		t.Errorf("AppendTo into a large enough buffer: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = benchUpdate.ToBytes() }); n > 1 {
		t.Errorf("ToBytes: %v allocations, want 1", n)
	}
	frame, _ := benchUpdate.ToBytes()
	if len(frame) != 79 {
		t.Errorf("Encoded length %d, ISC sends 79", len(frame))
	}
	var u BindingUpdate
	if n := testing.AllocsPerRun(100, func() { _ = u.FromBytes(frame) }); n != 0 {
		t.Errorf("BindingUpdate.FromBytes: %v allocations, want 0", n)
	}
}

func BenchmarkBindingUpdateAppendTo(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = benchUpdate.AppendTo(buf[:0])
	}
}

func BenchmarkBindingUpdateToBytes(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = benchUpdate.ToBytes()
	}
}

func BenchmarkBindingUpdateFromBytes(b *testing.B) {
	frame, _ := benchUpdate.ToBytes()
	var u BindingUpdate
	b.ReportAllocs()
	for b.Loop() {
		if err := u.FromBytes(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	frame, _ := benchUpdate.ToBytes()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMessageToBytes(b *testing.B) {
	frame, _ := benchUpdate.ToBytes()
	m, _ := Decode(frame)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = m.ToBytes()
	}
}
