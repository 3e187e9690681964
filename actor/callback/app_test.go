package callback_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
)

func hostOf(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func TestRegisterNodeModeReadsConfig(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter","Cart"]}`)
	rt := newRuntime(t)
	opts := calmOptions()
	opts.Token = "app-secret"
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)

	if err := reg.Register(ctx, "shop", app.URL(), true); err != nil {
		t.Fatalf("Register: %v", err)
	}
	reqs := app.Requests("/dapr/config")
	if len(reqs) != 1 {
		t.Fatalf("app got %d config reads; want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodGet {
		t.Errorf("config read with %s", r.Method)
	}
	if got := r.Header.Get("Dapr-App-Id"); got != "shop" {
		t.Errorf("Dapr-App-Id = %q; want shop", got)
	}
	if got := r.Header.Get("Dapr-Api-Token"); got != "app-secret" {
		t.Errorf("dapr-api-token on config read = %q; want app-secret", got)
	}
	if r.Host != hostOf(t, app.URL()) {
		t.Errorf("Host = %q; want %q", r.Host, hostOf(t, app.URL()))
	}
	for _, typ := range []string{"Counter", "Cart"} {
		if !rt.Hosts(typ) {
			t.Errorf("runtime does not host %s", typ)
		}
	}
	if rt.Hosts("Other") {
		t.Error("runtime hosts a type the app did not list")
	}
	st, ok := appStatus(reg, "shop")
	if !ok {
		t.Fatalf("Apps() = %+v; shop missing", reg.Apps())
	}
	want := callback.AppStatus{ID: "shop", URL: app.URL(), Healthy: true, Types: []string{"Cart", "Counter"}}
	if st.ID != want.ID || st.URL != want.URL || st.Healthy != want.Healthy || !slices.Equal(st.Types, want.Types) || st.Error != "" {
		t.Errorf("status = %+v; want %+v", st, want)
	}
	if reg.Pending() {
		t.Error("Pending() with every app's config read")
	}

	status, body, _, _, err := invoke(ctx, rt, "Counter", "c1", "get", nil)
	if err != nil || status != http.StatusOK || body != "ok" {
		t.Fatalf("invoke = %d %q %v; want 200 ok", status, body, err)
	}
}

func TestRegisterSidecarModeWaitsForTheApp(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	app.set(func(a *fakeApp) { a.down = true })
	rt := newRuntime(t)
	reg := newRegistry(t, rt, quickOptions())
	ctx := ctxFor(t)

	if err := reg.Register(ctx, "side", app.URL(), false); err != nil {
		t.Fatalf("Register without wait of a starting app: %v", err)
	}
	if rt.Hosts("Counter") {
		t.Fatal("type hosted before the app answered its config")
	}
	if !reg.Pending() {
		t.Error("Pending() = false while the app's config is unread")
	}
	st, ok := appStatus(reg, "side")
	if !ok || st.Healthy || !strings.Contains(st.Error, "503") {
		t.Errorf("status = %+v, %v; want the app listed, unhealthy, with the 503 it answered", st, ok)
	}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "get", nil); !errors.Is(err, actor.ErrTypeNotHosted) {
		t.Errorf("invoke before the app is up: %v; want ErrTypeNotHosted", err)
	}

	app.set(func(a *fakeApp) { a.down = false })
	eventually(t, 5*time.Second, "the app's types to be registered once it answers", func() bool { return rt.Hosts("Counter") })
	eventually(t, 5*time.Second, "Pending() to clear", func() bool { return !reg.Pending() })
	status, body, _, _, err := invoke(ctx, rt, "Counter", "c1", "get", nil)
	if err != nil || status != http.StatusOK || body != "ok" {
		t.Fatalf("invoke after the app came up = %d %q %v", status, body, err)
	}
	reads := app.Requests("/dapr/config")
	if len(reads) < 2 {
		t.Errorf("config read %d times; want the failed read at registration and the one after the app came up", len(reads))
	}
	for _, r := range reads {
		if r.Header.Get("Dapr-App-Id") != "side" {
			t.Errorf("config read without Dapr-App-Id: %v", r.Header)
		}
	}
}

