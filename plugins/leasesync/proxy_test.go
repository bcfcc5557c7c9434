package leasesync

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// blackhole is a TCP proxy that can silently stop delivering: while cut,
// bytes are read and thrown away and new connections are held open
// without reaching the target, as a broken network looks to both ends.
type blackhole struct {
	ln     net.Listener
	target string
	cut    atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target}
	t.Cleanup(b.close)
	go b.serve()
	return b
}

func (b *blackhole) port() int { return b.ln.Addr().(*net.TCPAddr).Port }

func (b *blackhole) serve() {
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.track(in)
		if b.cut.Load() {
			go io.Copy(io.Discard, in)
			continue
		}
		out, err := net.Dial("tcp4", b.target)
		if err != nil {
			in.Close()
			continue
		}
		b.track(out)
		go b.pipe(out, in)
		go b.pipe(in, out)
	}
}

// pipe copies src to dst unless the proxy is cut, when it discards.
func (b *blackhole) pipe(dst, src net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if b.cut.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (b *blackhole) track(c net.Conn) {
	b.mu.Lock()
	b.conns = append(b.conns, c)
	b.mu.Unlock()
}

func (b *blackhole) close() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
}
