package ownership

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/table"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// hooks records hand-overs; Lose blocks while block is set.
type hooks struct {
	mu     sync.Mutex
	lost   map[string]int
	gained map[string]int
	block  chan struct{}
}

func (h *hooks) Lose(ctx context.Context, typ string, shards []int) {
	if h.block != nil {
		select {
		case <-h.block:
		case <-ctx.Done():
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost == nil {
		h.lost = map[string]int{}
	}
	h.lost[typ] += len(shards)
}

func (h *hooks) Gained(_ context.Context, typ string, shards []int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gained == nil {
		h.gained = map[string]int{}
	}
	h.gained[typ] += len(shards)
}

type silo struct {
	o     *Ownership
	h     *hooks
	lease atomic.Bool
	self  table.Owner
}

func newSilo(t *testing.T, store statestore.Store, id string, drain time.Duration) *silo {
	s := &silo{h: &hooks{}, self: table.Owner{ID: id, Incarnation: "inc-" + id}}
	s.lease.Store(true)
	s.o = New(Config{Self: s.self, Store: store, Lease: s.lease.Load, Hooks: s.h,
		DrainTimeout: func(string) time.Duration { return drain }, PollInterval: 10 * time.Millisecond})
	t.Cleanup(s.o.Close)
	return s
}

func member(s *silo) table.Member {
	return table.Member{ID: s.self.ID, Incarnation: s.self.Incarnation, InternalAddr: s.self.ID + ":1", Types: []string{"T"}}
}

func tableOf(t *testing.T, version uint64, silos ...*silo) *table.Table {
	var ms []table.Member
	for _, s := range silos {
		ms = append(ms, member(s))
	}
	tbl, err := table.New("c1", version, ms, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// round plays lock, update and unlock of tbl on every silo, phase by phase.
func round(t *testing.T, tbl *table.Table, silos ...*silo) {
	for _, p := range []membership.Phase{membership.PhaseLock, membership.PhaseUpdate, membership.PhaseUnlock} {
		for _, s := range silos {
			if err := s.o.Phase(context.Background(), tbl.Version, p, tbl); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func eventually(t *testing.T, limit time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// actorOn finds an actor of type T whose shard tbl gives to s.
func actorOn(t *testing.T, tbl *table.Table, s *silo) actor.ID {
	for i := range 100000 {
		id := actor.ID{Type: "T", ID: fmt.Sprint("a", i)}
		if m, ok := tbl.Owner(id.Type, id.ID); ok && m.ID == s.self.ID {
			return id
		}
	}
	t.Fatal("no actor maps to", s.self.ID)
	return actor.ID{}
}

func claimed(s *silo, id actor.ID) bool {
	_, err := s.o.Claim(context.Background(), id)
	return err == nil
}

func TestFirstTableClaimsEveryShardAtOnce(t *testing.T) {
	store := memstore.New()
	a := newSilo(t, store, "a", time.Hour)
	t1 := tableOf(t, 1, a)
	id := actor.ID{Type: "T", ID: "x"}
	if claimed(a, id) {
		t.Fatal("claimed before any table")
	}
	round(t, t1, a)
	eventually(t, 5*time.Second, "a claims every shard", func() bool {
		return a.o.Status().Shards["T"]["held"] == statestore.ShardCount
	})
	c, err := a.o.Claim(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	want := statestore.Claim{Cluster: "c1", Version: 1, Silo: "a", Incarnation: "inc-a"}
	if c != want {
		t.Fatalf("claim %+v, want %+v", c, want)
	}
	item, err := store.Get(context.Background(), statestore.ShardFenceKey("T", statestore.ShardOf("T", "x")))
	if err != nil || string(item.Value) != string(want.HeldRecord()) {
		t.Fatalf("fence record %q (%v), want %q", item.Value, err, want.HeldRecord())
	}
}

func TestJoinHandsShardsOverOnRelease(t *testing.T) {
	store := memstore.New()
	a := newSilo(t, store, "a", time.Hour) // a drain timeout that would fail the test if waited for
	b := newSilo(t, store, "b", time.Hour)
	round(t, tableOf(t, 1, a), a)
	eventually(t, 5*time.Second, "a holds all", func() bool { return a.o.Status().Shards["T"]["held"] == statestore.ShardCount })
	t2 := tableOf(t, 2, a, b)
	moved := actorOn(t, t2, b)
	round(t, t2, a, b)
	if claimed(a, moved) {
		t.Fatal("a still admits turns on a shard it lost after the update")
	}
	want := len(table.Moves(tableOf(t, 1, a), t2))
	took := eventually(t, 5*time.Second, "b claims every moved shard after a releases it", func() bool {
		return b.o.Status().Shards["T"]["held"] == want
	})
	t.Logf("hand-over of %d shards took %v", want, took)
	if !claimed(b, moved) {
		t.Fatal("b does not serve a moved actor")
	}
	a.h.mu.Lock()
	lost := a.h.lost["T"]
	a.h.mu.Unlock()
	if lost != want {
		t.Fatalf("a drained %d shards, %d moved", lost, want)
	}
	if kept := actorOn(t, t2, a); !claimed(a, kept) {
		t.Fatal("a lost a shard it keeps")
	}
}

func TestHandOverWaitsForTheReleaseOrTheDrainTimeout(t *testing.T) {
	store := memstore.New()
	const drain = 400 * time.Millisecond
	a := newSilo(t, store, "a", drain)
	b := newSilo(t, store, "b", drain)
	round(t, tableOf(t, 1, a), a)
	eventually(t, 5*time.Second, "a holds all", func() bool { return a.o.Status().Shards["T"]["held"] == statestore.ShardCount })
	a.h.block = make(chan struct{}) // a's drain hangs
	t2 := tableOf(t, 2, a, b)
	moved := actorOn(t, t2, b)
	unlocked := time.Now()
	round(t, t2, a, b)
	time.Sleep(drain / 2)
	if claimed(b, moved) {
		t.Fatal("b claimed a shard a had neither released nor had the drain timeout to finish")
	}
	eventually(t, 5*time.Second, "b claims after the drain timeout", func() bool { return claimed(b, moved) })
	if since := time.Since(unlocked); since < drain {
		t.Fatalf("b claimed %v after the unlock, before the drain timeout %v", since, drain)
	}
	// a's hung turns finish late: its release is refused, and a write under
	// its old claim is refused by the store.
	old := statestore.Claim{Cluster: "c1", Version: 1, Silo: "a", Incarnation: "inc-a"}
	key := statestore.ShardFenceKey("T", statestore.ShardOf(moved.Type, moved.ID))
	err := store.Transact(context.Background(), statestore.Txn{
		Fence: &statestore.FenceCheck{Key: key, Record: old.HeldRecord()},
		Ops:   []statestore.Op{{Kind: statestore.Put, Key: statestore.ActorStateKey(moved.Type, moved.ID, "k"), Value: []byte("stale")}}})
	if !errors.Is(err, statestore.ErrFenced) {
		t.Fatalf("a write under the old owner's claim after the hand-over: %v, want ErrFenced", err)
	}
	close(a.h.block)
}

func TestDivergingTablesNeverBothCommit(t *testing.T) {
	store := memstore.New()
	a := newSilo(t, store, "a", 50*time.Millisecond)
	b := newSilo(t, store, "b", 50*time.Millisecond)
	round(t, tableOf(t, 1, a), a)
	eventually(t, 5*time.Second, "a holds all", func() bool { return a.o.Status().Shards["T"]["held"] == statestore.ShardCount })
	// b alone adopts v2 (a never hears of it, as in a partition) and takes
	// its shards after the drain timeout.
	t2 := tableOf(t, 2, a, b)
	moved := actorOn(t, t2, b)
	round(t, t2, b)
	eventually(t, 5*time.Second, "b claims", func() bool { return claimed(b, moved) })
	ca, errA := a.o.Claim(context.Background(), moved)
	cb, _ := b.o.Claim(context.Background(), moved)
	if errA != nil {
		t.Fatalf("a, still on v1, should think it owns the actor: %v", errA)
	}
	key := statestore.ShardFenceKey("T", statestore.ShardOf(moved.Type, moved.ID))
	write := func(c statestore.Claim, v string) error {
		return store.Transact(context.Background(), statestore.Txn{
			Fence: &statestore.FenceCheck{Key: key, Record: c.HeldRecord()},
			Ops:   []statestore.Op{{Kind: statestore.Put, Key: statestore.ActorStateKey(moved.Type, moved.ID, "k"), Value: []byte(v)}}})
	}
	if err := write(ca, "from a"); !errors.Is(err, statestore.ErrFenced) {
		t.Fatalf("a's write: %v, want ErrFenced", err)
	}
	if err := write(cb, "from b"); err != nil {
		t.Fatalf("b's write: %v", err)
	}
}

func TestLeaseLapseSuspendsAndResumesInPlace(t *testing.T) {
	store := memstore.New()
	a := newSilo(t, store, "a", time.Hour)
	round(t, tableOf(t, 1, a), a)
	id := actor.ID{Type: "T", ID: "x"}
	eventually(t, 5*time.Second, "claimed", func() bool { return claimed(a, id) })
	before, _ := a.o.Claim(context.Background(), id)
	a.lease.Store(false)
	if _, err := a.o.Claim(context.Background(), id); !errors.Is(err, ErrNoLease) || !errors.Is(err, actor.ErrNotOwner) || !errors.Is(err, actor.ErrSuspended) {
		t.Fatalf("claim without a lease: %v", err)
	}
	a.lease.Store(true)
	after, err := a.o.Claim(context.Background(), id)
	if err != nil || after != before {
		t.Fatalf("after the lease returned: %+v, %v; want the same claim %+v", after, err, before)
	}
	a.h.mu.Lock()
	defer a.h.mu.Unlock()
	if a.h.lost["T"] != 0 {
		t.Fatal("a lease lapse deactivated actors")
	}
}

func TestLockHoldsMovingShardsUntilTheUpdateAndDiesWithItsLeader(t *testing.T) {
	store := memstore.New()
	a := newSilo(t, store, "a", time.Hour)
	b := newSilo(t, store, "b", time.Hour)
	round(t, tableOf(t, 1, a), a)
	eventually(t, 5*time.Second, "a holds all", func() bool { return a.o.Status().Shards["T"]["held"] == statestore.ShardCount })
	t2 := tableOf(t, 2, a, b)
	moving, staying := actorOn(t, t2, b), actorOn(t, t2, a)
	if err := a.o.Phase(context.Background(), 2, membership.PhaseLock, t2); err != nil {
		t.Fatal(err)
	}
	if claimed(a, moving) {
		t.Fatal("a locked shard still admits turns")
	}
	if !claimed(a, staying) {
		t.Fatal("the lock held a shard that does not move")
	}
	a.o.LeaderLost()
	if !claimed(a, moving) {
		t.Fatal("a lock outlived its leader")
	}
}

func TestRemovedSiloServesNothing(t *testing.T) {
	store := memstore.New()
	a := newSilo(t, store, "a", time.Hour)
	round(t, tableOf(t, 1, a), a)
	id := actor.ID{Type: "T", ID: "x"}
	eventually(t, 5*time.Second, "claimed", func() bool { return claimed(a, id) })
	a.o.Removed("not heard from")
	if _, err := a.o.Claim(context.Background(), id); !errors.Is(err, ErrRemoved) {
		t.Fatalf("claim after removal: %v", err)
	}
	eventually(t, 5*time.Second, "deactivated", func() bool {
		a.h.mu.Lock()
		defer a.h.mu.Unlock()
		return a.h.lost["T"] == statestore.ShardCount
	})
}

// gatedStore holds the first TransactMany until gate is closed.
type gatedStore struct {
	statestore.Store
	once    sync.Once
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedStore) TransactMany(ctx context.Context, txns []statestore.Txn) []error {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.gate
	}
	return g.Store.(statestore.MultiTransactor).TransactMany(ctx, txns)
}

func TestAClaimOfAnOutdatedTableIsGivenUp(t *testing.T) {
	store := &gatedStore{Store: memstore.New(), entered: make(chan struct{}), gate: make(chan struct{})}
	a := newSilo(t, store, "a", time.Hour)
	b := newSilo(t, store, "b", time.Hour)
	t1 := tableOf(t, 1, a)
	round(t, t1, a) // a starts claiming everything under v1, and is held in the store
	<-store.entered
	// v2 gives b part of the shards before a's v1 claims land.
	t2 := tableOf(t, 2, a, b)
	moved := actorOn(t, t2, b)
	for _, p := range []membership.Phase{membership.PhaseLock, membership.PhaseUpdate} {
		for _, s := range []*silo{a, b} {
			if err := s.o.Phase(context.Background(), 2, p, t2); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(store.gate)
	key := statestore.ShardFenceKey("T", statestore.ShardOf(moved.Type, moved.ID))
	eventually(t, 5*time.Second, "a's outdated claim reaches the store", func() bool {
		_, err := store.Get(context.Background(), key)
		return err == nil
	})
	for _, s := range []*silo{a, b} {
		if err := s.o.Phase(context.Background(), 2, membership.PhaseUnlock, t2); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 3*time.Second, "b claims the moved shard (a gave up its outdated claim)", func() bool { return claimed(b, moved) })
	eventually(t, 3*time.Second, "a claims what v2 leaves it", func() bool { return claimed(a, actorOn(t, t2, a)) })
}

func TestUnlockOfARerunRoundClaimsWhatTheFirstUpdateGave(t *testing.T) {
	// The leader that sent the update fails; its successor re-runs the
	// round, and its unlock carries the same version in a table of its own.
	store := memstore.New()
	a := newSilo(t, store, "a", time.Hour)
	t1 := tableOf(t, 1, a)
	for _, p := range []membership.Phase{membership.PhaseLock, membership.PhaseUpdate} {
		if err := a.o.Phase(context.Background(), 1, p, t1); err != nil {
			t.Fatal(err)
		}
	}
	a.o.LeaderLost()
	again := tableOf(t, 1, a)
	round(t, again, a)
	eventually(t, 5*time.Second, "a claims its shards on the re-run round's unlock", func() bool {
		return a.o.Status().Shards["T"]["held"] == statestore.ShardCount
	})
}

// Fence records of another cluster are refused, unless the silo takes over
// other clusters' records; records of its own cluster never are taken over.
func TestOtherClustersRecordsAreTakenOverOnlyWhenAsked(t *testing.T) {
	for _, takeOver := range []bool{false, true} {
		t.Run(fmt.Sprintf("take over %v", takeOver), func(t *testing.T) {
			store := memstore.New()
			id := actor.ID{Type: "T", ID: "x"}
			key := statestore.ShardFenceKey("T", statestore.ShardOf("T", "x"))
			old := statestore.Claim{Cluster: "c0", Version: 7, Silo: "old", Incarnation: "i0"}
			if err := statestore.ClaimShard(context.Background(), store, key, old, false); err != nil {
				t.Fatal(err)
			}
			a := &silo{h: &hooks{}, self: table.Owner{ID: "a", Incarnation: "inc-a"}}
			a.lease.Store(true)
			a.o = New(Config{Self: a.self, Store: store, Lease: a.lease.Load, Hooks: a.h, TakeOverOtherClusters: takeOver,
				DrainTimeout: func(string) time.Duration { return time.Hour }, PollInterval: 10 * time.Millisecond})
			t.Cleanup(a.o.Close)
			round(t, tableOf(t, 1, a), a)
			// Every other shard is claimed; the refused one stays gaining.
			eventually(t, 5*time.Second, "every other shard claimed", func() bool {
				return a.o.Status().Shards["T"]["held"] >= statestore.ShardCount-1
			})
			item, err := store.Get(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if takeOver {
				if !claimed(a, id) || string(item.Value) == string(old.HeldRecord()) {
					t.Fatalf("with the take-over: claimed %v, record %q; want the shard claimed over cluster c0's record", claimed(a, id), item.Value)
				}
				return
			}
			if claimed(a, id) || string(item.Value) != string(old.HeldRecord()) {
				t.Fatalf("without the take-over: claimed %v, record %q; want cluster c0's record kept and the shard not served", claimed(a, id), item.Value)
			}
		})
	}
}

// A silo that missed a table (not a member of it, say, while placement was
// bootstrapped again) may hold shards whose fence records a silo of that
// table claimed meanwhile. When the next table it adopts gives them back,
// it claims them again under that table instead of running turns under its
// old claim, whose every write the store would refuse.
func TestAMissedTableLeavesNoStaleClaim(t *testing.T) {
	store := memstore.New()
	a := newSilo(t, store, "a", time.Hour)
	round(t, tableOf(t, 1, a), a)
	eventually(t, 5*time.Second, "a claims every shard", func() bool {
		return a.o.Status().Shards["T"]["held"] == statestore.ShardCount
	})
	id := actor.ID{Type: "T", ID: "x"}
	key := statestore.ShardFenceKey("T", statestore.ShardOf("T", "x"))
	// Table 2, which a never saw, gave x's shard to b, which claimed it and
	// released it again when table 3 gave everything back to a.
	b := statestore.Claim{Cluster: "c1", Version: 2, Silo: "b", Incarnation: "inc-b"}
	if err := statestore.ClaimShard(context.Background(), store, key, b, false); err != nil {
		t.Fatal(err)
	}
	if err := statestore.ReleaseShard(context.Background(), store, key, b); err != nil {
		t.Fatal(err)
	}
	round(t, tableOf(t, 3, a), a)
	want := statestore.Claim{Cluster: "c1", Version: 3, Silo: "a", Incarnation: "inc-a"}
	eventually(t, 5*time.Second, "x's shard claimed again under table 3", func() bool {
		c, err := a.o.Claim(context.Background(), id)
		return err == nil && c == want
	})
	item, err := store.Get(context.Background(), key)
	if err != nil || string(item.Value) != string(want.HeldRecord()) {
		t.Fatalf("fence record %q (%v), want %q", item.Value, err, want.HeldRecord())
	}
	// The shards nobody else claimed keep their claim.
	other := actorOn(t, tableOf(t, 3, a), a)
	for statestore.ShardOf("T", other.ID) == statestore.ShardOf("T", "x") {
		other.ID += "0"
	}
	if c, err := a.o.Claim(context.Background(), other); err != nil || c.Version != 1 {
		t.Fatalf("a shard whose record still holds a's claim: %+v, %v; want it kept at version 1", c, err)
	}
}
