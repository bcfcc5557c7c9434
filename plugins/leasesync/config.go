package leasesync

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/args"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/metrics"
)

// Role is this server's side of the relationship.
type Role uint8

// Roles.
const (
	Primary Role = iota
	Secondary
)

func (r Role) String() string {
	if r == Secondary {
		return "secondary"
	}
	return "primary"
}

// Config is a parsed leasesync line. The names follow ISC dhcpd's
// `failover peer` block, so that an operator migrating from it finds every
// knob.
type Config struct {
	Name      string         // relationship name, on the wire and in the failover line
	Role      Role           // primary or secondary
	Address   netip.AddrPort // where we listen and dial from
	Peer      netip.AddrPort // where the peer listens; only this address may connect
	MCLT      time.Duration  // primary: required; secondary: learned from CONNECT (0 = not given)
	HBA       lbhash.HBA     // hash bucket assignment, bit set = the primary serves the bucket
	HasHBA    bool           // split or hba was given
	LBMaxSecs int            // load-balance-max-seconds: secs above it overrides the hash

	MaxResponseDelay       time.Duration // silence after which the peer is unreachable
	MaxUnackedUpdates      int           // BNDUPDs the peer may have in flight to us
	AutoPartnerDown        time.Duration // 0: off
	MaxLeaseMisbalance     int           // percent
	MaxLeaseOwnership      int           // percent
	MinBalance, MaxBalance time.Duration
	// Control is the path of the control socket ("" for none).
	Control string
	// Metrics is where the process serves /metrics (invalid: nowhere).
	Metrics netip.AddrPort
	// TLS between coredhcp-failover peers (off unless tls-cert is given;
	// see tls.go): our certificate and key, the CA that signs the peer's,
	// and the name the peer's certificate must carry ("" for any).
	TLSCert, TLSKey, TLSCA, TLSName string
	tls                             *tlsSettings
}

// Defaults, documented in README.md. They are ISC dhcpd's, except
// load-balance-max-seconds (ISC: 0, which turns load balancing off).
const (
	defaultPort               = 647
	defaultMaxResponseDelay   = 20 * time.Second
	defaultMaxUnackedUpdates  = 100
	defaultLBMaxSecs          = 3
	defaultMaxLeaseMisbalance = 15
	defaultMaxLeaseOwnership  = 10
	defaultMinBalance         = 60 * time.Second
	defaultMaxBalance         = time.Hour
)

var knownKeys = []string{"name", "role", "address", "port", "peer", "peer-port", "mclt", "split", "hba",
	"load-balance-max-seconds", "max-response-delay", "max-unacked-updates", "auto-partner-down",
	"max-lease-misbalance", "max-lease-ownership", "min-balance", "max-balance", "control", "metrics",
	"tls-cert", "tls-key", "tls-ca", "tls-name"}

var argError = args.Error

