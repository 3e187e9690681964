// Package ownership is a cluster silo's record of which shards it serves. It
// applies the placement leader's rounds (lock, update, unlock) to per-shard
// states, claims the shards it gains, hands over the shards it loses, and
// answers the actor runtime's question "under which claim may this actor run
// here now?" (it implements actor.Placement).
//
// A shard of a type is, on this silo, one of:
//
//   - not ours: another silo owns it under the adopted table;
//   - gaining: ours under the adopted table, not yet claimed: after the
//     unlock the silo reads the shard's fence record and claims it at once
//     when it is absent, released, or held by a process that is no longer a
//     member (the leader's unlock waited for that process's lease), and
//     otherwise when the holder releases it or the type's drain timeout has
//     passed since the unlock;
//   - held: claimed; turns run under the claim;
//   - losing: the adopted table gives it away: no new turn starts, the hooks
//     drain it (in-flight turns finish, timers stop, reminder writes flush,
//     actors deactivate), then the fence record is released.
//
// A silo that adopts a table past one it missed (a version skipped: it was
// not a member of the rounds between) reads the fence records of the shards
// it holds, and treats as gaining those whose record no longer holds its
// claim: a silo of the missed tables claimed them meanwhile.
//
// A shard in the moving set of a lock starts no turn until the update. Turns
// also need a fresh lease: without one the silo suspends (Claim refuses) but
// keeps every state, and resumes when the lease returns.
package ownership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/ring"
	"github.com/granaryhq/granary/placement/table"
	"github.com/granaryhq/granary/statestore"
)

// Hooks hand shards between the ownership record and the rest of the silo.
type Hooks interface {
	// Lose drains the shards of actorType this silo loses: no new turn
	// starts on them already; Lose returns once their in-flight turns have
	// finished (bounded by the type's drain timeout), their timers stopped,
	// their pending reminder writes flushed and their actors deactivated.
	Lose(ctx context.Context, actorType string, shards []int)
	// Gained loads what the newly claimed shards need (their reminders).
	Gained(ctx context.Context, actorType string, shards []int)
}

// Config configures an Ownership.
type Config struct {
	Self  table.Owner
	Store statestore.Store
	// Lease reports whether the silo holds a fresh lease.
	Lease func() bool
	// DrainTimeout is the drain timeout of an actor type.
	DrainTimeout func(actorType string) time.Duration
	Hooks        Hooks
	// ReportNewer tells placement that a claim was refused by a newer
	// record of this cluster, so it commits a version past it.
	ReportNewer func(version uint64, fenceKey string)
	// TakeOverOtherClusters makes claims win over the fence records of
	// another cluster (a placement bootstrapped again on empty data without
	// its old --cluster-id leaves them behind), which are otherwise refused,
	// naming their holder. Records of this cluster are never taken over.
	TakeOverOtherClusters bool
	// PollInterval is how often a gaining shard's fence record is read
	// while waiting for its release (default 50 ms).
	PollInterval time.Duration
	Clock        clock.Clock
	Logger       *slog.Logger
}

type shardPhase uint8

const (
	notOurs shardPhase = iota
	gaining
	held
	losing
)

func (p shardPhase) String() string {
	return [...]string{"not ours", "gaining", "held", "losing"}[p]
}

type shard struct {
	phase shardPhase
	claim statestore.Claim
	// locked: in the moving set of the current round's lock.
	locked bool
}

type typeShards struct {
	shards [ring.Shards]shard
}

// Ownership is one silo's shard states. Make it with New.
type Ownership struct {
	cfg Config
	log *slog.Logger

	mu      sync.RWMutex
	tbl     *table.Table
	types   map[string]*typeShards
	removed string
	// handovers tracks the goroutines that claim and release shards.
	handovers sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
}

