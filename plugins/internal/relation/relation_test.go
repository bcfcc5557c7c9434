package relation

import (
	"errors"
	"testing"

	"github.com/coredhcp-failover/coredhcp-failover/plugins/internal/fsm"
)

func TestRegistryFindsOneRelationshipPerName(t *testing.T) {
	r := New("t1", &View{MyState: fsm.Startup})
	if err := Register(r); err != nil {
		t.Fatal(err)
	}
	defer Unregister(r)
	if got, ok := Lookup("t1"); !ok || got != r {
		t.Fatal("Lookup does not find the registered relationship")
	}
	if err := Register(New("t1", &View{})); err == nil {
		t.Fatal("A second relationship with the same name was registered")
	}
	Unregister(New("t1", &View{})) // another object: no effect
	if _, ok := Lookup("t1"); !ok {
		t.Fatal("Unregister of another object removed the relationship")
	}
}

func TestViewChangesWakeWaiters(t *testing.T) {
	r := New("t2", &View{MyState: fsm.Startup})
	ch := r.ViewChanged()
	r.SetView(&View{MyState: fsm.Normal})
	select {
	case <-ch:
	default:
		t.Fatal("SetView did not close the channel")
	}
	if r.View().MyState != fsm.Normal {
		t.Fatal("View is not the new one")
	}
}

func TestAttachStartsTheSessionOnce(t *testing.T) {
	r := New("t3", &View{})
	starts := 0
	boom := errors.New("boom")
	r.SetSession(func() error { starts++; return boom }, func() error { return nil })
	if err := r.Attach(nil); !errors.Is(err, boom) {
		t.Fatalf("Attach = %v, want the start error", err)
	}
	if err := r.Attach(nil); err == nil || starts != 1 {
		t.Fatalf("A second Attach gave %v and started %d times", err, starts)
	}
	select {
	case <-r.Attached():
	default:
		t.Fatal("Attached is not closed")
	}
}
