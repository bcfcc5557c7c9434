package leasesync

import "testing"

// LineName reads a leasesync line's relationship name as setup does, and
// still names a line setup would refuse once its name= word was read.
func TestLineName(t *testing.T) {
	if name, err := LineName([]string{"name=lan1", "role=secondary", "address=192.0.2.2", "peer=192.0.2.1"}); err != nil || name != "lan1" {
		t.Errorf("LineName = %q, %v; want lan1", name, err)
	}
	if name, err := LineName([]string{"name=lan1", "role=primary", "address=192.0.2.1", "peer=192.0.2.2"}); err == nil || name != "lan1" {
		t.Errorf("LineName of a primary without mclt= = %q, %v; want lan1 and an error", name, err)
	}
}
