package fsm

import "testing"

// TestSetMCLTIgnoresZero: the secondary adopts the MCLT of the primary's
// CONNECT, but never 0, which would remove the MCLT waits of RECOVER-WAIT
// and PARTNER-DOWN (a mutation of "> 0" to ">= 0" passed every test).
func TestSetMCLTIgnoresZero(t *testing.T) {
	m := New(Config{Role: Secondary, MCLT: 30}, Persistent{}, 1000)
	m.SetMCLT(0)
	if got := m.Status().MCLT; got != 30 {
		t.Fatalf("After SetMCLT(0): MCLT %d, want 30 kept", got)
	}
	m.SetMCLT(3600)
	if got := m.Status().MCLT; got != 3600 {
		t.Fatalf("After SetMCLT(3600): MCLT %d", got)
	}
}

// TestParseStateAcceptsWireNumbers: a state may be named by its number on
// the wire; a number that is no state is refused.
func TestParseStateAcceptsWireNumbers(t *testing.T) {
	for in, want := range map[string]State{"4": PartnerDown, "254": RecoverWait, " 1 ": Startup, "11": ConflictDone} {
		if got, err := ParseState(in); err != nil || got != want {
			t.Errorf("ParseState(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"12", "253", "300", "-1", "x4"} {
		if got, err := ParseState(in); err == nil {
			t.Errorf("ParseState(%q) = %v, want an error", in, got)
		}
	}
}
