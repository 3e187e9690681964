//go:build invariants

package actor

import (
	"fmt"
	"sync"

	"github.com/granaryhq/granary/statestore"
)

// Built with -tags invariants, the runtime checks on every turn that it
// starts on the one activation the table holds for its actor, that the turn
// queue's bookkeeping adds up, and that no other activation of the same
// actor over the same store — in this process, so two silos of one test
// count — is running a turn at the same time (single activation). A
// violation panics. Release builds compile these checks away.

type runningKey struct {
	store statestore.Store
	id    ID
}

var runningTurns = struct {
	sync.Mutex
	m map[runningKey]*activation
}{m: map[runningKey]*activation{}}

// invariantTurnStarted checks a turn about to start on a. It reports
// whether the turn is the outermost level of its activation's turn.
func (rt *Runtime) invariantTurnStarted(a *activation) bool {
	sh := rt.shard(a.id)
	sh.mu.Lock()
	inTable := sh.m[a.id]
	sh.mu.Unlock()
	if inTable != a {
		panic(fmt.Sprintf("actor invariant: a turn of %s starts on an activation the table does not hold", a.id))
	}
	a.mu.Lock()
	err := a.turns.check()
	outermost := a.turns.depth == 1
	life := a.life
	a.mu.Unlock()
	if err != nil {
		panic(fmt.Sprintf("actor invariant: %s: %v", a.id, err))
	}
	if life != active && life != deactivating {
		panic(fmt.Sprintf("actor invariant: a turn of %s starts on an activation in state %d", a.id, life))
	}
	if !outermost {
		return false
	}
	key := runningKey{rt.store, a.id}
	runningTurns.Lock()
	defer runningTurns.Unlock()
	if other := runningTurns.m[key]; other != nil && other != a && !other.isAbandoned() {
		panic(fmt.Sprintf("actor invariant: two activations of %s run turns at once", a.id))
	}
	runningTurns.m[key] = a
	return true
}

func (rt *Runtime) invariantTurnEnded(a *activation, outermost bool) {
	if !outermost {
		return
	}
	key := runningKey{rt.store, a.id}
	runningTurns.Lock()
	if runningTurns.m[key] == a {
		delete(runningTurns.m, key)
	}
	runningTurns.Unlock()
}

func (a *activation) isAbandoned() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.abandoned
}
