package actor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/granaryhq/granary/internal/clock"
)

// TimerSpec describes a timer: when it fires and what it delivers.
type TimerSpec struct {
	Name     string
	Callback string
	Data     []byte // raw JSON, or nil
	DueTime  string // as given, passed back on every fire
	Period   string // as given
	// First is when the timer first fires.
	First time.Time
	// Next returns when the timer fires after a fire that completed at
	// completed, given how many fires have completed; false ends the timer.
	Next func(completed time.Time, fires int) (time.Time, bool)
}

// actorTimer is a timer of one activation. It fires as a turn of the actor.
type actorTimer struct {
	spec  TimerSpec
	a     *activation
	rt    *Runtime
	mu    sync.Mutex
	t     clock.Timer
	fires int
	done  bool
}

// CreateTimer starts a timer on an actor, activating the actor if needed. A
// timer with the same name is replaced. Timers end with the activation. Like
// a turn, it needs the type hosted and available and the actor owned here.
func (rt *Runtime) CreateTimer(ctx context.Context, id ID, spec TimerSpec) error {
	if spec.Name == "" || spec.Next == nil {
		return fmt.Errorf("actor %s: timer needs a name and a schedule", id)
	}
	if !rt.enter() {
		return ErrClosed
	}
	defer rt.exit()
	for {
		reg, err := rt.lookupType(id.Type)
		if err != nil {
			return err
		}
		a, err := rt.activation(ctx, reg, id, false)
		if errors.Is(err, errRetired) {
			continue
		}
		if err != nil {
			return err
		}
		claim, err := rt.placement.Claim(ctx, id)
		if err != nil {
			return fmt.Errorf("actor %s: %w", id, err)
		}
		if claim != a.claim {
			// Created under an older claim of its shard: it is recycled,
			// not given timers. (Waiting for a fresh activation here could
			// wait for a turn that is itself creating this timer.)
			rt.recycle(a, "its shard was claimed again")
			return fmt.Errorf("actor %s: %w: its shard was claimed again (%s) since the activation of claim %s", id, ErrFenced, claim, a.claim)
		}
		t := &actorTimer{spec: spec, a: a, rt: rt}
		a.mu.Lock()
		if a.life != active {
			gone := a.goneLocked()
			a.mu.Unlock()
			select {
			case <-gone:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if a.timers == nil {
			a.timers = map[string]*actorTimer{}
		}
		old := a.timers[spec.Name]
		a.timers[spec.Name] = t
		a.mu.Unlock()
		if old != nil {
			old.stop()
		}
		t.schedule(spec.First)
		return nil
	}
}

// DeleteTimer stops a timer. Deleting a timer that does not exist succeeds.
func (rt *Runtime) DeleteTimer(id ID, name string) {
	a := rt.lookupActive(id)
	if a == nil {
		return
	}
	a.mu.Lock()
	t := a.timers[name]
	if t != nil {
		delete(a.timers, name)
	}
	a.mu.Unlock()
	if t != nil {
		t.stop()
	}
}

func (t *actorTimer) schedule(at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	t.t = t.rt.clock.AfterFunc(at.Sub(t.rt.clock.Now()), t.fire)
}

func (t *actorTimer) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	if t.t != nil {
		t.t.Stop()
	}
}

func (t *actorTimer) stopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done
}

// fire runs one timer turn, then schedules the next fire. The turn passes
// every check a method call's turn passes (turnOn): none runs while the
// runtime drains, on a type that is not hosted or not available, or on an
// actor this silo does not own.
func (t *actorTimer) fire() {
	rt, a := t.rt, t.a
	if t.stopped() {
		return
	}
	call := &TimerCall{Name: t.spec.Name, Callback: t.spec.Callback, Data: t.spec.Data, DueTime: t.spec.DueTime, Period: t.spec.Period}
	err := rt.turnOn(a, func(ctx context.Context, a *activation, _ string) error {
		if t.stopped() {
			return nil
		}
		return a.inst.Timer(ctx, call)
	})
	switch {
	case err == nil:
	case errors.Is(err, errActivationEnded), errors.Is(err, ErrClosed), errors.Is(err, ErrTypeNotHosted):
		// The activation, the runtime or the type ended: so does the timer.
		t.end()
		return
	case errors.Is(err, ErrSuspended):
		// The silo may not run turns for a moment but keeps the actor:
		// skip this fire. Checked before ErrNotOwner, which it also wraps.
		rt.log.Debug("timer fire skipped: the silo is suspended", "actor", a.id.String(), "timer", t.spec.Name, "err", err)
	case errors.Is(err, ErrNotOwner):
		// The actor moved: its activation here is on its way out.
		rt.log.Info("timer stopped: the actor is owned by another silo now", "actor", a.id.String(), "timer", t.spec.Name)
		t.end()
		return
	case errors.Is(err, ErrTypeUnavailable):
		rt.log.Debug("timer fire skipped: the actor type is unavailable", "actor", a.id.String(), "timer", t.spec.Name, "err", err)
	default:
		// A failed callback, or a turn not had in time: try again at the next fire.
		rt.log.Warn("timer fire failed", "actor", a.id.String(), "timer", t.spec.Name, "err", err)
	}
	t.mu.Lock()
	t.fires++
	fires := t.fires
	t.mu.Unlock()
	next, ok := t.spec.Next(rt.clock.Now(), fires)
	if !ok {
		t.end()
		return
	}
	t.schedule(next)
}

// end stops the timer and removes it from its activation.
func (t *actorTimer) end() {
	a := t.a
	a.mu.Lock()
	if a.timers[t.spec.Name] == t {
		delete(a.timers, t.spec.Name)
	}
	a.mu.Unlock()
	t.stop()
}
