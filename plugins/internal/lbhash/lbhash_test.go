package lbhash

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"go/build"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMixTable compares the table with the RFC 3074 table as transcribed in
// the project's reference tool (testdata/lbhash.py) and checks that it is a
// permutation, as the RFC requires.
func TestMixTable(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "lbhash.py"))
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(src, []byte("MIX = ["))
	end := bytes.Index(src[start:], []byte("]"))
	if start < 0 || end < 0 {
		t.Fatal("Found no MIX table in testdata/lbhash.py")
	}
	var want []uint8
	for _, f := range strings.FieldsFunc(string(src[start+7:start+end]), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("Bad table entry %q", f)
		}
		want = append(want, uint8(n))
	}
	if !bytes.Equal(mix[:], want) {
		t.Errorf("Mixing table differs from the RFC's")
	}
	var seen [256]bool
	for _, v := range mix {
		seen[v] = true
	}
	for i, ok := range seen {
		if !ok {
			t.Errorf("Value %d missing: the table is not a permutation", i)
		}
	}
}

// TestBucketKnownValues uses the vectors of docs/protocol.md §17, confirmed
// against ISC.
func TestBucketKnownValues(t *testing.T) {
	split128, _ := FromSplit(128)
	for _, tc := range []struct {
		key     string
		bucket  uint8
		primary bool
	}{
		{"020000000001", 133, false},   // chaddr
		{"01020000000001", 14, true},   // client-id 01 + MAC
		{"0200000000aa", 241, false},   // chaddr
		{"01020000000000", 192, false}, // client-id
		{"0102334e453fd4", 13, true},   // client-id
		{"", 0, true},                  // empty key: seed 0, no rounds
	} {
		b := Bucket(unhex(t, tc.key))
		if b != tc.bucket {
			t.Errorf("Bucket(%s) = %d, want %d", tc.key, b, tc.bucket)
		}
		if got := split128.PrimaryServes(b); got != tc.primary {
			t.Errorf("Split 128, bucket %d: primary serves = %v, want %v", b, got, tc.primary)
		}
	}
}

// TestLBCheckLogs replays the end-to-end checks against ISC recorded in
// testdata/lbcheck-*.log: for each DHCPDISCOVER the bucket, the server that
// should answer, the server chaddr alone would pick, and the server that
// really answered.
func TestLBCheckLogs(t *testing.T) {
	lineRE := regexp.MustCompile(`^OK\s+chaddr=(\S+) cid=(\S+)\s+bucket=\s*(\d+) predicted=(\w+)\s+\(chaddr-only would say (\w+)\s*\) answered=(\w+)$`)
	for _, name := range []string{"lbcheck-split128.log", "lbcheck-hba-aa.log"} {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var hba HBA
			n := 0
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line := sc.Text()
				if s, ok := strings.CutPrefix(line, "HBA under test: "); ok {
					if hba, err = FromBytes(unhex(t, s)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if strings.HasPrefix(line, "summary:") {
					continue
				}
				m := lineRE.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("Unparsed line %q", line)
				}
				chaddr := unhex(t, m[1])
				var cid []byte
				if m[2] != "-" {
					cid = unhex(t, m[2])
				}
				bucket := Bucket(PacketKey(cid, chaddr))
				if strconv.Itoa(int(bucket)) != m[3] {
					t.Errorf("%s: bucket %d, log says %s", m[1], bucket, m[3])
				}
				role := func(b uint8) string {
					if hba.PrimaryServes(b) {
						return "primary"
					}
					return "secondary"
				}
				if got := role(bucket); got != m[4] || got != m[6] {
					t.Errorf("%s cid %s: predicted %s, log predicted %s and %s answered", m[1], m[2], got, m[4], m[6])
				}
				if got := role(Bucket(chaddr)); got != m[5] {
					t.Errorf("%s: chaddr alone gives %s, log says %s", m[1], got, m[5])
				}
				if !hba.Serves(bucket, m[6] == "primary") || hba.Serves(bucket, m[6] != "primary") {
					t.Errorf("%s: Serves disagrees with the answering server %s", m[1], m[6])
				}
				n++
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if n != 24 {
				t.Errorf("Checked %d DISCOVERs, the log has 24", n)
			}
		})
	}
}

