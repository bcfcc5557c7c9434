package leasesync

import (
	"bytes"
	"fmt"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lbhash"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// maxSkew is the clock difference beyond which ISC refuses a CONNECT or
// CONNECTACK (reject reason 4).
const maxSkew = 60

// vendorClass is what we put in vendor-class-identifier.
const vendorClass = "coredhcp-failover"

// peerParams is what the handshake learns about the peer.
type peerParams struct {
	maxUnacked   int   // BNDUPDs we may have in flight to it
	receiveTimer int64 // seconds of silence after which it drops the link
	mclt         int64 // from CONNECT (secondary)
	hba          lbhash.HBA
	skew         int64 // peer's clock minus ours at the handshake, seconds (the refusal beyond maxSkew)
	vendor       string
}

// rejection is a refused handshake: the reason on the wire and the text for
// the log and the message option.
type rejection struct {
	reason wire.RejectReason
	text   string
}

func (r *rejection) Error() string { return fmt.Sprintf("%s (reason %d)", r.text, r.reason) }

func skewOf(msgTime uint32, now int64) int64 { return int64(msgTime) - now }

// minCorrection is the smallest skew corrected for: the time field has a
// resolution of a second and the message spent some time on the way, so a
// measured skew of ±1 s is noise.
const minCorrection = 2

// checkConnect is what a secondary checks in a CONNECT, in ISC's order
// (name present, name ours, clock, HBA, MCLT), plus what ISC does not check
// but a migrating operator expects: a secondary configured with mclt or
// split/hba refuses a primary that disagrees.
func checkConnect(cfg *Config, c *wire.Connect, now int64) (peerParams, *rejection) {
	var p peerParams
	if c.RelationshipName == "" && !c.Present.Has(wire.OptRelationshipName) {
		return p, &rejection{wire.RejectInvalidPartner, "missing relationship-name"}
	}
	if c.RelationshipName != cfg.Name {
		return p, &rejection{wire.RejectInvalidPartner, fmt.Sprintf("unknown failover relationship name %q (ours is %q)", c.RelationshipName, cfg.Name)}
	}
	p.skew = skewOf(c.Time, now)
	if p.skew > maxSkew || p.skew < -maxSkew {
		return p, &rejection{wire.RejectTimeMismatch, fmt.Sprintf("time offset too large: the peer's clock is %+ds from ours", p.skew)}
	}
	hba, err := lbhash.FromBytes(c.HBA)
	if err != nil {
		return p, &rejection{wire.RejectHBAConflict, "invalid HBA: " + err.Error()}
	}
	if cfg.HasHBA && hba != cfg.HBA {
		return p, &rejection{wire.RejectHBAConflict, fmt.Sprintf("hash bucket assignment %x differs from ours %x", hba[:], cfg.HBA[:])}
	}
	if c.MCLT == 0 {
		return p, &rejection{wire.RejectInvalidMCLT, "no MCLT provided"}
	}
	if cfg.MCLT != 0 && int64(c.MCLT) != int64(cfg.MCLT.Seconds()) {
		return p, &rejection{wire.RejectInvalidMCLT, fmt.Sprintf("MCLT %ds differs from ours (%ds)", c.MCLT, int64(cfg.MCLT.Seconds()))}
	}
	if cfg.Role != Secondary {
		return p, &rejection{wire.RejectInvalidPartner, "CONNECT received by a primary: both servers are configured as primary"}
	}
	p.maxUnacked = int(c.MaxUnacked)
	p.receiveTimer = int64(c.ReceiveTimer)
	p.mclt = int64(c.MCLT)
	p.hba = hba
	p.vendor = c.VendorClass
	return p, nil
}

// checkConnectAck is what a primary checks in a CONNECTACK, as ISC does.
func checkConnectAck(cfg *Config, a *wire.ConnectAck, now int64) (peerParams, *rejection) {
	var p peerParams
	if a.RejectReason != 0 {
		text := a.Message
		if text == "" {
			text = a.RejectReason.String()
		}
		return p, &rejection{a.RejectReason, "the peer refused our CONNECT: " + text}
	}
	if a.RelationshipName == "" {
		return p, &rejection{wire.RejectInvalidPartner, "missing relationship-name"}
	}
	if a.RelationshipName != cfg.Name {
		return p, &rejection{wire.RejectInvalidPartner, fmt.Sprintf("remote failover relationship name %s does not match", a.RelationshipName)}
	}
	p.skew = skewOf(a.Time, now)
	if p.skew > maxSkew || p.skew < -maxSkew {
		return p, &rejection{wire.RejectTimeMismatch, fmt.Sprintf("time offset too large: the peer's clock is %+ds from ours", p.skew)}
	}
	p.maxUnacked = int(a.MaxUnacked)
	p.receiveTimer = int64(a.ReceiveTimer)
	p.vendor = a.VendorClass
	return p, nil
}

// connectMsg is the primary's CONNECT, as ISC builds it.
func connectMsg(cfg *Config, now int64) *wire.Connect {
	return &wire.Connect{
		Header:           wire.Header{Time: uint32(now), XID: 0},
		RelationshipName: cfg.Name,
		MaxUnacked:       uint32(cfg.MaxUnackedUpdates),
		ReceiveTimer:     uint32(cfg.MaxResponseDelay.Seconds()),
		VendorClass:      vendorClass,
		ProtocolVersion:  1,
		MCLT:             uint32(cfg.MCLT.Seconds()),
		HBA:              bytes.Clone(cfg.HBA[:]),
	}
}

// connectAckMsg answers c; rej non-nil refuses it.
func connectAckMsg(cfg *Config, c *wire.Connect, rej *rejection, now int64) *wire.ConnectAck {
	a := &wire.ConnectAck{
		Header:          wire.Header{Time: uint32(now), XID: c.XID},
		VendorClass:     vendorClass,
		ProtocolVersion: 1,
	}
	if c.Present.Has(wire.OptTLSRequest) {
		a.Present = a.Present.With(wire.OptTLSReply)
	}
	if rej == nil || c.RelationshipName == cfg.Name {
		a.RelationshipName = cfg.Name
		a.MaxUnacked = uint32(cfg.MaxUnackedUpdates)
		a.ReceiveTimer = uint32(cfg.MaxResponseDelay.Seconds())
	} else {
		a.RelationshipName = c.RelationshipName // echo, as ISC does
	}
	if rej != nil {
		a.RejectReason = rej.reason
		a.Message = rej.text
	}
	return a
}