// parse reads the plugin's key=value words. Its errors name the word and
// the rule.
func parse(words []string) (Config, error) {
	cfg := Config{
		LBMaxSecs:          defaultLBMaxSecs,
		MaxResponseDelay:   defaultMaxResponseDelay,
		MaxUnackedUpdates:  defaultMaxUnackedUpdates,
		MaxLeaseMisbalance: defaultMaxLeaseMisbalance,
		MaxLeaseOwnership:  defaultMaxLeaseOwnership,
		MinBalance:         defaultMinBalance,
		MaxBalance:         defaultMaxBalance,
	}
	split, seen, err := args.Split(words)
	if err != nil {
		return cfg, err
	}
	var addr, peer netip.Addr
	port, peerPort := uint16(defaultPort), uint16(defaultPort)
	for _, w := range split {
		key, val, word := w.Key, w.Value, w.Text
		var err error
		switch key {
		case "name":
			if len(val) > 255 {
				err = errors.New("at most 255 bytes")
			}
			cfg.Name = val
		case "role":
			switch val {
			case "primary":
				cfg.Role = Primary
			case "secondary":
				cfg.Role = Secondary
			default:
				err = errors.New("want primary or secondary")
			}
		case "address":
			addr, err = parseIPv4(val)
		case "peer":
			peer, err = parseIPv4(val)
		case "port":
			port, err = parsePort(val)
		case "peer-port":
			peerPort, err = parsePort(val)
		case "mclt":
			cfg.MCLT, err = parseSeconds(val, time.Second, 0xffffffff*time.Second)
		case "split":
			var n uint64
			n, err = strconv.ParseUint(val, 10, 16)
			if err == nil {
				cfg.HBA, err = lbhash.FromSplit(int(n))
			}
			if err != nil {
				err = errors.New("want a number of hash buckets from 0 to 256 given to the primary")
			}
			cfg.HasHBA = err == nil
		case "hba":
			cfg.HBA, err = parseHBA(val)
			cfg.HasHBA = err == nil
		case "load-balance-max-seconds":
			var n uint64
			n, err = strconv.ParseUint(val, 10, 16)
			if err != nil {
				err = errors.New("want a number of seconds from 0 (balancing off) to 65535")
			}
			cfg.LBMaxSecs = int(n)
		case "max-response-delay":
			cfg.MaxResponseDelay, err = parseSeconds(val, 3*time.Second, 0xffffffff*time.Second)
		case "max-unacked-updates":
			var n uint64
			n, err = strconv.ParseUint(val, 10, 32)
			if err != nil || n == 0 || n > 65535 {
				err = errors.New("want a number from 1 to 65535")
			}
			cfg.MaxUnackedUpdates = int(n)
		case "auto-partner-down":
			cfg.AutoPartnerDown, err = parseSeconds(val, 0, 0xffffffff*time.Second)
		case "max-lease-misbalance", "max-lease-ownership":
			var n uint64
			n, err = strconv.ParseUint(val, 10, 8)
			if err != nil || n == 0 || n > 100 {
				err = errors.New("want a percentage from 1 to 100")
			}
			if key == "max-lease-misbalance" {
				cfg.MaxLeaseMisbalance = int(n)
			} else {
				cfg.MaxLeaseOwnership = int(n)
			}
		case "min-balance":
			cfg.MinBalance, err = parseSeconds(val, time.Second, 0xffffffff*time.Second)
		case "max-balance":
			cfg.MaxBalance, err = parseSeconds(val, time.Second, 0xffffffff*time.Second)
		case "control":
			if !filepath.IsAbs(val) {
				err = errors.New("want an absolute path for the control socket")
			}
			cfg.Control = val
		case "metrics":
			cfg.Metrics, err = metrics.ParseAddr(val)
		case "tls-cert":
			cfg.TLSCert = val
		case "tls-key":
			cfg.TLSKey = val
		case "tls-ca":
			cfg.TLSCA = val
		case "tls-name":
			cfg.TLSName = val
		default:
			return cfg, argError(word, "unknown key %q (known: %s)", key, strings.Join(knownKeys, ", "))
		}
		if err != nil {
			return cfg, argError(word, "%v", err)
		}
	}
	cfg.Address = netip.AddrPortFrom(addr, port)
	cfg.Peer = netip.AddrPortFrom(peer, peerPort)
	return cfg, cfg.validate(seen)
}

func (cfg *Config) validate(seen map[string]string) error {
	for _, k := range []string{"name", "role", "address", "peer"} {
		if _, ok := seen[k]; !ok {
			return fmt.Errorf("missing %s=: the relationship needs a name, a role, our address and the peer's address", k)
		}
	}
	if cfg.Address.Addr() == cfg.Peer.Addr() && cfg.Address.Port() == cfg.Peer.Port() {
		return argError(seen["peer"], "the peer cannot be this server's own address and port")
	}
	if seen["split"] != "" && seen["hba"] != "" {
		return argError(seen["hba"], "give split or hba, not both")
	}
	if cfg.Role == Primary {
		if cfg.MCLT == 0 {
			return errors.New("missing mclt=DURATION: the primary sets the maximum client lead time (the secondary learns it)")
		}
		if !cfg.HasHBA {
			return errors.New("missing split=N or hba=HEX: the primary sets the load balance (split=128 shares clients evenly, split=256 is hot standby)")
		}
	}
	if cfg.MinBalance > cfg.MaxBalance {
		return argError(seen["min-balance"], "must not be longer than max-balance (%v)", cfg.MaxBalance)
	}
	return cfg.loadTLS(seen)
}

func parseIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, errors.New("want an IPv4 address")
	}
	return a, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, errors.New("want a TCP port from 1 to 65535")
	}
	return uint16(n), nil
}

// parseSeconds reads a Go duration or a number of seconds (dhcpd.conf
// style), whole seconds, within [min, max].
func parseSeconds(s string, min, max time.Duration) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, errors.New("invalid duration (want e.g. 1h, 30s or a number of seconds)")
	}
	if d%time.Second != 0 {
		return 0, errors.New("failover times are whole seconds")
	}
	if d < min || d > max {
		return 0, fmt.Errorf("want from %v to %v", min, max)
	}
	return d, nil
}

// parseHBA reads 32 bytes of hex, with or without colons (ISC writes
// hba ff:ff:...).
func parseHBA(s string) (lbhash.HBA, error) {
	raw, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err == nil {
		var h lbhash.HBA
		if h, err = lbhash.FromBytes(raw); err == nil {
			return h, nil
		}
	}
	return lbhash.HBA{}, errors.New("want 32 bytes of hex (64 digits, colons allowed), bit set = the primary serves the bucket")
}