// New makes the record of a silo that holds nothing yet.
func New(cfg Config) *Ownership {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	if cfg.DrainTimeout == nil {
		cfg.DrainTimeout = func(string) time.Duration { return actor.DefaultDrainTimeout }
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Ownership{cfg: cfg, log: cfg.Logger, types: map[string]*typeShards{}, ctx: ctx, cancel: cancel}
}

// Close stops the hand-overs under way and waits for them.
func (o *Ownership) Close() {
	o.cancel()
	o.handovers.Wait()
}

// Table is the adopted table; nil before the first update.
func (o *Ownership) Table() *table.Table {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.tbl
}

// Errors that Claim wraps (with actor.ErrNotOwner) so callers can tell a
// wait from a redirect.
var (
	// ErrNoLease: the silo's lease has lapsed; it is suspended.
	ErrNoLease = errors.New("this silo's placement lease has lapsed")
	// ErrHandover: the shard is ours but not claimed yet, or moving.
	ErrHandover = errors.New("the actor's shard is being handed over")
	// ErrElsewhere: another silo owns the actor's shard.
	ErrElsewhere = errors.New("another silo owns the actor's shard")
	// ErrRemoved: placement removed this silo from the cluster.
	ErrRemoved = errors.New("placement removed this silo from the cluster")
)

// Claim implements actor.Placement.
func (o *Ownership) Claim(_ context.Context, id actor.ID) (statestore.Claim, error) {
	s := statestore.ShardOf(id.Type, id.ID)
	o.mu.RLock()
	removed := o.removed
	var sh shard
	ts := o.types[id.Type]
	if ts != nil {
		sh = ts.shards[s]
	}
	o.mu.RUnlock()
	switch {
	case removed != "":
		return statestore.Claim{}, fmt.Errorf("%w: %w (%s)", actor.ErrNotOwner, ErrRemoved, removed)
	case sh.phase == held && o.cfg.Lease != nil && !o.cfg.Lease():
		return statestore.Claim{}, fmt.Errorf("%w: %w: %w", actor.ErrNotOwner, actor.ErrSuspended, ErrNoLease)
	case sh.phase == held && sh.locked:
		return statestore.Claim{}, fmt.Errorf("%w: %w: %w (shard %d of %s is locked for a table change)", actor.ErrNotOwner, actor.ErrSuspended, ErrHandover, s, id.Type)
	case sh.phase == held:
		return sh.claim, nil
	case sh.phase == notOurs:
		return statestore.Claim{}, fmt.Errorf("%w: %w", actor.ErrNotOwner, ErrElsewhere)
	}
	return statestore.Claim{}, fmt.Errorf("%w: %w (shard %d of %s is %s)", actor.ErrNotOwner, ErrHandover, s, id.Type, sh.phase)
}

// HeldClaim is the claim of id's shard while this silo still holds its fence
// record under a lease, including while it hands the shard over (for the
// last reminder writes); it implements reminders.HeldClaimer.
func (o *Ownership) HeldClaim(id actor.ID) (statestore.Claim, bool) {
	s := statestore.ShardOf(id.Type, id.ID)
	o.mu.RLock()
	var sh shard
	if ts := o.types[id.Type]; ts != nil && o.removed == "" {
		sh = ts.shards[s]
	}
	o.mu.RUnlock()
	if sh.phase != held && sh.phase != losing {
		return statestore.Claim{}, false
	}
	if o.cfg.Lease != nil && !o.cfg.Lease() {
		return statestore.Claim{}, false
	}
	return sh.claim, true
}

// Phase applies one phase of a round; it implements the phase part of
// placementclient.Handler.
func (o *Ownership) Phase(ctx context.Context, round uint64, p membership.Phase, t *table.Table) error {
	switch p {
	case membership.PhaseLock:
		o.lock(t)
	case membership.PhaseUpdate:
		o.update(t)
	case membership.PhaseUnlock:
		o.unlock(t)
	default:
		return fmt.Errorf("ownership: unknown phase %v", p)
	}
	return nil
}

// LeaderLost drops the locks of the lost leader's round.
func (o *Ownership) LeaderLost() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ts := range o.types {
		for i := range ts.shards {
			ts.shards[i].locked = false
		}
	}
}

// Removed records that placement removed this silo: it serves nothing more.
func (o *Ownership) Removed(reason string) {
	o.mu.Lock()
	o.removed = reason
	var lost map[string][]int
	for typ, ts := range o.types {
		for i := range ts.shards {
			if ts.shards[i].phase == held || ts.shards[i].phase == losing {
				if lost == nil {
					lost = map[string][]int{}
				}
				lost[typ] = append(lost[typ], i)
			}
			ts.shards[i] = shard{}
		}
	}
	o.mu.Unlock()
	// Its shards are claimed elsewhere by now or soon; deactivate without
	// releasing (the claims may already be someone else's).
	for typ, shards := range lost {
		o.handovers.Add(1)
		go func() {
			defer o.handovers.Done()
			o.cfg.Hooks.Lose(o.ctx, typ, shards)
		}()
	}
}

