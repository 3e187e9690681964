package actor

import (
	"context"
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
// timer with the same name is replaced. Timers end with the activation.
func (rt *Runtime) CreateTimer(ctx context.Context, id ID, spec TimerSpec) error {
	if spec.Name == "" || spec.Next == nil {
		return fmt.Errorf("actor %s: timer needs a name and a schedule", id)
	}
	if !rt.enter() {
		return ErrClosed
	}
	defer rt.exit()
	te, err := rt.lookupType(id.Type)
	if err != nil {
		return err
	}
	for {
		a, err := rt.activation(te, id, false)
		if err != nil {
			return err
		}
		t := &actorTimer{spec: spec, a: a, rt: rt}
		a.mu.Lock()
		if a.state != active {
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

// fire runs one timer turn, then schedules the next fire.
func (t *actorTimer) fire() {
	rt, a := t.rt, t.a
	if t.stopped() || !rt.enter() {
		return
	}
	defer rt.exit()
	ctx := context.Background()
	if a.te.native {
		ctx = WithCallChain(ctx, rt.newChain())
	}
	if err := a.acquire(ctx, rt, CallChain(ctx), false); err != nil {
		// The activation ended (its timers end with it) or the turn could not
		// be had in time; in the latter case try again one period later.
		if _, gone := err.(goneError); gone {
			return
		}
		rt.log.Warn("timer could not get the actor's turn", "actor", a.id.String(), "timer", t.spec.Name, "err", err)
	} else {
		call := &TimerCall{Name: t.spec.Name, Callback: t.spec.Callback, Data: t.spec.Data, DueTime: t.spec.DueTime, Period: t.spec.Period}
		if !t.stopped() {
			if err := a.inst.Timer(ctx, call); err != nil {
				rt.log.Warn("timer callback failed", "actor", a.id.String(), "timer", t.spec.Name, "err", err)
			}
		}
		a.release(rt)
	}
	t.mu.Lock()
	t.fires++
	fires := t.fires
	t.mu.Unlock()
	next, ok := t.spec.Next(rt.clock.Now(), fires)
	if !ok {
		a.mu.Lock()
		if a.timers[t.spec.Name] == t {
			delete(a.timers, t.spec.Name)
		}
		a.mu.Unlock()
		t.stop()
		return
	}
	t.schedule(next)
}
