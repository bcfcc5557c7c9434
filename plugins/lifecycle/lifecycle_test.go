package lifecycle

import (
	"errors"
	"testing"
)

func TestShutdownRunsInReverseOrderOnce(t *testing.T) {
	var order []int
	boom := errors.New("boom")
	OnShutdown(func() error { order = append(order, 1); return nil })
	OnShutdown(func() error { order = append(order, 2); return boom })
	OnShutdown(func() error { order = append(order, 3); return nil })
	err := Shutdown()
	if !errors.Is(err, boom) {
		t.Fatalf("Shutdown error = %v, want it to wrap %v", err, boom)
	}
	if len(order) != 3 || order[0] != 3 || order[1] != 2 || order[2] != 1 {
		t.Fatalf("Shutdown ran %v, want [3 2 1]", order)
	}
	if err := Shutdown(); err != nil || len(order) != 3 {
		t.Fatalf("Second Shutdown ran again (order %v, err %v)", order, err)
	}
}
