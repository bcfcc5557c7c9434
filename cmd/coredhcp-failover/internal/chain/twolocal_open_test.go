//go:build attackopen

package chain

import "testing"

// Open finding (run with -tags attackopen): two failover lines whose
// subnets both hold an address of this host (hostAddrs: 192.0.2.1/24 and
// 198.51.100.1/24) split nothing between them: a request that no relay
// forwarded names no link, and the first line answers every one
// (plugins/failover/subnet.go, chooseLine), so the clients of the second
// link get the first subnet's addresses and NAKs for their own. The
// check says nothing.
func TestTwoLinesOnLinksOfThisHostAreWarned(t *testing.T) {
	warnings, err := Check(chainOf(serverID,
		"failover: db=/tmp/a.db pool=192.0.2.100-192.0.2.199",
		"failover: db=/tmp/b.db pool=198.51.100.10-198.51.100.99"), hostAddrs)
	if err == nil && len(warnings) == 0 {
		t.Fatal("no warning nor error for two failover lines on two links of this host")
	}
}
