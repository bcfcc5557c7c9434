package leasesync

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// TLS between coredhcp-failover peers is optional and off by default: ISC
// dhcpd speaks failover in plain TCP (its TLS options were never
// implemented), so a mixed pair cannot use it. When tls-cert, tls-key and
// tls-ca are given, every connection to and from the peer is TLS 1.3 with
// mutual authentication before the first failover message: the peer must
// present a certificate that the configured CA signed, that is valid now
// and, when tls-name is given, that carries that name (DNS or IP subject
// alternative name). A peer that speaks plain TCP is refused. The TCP
// direction decides the TLS roles (the dialer is the TLS client); both
// sides check the other's certificate the same way.

// tlsSettings are the loaded TLS arguments.
type tlsSettings struct {
	cert  tls.Certificate
	roots *x509.CertPool
	name  string
}

// loadTLS checks that the TLS arguments come together and loads the
// files, so that a bad file stops the server at startup, not at the first
// connection.
func (cfg *Config) loadTLS(seen map[string]string) error {
	given := 0
	for _, v := range []string{cfg.TLSCert, cfg.TLSKey, cfg.TLSCA} {
		if v != "" {
			given++
		}
	}
	if given == 0 {
		if cfg.TLSName != "" {
			return argError(seen["tls-name"], "needs tls-cert=FILE, tls-key=FILE and tls-ca=FILE: the name is checked in the peer's TLS certificate")
		}
		return nil
	}
	if given < 3 {
		var missing, first []string
		for _, k := range []string{"tls-cert", "tls-key", "tls-ca"} {
			if w := seen[k]; w != "" {
				first = append(first, w)
			} else {
				missing = append(missing, k+"=FILE")
			}
		}
		return argError(first[0], "TLS is half-configured: want %s too (our certificate, its key and the CA that signs the peer's go together)", strings.Join(missing, " and "))
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return argError(seen["tls-cert"], "cannot load the certificate with %q: %v (want PEM files of a certificate and its private key)", seen["tls-key"], err)
	}
	pem, err := os.ReadFile(cfg.TLSCA)
	if err != nil {
		return argError(seen["tls-ca"], "%v (want a PEM file of CA certificates)", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return argError(seen["tls-ca"], "no certificate found (want a PEM file of CA certificates)")
	}
	cfg.tls = &tlsSettings{cert: cert, roots: roots, name: cfg.TLSName}
	return nil
}

// config is the TLS configuration of one connection; dialed makes it the
// TLS client.
func (t *tlsSettings) config(dialed bool) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cert},
		// The chain and the name are checked by verify, the same way on
		// both sides; the standard checks would apply the name to the
		// server only.
		InsecureSkipVerify: true,
		ClientAuth:         tls.RequireAnyClientCert,
		VerifyConnection:   t.verify,
	}
	return c
}

// errPeerCert marks a peer certificate that was refused; errTLSRefused
// every TLS handshake that failed.
var (
	errPeerCert   = errors.New("peer certificate refused")
	errTLSRefused = errors.New("TLS refused")
)

// verify checks the peer's certificate: signed by our CA, valid now, for
// TLS use, and carrying the configured name.
func (t *tlsSettings) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: none presented", errPeerCert)
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         t.roots,
		Intermediates: inter,
		CurrentTime:   time.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("%w: %q: %v", errPeerCert, leaf.Subject.CommonName, err)
	}
	if t.name != "" {
		if err := leaf.VerifyHostname(t.name); err != nil {
			return fmt.Errorf("%w: %q is not for tls-name=%s: %v", errPeerCert, leaf.Subject.CommonName, t.name, err)
		}
	}
	return nil
}

// wrap runs the TLS handshake on conn within its deadline, or says
// why the peer was refused.
func (t *tlsSettings) wrap(conn net.Conn, dialed bool) (net.Conn, error) {
	var tc *tls.Conn
	if dialed {
		tc = tls.Client(conn, t.config(true))
	} else {
		tc = tls.Server(conn, t.config(false))
	}
	err := tc.Handshake()
	if err == nil {
		return tc, nil
	}
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &rh):
		return nil, fmt.Errorf("%w: the peer does not speak TLS, and plaintext is refused when tls-cert is configured (%v)", errTLSRefused, err)
	case errors.Is(err, errPeerCert):
		return nil, fmt.Errorf("%w: %v", errTLSRefused, err)
	}
	return nil, fmt.Errorf("%w: handshake failed (does the peer have TLS configured, and does it trust our CA?): %v", errTLSRefused, err)
}
