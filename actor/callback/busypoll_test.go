//go:build linux

// Busy polling is implemented on Linux only (see internal/busypoll).

package callback_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/busypoll"
)

// TestActorCallsWithBusyPolling makes actor calls with a poller: each is
// counted in flight while it runs, and the read of the app's answer polls
// (here until the budget runs out, since the app answers later).
func TestActorCallsWithBusyPolling(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	app.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) {
			// Answer well after the read of the answer has begun, however
			// loaded the machine: that read finds nothing and polls.
			time.Sleep(3 * time.Millisecond)
			w.Write([]byte("ok"))
		}
	})
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
	if hits, misses, _ := poller.Stats(); hits+misses == 0 {
		t.Error("no read of an answer polled")
	}
	if n := poller.InFlight(); n != 0 {
		t.Errorf("%d calls still counted in flight", n)
	}
}

// TestActorCallTimeoutWithBusyPolling: an app that never answers still
// fails the call at CallTimeout when the read of its answer polls.
func TestActorCallTimeoutWithBusyPolling(t *testing.T) {
	app := newSlothApp(t)
	rt := newRuntime(t)
	opts := calmOptions()
	opts.CallTimeout = 200 * time.Millisecond
	opts.Poller = busypoll.New(busypoll.MaxBudget)
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "sloth", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, _, _, err := invoke(ctx, rt, "Sloth", "s", "slow", nil)
	if took := time.Since(start); err == nil || !strings.Contains(err.Error(), "200ms") || took < opts.CallTimeout || took > 2*time.Second {
		t.Fatalf("a call the app never answers: %v after %v, want the 200ms timeout", err, took)
	}
	if _, body, _, _, err := invoke(ctx, rt, "Sloth", "s", "fast", nil); err != nil || body != "quick" {
		t.Errorf("next call = %q %v", body, err)
	}
	if n := opts.Poller.InFlight(); n != 0 {
		t.Errorf("%d calls still counted in flight", n)
	}
}
