package callback_test

import (
	"context"
	"net/http"
	"slices"
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
