package leasesync

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// testCA signs certificates made in the test; nothing is committed.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

var serial int64

// sign makes a new key and a certificate for it from tmpl, signed by
// parent (nil: self-signed).
func sign(t *testing.T, tmpl *x509.Certificate, parent *testCA) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	issuer, issuerKey := tmpl, key
	if parent != nil {
		issuer, issuerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	der, key := sign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, nil)
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	writePEM(t, filepath.Join(ca.dir, "ca.pem"), "CERTIFICATE", der)
	return ca
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue makes a certificate for name valid until notAfter and returns
// the paths of its PEM certificate and key, and the pair.
func (ca *testCA) issue(t *testing.T, name string, notAfter time.Time) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	der, key := sign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		DNSNames:    []string{name},
		NotBefore:   time.Now().Add(-48 * time.Hour),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(ca.dir, name+".pem")
	keyFile = filepath.Join(ca.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

// tlsWords are the leasesync arguments of a server holding name's
// certificate that expects a peer named peer.
func (ca *testCA) tlsWords(t *testing.T, name, peer string) string {
	cert, key, _ := ca.issue(t, name, time.Now().Add(24*time.Hour))
	return "tls-cert=" + cert + " tls-key=" + key + " tls-ca=" + filepath.Join(ca.dir, "ca.pem") + " tls-name=" + peer
}

func TestPairOverTLS(t *testing.T) {
	ca := newTestCA(t, "lan1 failover CA")
	p, s := pair(t, ca.tlsWords(t, "primary.lan1", "secondary.lan1"), ca.tlsWords(t, "secondary.lan1", "primary.lan1"))
	p.start()
	s.start()
	waitFor(t, "both servers in NORMAL over TLS", bothNormal(p, s), p, s)
	// Pool balancing over TLS gives the secondary its share.
	waitFor(t, "the secondary to own BACKUP addresses", func() bool {
		own, _ := s.srv.FreeCounts()
		return own >= 40
	}, p, s)
	// Bindings flow over it.
	ip, from := dora(t, 1, true, p, s)
	if from == nil {
		t.Fatal("No server answered the client")
	}
	other := map[*node]*node{p: s, s: p}[from]
	waitFor(t, "the binding to reach the peer", func() bool {
		b, ok := other.srv.Get(mustIP(ip))
		return ok && b.HWAddr != nil
	}, p, s)
}

// tlsTarget is a secondary that requires TLS from a peer named
// primary.lan1 signed by ca.
func tlsTarget(t *testing.T, ca *testCA) *target {
	return startTarget(t, targetOpts{extra: ca.tlsWords(t, "secondary.lan1", "primary.lan1"),
		tweak: func(s *Session) { s.handshakeTimeout = 5 * time.Second }})
}

// tlsDial connects to tg from the peer's address as a TLS client with
// cert, and runs the failover handshake over it; it returns the error
// that ended the connection, nil if CONNECTACK accepted it.
func tlsDial(t *testing.T, tg *target, cert tls.Certificate) error {
	t.Helper()
	raw := dialFrom(t, tg, peerIP)
	// The test peer does not check the target's certificate: the
	// target's checks of the peer are what is tested.
	tc := tls.Client(raw.c, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	p := &rawPeer{t: t, c: tc, r: bufio.NewReader(tc), clk: tg.s.clk}
	cfg := primaryCfg(t)
	p.send(connectMsg(&cfg, time.Now().Unix()))
	frame, err := wire.ReadFrame(p.r, 0)
	if err != nil {
		return err // TLS 1.3: the client learns of a refused certificate here
	}
	body, err := wire.DecodeBody(frame)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := body.(*wire.ConnectAck); !ok || a.RejectReason != 0 {
		t.Fatalf("Answer to CONNECT over TLS: %#v", body)
	}
	return nil
}

func TestTLSRefusesWhatItCannotTrust(t *testing.T) {
	ca := newTestCA(t, "lan1 failover CA")
	other := newTestCA(t, "someone else's CA")
	day := time.Now().Add(24 * time.Hour)
	for _, tc := range []struct {
		name string
		cert func(t *testing.T) tls.Certificate // nil: plaintext
		want string                             // in the target's log
	}{
		{name: "Wrong CA", want: "peer certificate refused: \"primary.lan1\": x509: certificate signed by unknown authority",
			cert: func(t *testing.T) tls.Certificate { _, _, c := other.issue(t, "primary.lan1", day); return c }},
		{name: "Expired certificate", want: "peer certificate refused: \"primary.lan1\": x509: certificate has expired",
			cert: func(t *testing.T) tls.Certificate {
				_, _, c := ca.issue(t, "primary.lan1", time.Now().Add(-time.Hour))
				return c
			}},
		{name: "Wrong name", want: "peer certificate refused: \"mallory.lan1\" is not for tls-name=primary.lan1",
			cert: func(t *testing.T) tls.Certificate { _, _, c := ca.issue(t, "mallory.lan1", day); return c }},
		{name: "Plaintext peer", want: "the peer does not speak TLS, and plaintext is refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := tlsTarget(t, ca)
			logs.Reset()
			if tc.cert == nil {
				p := dialFrom(t, tg, peerIP)
				cfg := primaryCfg(t)
				p.send(connectMsg(&cfg, time.Now().Unix()))
				p.expectClosed()
			} else if err := tlsDial(t, tg, tc.cert(t)); err == nil {
				t.Fatal("The target accepted the peer")
			}
			waitTarget(t, tg, "the refusal to be logged", func() bool { return len(logged("failover handshake refused")) > 0 })
			if e := logged("failover handshake refused")[0]; !strings.Contains(e.Message, tc.want) || e.Level.String() != "warning" {
				t.Fatalf("Logged %s %q, want a warning with %q", e.Level, e.Message, tc.want)
			}
			if tg.s.Relationship().View().Connected {
				t.Fatal("The refused peer became the link")
			}
		})
	}
	t.Run("The right certificate", func(t *testing.T) {
		tg := tlsTarget(t, ca)
		_, _, good := ca.issue(t, "primary.lan1", day)
		if err := tlsDial(t, tg, good); err != nil {
			t.Fatal(err)
		}
		waitTarget(t, tg, "the link to come up", connected(tg))
	})
}

func TestTLSArguments(t *testing.T) {
	ca := newTestCA(t, "lan1 failover CA")
	cert, key, _ := ca.issue(t, "primary.lan1", time.Now().Add(time.Hour))
	caFile := filepath.Join(ca.dir, "ca.pem")
	const base = "name=lan1 role=primary address=192.0.2.1 peer=192.0.2.2 mclt=1h split=128 "
	for _, tc := range []struct {
		name, words, arg, want string
	}{
		{"Certificate without key and CA", "tls-cert=" + cert, `argument "tls-cert=` + cert + `"`, "TLS is half-configured: want tls-key=FILE and tls-ca=FILE too"},
		{"Key and CA without certificate", "tls-key=" + key + " tls-ca=" + caFile, `argument "tls-key=` + key + `"`, "want tls-cert=FILE too"},
		{"Name without TLS", "tls-name=secondary.lan1", `argument "tls-name=secondary.lan1"`, "needs tls-cert=FILE, tls-key=FILE and tls-ca=FILE"},
		{"Key of another certificate", "tls-cert=" + cert + " tls-key=" + filepath.Join(ca.dir, "other.key") + " tls-ca=" + caFile, `argument "tls-cert=`, "cannot load the certificate"},
		{"CA file without certificates", "tls-cert=" + cert + " tls-key=" + key + " tls-ca=" + key, `argument "tls-ca=` + key + `"`, "no certificate found (want a PEM file of CA certificates)"},
		{"CA file missing", "tls-cert=" + cert + " tls-key=" + key + " tls-ca=/nonexistent/ca.pem", `argument "tls-ca=/nonexistent/ca.pem"`, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := setup4(strings.Fields(base + tc.words)...)
			if err == nil || !strings.HasPrefix(err.Error(), "plugins/leasesync: ") || !strings.Contains(err.Error(), tc.arg) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Error %v, want the plugin, %s and %q", err, tc.arg, tc.want)
			}
		})
	}
	cfg, err := parse(strings.Fields(base + "tls-cert=" + cert + " tls-key=" + key + " tls-ca=" + caFile))
	if err != nil || cfg.tls == nil || cfg.tls.name != "" {
		t.Fatalf("A complete TLS configuration: %v, %+v", err, cfg.tls)
	}
	if c := cfg.tls.config(false); c.MinVersion != tls.VersionTLS13 || c.MaxVersion != tls.VersionTLS13 || c.ClientAuth != tls.RequireAnyClientCert {
		t.Fatalf("TLS config %+v: want TLS 1.3 only, a client certificate required", c)
	}
}