func TestFromSplit(t *testing.T) {
	for _, tc := range []struct {
		split int
		want  string
	}{
		{0, strings.Repeat("00", 32)},
		{1, "01" + strings.Repeat("00", 31)},
		{9, "ff01" + strings.Repeat("00", 30)},
		{128, strings.Repeat("ff", 16) + strings.Repeat("00", 16)}, // as in every CONNECT of the captures
		{256, strings.Repeat("ff", 32)},
	} {
		h, err := FromSplit(tc.split)
		if err != nil || hex.EncodeToString(h[:]) != tc.want {
			t.Errorf("FromSplit(%d) = %x, %v, want %s", tc.split, h, err, tc.want)
		}
		for b := 0; b < 256; b++ {
			if h.PrimaryServes(uint8(b)) != (b < tc.split) {
				t.Errorf("Split %d: bucket %d served by the wrong server", tc.split, b)
			}
		}
	}
	for _, n := range []int{-1, 257} {
		if _, err := FromSplit(n); err == nil || !strings.Contains(err.Error(), "between 0 and 256") {
			t.Errorf("FromSplit(%d): %v, want a range error", n, err)
		}
	}
}

// TestHBABitOrder: with ISC's `hba aa:…` (10-hba-pattern) odd buckets go
// to the primary, i.e. bits count from the least-significant end.
func TestHBABitOrder(t *testing.T) {
	h, err := FromBytes(bytes.Repeat([]byte{0xaa}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 256; b++ {
		if h.PrimaryServes(uint8(b)) != (b%2 == 1) {
			t.Errorf("Bucket %d: primary serves = %v", b, h.PrimaryServes(uint8(b)))
		}
	}
	if _, err := FromBytes(make([]byte, 16)); err == nil {
		t.Error("FromBytes accepted a 16-byte HBA")
	}
}

func TestKeys(t *testing.T) {
	mac := unhex(t, "020000000001")
	if got := PacketKey(nil, mac); !bytes.Equal(got, mac) {
		t.Errorf("PacketKey without option 61 = %x, want chaddr", got)
	}
	cid := unhex(t, "01020000000001")
	if got := PacketKey(cid, mac); !bytes.Equal(got, cid) {
		t.Errorf("PacketKey with option 61 = %x, want it", got)
	}
	if got := PacketKey([]byte{}, mac); got == nil || len(got) != 0 {
		t.Errorf("PacketKey with an empty option 61 = %x, want the empty key", got)
	}
	// A binding's chaddr carries the htype byte; ISC drops it, so the lease
	// hashes like the client's packet.
	if k, ok := LeaseKey(nil, append([]byte{1}, mac...)); !ok || Bucket(k) != Bucket(mac) {
		t.Errorf("LeaseKey(chaddr) = %x, %v, want %x", k, ok, mac)
	}
	if k, ok := LeaseKey(cid, append([]byte{1}, mac...)); !ok || !bytes.Equal(k, cid) {
		t.Errorf("LeaseKey prefers the client-id, got %x, %v", k, ok)
	}
	if k, ok := LeaseKey([]byte{}, []byte{1}); ok {
		t.Errorf("LeaseKey without usable identity = %x, want not ok", k)
	}
}

func TestSecsOverride(t *testing.T) {
	for _, tc := range []struct {
		secs, max uint16
		check     bool
		want      bool
	}{
		{0, 0, false, true},          // no load balance max seconds: both answer
		{10, 3, false, true},         // waited longer than max: both answer (02-leases)
		{3, 3, false, false},         // strictly greater only
		{0, 3, false, false},         // balanced
		{0x0100, 3, false, true},     // 256 s
		{0x0100, 3, true, false},     // byte-swapped 1 s
		{0x0a00, 3, true, true},      // byte-swapped 10 s
		{0x0a01, 0x0a00, true, true}, // not of the form 0xNN00: not swapped
	} {
		if got := SecsOverride(tc.secs, tc.max, tc.check); got != tc.want {
			t.Errorf("SecsOverride(%#x, %d, %v) = %v, want %v", tc.secs, tc.max, tc.check, got, tc.want)
		}
	}
}

// TestImports keeps the package free of I/O, clocks, logging and CoreDHCP.
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		switch {
		case imp == "net/netip":
		case imp == "net", strings.HasPrefix(imp, "net/"), imp == "os", strings.HasPrefix(imp, "os/"), imp == "time",
			strings.Contains(imp, "logrus"), strings.Contains(imp, "coredhcp"):
			t.Errorf("Package lbhash imports %q", imp)
		}
	}
}

func BenchmarkBucket(b *testing.B) {
	key := []byte{1, 2, 0, 0, 0, 0, 1}
	b.ReportAllocs()
	for b.Loop() {
		_ = Bucket(key)
	}
}