// Rejected is Removed for a process placement never admitted.
func (o *Ownership) Rejected(reason string) { o.Removed(reason) }

func (o *Ownership) typeOf(typ string) *typeShards {
	ts := o.types[typ]
	if ts == nil {
		ts = &typeShards{}
		o.types[typ] = ts
	}
	return ts
}

func (o *Ownership) isSelf(m table.Owner) bool { return m == o.cfg.Self }

func (o *Ownership) lock(t *table.Table) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, mv := range table.Moves(o.tbl, t) {
		if o.isSelf(mv.From) || o.isSelf(mv.To) {
			o.typeOf(mv.Type).shards[mv.Shard].locked = true
		}
	}
}

// update adopts t: shards lost stop admitting turns before this returns (so
// the update's acknowledgement means exactly that) and are drained in the
// background; shards gained wait for the unlock.
func (o *Ownership) update(t *table.Table) {
	o.mu.Lock()
	if o.tbl != nil && t.Version <= o.tbl.Version {
		o.mu.Unlock()
		return
	}
	// A table skipped means rounds this silo was not part of: a silo of
	// those tables may have claimed shards it still holds.
	missed := o.tbl != nil && t.Version > o.tbl.Version+1
	lost := map[string][]int{}
	for _, mv := range table.Moves(o.tbl, t) {
		ts := o.typeOf(mv.Type)
		sh := &ts.shards[mv.Shard]
		switch {
		case o.isSelf(mv.From):
			if sh.phase == held {
				sh.phase = losing
				lost[mv.Type] = append(lost[mv.Type], int(mv.Shard))
			} else if sh.phase == gaining {
				sh.phase = notOurs
			}
		case o.isSelf(mv.To):
			if sh.phase == notOurs || sh.phase == losing {
				// A shard regained while its hand-over runs is not
				// released; the unlock claims it again.
				sh.phase = gaining
			}
		}
	}
	for _, ts := range o.types {
		for i := range ts.shards {
			ts.shards[i].locked = false
		}
	}
	o.tbl = t
	o.mu.Unlock()
	for typ, shards := range lost {
		o.handovers.Add(1)
		go o.handOver(typ, shards)
	}
	if missed {
		o.handovers.Add(1)
		go o.recheckHeld(t)
	}
}

// handOver drains lost shards and releases their fence records.
func (o *Ownership) handOver(typ string, shards []int) {
	defer o.handovers.Done()
	started := o.cfg.Clock.Now()
	o.cfg.Hooks.Lose(o.ctx, typ, shards)
	released := 0
	for _, s := range shards {
		o.mu.Lock()
		sh := &o.typeOf(typ).shards[s]
		if sh.phase != losing {
			o.mu.Unlock()
			continue // regained meanwhile
		}
		claim := sh.claim
		*sh = shard{}
		o.mu.Unlock()
		if err := statestore.ReleaseShard(o.ctx, o.cfg.Store, statestore.ShardFenceKey(typ, s), claim); err != nil {
			// Not fatal: the new owner claims after the drain timeout.
			o.log.Warn("releasing a shard fence failed", "type", typ, "shard", s, "err", err)
			continue
		}
		released++
	}
	o.log.Info("handed over shards", "type", typ, "shards", len(shards), "released", released,
		"took", o.cfg.Clock.Now().Sub(started).Round(time.Millisecond))
}

// sameTable reports whether a and b are one version of one cluster's table.
// A new leader re-runs the round of the committed table, so the update and
// the unlock of one version may come in different objects.
func sameTable(a, b *table.Table) bool {
	return a != nil && b != nil && a.Version == b.Version && a.ClusterID == b.ClusterID
}

// Status counts shards per state and type, for the metadata endpoint.
type Status struct {
	TableVersion uint64                    `json:"tableVersion"`
	Removed      string                    `json:"removed,omitempty"`
	Shards       map[string]map[string]int `json:"shards"`
}

// Status reports the record.
func (o *Ownership) Status() Status {
	o.mu.RLock()
	defer o.mu.RUnlock()
	st := Status{Removed: o.removed, Shards: map[string]map[string]int{}}
	if o.tbl != nil {
		st.TableVersion = o.tbl.Version
	}
	for typ, ts := range o.types {
		counts := map[string]int{}
		for _, sh := range ts.shards {
			if sh.phase != notOurs {
				counts[sh.phase.String()]++
			}
		}
		st.Shards[typ] = counts
	}
	return st
}
