package actor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/statestore"
)

// turnFunc is the work of one turn, run while the turn is held.
type turnFunc func(ctx context.Context, a *activation, chain string) error

// goneError tells the caller that the activation ended before the call could
// be admitted; the caller waits on the channel and retries on a new activation.
type goneError struct{ gone <-chan struct{} }

func (goneError) Error() string { return "actor activation ended" }

// claimChangedError tells the caller that the activation's shard was claimed
// again since it was created: the activation is being recycled, and the
// caller waits on the channel and retries on a fresh one.
type claimChangedError struct{ gone <-chan struct{} }

func (claimChangedError) Error() string {
	return "actor activation recycled: its shard was claimed again"
}

// errActivationEnded: a turn was asked of one activation (a timer's), which
// has ended.
var errActivationEnded = errors.New("actor activation ended")

// errDrainAbort is the cause of a turn's context cancelled because its type's
// drain timeout passed.
var errDrainAbort = errors.New("the actor type's drain timeout passed")

// turn runs fn as one turn of the actor, activating it if needed. Every
// check a turn must pass is made here or in startTurn, for method calls and
// reminders alike (timers use turnOn, which shares startTurn).
func (rt *Runtime) turn(ctx context.Context, id ID, fn turnFunc) (err error) {
	var entered time.Time
	if rt.timed {
		entered = time.Now()
	}
	ctx, span := rt.startTurnSpan(ctx, id)
	if span != nil {
		defer func() { endTurnSpan(span, err) }()
	}
	chain := CallChain(ctx)
	open := rt.enter()
	if !open {
		if chain == "" {
			return ErrClosed
		}
		// While draining, a turn in progress may still call back into its own chain.
		rt.calls.Add(1)
	}
	defer rt.exit()
	for {
		// Looked up again on every attempt: after the activation this call
		// waited for has gone, the type may have been unregistered or
		// registered anew.
		reg, err := rt.lookupType(id.Type)
		if err != nil {
			return err
		}
		a, err := rt.activation(ctx, reg, id, !open)
		if errors.Is(err, errRetired) {
			continue
		}
		if err != nil {
			return err
		}
		if chain == "" && (a.reg.cfg.Reentrancy || a.reg.native) {
			chain = newChainID()
			ctx = WithCallChain(ctx, chain)
		}
		err = a.acquire(ctx, rt, chain, !open)
		if g, ok := errors.AsType[goneError](err); ok {
			if rt.closed.Load() {
				return fmt.Errorf("actor %s: %w", id, ErrClosed)
			}
			select {
			case <-g.gone:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err != nil {
			return err
		}
		err = rt.startTurn(ctx, a, chain, fn, entered, span)
		if c, ok := errors.AsType[claimChangedError](err); ok {
			select {
			case <-c.gone:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return err
	}
}

// turnOn runs fn as one turn of the activation a itself, not of whatever
// activation the actor has now: a timer belongs to its activation, and ends
// (errActivationEnded) when the activation does.
func (rt *Runtime) turnOn(a *activation, fn turnFunc) (err error) {
	if !rt.enter() {
		return ErrClosed
	}
	defer rt.exit()
	if _, err := rt.lookupType(a.id.Type); err != nil {
		return err
	}
	var entered time.Time
	if rt.timed {
		entered = time.Now()
	}
	ctx, span := rt.startTurnSpan(context.Background(), a.id)
	if span != nil {
		defer func() { endTurnSpan(span, err) }()
	}
	chain := ""
	if a.reg.native {
		chain = newChainID()
		ctx = WithCallChain(ctx, chain)
	}
	if err := a.acquire(ctx, rt, chain, false); err != nil {
		if _, gone := errors.AsType[goneError](err); gone {
			return errActivationEnded
		}
		return err
	}
	err = rt.startTurn(ctx, a, chain, fn, entered, span)
	if _, recycled := errors.AsType[claimChangedError](err); recycled {
		return errActivationEnded
	}
	return err
}

// startTurn runs fn on a, whose turn the caller holds, and releases the turn.
// The claim is checked when the turn starts, not only at activation: the
// placement may have moved the actor while the activation lived or while the
// call waited, and an activation created under an older claim of its shard is
// recycled rather than run on stale state (claimChangedError; a reentrant
// call inside its turn gets ErrFenced instead, since the recycling waits for
// that turn). The turn's context is cancelled if the type's drain timeout
// passes while it runs. entered is when the call arrived (zero when the
// runtime neither observes nor traces), span the turn's span or nil.
func (rt *Runtime) startTurn(ctx context.Context, a *activation, chain string, fn turnFunc, entered time.Time, span trace.Span) error {
	claim, err := rt.placement.Claim(ctx, a.id)
	if err != nil {
		a.release(rt)
		return fmt.Errorf("actor %s: %w", a.id, err)
	}
	if claim != a.claim {
		return rt.claimMoved(a, claim)
	}
	outermost := rt.invariantTurnStarted(a)
	// A native turn runs under a context of its own, cancelled if the drain
	// timeout passes; other types' calls are aborted by the type itself
	// (CallAborter), which costs nothing per turn.
	var level *turnLevel
	tctx := ctx
	if a.reg.native {
		var cancel context.CancelCauseFunc
		tctx, cancel = context.WithCancelCause(ctx)
		level = &turnLevel{cancel: cancel}
	}
	if level != nil {
		a.mu.Lock()
		a.levels = append(a.levels, level)
		a.mu.Unlock()
	}

	var began time.Time
	if rt.timed {
		began = time.Now()
		wait := began.Sub(entered)
		a.reg.state.obs.TurnStarted(wait)
		turnAdmitted(span, wait)
	}

	err = fn(tctx, a, chain)

	if rt.timed {
		a.reg.state.obs.TurnEnded(time.Since(began), err)
	}
	aborted := a.reg.aborted.Load()
	if level != nil {
		a.mu.Lock()
		for i, l := range a.levels {
			if l == level {
				a.levels = append(a.levels[:i], a.levels[i+1:]...)
				break
			}
		}
		a.mu.Unlock()
		aborted = aborted || errors.Is(context.Cause(tctx), errDrainAbort)
		level.cancel(nil)
	}
	rt.invariantTurnEnded(a, outermost)
	if moved, ok := errors.AsType[*claimMovedError](err); ok && moved.id == a.id && !aborted {
		// The type found the claim gone before it sent anything
		// (ConfirmClaim): as if the turn had found it so at its start.
		return rt.claimMoved(a, moved.now)
	}
	if err != nil && errors.Is(err, ErrAppTimeout) {
		// The app may still run the call: no later turn may start on this
		// activation, and the next one waits for its deactivation.
		rt.recycleNow(a, "a call to the app timed out")
	}
	a.release(rt)
	if err != nil && aborted {
		return fmt.Errorf("actor %s: turn aborted when the drain timeout of %v passed: %w", a.id, a.reg.cfg.DrainTimeout, ErrClosed)
	}
	return err
}

// claimMoved ends a turn on a, which the caller holds, whose shard is held
// under claim now rather than a's: the turn is released and a recycled. An
// outermost call is told to retry on a fresh activation
// (claimChangedError); a reentrant one gets ErrFenced, since the recycling
// waits for the turn it is part of.
func (rt *Runtime) claimMoved(a *activation, claim statestore.Claim) error {
	a.mu.Lock()
	nested := a.turns.depth > 1
	gone := a.goneLocked()
	a.mu.Unlock()
	a.release(rt)
	rt.log.Info("actor activation recycled: its shard was claimed again", "actor", a.id.String(), "was", a.claim.String(), "now", claim.String())
	rt.recycle(a, "its shard was claimed again")
	if nested {
		return fmt.Errorf("actor %s: %w: its shard was claimed again (%s) during the turn of claim %s", a.id, ErrFenced, claim, a.claim)
	}
	return claimChangedError{gone}
}

// claimMovedError is ConfirmClaim's answer when the shard was claimed again
// during the turn; startTurn turns it into claimMoved's.
type claimMovedError struct {
	id       ID
	was, now statestore.Claim
}

func (e *claimMovedError) Error() string {
	return fmt.Sprintf("actor %s: %v: its shard was claimed again (%s) during the turn of claim %s", e.id, ErrFenced, e.now, e.was)
}

func (e *claimMovedError) Unwrap() error { return ErrFenced }

// ConfirmClaim reports whether this silo may still run id's turn under
// claim, the claim of the activation the turn runs on: a type calls it right
// before it hands a call to the code that runs the actor, so that a silo
// which lost its lease or its claim since the turn started (a process paused
// in between, a table change) sends nothing. It fails with the placement's
// error (wrapping ErrNotOwner, and ErrSuspended when the silo may resume),
// or, when the shard was claimed again, with an error wrapping ErrFenced
// that the type returns from the turn unchanged: the runtime then retries
// the call on a fresh activation, as when a turn finds the claim changed as
// it starts.
func (rt *Runtime) ConfirmClaim(ctx context.Context, id ID, claim statestore.Claim) error {
	now, err := rt.placement.Claim(ctx, id)
	if err != nil {
		return fmt.Errorf("actor %s: %w", id, err)
	}
	if now != claim {
		return &claimMovedError{id: id, was: claim, now: now}
	}
	return nil
}

// acquire admits a call to the actor's turn: at once when the actor is idle or
// the call belongs to the chain holding the turn (reentrancy), otherwise after
// every call queued before it. onlyReentrant admits nothing but reentrant calls
// (used while the runtime drains).
func (a *activation) acquire(ctx context.Context, rt *Runtime, chain string, onlyReentrant bool) error {
	a.mu.Lock()
	v, w := a.turns.admit(a.life, chain, &a.reg.cfg, onlyReentrant)
	switch v {
	case runNow, runNested:
		a.mu.Unlock()
		return nil
	case refusedGone:
		gone := a.goneLocked()
		a.mu.Unlock()
		return goneError{gone}
	case refusedDeadlock:
		a.mu.Unlock()
		return fmt.Errorf("actor %s: call chain %s already holds its turn and the type is not reentrant: %w", a.id, chain, ErrDeadlock)
	case refusedDepth:
		a.mu.Unlock()
		return fmt.Errorf("actor %s: depth %d reached: %w", a.id, a.reg.cfg.MaxStackDepth, ErrStackDepth)
	case refusedClosed:
		a.mu.Unlock()
		return ErrClosed
	}
	startedBefore := a.turns.started
	a.mu.Unlock()

	timer := rt.clock.NewTimer(rt.turnWait)
	var err error
	select {
	case <-w.ready:
		timer.Stop()
		a.mu.Lock()
		turnedAway := w.turnedAway
		gone := a.goneLocked()
		a.mu.Unlock()
		if turnedAway {
			return goneError{gone}
		}
		return nil
	case <-ctx.Done():
		err = fmt.Errorf("actor %s: waiting for its turn: %w", a.id, ctx.Err())
	case <-timer.C():
		err = a.turnWaitError(rt, w, startedBefore)
	case <-rt.abort:
		err = fmt.Errorf("actor %s: %w", a.id, ErrClosed)
	}
	timer.Stop()
	a.mu.Lock()
	if a.turns.leave(w) {
		// The turn was handed over while we gave up: pass it on.
		a.mu.Unlock()
		a.release(rt)
		return err
	}
	a.quietLocked()
	a.mu.Unlock()
	return err
}

// turnWaitError explains a call that waited the whole turn-wait bound. When
// the turn running as it queued is still running, a call cycle is the likely
// cause: an actor whose turn calls another actor that calls back into it,
// along a path where the call chain is lost (app actors without reentrancy
// get no Dapr-Reentrancy-Id), waits for its own turn.
func (a *activation) turnWaitError(rt *Runtime, w *waiter, startedBefore uint64) error {
	a.mu.Lock()
	sameTurn := a.turns.started == startedBefore
	ahead := a.turns.ahead(w)
	a.mu.Unlock()
	if sameTurn {
		return fmt.Errorf("actor %s: waited %v for its turn while the turn ahead of it ran the whole time (%d more calls queued ahead); "+
			"a call cycle is the likely cause (this actor's turn calling an actor that calls back into it without reentrancy): "+
			"enable reentrancy for the type or break the cycle: %w", a.id, rt.turnWait, ahead, ErrTurnTimeout)
	}
	return fmt.Errorf("actor %s: waited %v with %d calls ahead: %w", a.id, rt.turnWait, ahead+1, ErrTurnTimeout)
}

// release ends a turn (or one nested level of a reentrant chain) and hands the
// turn to the next queued call.
func (a *activation) release(rt *Runtime) {
	now := rt.clock.Now()
	a.mu.Lock()
	a.lastUse = now
	if w := a.turns.release(); w != nil {
		close(w.ready)
	}
	a.quietLocked()
	a.mu.Unlock()
}
