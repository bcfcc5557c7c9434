package leasesync

import "github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"

// publish gives the failover plugin a fresh view.
func (s *Session) publish() {
	st := s.m.Status()
	v := &relation.View{
		Primary:   s.cfg.Role == Primary,
		MyState:   st.State,
		MyStos:    st.Stos,
		Entered:   s.entered,
		PeerState: st.PeerState,
		Connected: s.link != nil,
		Contacted: s.contacted,

		OperatorPartnerDown:   s.operatorPD,
		OperatorPartnerDownAt: s.operatorPDAt,
		MCLT:                  st.MCLT,
		LBMaxSecs:             uint16(s.cfg.LBMaxSecs),
		MayServe:              s.m.MayServe(),
	}
	if s.cfg.Role == Primary {
		v.HBA = s.cfg.HBA
	} else if s.link != nil {
		v.HBA = s.link.params.hba
	} else if old := s.rel.View(); old != nil {
		v.HBA = old.HBA
	}
	if old := s.rel.View(); old == nil || *old != *v {
		s.rel.SetView(v)
	}
}
