package callback_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// switchPlacement grants every actor the claim it holds now.
type switchPlacement struct {
	claim atomic.Pointer[statestore.Claim]
}

func (p *switchPlacement) Claim(context.Context, actor.ID) (statestore.Claim, error) {
	return *p.claim.Load(), nil
}

// Every call to the app for an activation — method, reminder, timer and
// deactivation — carries Granary-Activation with the claim the activation
// was created under; a client cannot set it; and an activation recycled
// because its shard was claimed again is told with its own claim, while the
// fresh one's calls carry the new claim.
func TestEveryAppCallCarriesTheActivationsClaim(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	first := statestore.Claim{Cluster: "dev/h-3500", Version: 7, Silo: "h-3500", Incarnation: "0a1b"}
	second := first
	second.Version, second.Incarnation = 8, "2c3d"
	p := &switchPlacement{}
	p.claim.Store(&first)
	rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger(), Placement: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	app.reset()
	id := actor.ID{Type: "Counter", ID: "a"}

	forged := &actor.Request{Header: []actor.HeaderField{{Name: []byte("granary-activation"), Value: []byte("1/forged/x")}}}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "a", "m", forged); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Remind(ctx, id, &actor.ReminderCall{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	timer := actor.TimerSpec{Name: "t", First: time.Now(), Next: func(time.Time, int) (time.Time, bool) { return time.Time{}, false }}
	if err := rt.CreateTimer(ctx, id, timer); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the timer fires", func() bool { return len(app.Requests("/actors/Counter/a/method/timer/")) == 1 })

	// The shard is claimed again: the next call recycles the activation.
	p.claim.Store(&second)
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "a", "m", nil); err != nil {
		t.Fatal(err)
	}

	want := []struct{ method, path, activation string }{
		{http.MethodPut, "/actors/Counter/a/method/m", first.String()},
		{http.MethodPut, "/actors/Counter/a/method/remind/r", first.String()},
		{http.MethodPut, "/actors/Counter/a/method/timer/t", first.String()},
		{http.MethodDelete, "/actors/Counter/a", first.String()},
		{http.MethodPut, "/actors/Counter/a/method/m", second.String()},
	}
	got := app.Requests("/actors/")
	if len(got) != len(want) {
		t.Fatalf("the app got %d calls, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		r := got[i]
		if r.Method != w.method || r.Path != w.path {
			t.Errorf("call %d = %s %s, want %s %s", i, r.Method, r.Path, w.method, w.path)
		}
		if v := r.Header.Values("Granary-Activation"); !slices.Equal(v, []string{w.activation}) {
			t.Errorf("call %d (%s %s): Granary-Activation = %q, want [%q]", i, r.Method, r.Path, v, w.activation)
		}
	}
}

// lapsingPlacement grants every actor claim, or, once limited, as many
// times as grants says and then refuses as a silo without a lease does.
type lapsingPlacement struct {
	claim   statestore.Claim
	limited atomic.Bool
	grants  atomic.Int64
	refused atomic.Int64
}

func (p *lapsingPlacement) allow(n int64) {
	p.grants.Store(n)
	p.limited.Store(true)
}

var errLapsed = fmt.Errorf("%w: %w: test lease lapsed", actor.ErrNotOwner, actor.ErrSuspended)

func (p *lapsingPlacement) Claim(context.Context, actor.ID) (statestore.Claim, error) {
	if !p.limited.Load() || p.grants.Add(-1) >= 0 {
		return p.claim, nil
	}
	p.refused.Add(1)
	return statestore.Claim{}, errLapsed
}

// A silo that loses its lease after a turn started and before the turn's
// call went out (a process paused in between) sends nothing to the app:
// the claim is confirmed again right before each method, reminder and timer
// call, and the moment of that confirmation travels with the call in
// Granary-Claim-Confirmed, which a client cannot set.
func TestNoCallLeavesAfterTheLeaseLapsedMidTurn(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	p := &lapsingPlacement{claim: statestore.Claim{Cluster: "c", Version: 3, Silo: "s", Incarnation: "i"}}
	rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger(), Placement: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.limited.Store(false)
		rt.Close(context.Background())
	})
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	id := actor.ID{Type: "Counter", ID: "a"}
	before := time.Now().UnixNano()
	forged := &actor.Request{Header: []actor.HeaderField{{Name: []byte("Granary-Claim-Confirmed"), Value: []byte("1")}}}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "a", "m", forged); err != nil {
		t.Fatal(err)
	}
	got := app.Requests("/actors/Counter/a/method/m")
	if len(got) != 1 {
		t.Fatalf("the app got %d method calls, want 1", len(got))
	}
	stamps := got[0].Header.Values("Granary-Claim-Confirmed")
	if len(stamps) != 1 {
		t.Fatalf("Granary-Claim-Confirmed = %q, want one value", stamps)
	}
	if at, err := strconv.ParseInt(stamps[0], 10, 64); err != nil || at < before || at > time.Now().UnixNano() {
		t.Errorf("Granary-Claim-Confirmed = %q, want the Unix nanoseconds of the confirmation (after %d)", stamps[0], before)
	}
	app.reset()

	// The activation exists: each call below is granted its turn's start
	// check (and the timer its creation), then the lease lapses.
	p.allow(1)
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "a", "m", nil); !errors.Is(err, actor.ErrSuspended) {
		t.Errorf("method call after the lease lapsed mid-turn: err = %v, want ErrSuspended", err)
	}
	p.allow(1)
	if _, err := rt.Remind(ctx, id, &actor.ReminderCall{Name: "r"}); !errors.Is(err, actor.ErrSuspended) {
		t.Errorf("reminder after the lease lapsed mid-turn: err = %v, want ErrSuspended", err)
	}
	p.allow(2)
	timer := actor.TimerSpec{Name: "t", First: time.Now(), Next: func(time.Time, int) (time.Time, bool) { return time.Time{}, false }}
	if err := rt.CreateTimer(ctx, id, timer); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the timer's turn starts and finds the lease gone", func() bool { return p.refused.Load() == 3 })
	time.Sleep(100 * time.Millisecond)
	if got := app.Requests("/actors/"); len(got) != 0 {
		t.Errorf("the app got %d calls after the lease lapsed: %+v", len(got), got)
	}
}

