package leasesync

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/lease"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/relation"
	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/wire"
)

// enum describes one side of a mapping for checkMapping: whether a value
// is one the enum defines, and the value's name as the other side spells
// it.
type enum[T ~uint8] struct {
	defined func(T) bool
	name    func(T) string
}

// checkMapping checks to and from over every byte: each value either
// enum defines maps to the value of the other of the same number and
// name, and back; every other value is refused. It returns how many
// values of A are mapped.
func checkMapping[A, B ~uint8](t *testing.T, ea enum[A], eb enum[B], to func(A) (B, error), from func(B) (A, error)) int {
	t.Helper()
	checkSide(t, eb, ea, from, to)
	return checkSide(t, ea, eb, to, from)
}

// checkSide is checkMapping from A's side.
func checkSide[A, B ~uint8](t *testing.T, ea enum[A], eb enum[B], to func(A) (B, error), from func(B) (A, error)) int {
	t.Helper()
	mapped := 0
	for v := range 256 {
		a := A(v)
		b, err := to(a)
		switch {
		case !ea.defined(a) && err == nil:
			t.Errorf("%v (%d) maps to %v, want an error", a, v, b)
		case !ea.defined(a):
		case err != nil:
			t.Errorf("%v (%d) has no mapping: %v", a, v, err)
		case uint8(b) != uint8(v) || eb.name(b) != ea.name(a):
			t.Errorf("%v (%d) maps to %v (%d), want number %d, name %s", a, v, b, uint8(b), v, ea.name(a))
		default:
			mapped++
			if back, err := from(b); err != nil || back != a {
				t.Errorf("%v maps back to %v, %v; want %v", b, back, err, a)
			}
		}
	}
	return mapped
}

// TestBindingStatusMapping pins lease.State to wire.BindingStatus both
// ways, over every byte. A value is defined if Valid says so or if it has
// a name: an enum that gains a value without a mapping fails here.
func TestBindingStatusMapping(t *testing.T) {
	ls := enum[lease.State]{
		defined: func(s lease.State) bool { return s.Valid() || !strings.HasPrefix(s.String(), "state(") },
		name:    func(s lease.State) string { return strings.ToUpper(s.String()) },
	}
	ws := enum[wire.BindingStatus]{
		defined: func(s wire.BindingStatus) bool {
			return s.Valid() || !strings.HasPrefix(s.String(), "BindingStatus(")
		},
		name: wire.BindingStatus.String,
	}
	if n := checkMapping(t, ls, ws, bindingStatuses.toWire, bindingStatuses.fromWire); n != 7 {
		t.Errorf("%d binding states mapped, want the draft's 7", n)
	}
}

// TestServerStateMapping pins fsm.State to wire.ServerState the same way;
// names are compared through fsm.ParseState, which reads the draft's.
func TestServerStateMapping(t *testing.T) {
	fs := enum[fsm.State]{defined: fsm.State.Valid, name: fsm.State.String}
	ws := enum[wire.ServerState]{
		defined: func(s wire.ServerState) bool {
			return s.Valid() || !strings.HasPrefix(s.String(), "ServerState(")
		},
		name: func(s wire.ServerState) string {
			if st, err := fsm.ParseState(s.String()); err == nil {
				return st.String()
			}
			return s.String()
		},
	}
	if n := checkMapping(t, fs, ws, serverStates.toWire, serverStates.fromWire); n != len(fsm.AllStates) {
		t.Errorf("%d failover states mapped, want %d", n, len(fsm.AllStates))
	}
}

// TestRejectMapping pins each reject reason of the failover plugin to the
// wire's code of the same number, and checks that relation.Rejects lists
// every Reject constant relation declares.
func TestRejectMapping(t *testing.T) {
	want := map[relation.Reject]wire.RejectReason{
		relation.RejectIllegalAddress: wire.RejectIllegalIPAddr,
		relation.RejectConflict:       wire.RejectFatalConflict,
		relation.RejectMissingInfo:    wire.RejectMissingBindInfo,
		relation.RejectOther:          wire.RejectMiscReject,
		relation.RejectLessCritical:   wire.RejectLessCritBindInfo,
	}
	for _, r := range relation.Rejects {
		w, ok := want[r]
		if !ok {
			t.Errorf("Reject %d: no expected wire code in this test", r)
			continue
		}
		if got := rejectToWire(r); got != w || uint8(got) != uint8(r) {
			t.Errorf("rejectToWire(%d) = %s (%d), want %s (%d)", r, got, uint8(got), w, uint8(r))
		}
	}
	if len(want) != len(relation.Rejects) {
		t.Errorf("relation.Rejects has %d reasons, this test %d", len(relation.Rejects), len(want))
	}
	if got := rejectToWire(relation.Reject(200)); got != wire.RejectMiscReject {
		t.Errorf("rejectToWire(200) = %s, want MISC-REJECT", got)
	}
	if declared := rejectConstants(t); declared != len(relation.Rejects) {
		t.Errorf("package relation declares %d Reject constants, relation.Rejects lists %d", declared, len(relation.Rejects))
	}
}

// rejectConstants counts the constants package relation declares with
// type Reject.
func rejectConstants(t *testing.T) int {
	t.Helper()
	files, err := filepath.Glob("../internal/relation/*.go")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				if vs := spec.(*ast.ValueSpec); vs.Type != nil {
					if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "Reject" {
						n += len(vs.Names)
					}
				}
			}
		}
	}
	return n
}

// TestOutOfRange checks what becomes of a value no mapping names: a
// binding in no state is not announced, a stored state that is no
// failover state is read as unknown-state (the machine recovers), and the
// peer's stored state so read loses its start time.
func TestOutOfRange(t *testing.T) {
	if _, err := bindingToWire(&lease.Binding{IP: 1, State: 42}); err == nil {
		t.Error("bindingToWire of a binding in state 42 succeeded")
	}
	got := persistentOf("r", &lease.RelState{MyState: 12, MyStos: 5, PeerState: 253, PeerStos: 6, MCLT: 7})
	if want := (fsm.Persistent{MyState: fsm.Unknown, MyStos: 5, MCLT: 7}); got != want {
		t.Errorf("persistentOf(12, 253) = %+v, want %+v", got, want)
	}
	saved := lease.RelState{MyState: 254, MyStos: 5, PeerState: 4, PeerStos: 6, MCLT: 7}
	p := persistentOf("r", &saved)
	if back, err := relStateOf(&p); err != nil || back != saved {
		t.Errorf("relStateOf(persistentOf(%+v)) = %+v, %v", saved, back, err)
	}
	if _, err := relStateOf(&fsm.Persistent{PeerState: 99}); err == nil {
		t.Error("relStateOf of peer state 99 succeeded")
	}
}
