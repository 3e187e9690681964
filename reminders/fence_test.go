package reminders_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// takeShard has another silo process of the test cluster claim id's shard at
// a newer version than any test silo's, as a new owner would.
func takeShard(t *testing.T, store statestore.Store, id actor.ID) statestore.Claim {
	t.Helper()
	other := statestore.Claim{Cluster: "test", Version: 99, Silo: "other", Incarnation: "x"}
	key := statestore.ShardFenceKey(id.Type, statestore.ShardOf(id.Type, id.ID))
	if err := statestore.ClaimShard(context.Background(), store, key, other, false); err != nil {
		t.Fatal(err)
	}
	return other
}

// A silo that still believes it owns an actor, after another silo claimed the
// actor's shard, cannot change the actor's reminders: the delete and the
// registration are refused by the fence, whether the actor is active here
// (its activation's claim) or not (the placement's), and the stored reminder
// stays as it was.
func TestStaleOwnersReminderWritesAreRefused(t *testing.T) {
	for _, active := range []bool{false, true} {
		name := "inactive"
		if active {
			name = "active"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := memstore.New()
				h := start(t, store, newPinger(), reminders.Config{})
				defer h.stop()
				id := actor.ID{Type: "T", ID: "x"}
				h.create("x", "tick", "1h", "1h", "")
				if active {
					resp, err := h.rt.Invoke(context.Background(), id, &actor.Request{Method: "ping"})
					if err != nil {
						t.Fatal(err)
					}
					resp.Release()
					if _, ok := h.rt.ActivationClaim(id); !ok {
						t.Fatal("x is not active")
					}
				}
				before, err := store.Get(context.Background(), statestore.ReminderKey("T", "x", "tick"))
				if err != nil {
					t.Fatal(err)
				}
				takeShard(t, store, id)

				err = h.svc.Delete(context.Background(), id, "tick")
				if !errors.Is(err, statestore.ErrFenced) || !errors.Is(err, actor.ErrFenced) {
					t.Fatalf("the stale owner's delete: %v, want refused by the fence", err)
				}
				err = h.svc.Create(context.Background(), id, actor.ReminderSpec{Name: "tick", DueTime: "1s"})
				if !errors.Is(err, statestore.ErrFenced) {
					t.Fatalf("the stale owner's registration: %v, want refused by the fence", err)
				}
				after, err := store.Get(context.Background(), statestore.ReminderKey("T", "x", "tick"))
				if err != nil || after.ETag != before.ETag {
					t.Fatalf("the reminder after the refused writes: %+v, %v; want it unchanged", after, err)
				}
				items, err := store.Scan(context.Background(), statestore.ReminderIndex("T", statestore.ShardOf("T", "x")), "", 10)
				if err != nil || len(items) != 1 {
					t.Fatalf("the reminder index after the refused delete: %v, %v", items, err)
				}
			})
		})
	}
}

// A reminder write is fenced with the shard's fence record in the same
// transaction: a silo with no claim of the shard in the store writes nothing.
func TestReminderWritesNeedTheShardClaimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		// A placement that grants a claim it never wrote to the store.
		p := grantOnly{statestore.Claim{Cluster: "test", Version: 1, Silo: "s", Incarnation: "i"}}
		h := startPlaced(t, store, newPinger(), reminders.Config{}, p)
		defer h.stop()
		err := h.svc.Create(context.Background(), actor.ID{Type: "T", ID: "x"}, actor.ReminderSpec{Name: "r", DueTime: "1s"})
		var fe *statestore.FencedError
		if !errors.As(err, &fe) || fe.Found != nil || string(fe.Want) != string(p.claim.HeldRecord()) {
			t.Fatalf("registration without a claimed shard: %v, want refused for the missing fence record", err)
		}
		if _, err := store.Get(context.Background(), statestore.ReminderKey("T", "x", "r")); !errors.Is(err, statestore.ErrNotFound) {
			t.Fatalf("the refused reminder is stored: %v", err)
		}
	})
}

type grantOnly struct{ claim statestore.Claim }

func (g grantOnly) Claim(context.Context, actor.ID) (statestore.Claim, error) { return g.claim, nil }