// deadURL returns the URL of a port nothing listens on.
func deadURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestRegisterUnreachableApp(t *testing.T) {
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	dead := deadURL(t)

	err := reg.Register(ctx, "gone", dead, true)
	if err == nil {
		t.Fatal("Register with wait of an unreachable app succeeded")
	}
	if !strings.Contains(err.Error(), "/dapr/config") {
		t.Errorf("error %q does not say which call failed", err)
	}
	if _, ok := appStatus(reg, "gone"); ok {
		t.Error("an app that failed to register with wait is still listed")
	}

	if err := reg.Register(ctx, "later", dead, false); err != nil {
		t.Fatalf("Register without wait of an unreachable app: %v", err)
	}
	st, ok := appStatus(reg, "later")
	if !ok || st.Healthy || st.Error == "" {
		t.Errorf("status = %+v, %v; want listed, unhealthy, with an error", st, ok)
	}
}

func TestRegisterRejectsBadInput(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	for _, id := range []string{"", "a/b", "..", "x?y"} {
		if err := reg.Register(ctx, id, app.URL(), true); err == nil {
			t.Errorf("Register with app id %q succeeded", id)
		}
	}
	for _, u := range []string{"https://" + hostOf(t, app.URL()), app.URL() + "?x=1", "not a url", ""} {
		if err := reg.Register(ctx, "ok", u, true); err == nil {
			t.Errorf("Register with URL %q succeeded", u)
		}
	}
	if apps := reg.Apps(); len(apps) != 0 || rt.Hosts("Counter") {
		t.Errorf("after refused registrations: apps %+v, Counter hosted %v", apps, rt.Hosts("Counter"))
	}
	if len(app.Requests("")) != 0 {
		t.Errorf("the app was called for a refused registration: %+v", app.Requests(""))
	}
}

// An app served under a path gets every call under that path.
func TestAppUnderABasePath(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	app.set(func(a *fakeApp) { a.prefix = "/svc/v1" })
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL()+"/svc/v1/", true); err != nil {
		t.Fatal(err)
	}
	if !rt.Hosts("Counter") {
		t.Fatal("config under the base path was not read")
	}
	status, body, _, _, err := invoke(ctx, rt, "Counter", "c1", "get", nil)
	if err != nil || status != http.StatusOK || body != "ok" {
		t.Fatalf("invoke = %d %q %v; want 200 ok", status, body, err)
	}
	if reqs := app.Requests("/svc/v1/actors/Counter/c1/method/get"); len(reqs) != 1 {
		t.Errorf("actor call did not arrive under the base path: %+v", app.Requests(""))
	}
}

