package reminders

import (
	"context"
	"fmt"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
)

// HeldClaimer is implemented by a placement that can name the claim of a
// shard this silo still holds while it hands the shard over: the due times
// of its last fires are written under that claim before it is released.
type HeldClaimer interface {
	// HeldClaim is the claim of id's shard while this silo holds its fence
	// record and a lease, even if it no longer starts turns there.
	HeldClaim(id actor.ID) (statestore.Claim, bool)
}

// flushFence is the fence of a flush write: the activation's claim, else a
// claim still held during a hand-over, else the placement's.
func (s *Service) flushFence(id actor.ID) (*statestore.FenceCheck, error) {
	if _, active := s.actors.ActivationClaim(id); !active {
		if h, ok := s.cfg.Placement.(HeldClaimer); ok {
			if claim, held := h.HeldClaim(id); held {
				return &statestore.FenceCheck{
					Key:    statestore.ShardFenceKey(id.Type, statestore.ShardOf(id.Type, id.ID)),
					Record: claim.HeldRecord(),
				}, nil
			}
		}
	}
	return s.fence(s.ctx, id)
}

// ShardsLost stops scheduling the reminders of shards of actorType this
// silo hands over, after writing the pending due times of their last fires
// while the silo still holds the shards' claims. Call it once the shards
// admit no new turn, and after their in-flight turns have ended.
func (s *Service) ShardsLost(ctx context.Context, actorType string, shards []int) {
	in := shardSet(shards)
	s.flush(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.entries {
		id := e.id()
		if id.Type == actorType && in[statestore.ShardOf(id.Type, id.ID)] {
			s.dropLocked(e)
			n++
		}
	}
	if n > 0 {
		s.log.Info("reminders of shards handed over unscheduled", "type", actorType, "shards", len(shards), "reminders", n)
	}
}

// ShardsGained loads the stored reminders of shards of actorType this silo
// has just claimed: one index scan per shard, so a table change costs what
// moved, not every reminder of the cluster.
func (s *Service) ShardsGained(ctx context.Context, actorType string, shards []int) error {
	now := s.clock.Now().UnixNano()
	var loaded, overdue int64
	for _, b := range shards {
		n, late, err := s.loadBucket(ctx, actorType, b, now)
		loaded += n
		overdue += late
		if err != nil {
			return fmt.Errorf("loading the reminders of shard %d of %s: %w", b, actorType, err)
		}
	}
	if loaded > 0 {
		s.log.Info("reminders of shards gained loaded", "type", actorType, "shards", len(shards), "reminders", loaded, "overdue", overdue)
	}
	return nil
}

func shardSet(shards []int) map[int]bool {
	in := make(map[int]bool, len(shards))
	for _, s := range shards {
		in[s] = true
	}
	return in
}
