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

// Transact commits state operations of an active actor atomically, fenced by the
// activation's token. Op keys are the actor's state keys; the caller's slice is
// left as it is, so it may be passed again. Transact fails with ErrNotActive
// when the actor is not active here.
func (rt *Runtime) Transact(ctx context.Context, id ID, ops []statestore.Op) error {
	a := rt.lookupActive(id)
	if a == nil {
		return fmt.Errorf("actor %s: %w on this silo", id, ErrNotActive)
	}
	if _, owned := rt.placement.Owns(id); !owned {
		return fmt.Errorf("actor %s: %w", id, ErrNotOwner)
	}
	storeOps := make([]statestore.Op, len(ops))
	for i, op := range ops {
		op.Key = statestore.ActorStateKey(id.Type, id.ID, op.Key)
		storeOps[i] = op
	}
	txn := statestore.Txn{
		Fence: &statestore.FenceCheck{Key: statestore.FenceKey(id.Type, id.ID), Token: a.token},
		Ops:   storeOps,
	}
	err := rt.store.Transact(ctx, txn)
	if errors.Is(err, statestore.ErrFenced) {
		rt.log.Warn("stale activation fenced; deactivating", "actor", id.String(), "token", a.token)
		rt.goTracked(func() {
			ctx, cancel := context.WithTimeout(context.Background(), a.reg.cfg.DrainTimeout)
			defer cancel()
			rt.deactivate(ctx, a, "fenced by a newer activation", time.Time{})
		})
		return fmt.Errorf("actor %s: %w: %v", id, ErrFenced, err)
	}
	return err
}

// ActivationToken returns the fencing token the actor's activation holds, if
// it is active here, for writes made on its behalf (such as reminder records).
func (rt *Runtime) ActivationToken(id ID) (uint64, bool) {
	a := rt.lookupActive(id)
	if a == nil {
		return 0, false
	}
	return a.token, true
}
