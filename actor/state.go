package actor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/granaryhq/granary/statestore"
)

// GetState reads one state entry of an actor from the store. It needs no activation.
func (rt *Runtime) GetState(ctx context.Context, id ID, key string) (statestore.Item, error) {
	return rt.store.Get(ctx, statestore.ActorStateKey(id.Type, id.ID, key))
}

// Transact commits state operations of an active actor atomically, fenced by
// the claim its activation was created under: the store refuses the whole
// transaction unless the shard's fence record still holds that claim. Op keys
// are the actor's state keys; the caller's slice is left as it is, so it may
// be passed again. Transact fails with ErrNotActive when the actor is not
// active here, and with ErrFenced (deactivating the activation) when its claim
// is no longer the shard's.
func (rt *Runtime) Transact(ctx context.Context, id ID, ops []statestore.Op) error {
	a := rt.lookupActive(id)
	if a == nil {
		return fmt.Errorf("actor %s: %w on this silo", id, ErrNotActive)
	}
	claim, err := rt.placement.Claim(ctx, id)
	if err != nil {
		return fmt.Errorf("actor %s: %w", id, err)
	}
	if claim != a.claim {
		// The shard was lost and claimed again: the store would refuse the
		// write, and the activation runs on state of the old claim.
		rt.fenced(ctx, a, fmt.Sprintf("the shard is held under claim %s now", claim))
		return fmt.Errorf("actor %s: %w: activation of claim %s, the shard's claim is %s", id, ErrFenced, a.claim, claim)
	}
	storeOps := make([]statestore.Op, len(ops))
	for i, op := range ops {
		op.Key = statestore.ActorStateKey(id.Type, id.ID, op.Key)
		storeOps[i] = op
	}
	err = rt.store.Transact(ctx, statestore.Txn{Fence: a.fence, Ops: storeOps})
	if errors.Is(err, statestore.ErrFenced) {
		rt.fenced(ctx, a, err.Error())
		return fmt.Errorf("actor %s: %w: %v", id, ErrFenced, err)
	}
	return err
}

// fenced deactivates an activation whose claim no longer holds its shard.
func (rt *Runtime) fenced(ctx context.Context, a *activation, why string) {
	rt.log.WarnContext(ctx, "stale activation fenced; deactivating", "actor", a.id.String(), "claim", a.claim.String(), "why", why)
	rt.recycle(a, "fenced: its claim no longer holds the shard")
}

// recycle deactivates a in the background, letting its running turns finish
// within its type's drain timeout.
func (rt *Runtime) recycle(a *activation, reason string) {
	rt.goTracked(func() {
		ctx, cancel := context.WithTimeout(context.Background(), a.reg.cfg.DrainTimeout)
		defer cancel()
		rt.deactivate(ctx, a, reason, time.Time{})
	})
}

// recycleNow is recycle for a caller that holds a's turn: the activation
// stops admitting turns at once (calls waiting for it go to a fresh
// activation, made once this one is gone), and is deactivated in the
// background once the caller's turn ends.
func (rt *Runtime) recycleNow(a *activation, reason string) {
	quiet, ok := a.beginDeactivation(false)
	if !ok {
		return
	}
	rt.log.Info("actor activation recycled", "actor", a.id.String(), "reason", reason)
	rt.goTracked(func() {
		ctx, cancel := context.WithTimeout(context.Background(), a.reg.cfg.DrainTimeout)
		defer cancel()
		rt.endDeactivation(ctx, a, quiet, reason, time.Time{})
	})
}

// ActivationClaim returns the claim the actor's activation was created under,
// if it is active here, for writes made on its behalf (such as reminder
// records).
func (rt *Runtime) ActivationClaim(id ID) (statestore.Claim, bool) {
	a := rt.lookupActive(id)
	if a == nil {
		return statestore.Claim{}, false
	}
	return a.claim, true
}
