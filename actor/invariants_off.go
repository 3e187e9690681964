//go:build !invariants

package actor

// Without the invariants tag the per-turn checks of invariants_on.go cost
// nothing.

func (rt *Runtime) invariantTurnStarted(*activation) bool { return false }

func (rt *Runtime) invariantTurnEnded(*activation, bool) {}
