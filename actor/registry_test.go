package actor_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
)

// A call queued behind a turn while its type is unregistered must not bring
// the actor back once the turn ends: after Unregister returns, no activation
// of the type exists, and the queued call fails with ErrTypeNotHosted.
func TestUnregisterLeavesNoActivationBehindQueuedCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, time.Hour)
		rec := newRecorder()
		release := make(chan struct{})
		rec.handlers["block"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
			<-release
			return nil, nil
		}
		rec.register(t, rt, "T", actor.TypeConfig{DrainTimeout: time.Minute})
		id := actor.ID{Type: "T", ID: "a"}
		go call(rt, context.Background(), "T", "a", "block", "")
		synctest.Wait()
		queued := make(chan error, 1)
		go func() { _, err := call(rt, context.Background(), "T", "a", "echo", "x"); queued <- err }()
		synctest.Wait()
		if n := rt.QueueLength(id); n != 1 {
			t.Fatalf("queue length %d, want 1", n)
		}
		unregistered := make(chan struct{})
		go func() { rt.Unregister(context.Background(), "T"); close(unregistered) }()
		synctest.Wait()
		close(release)
		<-unregistered
		synctest.Wait()
		if err := <-queued; !errors.Is(err, actor.ErrTypeNotHosted) {
			t.Fatalf("queued call: err = %v, want ErrTypeNotHosted", err)
		}
		if rt.IsActive(id) {
			t.Fatal("an activation of the unregistered type exists after Unregister returned")
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.activations["a"] != 1 {
			t.Fatalf("activated %d times, want 1: the queued call brought the actor back", rec.activations["a"])
		}
	})
}

// Calls racing an Unregister never leave an activation behind, whichever
// side wins each race.
func TestUnregisterRacingFirstCalls(t *testing.T) {
	for round := range 50 {
		rt := newRuntime(t, nil, time.Minute)
		rec := newRecorder()
		rec.register(t, rt, "T", actor.TypeConfig{})
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := call(rt, context.Background(), "T", fmt.Sprint(i), "echo", "")
				if err != nil && !errors.Is(err, actor.ErrTypeNotHosted) {
					t.Errorf("round %d call %d: %v", round, i, err)
				}
			}()
		}
		rt.Unregister(context.Background(), "T")
		wg.Wait()
		for i := range 8 {
			if rt.IsActive(actor.ID{Type: "T", ID: fmt.Sprint(i)}) {
				t.Fatalf("round %d: T/%d is active after Unregister returned", round, i)
			}
		}
		if st := rt.Stats(); len(st) != 0 {
			t.Fatalf("round %d: stats after unregister: %+v", round, st)
		}
	}
}

// Re-registering a type (an app re-registering or recovering) keeps one
// active count per type: actors deactivated afterwards are no longer counted.
func TestActiveCountSurvivesReRegistration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, 0)
		rec := newRecorder()
		rec.register(t, rt, "T", actor.TypeConfig{IdleTimeout: time.Minute})
		for i := range 3 {
			if _, err := call(rt, context.Background(), "T", fmt.Sprint(i), "echo", ""); err != nil {
				t.Fatal(err)
			}
		}
		rec.register(t, rt, "T", actor.TypeConfig{IdleTimeout: time.Minute})
		if st := rt.Stats(); len(st) != 1 || st[0].Active != 3 {
			t.Fatalf("after re-registration: %+v, want 3 active", st)
		}
		// One more activation under the new registration.
		if _, err := call(rt, context.Background(), "T", "new", "echo", ""); err != nil {
			t.Fatal(err)
		}
		if st := rt.Stats(); st[0].Active != 4 {
			t.Fatalf("after a new activation: %+v, want 4 active", st)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if st := rt.Stats(); len(st) != 1 || st[0].Active != 0 {
			t.Fatalf("after every actor went idle: %+v, want 0 active", st)
		}
	})
}

// Registering and unregistering many types is done in one step each: the
// cost grows with the number of types, not with its square.
func TestRegisterTypesInOneStep(t *testing.T) {
	rt := newRuntime(t, nil, 0)
	const n = 20000
	regs := make([]actor.TypeRegistration, n)
	for i := range regs {
		regs[i] = actor.TypeRegistration{Name: fmt.Sprintf("T%05d", i), Type: nopType{}}
	}
	start := time.Now()
	if err := rt.RegisterTypes(regs); err != nil {
		t.Fatal(err)
	}
	names := make([]string, n)
	for i := range regs {
		names[i] = regs[i].Name
	}
	rt.UnregisterTypes(context.Background(), names)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("registering and unregistering %d types took %v", n, took)
	}
	if st := rt.Stats(); len(st) != 0 {
		t.Fatalf("%d types left", len(st))
	}
	if err := rt.RegisterTypes([]actor.TypeRegistration{{Name: "A", Type: nopType{}}, {Name: "A", Type: nopType{}}}); err == nil {
		t.Fatal("a batch naming a type twice was accepted")
	}
	if rt.Hosts("A") {
		t.Fatal("a refused batch registered a type")
	}
}

// nopType is a non-native type (like an app's): its calls carry no call chain.
type nopType struct{}

func (nopType) Activate(context.Context, actor.ID, statestore.Claim) (actor.Instance, error) {
	return nopInstance{}, nil
}

type nopInstance struct{}

func (nopInstance) Invoke(context.Context, *actor.Request) (*actor.Response, error) {
	return &actor.Response{Status: 200}, nil
}
func (nopInstance) Remind(context.Context, *actor.ReminderCall) (bool, error) { return false, nil }
func (nopInstance) Timer(context.Context, *actor.TimerCall) error             { return nil }
func (nopInstance) Deactivate(context.Context) error                          { return nil }
