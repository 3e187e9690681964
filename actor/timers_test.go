package actor_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore/memstore"
)

func everySecond(start time.Time) actor.TimerSpec {
	return actor.TimerSpec{
		Name: "tick", First: start.Add(time.Second),
		Next: func(completed time.Time, _ int) (time.Time, bool) { return completed.Add(time.Second), true },
	}
}

// A timer fire is a turn like any other: it does not run on a silo that no
// longer owns the actor.
func TestTimerDoesNotFireWhereTheActorIsNotOwned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &movablePlacement{}
		rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger(), Placement: p})
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
		if n := len(rec.Events()); n != 1 {
			t.Fatalf("%d fires before the move, want 1", n)
		}
		p.away.Store(true)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := len(rec.Events()); n != 1 {
			t.Fatalf("%d fires after the actor moved away, want none after the move", n-1)
		}
		if err := rt.CreateTimer(context.Background(), id, everySecond(time.Now())); !errors.Is(err, actor.ErrNotOwner) {
			t.Fatalf("CreateTimer on an actor owned elsewhere: %v, want ErrNotOwner", err)
		}
	})
}

// While the silo is suspended (its lease lapsed for a moment) a timer does
// not fire, and fires again once the silo may run turns: the activation is
// kept through a suspension, and so are its timers. A suspension used to end
// the timer as if the actor had moved, because its error also wraps
// ErrNotOwner.
func TestTimerSurvivesASuspension(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &movablePlacement{}
		rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger(), Placement: p})
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
		p.suspended.Store(true)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(rec.Events()); n != 1 {
			t.Fatalf("%d fires while suspended", n-1)
		}
		p.suspended.Store(false)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := len(rec.Events()); n < 3 {
			t.Fatalf("%d fires in all; the timer did not fire again after the suspension ended", n)
		}
	})
}

// While its type is unavailable (its app unhealthy) a timer does not call the
// actor; it fires again once the type is available.
func TestTimerSkipsFiresWhileTheTypeIsUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, 0)
		rec := newRecorder()
		rec.register(t, rt, "T", actor.TypeConfig{IdleTimeout: time.Hour})
		id := actor.ID{Type: "T", ID: "a"}
		if err := rt.CreateTimer(context.Background(), id, everySecond(time.Now())); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		rt.SetAvailable("T", "app x is unhealthy")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := len(rec.Events()); n != 1 {
			t.Fatalf("%d fires while the type was unavailable", n-1)
		}
		rt.SetAvailable("T", "")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(rec.Events()); n < 2 {
			t.Fatal("the timer did not fire again once the type was available")
		}
	})
}

// CreateTimer on a type nobody hosts is refused.
func TestCreateTimerOnAnUnhostedType(t *testing.T) {
	rt := newRuntime(t, nil, 0)
	err := rt.CreateTimer(context.Background(), actor.ID{Type: "Nope", ID: "a"}, everySecond(time.Now()))
	if !errors.Is(err, actor.ErrTypeNotHosted) {
		t.Fatalf("err = %v, want ErrTypeNotHosted", err)
	}
}
