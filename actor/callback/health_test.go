package callback_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
)

func TestHealthWithdrawsAndRestoresTypes(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt := newRuntime(t)
	opts := quickOptions()
	opts.Token = "app-secret"
	opts.HealthThreshold = 4
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil); err != nil {
		t.Fatalf("invoke while healthy: %v", err)
	}
	eventually(t, 5*time.Second, "a health probe", func() bool { return len(app.Requests("/healthz")) > 0 })
	probe := app.Requests("/healthz")[0]
	if probe.Method != http.MethodGet || probe.Header.Get("Dapr-Api-Token") != "app-secret" {
		t.Errorf("probe = %s with headers %v; want GET with the token", probe.Method, probe.Header)
	}

	var before, failedProbes int
	app.set(func(a *fakeApp) {
		a.healthStatus = http.StatusInternalServerError
		for _, r := range a.requests {
			if r.Path == "/healthz" {
				before++
			}
		}
	})
	var lastErr error
	eventually(t, 5*time.Second, "calls to fail once the app is unhealthy", func() bool {
		_, _, _, _, lastErr = invoke(ctx, rt, "Counter", "c1", "m", nil)
		failedProbes = len(app.Requests("/healthz")) - before
		return lastErr != nil
	})
	if !isUnavailable(lastErr) {
		t.Fatalf("call to an unhealthy app's type: %v; want ErrTypeUnavailable", lastErr)
	}
	var te *actor.TypeError
	if !errors.As(lastErr, &te) || !strings.Contains(te.Reason, "app") || !strings.Contains(te.Reason, "unhealthy") {
		t.Errorf("error %v does not say the app is unhealthy", lastErr)
	}
	if !rt.Hosts("Counter") {
		t.Error("an unhealthy app's type is withdrawn from the runtime; want it kept but unavailable")
	}
	st, _ := appStatus(reg, "app")
	if st.Healthy || !strings.Contains(st.Error, "500") {
		t.Errorf("status = %+v; want unhealthy with the probe's error", st)
	}
	// The threshold is respected: HealthThreshold probes in a row failed first.
	if failedProbes < opts.HealthThreshold {
		t.Errorf("withdrawn after %d failed probes; the threshold is %d", failedProbes, opts.HealthThreshold)
	}

	// The app recovers with a changed config.
	app.reset()
	app.set(func(a *fakeApp) {
		a.config = `{"entities":["Counter","Cart"]}`
		a.healthStatus = 0
	})
	eventually(t, 5*time.Second, "the changed config to be read after recovery", func() bool { return rt.Hosts("Cart") })
	eventually(t, 5*time.Second, "calls to work again", func() bool {
		_, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil)
		return err == nil
	})
	if _, _, _, _, err := invoke(ctx, rt, "Cart", "k1", "m", nil); err != nil {
		t.Errorf("invoke on the new type: %v", err)
	}
	if len(app.Requests("/dapr/config")) == 0 {
		t.Error("config was not re-read on recovery")
	}
	st, _ = appStatus(reg, "app")
	if !st.Healthy || st.Error != "" || !slices.Equal(st.Types, []string{"Cart", "Counter"}) {
		t.Errorf("status after recovery = %+v", st)
	}
}

func TestHealthProbeTimeoutCountsAsFailure(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt := newRuntime(t)
	opts := quickOptions()
	opts.HealthTimeout = 50 * time.Millisecond
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	app.set(func(a *fakeApp) { a.healthHang = true })
	start := time.Now()
	eventually(t, 5*time.Second, "a hanging /healthz to make the type unavailable", func() bool {
		_, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil)
		return isUnavailable(err)
	})
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v to notice a hanging app; probes should time out after %v", took, opts.HealthTimeout)
	}
	app.set(func(a *fakeApp) { a.healthHang = false })
	eventually(t, 5*time.Second, "calls to work again", func() bool {
		_, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil)
		return err == nil
	})
}

// An app without /healthz that otherwise answers is healthy.
func TestHealthNotFoundIsHealthy(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	app.set(func(a *fakeApp) { a.healthStatus = http.StatusNotFound })
	rt := newRuntime(t)
	reg := newRegistry(t, rt, quickOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "several probes", func() bool { return len(app.Requests("/healthz")) >= 5 })
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil); err != nil {
		t.Errorf("invoke on an app answering 404 to /healthz: %v", err)
	}
}
