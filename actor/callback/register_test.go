package callback_test

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
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
