package actor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/statestore"
)

// lifecycle is the state of an activation.
type lifecycle uint8

const (
	activating lifecycle = iota
	active
	deactivating
	dead
)

// activation is one live actor on this silo: its instance, the claim of its
// shard it was created under, and the turn queue that serialises everything
// the actor does.
type activation struct {
	id  ID
	reg *registration // the registration it was created under

	// ready is closed once activation has finished; err says whether it failed.
	ready chan struct{}
	err   error
	inst  Instance
	claim statestore.Claim       // the claim it was created under; fixed
	fence *statestore.FenceCheck // what its writes require: claim held by its shard's fence

	mu      sync.Mutex
	life    lifecycle
	gone    chan struct{} // closed when the activation is dead
	turns   turnQueue
	lastUse time.Time     // when the last turn ended
	quiet   chan struct{} // closed when turns.pending drops to 0, if someone waits
	timers  map[string]*actorTimer
	// levels are the running turn levels of a native type (more than one
	// for a reentrant chain), whose contexts are cancelled when the type's
	// drain timeout passes.
	levels []*turnLevel
	// aborted: a turn was cancelled at the drain timeout; abandoned: the
	// activation was deactivated with a turn still running.
	aborted, abandoned bool
}

// turnLevel is one running level of a turn.
type turnLevel struct{ cancel context.CancelCauseFunc }

const shardCount = 64

// shard is one part of the activation table.
type shard struct {
	mu sync.Mutex
	m  map[ID]*activation
}

func (rt *Runtime) shard(id ID) *shard {
	// FNV-1a over type, a separator and id.
	h := uint32(2166136261)
	for i := 0; i < len(id.Type); i++ {
		h = (h ^ uint32(id.Type[i])) * 16777619
	}
	h = (h ^ '/') * 16777619
	for i := 0; i < len(id.ID); i++ {
		h = (h ^ uint32(id.ID[i])) * 16777619
	}
	return &rt.shards[h%shardCount]
}

// errRetired: the registration a call looked up was replaced or unregistered
// before the call could create an activation with it; look the type up again.
var errRetired = errors.New("actor type registration retired")

// activation returns the live activation of id, creating it under reg if
// there is none. With existingOnly it creates none (ErrClosed instead).
// caller is the context of the call that asked for it: an activation it
// creates runs within the call's trace, though not under its deadline.
func (rt *Runtime) activation(caller context.Context, reg *registration, id ID, existingOnly bool) (*activation, error) {
	sh := rt.shard(id)
	sh.mu.Lock()
	a := sh.m[id]
	created := false
	if a == nil {
		if existingOnly {
			sh.mu.Unlock()
			return nil, ErrClosed
		}
		// Checked under the shard lock: Unregister retires a registration
		// before it scans the shards, so an activation either is seen by
		// that scan or sees the retirement here.
		if reg.retired.Load() {
			sh.mu.Unlock()
			return nil, errRetired
		}
		a = &activation{id: id, reg: reg, ready: make(chan struct{})}
		sh.m[id] = a
		created = true
	}
	sh.mu.Unlock()
	if created {
		rt.activate(caller, a, sh)
	} else {
		<-a.ready
	}
	if a.err != nil {
		return nil, a.err
	}
	return a, nil
}

// activate gets the claim of the actor's shard and creates the actor's
// instance; on failure it removes the activation so the next call tries again.
func (rt *Runtime) activate(caller context.Context, a *activation, sh *shard) {
	ctx := context.Background()
	if sc := trace.SpanContextFromContext(caller); sc.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, sc)
	}
	ctx, cancel := context.WithTimeout(ctx, rt.activationTimeout)
	defer cancel()
	err := rt.activateInstance(ctx, a)
	a.mu.Lock()
	if err != nil {
		a.err = err
		a.life = dead
		if a.gone != nil {
			close(a.gone)
		}
	} else {
		a.life = active
		a.lastUse = rt.clock.Now()
	}
	a.mu.Unlock()
	if err != nil {
		sh.mu.Lock()
		if sh.m[a.id] == a {
			delete(sh.m, a.id)
		}
		sh.mu.Unlock()
		rt.log.WarnContext(ctx, "actor activation failed", "actor", a.id.String(), "err", err)
	} else {
		a.reg.state.active.Add(1)
		a.reg.state.obs.Activated()
		rt.idle.add(a, a.lastUse.Add(a.reg.cfg.IdleTimeout))
	}
	close(a.ready)
}

// activateInstance creates the instance only once the placement granted a
// claim, so nothing of the actor is loaded by a silo that may not serve it.
func (rt *Runtime) activateInstance(ctx context.Context, a *activation) error {
	claim, err := rt.placement.Claim(ctx, a.id)
	if err != nil {
		return fmt.Errorf("actor %s: %w", a.id, err)
	}
	a.claim = claim
	a.fence = &statestore.FenceCheck{
		Key:    statestore.ShardFenceKey(a.id.Type, statestore.ShardOf(a.id.Type, a.id.ID)),
		Record: claim.HeldRecord(),
	}
	inst, err := a.reg.typ.Activate(ctx, a.id, claim)
	if err != nil {
		return fmt.Errorf("actor %s: activating: %w", a.id, err)
	}
	a.inst = inst
	return nil
}

// lookupActive returns the activation of id if it has finished activating here.
func (rt *Runtime) lookupActive(id ID) *activation {
	sh := rt.shard(id)
	sh.mu.Lock()
	a := sh.m[id]
	sh.mu.Unlock()
	if a == nil {
		return nil
	}
	select {
	case <-a.ready:
	default:
		return nil
	}
	if a.err != nil {
		return nil
	}
	return a
}

// IsActive reports whether the actor is active on this silo.
func (rt *Runtime) IsActive(id ID) bool {
	a := rt.lookupActive(id)
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.life == active
}

// QueueLength returns how many calls wait for the actor's turn (0 when it is
// not active here).
func (rt *Runtime) QueueLength(id ID) int {
	a := rt.lookupActive(id)
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.turns.waiters.len()
}

// eachActivation calls f for every activation in the table.
func (rt *Runtime) eachActivation(f func(*activation)) {
	for i := range rt.shards {
		sh := &rt.shards[i]
		sh.mu.Lock()
		for _, a := range sh.m {
			f(a)
		}
		sh.mu.Unlock()
	}
}

// goneLocked returns the channel closed when the activation is dead. Requires a.mu.
func (a *activation) goneLocked() <-chan struct{} {
	if a.gone == nil {
		a.gone = make(chan struct{})
		if a.life == dead {
			close(a.gone)
		}
	}
	return a.gone
}

// quietLocked wakes a deactivation waiting for the last admitted call to end.
// Requires a.mu.
func (a *activation) quietLocked() {
	if a.turns.pending == 0 && a.quiet != nil {
		close(a.quiet)
		a.quiet = nil
	}
}
