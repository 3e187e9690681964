package actor

import (
	"context"
	"time"

	"github.com/granaryhq/granary/statestore"
)

// DeactivateShards deactivates every activation of actorType whose shard
// is in shards, as when placement moves them to another silo. With the
// type's DrainRebalanced set (the default), running turns may finish until
// the type's drain timeout or ctx ends; without it they are not waited for
// (they cannot commit once the shard is claimed elsewhere). It returns when
// every matching activation is gone.
func (rt *Runtime) DeactivateShards(ctx context.Context, actorType string, shards []int) {
	if len(shards) == 0 {
		return
	}
	in := make(map[int]bool, len(shards))
	for _, s := range shards {
		in[s] = true
	}
	wait, drain := DefaultDrainTimeout, true
	if reg := (*rt.types.Load())[actorType]; reg != nil {
		wait, drain = reg.cfg.DrainTimeout, reg.cfg.DrainRebalanced
	}
	if !drain {
		wait = 0
	}
	dctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	rt.deactivateWhere(dctx, "its shard moved to another silo", func(a *activation) bool {
		return a.id.Type == actorType && in[statestore.ShardOf(a.id.Type, a.id.ID)]
	}, time.Time{})
}

// DrainTimeout is the drain timeout of actorType (the default when the type
// is not registered).
func (rt *Runtime) DrainTimeout(actorType string) time.Duration {
	if reg := (*rt.types.Load())[actorType]; reg != nil {
		return reg.cfg.DrainTimeout
	}
	return DefaultDrainTimeout
}