func TestInvokeRoundTrip(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	app.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/vnd.result+json")
			w.Header().Set("X-Result", "r1")
			w.Header().Add("X-Multi-Out", "a")
			w.Header().Add("X-Multi-Out", "b")
			w.Header().Set("Connection", "keep-alive")
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"made":true}`))
		}
	})
	rt := newRuntime(t)
	opts := calmOptions()
	opts.Token = "app-secret"
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	app.reset()

	h := func(k, v string) actor.HeaderField { return actor.HeaderField{Name: []byte(k), Value: []byte(v)} }
	req := &actor.Request{
		Body:  []byte(`{"n":1}`),
		Query: []byte("a=1&b=x%20y"),
		Header: []actor.HeaderField{
			h("X-Custom", "v1"), h("X-Multi", "1"), h("X-Multi", "2"), h("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
			// Hop-by-hop and silo-owned headers from the client must not reach the app.
			h("Connection", "close"), h("Keep-Alive", "timeout=5"), h("Upgrade", "h2c"), h("Te", "trailers"),
			h("Proxy-Authorization", "Basic eA=="), h("Transfer-Encoding", "chunked"), h("Content-Length", "999"),
			h("Host", "evil.example"), h("Dapr-Api-Token", "client-forged"), h("Dapr-Reentrancy-Id", "client-forged"),
			h("Content-Type", "text/forged"),
		},
	}
	status, body, hdr, ct, err := invoke(ctx, rt, "Counter", "a b%", "do it", req)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}

	// What the app received.
	reqs := app.Requests("/actors/")
	if len(reqs) != 1 {
		t.Fatalf("app got %d actor calls; want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPut {
		t.Errorf("method = %s; want PUT", r.Method)
	}
	if want := "/actors/Counter/a%20b%25/method/do%20it?a=1&b=x%20y"; r.RequestURI != want {
		t.Errorf("request URI = %q; want %q", r.RequestURI, want)
	}
	if r.Path != "/actors/Counter/a b%/method/do it" {
		t.Errorf("decoded path = %q", r.Path)
	}
	if r.Body != `{"n":1}` {
		t.Errorf("body = %q", r.Body)
	}
	if r.Host != hostOf(t, app.URL()) {
		t.Errorf("Host = %q; want the app's address %q", r.Host, hostOf(t, app.URL()))
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q; want application/json for a body without one", got)
	}
	if got := r.Header.Get("X-Custom"); got != "v1" {
		t.Errorf("X-Custom = %q", got)
	}
	if got := r.Header.Values("X-Multi"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("X-Multi = %q; want both values", got)
	}
	if got := r.Header.Get("Traceparent"); !strings.HasPrefix(got, "00-0af7") {
		t.Errorf("traceparent = %q; want it propagated", got)
	}
	if got := r.Header.Values("Dapr-Api-Token"); !slices.Equal(got, []string{"app-secret"}) {
		t.Errorf("dapr-api-token = %q; want only the silo's token", got)
	}
	if got := r.Header.Values("Dapr-Reentrancy-Id"); len(got) != 0 {
		t.Errorf("Dapr-Reentrancy-Id = %q for a type without reentrancy", got)
	}
	for _, name := range []string{"Keep-Alive", "Upgrade", "Te", "Proxy-Authorization", "Transfer-Encoding"} {
		if got := r.Header.Values(name); len(got) != 0 {
			t.Errorf("hop-by-hop header %s = %q reached the app", name, got)
		}
	}
	if got := r.Header.Get("Connection"); strings.EqualFold(got, "close") {
		t.Errorf("the client's Connection: close reached the app")
	}

	// What came back.
	if status != http.StatusCreated {
		t.Errorf("status = %d; want 201", status)
	}
	if body != `{"made":true}` {
		t.Errorf("body = %q", body)
	}
	if ct != "application/vnd.result+json" {
		t.Errorf("content type = %q", ct)
	}
	if got := hdr.Get("X-Result"); got != "r1" {
		t.Errorf("X-Result = %q; headers %v", got, hdr)
	}
	if got := hdr.Values("X-Multi-Out"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("X-Multi-Out = %q", got)
	}
	for _, name := range []string{"Content-Length", "Content-Type", "Date", "Connection", "Transfer-Encoding"} {
		if got := hdr.Values(name); len(got) != 0 {
			t.Errorf("response header %s = %q came back; the silo sets it itself", name, got)
		}
	}
}

func TestInvokeContentTypes(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	app.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/empty") {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.Write([]byte("plain text"))
		}
	})
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	app.reset()

	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c", "typed", &actor.Request{Body: []byte("x,y"), ContentType: []byte("text/csv")}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c", "nobody", &actor.Request{}); err != nil {
		t.Fatal(err)
	}
	reqs := app.Requests("/actors/")
	if len(reqs) != 2 {
		t.Fatalf("got %d calls", len(reqs))
	}
	if got := reqs[0].Header.Get("Content-Type"); got != "text/csv" {
		t.Errorf("Content-Type = %q; want the client's text/csv", got)
	}
	if got := reqs[1].Header.Values("Content-Type"); len(got) != 0 {
		t.Errorf("Content-Type = %q for a call without a body", got)
	}

	status, body, _, ct, err := invoke(ctx, rt, "Counter", "c", "empty", nil)
	if err != nil || status != http.StatusOK || body != "" {
		t.Fatalf("empty answer = %d %q %v", status, body, err)
	}
	if ct != "" {
		t.Errorf("content type = %q for an answer that had none", ct)
	}
	_, _, _, ct, err = invoke(ctx, rt, "Counter", "c", "text", nil)
	if err != nil || ct != "text/plain; charset=utf-8" {
		t.Errorf("content type = %q, %v; want the app's text/plain; charset=utf-8", ct, err)
	}
}

// A non-200 answer is the app's to report: it comes back as it was, not as an error.
func TestInvokeAppErrorStatusComesBack(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	app.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-DaprErrorResponseHeader", "true")
			http.Error(w, "no such method", http.StatusNotFound)
		}
	})
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	status, body, hdr, _, err := invoke(ctx, rt, "Counter", "c", "nope", nil)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	if status != http.StatusNotFound || body != "no such method\n" || hdr.Get("X-DaprErrorResponseHeader") != "true" {
		t.Errorf("got %d %q %v; want the app's 404, body and error header", status, body, hdr)
	}
}

func TestInvokeReentrancyID(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Plain","Re"],"entitiesConfig":[{"entities":["Re"],"reentrancy":{"enabled":true,"maxStackDepth":4}}]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	app.reset()
	forged := &actor.Request{Header: []actor.HeaderField{{Name: []byte("Dapr-Reentrancy-Id"), Value: []byte("forged")}}}
	for range 2 {
		if _, _, _, _, err := invoke(ctx, rt, "Re", "r1", "m", &actor.Request{Header: forged.Header}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, _, err := invoke(actor.WithCallChain(ctx, "chain-7"), rt, "Re", "r1", "m", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := invoke(ctx, rt, "Plain", "p1", "m", &actor.Request{Header: forged.Header}); err != nil {
		t.Fatal(err)
	}

	re := app.Requests("/actors/Re/")
	if len(re) != 3 {
		t.Fatalf("got %d calls to Re", len(re))
	}
	first, second := re[0].Header.Values("Dapr-Reentrancy-Id"), re[1].Header.Values("Dapr-Reentrancy-Id")
	if len(first) != 1 || len(second) != 1 || first[0] == "" || first[0] == "forged" || second[0] == "forged" {
		t.Fatalf("Dapr-Reentrancy-Id = %q, %q; want one fresh ID per external call", first, second)
	}
	if first[0] == second[0] {
		t.Errorf("two external calls share the reentrancy ID %q", first[0])
	}
	if got := re[2].Header.Values("Dapr-Reentrancy-Id"); !slices.Equal(got, []string{"chain-7"}) {
		t.Errorf("Dapr-Reentrancy-Id = %q; want the caller's chain-7", got)
	}
	plain := app.Requests("/actors/Plain/")
	if len(plain) != 1 || len(plain[0].Header.Values("Dapr-Reentrancy-Id")) != 0 {
		t.Errorf("a type without reentrancy got Dapr-Reentrancy-Id: %+v", plain)
	}
}

func TestNoTokenWhenNoneConfigured(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	req := &actor.Request{Header: []actor.HeaderField{{Name: []byte("dapr-api-token"), Value: []byte("client-token")}}}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c", "m", req); err != nil {
		t.Fatal(err)
	}
	for _, r := range app.Requests("") {
		if got := r.Header.Values("Dapr-Api-Token"); len(got) != 0 {
			t.Errorf("%s %s carried dapr-api-token %q", r.Method, r.Path, got)
		}
	}
}

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

func TestReRegisterRereadsConfig(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter","Cart"]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := invoke(ctx, rt, "Cart", "k1", "m", nil); err != nil {
		t.Fatal(err)
	}
	app.reset()
	app.set(func(a *fakeApp) {
		a.config = `{"entities":["Cart","Thing"],"reentrancy":{"enabled":true}}`
	})
	if err := reg.Register(ctx, "app", app.URL()+"/", true); err != nil {
		t.Fatalf("re-register: %v", err)
	}
	if n := len(app.Requests("/dapr/config")); n != 1 {
		t.Errorf("re-register read the config %d times; want 1", n)
	}
	if rt.Hosts("Counter") {
		t.Error("Counter still hosted after the app dropped it")
	}
	if !rt.Hosts("Cart") || !rt.Hosts("Thing") {
		t.Error("types of the new config are not hosted")
	}
	// The dropped type's actors were deactivated.
	if dels := app.Requests("/actors/Counter/c1"); len(dels) != 1 || dels[0].Method != http.MethodDelete {
		t.Errorf("Counter/c1 was not deactivated: %+v", dels)
	}
	// The new configuration applies to new activations.
	if _, _, _, _, err := invoke(ctx, rt, "Thing", "t1", "m", nil); err != nil {
		t.Fatal(err)
	}
	if calls := app.Requests("/actors/Thing/t1/method/m"); len(calls) != 1 || calls[0].Header.Get("Dapr-Reentrancy-Id") == "" {
		t.Errorf("Thing calls = %+v; want one with a reentrancy ID", calls)
	}
	if apps := reg.Apps(); len(apps) != 1 || !slices.Equal(apps[0].Types, []string{"Cart", "Thing"}) {
		t.Errorf("Apps() = %+v", apps)
	}
}

func TestReRegisterAtANewURLMovesTheApp(t *testing.T) {
	oldApp := newFakeApp(t, `{"entities":["Counter"]}`)
	newApp := newFakeApp(t, `{"entities":["Counter"]}`)
	newApp.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("new")) }
	})
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", oldApp.URL(), true); err != nil {
		t.Fatal(err)
	}
	if _, body, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil); err != nil || body != "ok" {
		t.Fatalf("invoke old: %q %v", body, err)
	}
	if err := reg.Register(ctx, "app", newApp.URL(), true); err != nil {
		t.Fatalf("re-register at a new URL: %v", err)
	}
	if _, body, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil); err != nil || body != "new" {
		t.Fatalf("invoke after the move = %q %v; want the new app's answer", body, err)
	}
	if dels := oldApp.Requests("/actors/Counter/c1"); len(dels) != 2 || dels[1].Method != http.MethodDelete || dels[1].Path != "/actors/Counter/c1" {
		t.Errorf("the old app's actor was not deactivated: %+v", dels)
	}
	if apps := reg.Apps(); len(apps) != 1 || apps[0].URL != newApp.URL() {
		t.Errorf("Apps() = %+v; want one app at the new URL", apps)
	}
}

func TestUnregister(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter","Cart"]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Unregister(ctx, "app"); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("Unregister of an unknown app: %v", err)
	}
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil); err != nil {
		t.Fatal(err)
	}
	if err := reg.Unregister(ctx, "app"); err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	if rt.Hosts("Counter") || rt.Hosts("Cart") {
		t.Error("types still hosted after Unregister")
	}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil); !errors.Is(err, actor.ErrTypeNotHosted) {
		t.Errorf("invoke after Unregister: %v; want ErrTypeNotHosted", err)
	}
	if dels := app.Requests("/actors/Counter/c1"); len(dels) != 2 || dels[1].Method != http.MethodDelete {
		t.Errorf("active actor not deactivated on Unregister: %+v", dels)
	}
	if apps := reg.Apps(); len(apps) != 0 {
		t.Errorf("Apps() = %+v after Unregister", apps)
	}
	if err := reg.Unregister(ctx, "app"); err == nil {
		t.Error("second Unregister succeeded")
	}
	// The types are free for another app.
	other := newFakeApp(t, `{"entities":["Counter"]}`)
	if err := reg.Register(ctx, "other", other.URL(), true); err != nil {
		t.Fatalf("another app claiming the freed type: %v", err)
	}
}

// An app unregistered while its config is being read must not leave its
// types behind.
func TestUnregisterDuringConfigRead(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	arrived := make(chan struct{})
	proceed := make(chan struct{})
	var once sync.Once
	app.set(func(a *fakeApp) {
		a.onConfig = func(*http.Request) {
			once.Do(func() { close(arrived) })
			<-proceed
		}
	})
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)

	done := make(chan error, 1)
	go func() { done <- reg.Register(ctx, "app", app.URL(), true) }()
	<-arrived
	unregistered := make(chan error, 1)
	go func() { unregistered <- reg.Unregister(ctx, "app") }()
	// Let Unregister start before the config answer arrives.
	eventually(t, 5*time.Second, "the app to leave the registry", func() bool {
		_, ok := appStatus(reg, "app")
		return !ok
	})
	close(proceed)
	if err := <-unregistered; err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	<-done
	if rt.Hosts("Counter") {
		t.Fatal("an unregistered app's type is hosted")
	}
	// Nobody owns Counter: another app may claim it.
	other := newFakeApp(t, `{"entities":["Counter"]}`)
	if err := reg.Register(ctx, "other", other.URL(), true); err != nil {
		t.Fatalf("claiming the type of an app unregistered mid-read: %v", err)
	}
}

func TestTwoAppsClaimingATypeIsRefused(t *testing.T) {
	first := newFakeApp(t, `{"entities":["Counter","Cart"]}`)
	second := newFakeApp(t, `{"entities":["Stock","Counter"]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "first", first.URL(), true); err != nil {
		t.Fatal(err)
	}
	err := reg.Register(ctx, "second", second.URL(), true)
	if err == nil {
		t.Fatal("a second app claiming Counter was accepted")
	}
	for _, want := range []string{"second", "Counter", "first"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if rt.Hosts("Stock") {
		t.Error("the refused app's other types were registered")
	}
	if _, ok := appStatus(reg, "second"); ok {
		t.Error("the refused app is listed")
	}
	// The first app still serves its types.
	first.reset()
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil); err != nil {
		t.Fatal(err)
	}
	if len(first.Requests("/actors/Counter/c1")) != 1 || len(second.Requests("/actors/")) != 0 {
		t.Error("Counter is not served by the first app")
	}

	// Without wait the app is kept, and its status says why it hosts nothing.
	if err := reg.Register(ctx, "second", second.URL(), false); err != nil {
		t.Fatalf("Register without wait: %v", err)
	}
	st, ok := appStatus(reg, "second")
	if !ok || len(st.Types) != 0 || !strings.Contains(st.Error, "already hosted") {
		t.Errorf("status = %+v, %v; want listed without types, with the conflict", st, ok)
	}
}

