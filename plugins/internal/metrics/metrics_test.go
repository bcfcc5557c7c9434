package metrics

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"127.0.0.1:9647", true},
		{"[::1]:9647", true},
		{"0.0.0.0:9647", true},
		{"127.0.0.1", false},
		{"127.0.0.1:0", false},
		{"localhost:9647", false},
		{":9647", false},
	} {
		_, err := ParseAddr(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseAddr(%q) error %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

// One listener per process: the same address again shares it, another
// address is refused; /metrics serves the process registry.
func TestOneListenerPerProcess(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	if err := Serve(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close() })
	if err := Serve(addr); err != nil {
		t.Fatalf("Serving the same address again: %v", err)
	}
	other := netip.AddrPortFrom(addr.Addr(), addr.Port()+1)
	if err := Serve(other); err == nil || !strings.Contains(err.Error(), "one metrics listener per process") {
		t.Fatalf("Serving a second address: %v", err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("GET /metrics: %s\n%.300s", resp.Status, body)
	}
}
