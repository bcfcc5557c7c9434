package failover

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

// LineInfo tells the chain check a line's name, subnet and pools as setup
// reads them, and the name even when the line is refused.
func TestLineInfo(t *testing.T) {
	noAddrs := func() ([]net.Addr, error) { return nil, nil }
	name, subnets, pools, err := LineInfo([]string{"name=lan1", "db=x.db", "subnet=192.0.2.0/24", "pool=192.0.2.10-192.0.2.20", "pool=192.0.2.30-192.0.2.40"}, noAddrs)
	want := []Pool{{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.20")}, {netip.MustParseAddr("192.0.2.30"), netip.MustParseAddr("192.0.2.40")}}
	if err != nil || name != "lan1" || !slices.Equal(subnets, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}) || !slices.Equal(pools, want) {
		t.Fatalf("LineInfo = %q %v %v %v", name, subnets, pools, err)
	}
	// No interface holds the pool and no subnet= is given: refused, named.
	name, subnets, pools, err = LineInfo([]string{"name=lan1", "db=x.db", "pool=192.0.2.10-192.0.2.20"}, noAddrs)
	if err == nil || name != "lan1" || subnets != nil || pools != nil {
		t.Fatalf("LineInfo of a line setup refuses = %q %v %v %v", name, subnets, pools, err)
	}
	if !want[0].Overlaps(Pool{want[0].Last, want[1].First}) || want[0].Overlaps(want[1]) {
		t.Errorf("Overlaps is wrong for %v, %v", want[0], want[1])
	}
}
