package reminders_test

import (
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// twoShards returns two actor IDs of type T in different shards.
func twoShards(t *testing.T) (a, b string, shardA, shardB int) {
	t.Helper()
	a, shardA = "a", statestore.ShardOf("T", "a")
	for i := range 1000 {
		b = "b" + strconv.Itoa(i)
		if shardB = statestore.ShardOf("T", b); shardB != shardA {
			return a, b, shardA, shardB
		}
	}
	t.Fatal("no second shard among 1000 IDs")
	return
}

// storedNext is the next fire of a reminder as its stored record says.
func storedNext(t *testing.T, store statestore.Store, id, name string) time.Time {
	t.Helper()
	item, err := store.Get(context.Background(), statestore.ReminderKey("T", id, name))
	if err != nil {
		t.Fatalf("reminder %s/%s: %v", id, name, err)
	}
	info, err := reminders.DecodeInfo(actor.ID{Type: "T", ID: id}, name, item.Value)
	if err != nil {
		t.Fatal(err)
	}
	return info.NextFire
}

// A silo of a cluster (ByShard) schedules no stored reminder until it gains
// the reminder's shard, and then only those of the shards it gained.
func TestShardsGainedLoadsOnlyTheGainedShards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		a, b, shardA, _ := twoShards(t)
		first := start(t, store, newPinger(), reminders.Config{})
		first.create(a, "tick", "10s", "1s", "")
		first.create(b, "tick", "10s", "1s", "")
		first.stop()

		p := newPinger()
		h := start(t, store, p, reminders.Config{ByShard: true})
		defer h.stop()
		sleep(12 * time.Second)
		if n := p.total(); n != 0 {
			t.Fatalf("%d fires before any shard was gained, want none", n)
		}
		if err := h.svc.ShardsGained(context.Background(), "T", []int{shardA}); err != nil {
			t.Fatal(err)
		}
		sleep(3 * time.Second)
		if n := len(p.firesOf(a, "tick")); n < 2 {
			t.Fatalf("%s fired %d times in the 3 s after its shard was gained, want its overdue fire and then one a second", a, n)
		}
		if n := len(p.firesOf(b, "tick")); n != 0 {
			t.Fatalf("%s, in a shard not gained, fired %d times", b, n)
		}
	})
}

// Losing a shard writes the next due times of its reminders' last fires
// before they stop being scheduled here, and leaves the other shards'
// reminders running.
func TestShardsLostFlushesThenStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		a, b, shardA, _ := twoShards(t)
		p := newPinger()
		// The periodic flush is out of the way: only ShardsLost writes.
		h := start(t, store, p, reminders.Config{FlushInterval: time.Hour})
		defer h.stop()
		h.create(a, "tick", "1s", "1s", "")
		h.create(b, "tick", "1s", "1s", "")
		registeredNext := storedNext(t, store, a, "tick")
		sleep(3500 * time.Millisecond)
		fired := len(p.firesOf(a, "tick"))
		if fired != 3 {
			t.Fatalf("%s fired %d times in 3.5 s, want 3", a, fired)
		}
		if got := storedNext(t, store, a, "tick"); !got.Equal(registeredNext) {
			t.Fatalf("the due time was written before the hand-over (%v, registered %v): the test does not test the flush", got, registeredNext)
		}

		h.svc.ShardsLost(context.Background(), "T", []int{shardA})
		if got, want := storedNext(t, store, a, "tick"), registeredNext.Add(3*time.Second); !got.Equal(want) {
			t.Fatalf("stored next fire of %s after its shard was lost: %v, want %v (after its 3 fires)", a, got, want)
		}
		bBefore := len(p.firesOf(b, "tick"))
		sleep(3 * time.Second)
		if n := len(p.firesOf(a, "tick")); n != fired {
			t.Fatalf("%s fired %d more times after its shard was lost", a, n-fired)
		}
		if n := len(p.firesOf(b, "tick")) - bBefore; n != 3 {
			t.Fatalf("%s, in a shard kept, fired %d times in 3 s after the other shard was lost, want 3", b, n)
		}
	})
}
