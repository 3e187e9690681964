//go:build invariants

package actor

import (
	"strings"
	"testing"

	"github.com/granaryhq/granary/statestore/memstore"
)

// The single-activation check fires when two activations of one actor over
// one store run turns at once.
func TestInvariantCatchesTwoActivationsRunning(t *testing.T) {
	store := memstore.New()
	rt1, _ := New(Config{Store: store})
	rt2, _ := New(Config{Store: store})
	id := ID{Type: "T", ID: "a"}
	reg := &registration{name: "T", cfg: DefaultTypeConfig(), state: &typeState{obs: noTypeObserver{}}}
	place := func(rt *Runtime) *activation {
		a := &activation{id: id, reg: reg, life: active}
		a.turns.admit(active, "", &reg.cfg, false)
		rt.shard(id).m[id] = a
		return a
	}
	a1, a2 := place(rt1), place(rt2)
	if !rt1.invariantTurnStarted(a1) {
		t.Fatal("the first turn is the outermost")
	}
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "two activations") {
			t.Fatalf("recovered %v, want the single-activation panic", r)
		}
		rt1.invariantTurnEnded(a1, true)
	}()
	rt2.invariantTurnStarted(a2)
}
