package actor_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// claimed starts a runtime with a movablePlacement on a fresh store, where
// the placement's first claim holds every shard of type T that the test
// touches (claimShardOf).
func claimed(t *testing.T) (*actor.Runtime, *movablePlacement, *memstore.Store, *recorder) {
	t.Helper()
	store := memstore.New()
	p := &movablePlacement{}
	rt, err := actor.New(actor.Config{Store: store, Logger: quietLogger(), Placement: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	rec := newRecorder()
	rec.handlers["save"] = func(ctx context.Context, self *actor.Self, body []byte) ([]byte, error) {
		return body, self.Transact(ctx, statestore.Op{Kind: statestore.Put, Key: "k", Value: body})
	}
	return rt, p, store, rec
}

func claimShardOf(t *testing.T, store statestore.Store, id actor.ID, c statestore.Claim) {
	t.Helper()
	key := statestore.ShardFenceKey(id.Type, statestore.ShardOf(id.Type, id.ID))
	if err := statestore.ClaimShard(context.Background(), store, key, c, false); err != nil {
		t.Fatal(err)
	}
}

func activations(rec *recorder, id string) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.activations[id]
}

// An activation created under one claim of its shard is never run under
// another: when the shard was lost and claimed again, the next turn finds
// the claim changed, the activation is deactivated, and the call runs on a
// fresh activation made under the new claim.
func TestActivationOfAnOlderClaimIsRecycled(t *testing.T) {
	rt, p, store, rec := claimed(t)
	rec.register(t, rt, "T", actor.TypeConfig{})
	id := actor.ID{Type: "T", ID: "a"}
	claimShardOf(t, store, id, claimOne)
	if _, err := call(rt, context.Background(), "T", "a", "save", "1"); err != nil {
		t.Fatal(err)
	}
	if c, ok := rt.ActivationClaim(id); !ok || c != claimOne {
		t.Fatalf("ActivationClaim = %v, %v; want %v", c, ok, claimOne)
	}

	claimTwo := claimOne
	claimTwo.Version, claimTwo.Incarnation = 2, "i2"
	claimShardOf(t, store, id, claimTwo)
	p.claim.Store(&claimTwo)
	if _, err := call(rt, context.Background(), "T", "a", "save", "2"); err != nil {
		t.Fatalf("call after the shard was claimed again: %v", err)
	}
	if n := activations(rec, "a"); n != 2 {
		t.Fatalf("%d activations, want 2: the old one recycled and a fresh one made", n)
	}
	rec.mu.Lock()
	deactivated := slices.Clone(rec.deactivated)
	rec.mu.Unlock()
	if !slices.Equal(deactivated, []string{"a"}) {
		t.Fatalf("deactivated %v, want the old activation of a", deactivated)
	}
	if c, ok := rt.ActivationClaim(id); !ok || c != claimTwo {
		t.Fatalf("ActivationClaim after recycling = %v, %v; want %v", c, ok, claimTwo)
	}
	if got := string(mustState(t, rt, id, "k")); got != "2" {
		t.Fatalf("state = %q, want the write of the fresh activation", got)
	}
}

// A write is refused as soon as the placement's claim moved on, even while
// the store's record still holds the activation's claim.
func TestTransactRefusedOnceThePlacementsClaimMovedOn(t *testing.T) {
	rt, p, store, rec := claimed(t)
	id := actor.ID{Type: "T", ID: "a"}
	claimShardOf(t, store, id, claimOne)
	claimTwo := claimOne
	claimTwo.Version = 2
	rec.handlers["lose-then-save"] = func(ctx context.Context, self *actor.Self, body []byte) ([]byte, error) {
		p.claim.Store(&claimTwo)
		return nil, self.Transact(ctx, statestore.Op{Kind: statestore.Put, Key: "k", Value: body})
	}
	rec.register(t, rt, "T", actor.TypeConfig{})
	if _, err := call(rt, context.Background(), "T", "a", "save", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := call(rt, context.Background(), "T", "a", "lose-then-save", "2"); !errors.Is(err, actor.ErrFenced) {
		t.Fatalf("write of an activation whose claim moved on: %v, want ErrFenced", err)
	}
	if got := string(mustState(t, rt, id, "k")); got != "1" {
		t.Fatalf("state = %q, want 1: the refused write applied", got)
	}
	waitFor(t, func() bool { return !rt.IsActive(id) })
}

// A reentrant call inside a turn whose shard was claimed again gets ErrFenced
// (recycling waits for the turn, so the call cannot wait for it), and the
// next call runs on a fresh activation.
func TestReentrantCallAfterTheClaimChangedIsFenced(t *testing.T) {
	rt, p, store, rec := claimed(t)
	id := actor.ID{Type: "T", ID: "a"}
	claimShardOf(t, store, id, claimOne)
	claimTwo := claimOne
	claimTwo.Version = 2
	rec.handlers["outer"] = func(ctx context.Context, self *actor.Self, _ []byte) ([]byte, error) {
		p.claim.Store(&claimTwo)
		_, err := self.Call(ctx, self.ID(), "echo", nil)
		return nil, err
	}
	rec.register(t, rt, "T", actor.TypeConfig{Reentrancy: true})
	if _, err := call(rt, context.Background(), "T", "a", "outer", ""); !errors.Is(err, actor.ErrFenced) {
		t.Fatalf("reentrant call after the claim changed: %v, want ErrFenced", err)
	}
	if _, err := call(rt, context.Background(), "T", "a", "echo", ""); err != nil {
		t.Fatalf("call after the recycling: %v", err)
	}
	if n := activations(rec, "a"); n != 2 {
		t.Fatalf("%d activations, want 2", n)
	}
	if c, _ := rt.ActivationClaim(id); c != claimTwo {
		t.Fatalf("ActivationClaim = %v, want %v", c, claimTwo)
	}
}

// A timer belongs to its activation: when the shard is claimed again, the
// old activation's timer ends at its next fire, with the activation; a timer
// created afterwards goes to a fresh activation.
func TestTimerEndsWhenItsActivationsClaimIsStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		p := &movablePlacement{}
		rt, err := actor.New(actor.Config{Store: store, Logger: quietLogger(), Placement: p})
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close(context.Background())
		rec := newRecorder()
		rec.register(t, rt, "T", actor.TypeConfig{IdleTimeout: time.Hour})
		id := actor.ID{Type: "T", ID: "a"}
		if err := rt.CreateTimer(context.Background(), id, everySecond(time.Now())); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		claimTwo := claimOne
		claimTwo.Version = 2
		p.claim.Store(&claimTwo)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := len(rec.Events()); n != 1 {
			t.Fatalf("%d fires, want the one before the claim changed", n)
		}
		if rt.IsActive(id) {
			t.Fatal("the activation of the stale claim is still active")
		}
		if err := rt.CreateTimer(context.Background(), id, everySecond(time.Now())); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if n := len(rec.Events()); n != 2 || activations(rec, "a") != 2 {
			t.Fatalf("%d fires on %d activations, want a second fire on a fresh activation", n, activations(rec, "a"))
		}
	})
}

