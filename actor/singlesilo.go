package actor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/granaryhq/granary/statestore"
)

// SingleSilo is the placement of a silo that serves every shard of every
// type alone, under one claim. It claims all the shard fences of a type in
// one statestore.ClaimShards batch, on the type's first use or when
// ClaimTypes asks, and then answers from memory. A shard whose claim is
// refused (another process holds it) stays refused for the SingleSilo's life:
// its actors answer ErrNotOwner wrapping the *statestore.ClaimRefusedError. A
// shard not claimed because the store failed is claimed again on next use.
type SingleSilo struct {
	store    statestore.Store
	claim    statestore.Claim
	log      *slog.Logger
	takeover bool

	types sync.Map // actor type → *typeShards
}

// typeShards is what a SingleSilo knows of the shards of one type.
type typeShards struct {
	claiming chan struct{}                // a token: held by the claim pass under way
	states   atomic.Pointer[shardOutcome] // nil before the first pass
}

// shardOutcome is, per shard, nil when claimed, errUnclaimed when not yet
// claimed, or the refusal. It is replaced whole, never changed.
type shardOutcome [statestore.ShardCount]error

var errUnclaimed = errors.New("the shard is not claimed yet")

// NewSingleSilo returns the placement that serves every shard under claim.
func NewSingleSilo(store statestore.Store, claim statestore.Claim, logger *slog.Logger) *SingleSilo {
	if logger == nil {
		logger = slog.Default()
	}
	return &SingleSilo{store: store, claim: claim, log: logger}
}

// TakeOver makes the SingleSilo's claims win over the records of other
// clusters, for a silo that knows no other process can use the store (the
// embedded store's file lock says so). Call it before the first claim.
func (p *SingleSilo) TakeOver() *SingleSilo {
	p.takeover = true
	return p
}

// Held is the claim the SingleSilo serves under.
func (p *SingleSilo) Held() statestore.Claim { return p.claim }

// Claim returns the SingleSilo's claim once id's shard is claimed, claiming
// the shards of id's type first if that was not done yet.
func (p *SingleSilo) Claim(ctx context.Context, id ID) (statestore.Claim, error) {
	t := p.shardsOf(id.Type)
	shard := statestore.ShardOf(id.Type, id.ID)
	err := t.outcome(shard)
	if err == errUnclaimed {
		if cerr := p.claimType(ctx, id.Type, t); cerr != nil && t.outcome(shard) == errUnclaimed {
			return statestore.Claim{}, fmt.Errorf("claiming the shards of actor type %q: %w", id.Type, cerr)
		}
		err = t.outcome(shard)
	}
	if err != nil {
		return statestore.Claim{}, fmt.Errorf("%w: %w", ErrNotOwner, err)
	}
	return p.claim, nil
}

// ClaimTypes claims the shards of each type now, so that a refusal shows at
// start rather than at the first call. It returns, joined, an error per type
// with refused shards (wrapping the first *statestore.ClaimRefusedError,
// which names the holder) or a store failure; the refusals are logged too.
func (p *SingleSilo) ClaimTypes(ctx context.Context, types ...string) error {
	var errs []error
	for _, name := range types {
		t := p.shardsOf(name)
		if err := p.claimType(ctx, name, t); err != nil {
			errs = append(errs, fmt.Errorf("actor type %q: claiming its shards: %w", name, err))
			continue
		}
		if n, first := t.refusals(); n > 0 {
			errs = append(errs, fmt.Errorf("actor type %q: %d of %d shards refused: %w", name, n, statestore.ShardCount, first))
		}
	}
	return errors.Join(errs...)
}

func (p *SingleSilo) shardsOf(actorType string) *typeShards {
	if t, ok := p.types.Load(actorType); ok {
		return t.(*typeShards)
	}
	t, _ := p.types.LoadOrStore(actorType, &typeShards{claiming: make(chan struct{}, 1)})
	return t.(*typeShards)
}

func (t *typeShards) outcome(shard int) error {
	s := t.states.Load()
	if s == nil {
		return errUnclaimed
	}
	return s[shard]
}

// refusals counts the refused shards and returns the first refusal.
func (t *typeShards) refusals() (int, error) {
	s := t.states.Load()
	if s == nil {
		return 0, nil
	}
	n, first := 0, error(nil)
	for _, err := range s {
		if err != nil && err != errUnclaimed {
			if first == nil {
				first = err
			}
			n++
		}
	}
	return n, first
}

// claimType claims, in one batch, the shards of the type neither claimed nor
// refused yet. It returns the store's failure, if claims failed for one.
func (p *SingleSilo) claimType(ctx context.Context, actorType string, t *typeShards) error {
	select {
	case t.claiming <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-t.claiming }()
	next := new(shardOutcome)
	if old := t.states.Load(); old != nil {
		*next = *old
	} else {
		for i := range next {
			next[i] = errUnclaimed
		}
	}
	var (
		keys   []string
		shards []int
	)
	for shard, err := range next {
		if err == errUnclaimed {
			keys = append(keys, statestore.ShardFenceKey(actorType, shard))
			shards = append(shards, shard)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	var (
		failed         error
		refused, fails int
		first          *statestore.ClaimRefusedError
	)
	for i, err := range statestore.ClaimShards(ctx, p.store, keys, p.claim, p.takeover) {
		switch {
		case err == nil:
			next[shards[i]] = nil
		case errors.Is(err, statestore.ErrFenced):
			next[shards[i]] = err
			refused++
			if first == nil {
				first, _ = errors.AsType[*statestore.ClaimRefusedError](err)
			}
		default:
			failed = err
			fails++
		}
	}
	t.states.Store(next)
	switch {
	case refused > 0 && first != nil && first.Holder != (statestore.Claim{}):
		p.log.Error("shards of an actor type are held by another process: this silo does not serve their actors",
			"type", actorType, "refused", refused, "shards", statestore.ShardCount,
			"holder", first.Holder.String(), "holderCluster", first.Holder.Cluster, "holderReleased", first.Released,
			"reason", first.Reason, "claim", p.claim.String(), "cluster", p.claim.Cluster)
	case refused > 0:
		p.log.Error("shards of an actor type could not be claimed: this silo does not serve their actors",
			"type", actorType, "refused", refused, "shards", statestore.ShardCount, "err", next[firstRefused(next)])
	}
	if fails > 0 {
		p.log.Warn("claiming shards of an actor type failed; they are claimed again on next use",
			"type", actorType, "failed", fails, "err", failed)
		return failed
	}
	if refused == 0 {
		p.log.Debug("shards of an actor type claimed", "type", actorType, "shards", len(keys), "claim", p.claim.String())
	}
	return nil
}

func firstRefused(s *shardOutcome) int {
	for i, err := range s {
		if err != nil && err != errUnclaimed {
			return i
		}
	}
	return 0
}

// NewIncarnation returns a random name for one run of a process: 16 hex digits.
func NewIncarnation() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}
