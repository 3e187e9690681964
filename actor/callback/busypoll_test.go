package callback_test

import (
	"testing"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/busypoll"
)

// TestActorCallsWithBusyPolling makes actor calls with a poller: each is
// counted in flight while it runs, and the read of the app's answer polls.
func TestActorCallsWithBusyPolling(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt := newRuntime(t)
	opts := calmOptions()
	poller := busypoll.New(busypoll.MaxBudget)
	opts.Poller = poller
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		status, _, _, _, err := invoke(ctx, rt, "Counter", "a", "m", &actor.Request{Body: []byte(`{}`)})
		if err != nil || status != 200 {
			t.Fatalf("call %d: status %d, %v", i, status, err)
		}
	}
	if hits, misses := poller.Stats(); hits+misses == 0 {
		t.Error("no read of an answer polled")
	}
	if n := poller.InFlight(); n != 0 {
		t.Errorf("%d calls still counted in flight", n)
	}
}