func TestBadApps(t *testing.T) {
	rt := newRuntime(t)
	opts := calmOptions()
	opts.CallTimeout = 200 * time.Millisecond
	opts.MaxResponseSize = 4096
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)

	good := newFakeApp(t, `{"entities":["Good"]}`)
	if err := reg.Register(ctx, "good", good.URL(), true); err != nil {
		t.Fatal(err)
	}
	goodStillServes := func(t *testing.T) {
		t.Helper()
		status, body, _, _, err := invoke(ctx, rt, "Good", "g", "m", nil)
		if err != nil || status != http.StatusOK || body != "ok" {
			t.Fatalf("the good app stopped serving: %d %q %v", status, body, err)
		}
	}

	t.Run("garbage config", func(t *testing.T) {
		app := newFakeApp(t, `<html>it works!</html>`)
		err := reg.Register(ctx, "garbage", app.URL(), true)
		if err == nil || !strings.Contains(err.Error(), "not valid JSON") || !strings.Contains(err.Error(), "garbage") {
			t.Errorf("Register: %v; want a JSON error naming the app", err)
		}
		goodStillServes(t)
	})
	t.Run("config error status", func(t *testing.T) {
		app := newFakeApp(t, `oops`)
		app.set(func(a *fakeApp) { a.configStatus = http.StatusInternalServerError })
		err := reg.Register(ctx, "failing", app.URL(), true)
		if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "oops") {
			t.Errorf("Register: %v; want the status and body", err)
		}
		goodStillServes(t)
	})
	t.Run("config too large", func(t *testing.T) {
		app := newFakeApp(t, `{"entities":["Big"],"pad":"`+strings.Repeat("x", 8192)+`"}`)
		if err := reg.Register(ctx, "big", app.URL(), true); err == nil {
			t.Error("Register of an app with a config larger than MaxResponseSize succeeded")
		}
		if rt.Hosts("Big") {
			t.Error("type of an oversized config hosted")
		}
		goodStillServes(t)
	})
	t.Run("no config route", func(t *testing.T) {
		app := newFakeApp(t, "")
		app.set(func(a *fakeApp) { a.configStatus = http.StatusNotFound })
		if err := reg.Register(ctx, "noconfig", app.URL(), true); err != nil {
			t.Errorf("an app answering 404 to /dapr/config (no actors): %v", err)
		}
		if st, ok := appStatus(reg, "noconfig"); !ok || len(st.Types) != 0 || !st.Healthy {
			t.Errorf("status = %+v, %v", st, ok)
		}
		reg.Unregister(ctx, "noconfig")
	})
	t.Run("slow config", func(t *testing.T) {
		app := newFakeApp(t, `{"entities":["Slow"]}`)
		app.set(func(a *fakeApp) { a.onConfig = app.hang })
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := reg.Register(rctx, "slowcfg", app.URL(), true)
		if err == nil {
			t.Error("Register of an app that never answers its config succeeded")
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Register took %v; the context allowed 200ms", took)
		}
		goodStillServes(t)
	})
	t.Run("response too large", func(t *testing.T) {
		app := newFakeApp(t, `{"entities":["Chatty"]}`)
		app.set(func(a *fakeApp) {
			a.actor = func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/small") {
					w.Write([]byte("small"))
					return
				}
				w.Write([]byte(strings.Repeat("y", 64<<10)))
			}
		})
		if err := reg.Register(ctx, "chatty", app.URL(), true); err != nil {
			t.Fatal(err)
		}
		resp, err := rt.Invoke(ctx, actor.ID{Type: "Chatty", ID: "c"}, &actor.Request{Method: "big"})
		if err == nil {
			resp.Release()
			t.Fatalf("a %d-byte answer with MaxResponseSize %d succeeded with %d bytes", 64<<10, opts.MaxResponseSize, len(resp.Body))
		}
		if !strings.Contains(err.Error(), "chatty") {
			t.Errorf("error %q does not name the app", err)
		}
		// The app's next answer, within bounds, is fine.
		if _, body, _, _, err := invoke(ctx, rt, "Chatty", "c", "small", nil); err != nil || body != "small" {
			t.Errorf("next call = %q %v", body, err)
		}
		goodStillServes(t)
	})
	t.Run("slow actor", func(t *testing.T) {
		app := newFakeApp(t, `{"entities":["Sloth"]}`)
		app.set(func(a *fakeApp) {
			a.actor = func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/slow") {
					app.hang(r)
					return
				}
				w.Write([]byte("quick"))
			}
		})
		if err := reg.Register(ctx, "sloth", app.URL(), true); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _, _, _, err := invoke(ctx, rt, "Sloth", "s", "slow", nil)
		took := time.Since(start)
		if err == nil {
			t.Fatal("a call the app never answers succeeded")
		}
		if !strings.Contains(err.Error(), "sloth") || !strings.Contains(err.Error(), "200ms") {
			t.Errorf("error %q does not name the app and the timeout", err)
		}
		if took < opts.CallTimeout || took > 2*time.Second {
			t.Errorf("the call gave up after %v; CallTimeout is %v", took, opts.CallTimeout)
		}
		// A shorter context deadline wins over CallTimeout.
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		start = time.Now()
		_, _, _, _, err = invoke(cctx, rt, "Sloth", "s", "slow", nil)
		cancel()
		if err == nil || strings.Contains(err.Error(), "200ms") || time.Since(start) > time.Second {
			t.Errorf("call with a 50ms deadline: %v after %v; want it bounded by the deadline", err, time.Since(start))
		}
		if _, body, _, _, err := invoke(ctx, rt, "Sloth", "s", "fast", nil); err != nil || body != "quick" {
			t.Errorf("next call = %q %v", body, err)
		}
		goodStillServes(t)
	})
	t.Run("app goes away", func(t *testing.T) {
		app := newFakeApp(t, `{"entities":["Ghost"]}`)
		if err := reg.Register(ctx, "ghost", app.URL(), true); err != nil {
			t.Fatal(err)
		}
		app.srv.Close()
		_, _, _, _, err := invoke(ctx, rt, "Ghost", "g", "m", nil)
		if err == nil {
			t.Fatal("call to a closed app succeeded")
		}
		if !strings.Contains(err.Error(), "ghost") {
			t.Errorf("error %q does not name the app", err)
		}
		goodStillServes(t)
	})
	t.Run("app answers garbage to a call", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		cfg := `{"entities":["Liar"]}`
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 4096)
					n, _ := c.Read(buf)
					if strings.HasPrefix(string(buf[:n]), "GET /dapr/config") {
						c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(cfg)) + "\r\nConnection: close\r\n\r\n" + cfg))
						return
					}
					c.Write([]byte("SPDY/9 banana\r\n\x00\x01\x02"))
				}()
			}
		}()
		if err := reg.Register(ctx, "liar", "http://"+l.Addr().String(), true); err != nil {
			t.Fatal(err)
		}
		if _, _, _, _, err := invoke(ctx, rt, "Liar", "l", "m", nil); err == nil {
			t.Error("a garbage HTTP answer was accepted")
		}
		goodStillServes(t)
	})
}

