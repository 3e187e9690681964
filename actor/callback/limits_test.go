package callback_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
	"github.com/granaryhq/granary/statestore/memstore"
)

func entitiesConfig(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%q", fmt.Sprintf("T%05d", i))
	}
	return `{"entities":[` + strings.Join(names, ",") + `]}`
}

// An app may declare up to MaxEntities actor types; more are refused with an
// error naming the limit, and nothing of that config is registered.
func TestEntityLimit(t *testing.T) {
	if _, _, err := callback.ParseConfig([]byte(entitiesConfig(callback.MaxEntities))); err != nil {
		t.Fatalf("%d entities: %v", callback.MaxEntities, err)
	}
	_, _, err := callback.ParseConfig([]byte(entitiesConfig(callback.MaxEntities + 1)))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(callback.MaxEntities)) {
		t.Fatalf("%d entities: err = %v, want the limit named", callback.MaxEntities+1, err)
	}
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	app := newFakeApp(t, entitiesConfig(callback.MaxEntities+1))
	if err := reg.Register(ctxFor(t), "big", app.URL(), true); err == nil {
		t.Fatal("an app over the entity limit was registered")
	}
	if st := rt.Stats(); len(st) != 0 {
		t.Fatalf("%d types registered from a refused config", len(st))
	}
}

// Registering and unregistering an app with many types takes one step each,
// not one per type.
func TestManyEntitiesRegisterQuickly(t *testing.T) {
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	app := newFakeApp(t, entitiesConfig(callback.MaxEntities))
	start := time.Now()
	if err := reg.Register(ctxFor(t), "many", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	if n := len(rt.Stats()); n != callback.MaxEntities {
		t.Fatalf("%d types registered, want %d", n, callback.MaxEntities)
	}
	if err := reg.Unregister(ctxFor(t), "many"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("registering and unregistering %d types took %v", callback.MaxEntities, took)
	}
	if n := len(rt.Stats()); n != 0 {
		t.Fatalf("%d types left after unregistering", n)
	}
}

// Node-mode registration reads the config; a URL that does not serve one is
// not an app and is refused, saying what it answered.
func TestRegisterRefusesWhatIsNotAnApp(t *testing.T) {
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	notApp := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notApp.Close)
	err := reg.Register(ctxFor(t), "x", notApp.URL, true)
	if !errors.Is(err, callback.ErrNotAnApp) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err = %v, want ErrNotAnApp naming the 404", err)
	}
	if _, ok := appStatus(reg, "x"); ok {
		t.Fatal("a URL that is not an app stayed registered")
	}
	// In sidecar mode the app may not be up yet: its registration is kept.
	if err := reg.Register(ctxFor(t), "later", notApp.URL, false); err != nil {
		t.Fatalf("sidecar registration: %v", err)
	}
}

func TestParseAppURLRefusesBadPorts(t *testing.T) {
	for _, raw := range []string{"http://127.0.0.1:0", "http://127.0.0.1:65536", "http://127.0.0.1:99999", "http://127.0.0.1:-1", "http://127.0.0.1:abc"} {
		if _, err := callback.ParseAppURL(raw); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
	for _, raw := range []string{"http://127.0.0.1:1", "http://127.0.0.1:65535", "http://[::1]:3000", "http://localhost"} {
		if _, err := callback.ParseAppURL(raw); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

// An app on an IPv6 address is reached there.
func TestAppOnIPv6Loopback(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("SKIPPED: this machine has no IPv6 loopback (%v), so dialling an app on [::1] cannot be tested here", err)
	}
	app := newFakeApp(t, `{"entities":["Six"]}`)
	srv := &http.Server{Handler: http.HandlerFunc(app.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	if err := reg.Register(ctxFor(t), "six", "http://"+ln.Addr().String(), true); err != nil {
		t.Fatal(err)
	}
	if status, body, _, _, err := invoke(ctxFor(t), rt, "Six", "a", "m", nil); err != nil || status != 200 || body != "ok" {
		t.Fatalf("invoke over IPv6: %d %q %v", status, body, err)
	}
}

// A call held by an app that never answers is aborted at the type's drain
// timeout: the caller is told the runtime closed, without waiting for the
// app-call timeout.
func TestDrainAbortsAHungAppCall(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Slow"],"drainOngoingCallTimeout":"500ms"}`)
	app.set(func(a *fakeApp) { a.actor = func(w http.ResponseWriter, r *http.Request) { a.hang(r) } })
	rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	opts := calmOptions()
	opts.CallTimeout = 30 * time.Second
	reg := newRegistry(t, rt, opts)
	if err := reg.Register(ctxFor(t), "slow", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() {
		_, _, _, _, err := invoke(context.Background(), rt, "Slow", "a", "wait", nil)
		result <- err
	}()
	eventually(t, 5*time.Second, "the call reaches the app", func() bool { return len(app.Requests("/actors/Slow/a/method")) == 1 })
	start := time.Now()
	closed := make(chan struct{})
	go func() { rt.Close(context.Background()); close(closed) }()
	select {
	case err := <-result:
		if !errors.Is(err, actor.ErrClosed) {
			t.Fatalf("hung call: err = %v, want ErrClosed", err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("the hung call ended %v after Close began, want about the 500ms drain timeout", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hung call was not aborted at the drain timeout")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return soon after the drain timeout")
	}
}