// CreateTimer adds no timer to an activation of a stale claim.
func TestCreateTimerOnAStaleActivationIsFenced(t *testing.T) {
	rt, p, _, rec := claimed(t)
	rec.register(t, rt, "T", actor.TypeConfig{})
	id := actor.ID{Type: "T", ID: "a"}
	if _, err := call(rt, context.Background(), "T", "a", "echo", ""); err != nil {
		t.Fatal(err)
	}
	claimTwo := claimOne
	claimTwo.Version = 2
	p.claim.Store(&claimTwo)
	if err := rt.CreateTimer(context.Background(), id, everySecond(time.Now())); !errors.Is(err, actor.ErrFenced) {
		t.Fatalf("CreateTimer on an activation of a stale claim: %v, want ErrFenced", err)
	}
	waitFor(t, func() bool { return !rt.IsActive(id) })
}

// The claim is asked once per activation, turn and write, and every answer
// is cheap: the runtime caches nothing that could go stale.
func TestClaimIsAskedAtEveryTurn(t *testing.T) {
	rt, p, store, rec := claimed(t)
	rec.register(t, rt, "T", actor.TypeConfig{})
	claimShardOf(t, store, actor.ID{Type: "T", ID: "a"}, claimOne)
	for range 3 {
		if _, err := call(rt, context.Background(), "T", "a", "echo", ""); err != nil {
			t.Fatal(err)
		}
	}
	before := p.asked.Load()
	if _, err := call(rt, context.Background(), "T", "a", "save", "1"); err != nil {
		t.Fatal(err)
	}
	if n := p.asked.Load() - before; n != 2 {
		t.Fatalf("a turn that writes once asked for the claim %d times, want 2 (turn start and write)", n)
	}
}