func TestCloseUnregistersEverything(t *testing.T) {
	a := newFakeApp(t, `{"entities":["A"]}`)
	b := newFakeApp(t, `{"entities":["B"]}`)
	rt := newRuntime(t)
	reg := callback.NewRegistry(rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "a", a.URL(), true); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(ctx, "b", b.URL(), false); err != nil {
		t.Fatal(err)
	}
	reg.Close(ctx)
	if rt.Hosts("A") || rt.Hosts("B") {
		t.Error("types hosted after Close")
	}
	if apps := reg.Apps(); len(apps) != 0 {
		t.Errorf("Apps() = %+v after Close", apps)
	}
	if err := reg.Register(ctx, "c", a.URL(), true); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Register after Close: %v", err)
	}
	reg.Close(ctx) // twice is harmless
}

// Many goroutines registering, calling and reading status at once, under -race.
func TestConcurrentUse(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, quickOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				_, body, _, _, err := invoke(ctx, rt, "Counter", "c"+strconv.Itoa(i), "m", &actor.Request{Body: []byte(strconv.Itoa(j))})
				if err != nil {
					// Re-registering with the same config keeps the type
					// serving throughout.
					errs <- err
					return
				}
				if body != "ok" {
					errs <- errors.New("unexpected body " + body)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
				errs <- err
				return
			}
			reg.Apps()
			reg.Pending()
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestReRegisterWhileDownKeepsTheApp(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	app.set(func(a *fakeApp) { a.down = true })
	if err := reg.Register(ctx, "app", app.URL(), true); err == nil {
		t.Fatal("re-registering an app that cannot answer succeeded")
	}
	if !rt.Hosts("Counter") {
		t.Fatal("a failed re-registration removed the app's types")
	}
	if _, ok := appStatus(reg, "app"); !ok {
		t.Fatal("a failed re-registration removed the app")
	}
	app.set(func(a *fakeApp) { a.down = false })
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c1", "m", nil); err != nil {
		t.Fatalf("calls after the app answers again: %v", err)
	}
}
