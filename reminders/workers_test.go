package reminders_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore/memstore"
)

// hostHung registers type "Hung" on h's runtime: its actors take every
// reminder and answer only once released, as an app that never answers does
// until its call timeout. The returned function releases them; it runs at
// the latest when the test ends, before the harness stops.
func hostHung(t *testing.T, h *harness, ids []string) (*pinger, func()) {
	t.Helper()
	unblock := make(chan struct{})
	release := sync.OnceFunc(func() { close(unblock) })
	t.Cleanup(release)
	p := newPinger()
	for _, id := range ids {
		p.block[id] = unblock
	}
	if err := h.rt.RegisterNative("Hung", func(self *actor.Self) actor.NativeActor {
		return &pingerActor{p: p, self: self}
	}, actor.TypeConfig{}); err != nil {
		t.Fatal(err)
	}
	synctest.Wait() // the load of type Hung
	return p, release
}

// TestHungTypeDoesNotStarveOtherTypes is issue 17's first finding: 300 due
// reminders of a type whose actors never answer must not take every worker
// (256 by default); a reminder of another type due a second later fires on
// time, and the waiting fires of the hung type go on, in due order, once
// it answers.
func TestHungTypeDoesNotStarveOtherTypes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, memstore.New(), newPinger(), reminders.Config{})
		t.Cleanup(h.stop)
		const hung = 300
		ids := make([]string, hung)
		for i := range ids {
			ids[i] = fmt.Sprintf("h%03d", i)
		}
		p, release := hostHung(t, h, ids)
		ctx := context.Background()
		t0 := time.Now()
		for i, id := range ids {
			// Due a millisecond apart, so the due order is known.
			err := h.svc.Create(ctx, actor.ID{Type: "Hung", ID: id}, actor.ReminderSpec{Name: "r", DueTime: fmt.Sprintf("%dms", i+1)})
			if err != nil {
				t.Fatal(err)
			}
		}
		h.create("echo", "on-time", "1s", "", "")
		sleep(time.Second + 500*time.Millisecond)

		if got := h.p.firesOf("echo", "on-time"); len(got) != 1 || got[0].Sub(t0) != time.Second {
			t.Fatalf("the other type's reminder fired at %v, want once at +1s", got)
		}
		p.mu.Lock()
		inFlight := slices.Clone(p.started)
		p.mu.Unlock()
		if len(inFlight) == 0 || len(inFlight) >= 256 {
			t.Fatalf("%d fires of the hung type in flight, want some but fewer than the 256 workers", len(inFlight))
		}
		// The fires in flight are the earliest due.
		for i, got := range inFlight {
			if want := ids[i] + "/r"; !slices.Contains(inFlight, want) {
				t.Fatalf("fire %d in flight is %s; %s, due earlier, is not in flight", i, got, want)
			}
		}

		release()
		synctest.Wait()
		p.mu.Lock()
		delivered, started := len(p.fires), len(p.started)
		p.mu.Unlock()
		if delivered != hung || started != hung {
			t.Fatalf("after the hung type answered: %d fires delivered, %d begun, want %d", delivered, started, hung)
		}
	})
}

// TestTypeWorkerBound checks the bound itself: at most WorkersPerType fires
// of one type run at once; the rest wait without holding a worker and
// proceed as fires of the type finish, while the other workers serve
// other types.
func TestTypeWorkerBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, memstore.New(), newPinger(), reminders.Config{Workers: 4, WorkersPerType: 2})
		t.Cleanup(h.stop)
		ids := []string{"a", "b", "c", "d", "e"}
		p, release := hostHung(t, h, ids)
		ctx := context.Background()
		for i, id := range ids {
			if err := h.svc.Create(ctx, actor.ID{Type: "Hung", ID: id}, actor.ReminderSpec{Name: "r", DueTime: fmt.Sprintf("%dms", 10*(i+1))}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 10 {
			h.create(fmt.Sprintf("t%d", i), "r", "100ms", "", "")
		}
		sleep(time.Second)
		p.mu.Lock()
		inFlight := slices.Clone(p.started)
		p.mu.Unlock()
		if !slices.Equal(inFlight, []string{"a/r", "b/r"}) {
			t.Fatalf("in flight %v, want the two earliest of the hung type", inFlight)
		}
		if n := h.p.total(); n != 10 {
			t.Fatalf("%d of the other type's 10 reminders fired beside the bound type", n)
		}
		release()
		synctest.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.fires) != len(ids) || len(p.started) != len(ids) {
			t.Fatalf("after unblocking: %d delivered, %d begun, want %d", len(p.fires), len(p.started), len(ids))
		}
	})
}

// slowFailer answers every reminder with an error after callTimeout, as the
// app call of an app that never answers times out.
type slowFailer struct{ attempts *atomic.Int64 }

const callTimeout = 15 * time.Second

func (slowFailer) Invoke(context.Context, string, []byte) ([]byte, error) { return nil, nil }

func (a slowFailer) Remind(context.Context, string, []byte) (bool, error) {
	a.attempts.Add(1)
	time.Sleep(callTimeout)
	return false, errors.New("app call timed out")
}

// TestHungTypeRetriesDoNotStarveOtherTypes: the fires of a hung type time
// out, are retried with backoff and time out again, wave after wave; a
// reminder of another type firing every second keeps its schedule all along.
func TestHungTypeRetriesDoNotStarveOtherTypes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, memstore.New(), newPinger(), reminders.Config{})
		defer h.stop()
		var attempts atomic.Int64
		if err := h.rt.RegisterNative("Hung", func(*actor.Self) actor.NativeActor {
			return slowFailer{&attempts}
		}, actor.TypeConfig{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		ctx := context.Background()
		for i := range 300 {
			err := h.svc.Create(ctx, actor.ID{Type: "Hung", ID: fmt.Sprintf("h%d", i)}, actor.ReminderSpec{Name: "r", Period: "1m"})
			if err != nil {
				t.Fatal(err)
			}
		}
		t0 := time.Now()
		h.create("echo", "tick", "1s", "1s", "")
		sleep(2*time.Minute + 500*time.Millisecond)
		got := h.p.firesOf("echo", "tick")
		if len(got) != 120 {
			t.Fatalf("the other type's reminder fired %d times in two minutes, want 120", len(got))
		}
		for i, at := range got {
			if want := time.Duration(i+1) * time.Second; at.Sub(t0) != want {
				t.Fatalf("fire %d at +%v, want +%v", i, at.Sub(t0), want)
			}
		}
		// The hung type was tried in several waves meanwhile.
		if n := attempts.Load(); n < 600 {
			t.Fatalf("%d attempts of the hung type's fires, want several waves of 300", n)
		}
	})
}