// movingPlacement grants the first claim for as many asks as grants says,
// and the second ever after.
type movingPlacement struct {
	first, second statestore.Claim
	grants        atomic.Int64
}

func (p *movingPlacement) Claim(context.Context, actor.ID) (statestore.Claim, error) {
	if p.grants.Add(-1) >= 0 {
		return p.first, nil
	}
	return p.second, nil
}

// A shard claimed again after a turn started and before its call went out:
// nothing is sent under the old claim, the activation is recycled, and the
// call runs on a fresh activation of the new claim, as when a turn finds
// the claim changed as it starts. The caller sees no error.
func TestACallWhoseClaimMovedMidTurnRunsOnAFreshActivation(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	first := statestore.Claim{Cluster: "c", Version: 3, Silo: "s", Incarnation: "i"}
	second := first
	second.Version = 4
	p := &movingPlacement{first: first, second: second}
	p.grants.Store(1 << 30)
	rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger(), Placement: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "a", "m", nil); err != nil {
		t.Fatal(err)
	}
	app.reset()
	p.grants.Store(1) // the turn's start sees the first claim, the confirmation the second
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "a", "m", nil); err != nil {
		t.Fatalf("call whose claim moved mid-turn: %v", err)
	}
	want := []struct{ method, path, activation string }{
		{http.MethodDelete, "/actors/Counter/a", first.String()},
		{http.MethodPut, "/actors/Counter/a/method/m", second.String()},
	}
	got := app.Requests("/actors/")
	if len(got) != len(want) {
		t.Fatalf("the app got %d calls, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if r := got[i]; r.Method != w.method || r.Path != w.path || r.Header.Get("Granary-Activation") != w.activation {
			t.Errorf("call %d = %s %s under %q, want %s %s under %q", i, r.Method, r.Path, r.Header.Get("Granary-Activation"), w.method, w.path, w.activation)
		}
	}
}
