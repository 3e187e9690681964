package actor

import (
	"context"
	"sync"
	"time"
)

// beginDeactivation marks a as deactivating and turns its queued calls away, so
// they retry on a new activation. With ifIdle it does nothing when any call is
// admitted. It returns ok=false when a is not active (or not idle), and
// otherwise a channel closed when the calls still running have ended (nil
// when none are running).
func (a *activation) beginDeactivation(ifIdle bool) (quiet <-chan struct{}, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.life != active || (ifIdle && a.turns.pending > 0) {
		return nil, false
	}
	a.life = deactivating
	a.turns.turnAway(func(w *waiter) { close(w.ready) })
	a.quietLocked()
	if a.turns.pending > 0 {
		a.quiet = make(chan struct{})
		return a.quiet, true
	}
	return nil, true
}

// deactivate ends an activation: no new turn starts, running turns may finish
// until ctx ends, then its timers stop, its instance is told (by tellBy, or
// within the deactivation timeout when tellBy is zero), and it is removed.
func (rt *Runtime) deactivate(ctx context.Context, a *activation, reason string, tellBy time.Time) {
	quiet, ok := a.beginDeactivation(false)
	if !ok {
		return
	}
	rt.endDeactivation(ctx, a, quiet, reason, tellBy)
}

// endDeactivation finishes a deactivation begun by beginDeactivation: it
// lets the running turns end (until ctx ends), then stops the timers, tells
// the instance and removes the activation.
func (rt *Runtime) endDeactivation(ctx context.Context, a *activation, quiet <-chan struct{}, reason string, tellBy time.Time) {
	if quiet != nil {
		select {
		case <-quiet:
		case <-ctx.Done():
			a.mu.Lock()
			a.abandoned = true
			a.mu.Unlock()
			rt.log.Warn("deactivating actor with turns still running", "actor", a.id.String(), "reason", reason)
		}
	}
	rt.deactivationSlots <- struct{}{}
	defer func() { <-rt.deactivationSlots }()
	rt.finishDeactivation(a, reason, tellBy)
}

// finishDeactivation stops the actor's timers, tells its instance, and removes
// it. An activation whose type's turns had to be aborted at the drain timeout
// is not told: the app did not answer those turns (and an app's aborted call
// pool takes no more calls), so it is not waited for again.
func (rt *Runtime) finishDeactivation(a *activation, reason string, tellBy time.Time) {
	a.mu.Lock()
	timers := a.timers
	a.timers = nil
	aborted := a.aborted
	a.mu.Unlock()
	for _, t := range timers {
		t.stop()
	}
	switch {
	case aborted:
		rt.log.Warn("actor deactivated without telling it: its turn was aborted at the drain timeout", "actor", a.id.String(), "reason", reason)
	case a.reg.aborted.Load():
		rt.log.Debug("actor deactivated without telling it: its type's turns were aborted at the drain timeout", "actor", a.id.String(), "reason", reason)
	default:
		if tellBy.IsZero() {
			tellBy = rt.clock.Now().Add(rt.deactivationTimeout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), tellBy.Sub(rt.clock.Now()))
		if err := a.inst.Deactivate(ctx); err != nil {
			rt.log.Warn("actor deactivation callback failed", "actor", a.id.String(), "reason", reason, "err", err)
		} else {
			rt.log.Debug("actor deactivated", "actor", a.id.String(), "reason", reason)
		}
		cancel()
	}
	sh := rt.shard(a.id)
	sh.mu.Lock()
	if sh.m[a.id] == a {
		delete(sh.m, a.id)
	}
	sh.mu.Unlock()
	a.reg.state.active.Add(-1)
	a.reg.state.obs.Deactivated()
	a.mu.Lock()
	a.life = dead
	if a.gone != nil {
		close(a.gone)
	}
	a.mu.Unlock()
}

// deactivateWhere deactivates every activation matching match, letting their
// running turns finish until ctx ends.
func (rt *Runtime) deactivateWhere(ctx context.Context, reason string, match func(*activation) bool, tellBy time.Time) {
	var list []*activation
	rt.eachActivation(func(a *activation) {
		if match(a) {
			list = append(list, a)
		}
	})
	var wg sync.WaitGroup
	for _, a := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-a.ready
			if a.err == nil {
				rt.deactivate(ctx, a, reason, tellBy)
			}
		}()
	}
	wg.Wait()
}

// goTracked runs f in a goroutine that Close waits for. It runs nothing and
// reports false once Close has begun waiting.
func (rt *Runtime) goTracked(f func()) bool {
	rt.bgMu.Lock()
	defer rt.bgMu.Unlock()
	if rt.bgClosed {
		return false
	}
	rt.bg.Add(1)
	go func() {
		defer rt.bg.Done()
		f()
	}()
	return true
}
