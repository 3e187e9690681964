package actor

import (
	"context"
	"slices"
	"time"
)

// abortGrace is how long Close waits, after the last drain timeout, for
// aborted turns to return before it deactivates anyway.
const abortGrace = 100 * time.Millisecond

// Close drains the runtime: new calls are refused with ErrClosed, and calls in
// flight may finish, each type's turns until its own DrainTimeout has passed
// since Close began (or ctx ends). Turns still running then are aborted (their
// contexts cancelled; their callers get ErrClosed) and calls still queued for
// them refused. Then every actor is deactivated, its app told within the
// deactivation timeout. Close does not close the store.
func (rt *Runtime) Close(ctx context.Context) error {
	if rt.closed.Swap(true) {
		return nil
	}
	start := rt.clock.Now()
	rt.drain(ctx, start)
	rt.stop()
	rt.log.Info("drained; deactivating actors", "actors", rt.activeCount(), "took", rt.clock.Now().Sub(start))
	// Turns still running now ignored their abort: they do not delay the
	// deactivation.
	dctx, cancel := context.WithCancel(context.Background())
	if rt.calls.Load() > 0 {
		cancel()
	}
	defer cancel()
	tellBy := rt.clock.Now().Add(rt.deactivationTimeout)
	rt.deactivateWhere(dctx, "shutdown", func(*activation) bool { return true }, tellBy)
	rt.bgMu.Lock()
	rt.bgClosed = true
	rt.bgMu.Unlock()
	rt.bg.Wait()
	return nil
}

// drainGroup is the registrations sharing one drain timeout.
type drainGroup struct {
	timeout time.Duration
	regs    map[*registration]bool
}

// drain waits for the calls in flight to end, aborting each group of types
// as its drain timeout passes.
func (rt *Runtime) drain(ctx context.Context, start time.Time) {
	groups := rt.drainGroups()
	for i, g := range groups {
		if !rt.waitCalls(ctx, start.Add(g.timeout)) {
			// ctx ended: abort everything left.
			for _, g := range groups[i:] {
				rt.abortTurns(g)
			}
			rt.waitCalls(context.Background(), rt.clock.Now().Add(abortGrace))
			return
		}
		if rt.calls.Load() == 0 {
			return
		}
		if rt.abortTurns(g) > 0 {
			rt.log.Warn("drain timeout: aborting turns still in flight", "timeout", g.timeout, "calls", rt.calls.Load())
		}
	}
	rt.waitCalls(ctx, rt.clock.Now().Add(abortGrace))
}

// drainGroups groups the registrations of every activation, and the current
// ones, by drain timeout, shortest first.
func (rt *Runtime) drainGroups() []drainGroup {
	byTimeout := map[time.Duration]map[*registration]bool{}
	add := func(reg *registration) {
		d := reg.cfg.DrainTimeout
		if byTimeout[d] == nil {
			byTimeout[d] = map[*registration]bool{}
		}
		byTimeout[d][reg] = true
	}
	for _, reg := range *rt.types.Load() {
		add(reg)
	}
	rt.eachActivation(func(a *activation) { add(a.reg) })
	if len(byTimeout) == 0 {
		add(&registration{cfg: DefaultTypeConfig()})
	}
	groups := make([]drainGroup, 0, len(byTimeout))
	for d, regs := range byTimeout {
		groups = append(groups, drainGroup{timeout: d, regs: regs})
	}
	slices.SortFunc(groups, func(a, b drainGroup) int { return int(a.timeout - b.timeout) })
	return groups
}

// waitCalls waits until no call is in the runtime (true), until, or ctx ends (false).
func (rt *Runtime) waitCalls(ctx context.Context, until time.Time) bool {
	timer := rt.clock.NewTimer(until.Sub(rt.clock.Now()))
	defer timer.Stop()
	for rt.calls.Load() > 0 {
		select {
		case <-rt.drained:
		case <-timer.C():
			return true
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// abortTurns aborts the running turns of the group's activations and turns
// their queued calls away: native turns' contexts are cancelled, and types
// that abort their own calls (CallAborter) are told to. It returns how many
// activations had turns running or queued.
func (rt *Runtime) abortTurns(g drainGroup) int {
	var hit []*activation
	rt.eachActivation(func(a *activation) {
		if g.regs[a.reg] {
			hit = append(hit, a)
		}
	})
	n := 0
	busy := map[*registration]bool{}
	for _, a := range hit {
		a.mu.Lock()
		if a.turns.running || a.turns.waiters.len() > 0 {
			n++
			if a.turns.running {
				a.aborted = true
				busy[a.reg] = true
			}
			for _, l := range a.levels {
				l.cancel(errDrainAbort)
			}
			a.turns.turnAway(func(w *waiter) { close(w.ready) })
			a.quietLocked()
		}
		a.mu.Unlock()
	}
	for reg := range busy {
		reg.aborted.Store(true)
		if ca, ok := reg.typ.(CallAborter); ok {
			ca.AbortCalls()
		}
	}
	return n
}

func (rt *Runtime) stop() {
	rt.stopOnce.Do(func() {
		close(rt.abort)
		rt.idle.stop()
	})
}

// Closed reports whether the runtime has begun to drain.
func (rt *Runtime) Closed() bool { return rt.closed.Load() }
