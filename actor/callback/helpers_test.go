package callback_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
	"github.com/granaryhq/granary/statestore/memstore"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// seen is one request as the app received it.
type seen struct {
	Method     string
	RequestURI string // as sent on the wire
	Path       string // decoded
	Query      string
	Host       string
	Header     http.Header
	Body       string
}

// fakeApp is an app serving the actor callback protocol over net/http. Tests
// change its answers while it runs.
type fakeApp struct {
	srv *httptest.Server

	mu           sync.Mutex
	config       string
	configStatus int // 0: 200
	healthStatus int // 0: 200
	healthHang   bool
	down         bool                  // every route answers 503
	prefix       string                // base path the app is served under
	onConfig     func(r *http.Request) // runs before /dapr/config is answered
	actor        http.HandlerFunc
	requests     []seen
	release      chan struct{} // closed on cleanup, ends hanging handlers
}

func newFakeApp(t testing.TB, config string) *fakeApp {
	t.Helper()
	a := &fakeApp{config: config, release: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(func() {
		close(a.release)
		a.srv.Close()
	})
	return a
}

func (a *fakeApp) URL() string { return a.srv.URL }

func (a *fakeApp) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.requests = append(a.requests, seen{
		Method: r.Method, RequestURI: r.RequestURI, Path: r.URL.Path, Query: r.URL.RawQuery,
		Host: r.Host, Header: r.Header.Clone(), Body: string(body),
	})
	config, configStatus, healthStatus, healthHang, down, handler := a.config, a.configStatus, a.healthStatus, a.healthHang, a.down, a.actor
	prefix, onConfig := a.prefix, a.onConfig
	a.mu.Unlock()
	if down {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case path == "/dapr/config" && r.Method == http.MethodGet:
		if onConfig != nil {
			onConfig(r)
		}
		if configStatus != 0 {
			w.WriteHeader(configStatus)
		}
		io.WriteString(w, config)
	case path == "/healthz" && r.Method == http.MethodGet:
		if healthHang {
			a.hang(r)
			return
		}
		if healthStatus != 0 {
			w.WriteHeader(healthStatus)
		}
	case strings.HasPrefix(path, "/actors/"):
		if handler != nil {
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			handler(w, r)
			return
		}
		io.WriteString(w, "ok")
	default:
		http.NotFound(w, r)
	}
}

// hang blocks until the client goes away or the test ends.
func (a *fakeApp) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-a.release:
	case <-time.After(10 * time.Second):
	}
}

func (a *fakeApp) set(f func(a *fakeApp)) {
	a.mu.Lock()
	f(a)
	a.mu.Unlock()
}

// Requests returns the requests received so far whose path starts with prefix.
func (a *fakeApp) Requests(prefix string) []seen {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []seen
	for _, s := range a.requests {
		if strings.HasPrefix(s.Path, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func (a *fakeApp) reset() {
	a.mu.Lock()
	a.requests = nil
	a.mu.Unlock()
}

// newSlothApp returns an app of the type Sloth whose actors never answer
// the method "slow" and answer "quick" to every other.
func newSlothApp(t testing.TB) *fakeApp {
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
	return app
}

func newRuntime(t testing.TB) *actor.Runtime {
	t.Helper()
	rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rt.Close(ctx)
	})
	return rt
}

// quickOptions probe often, so health tests finish quickly.
func quickOptions() callback.Options {
	return callback.Options{
		CallTimeout:     2 * time.Second,
		HealthInterval:  10 * time.Millisecond,
		HealthTimeout:   200 * time.Millisecond,
		HealthThreshold: 2,
		Logger:          quietLogger(),
	}
}

// calmOptions probe rarely, so the probe loop stays out of the way.
func calmOptions() callback.Options {
	o := quickOptions()
	o.HealthInterval = time.Hour
	return o
}

func newRegistry(t testing.TB, rt callback.Runtime, opts callback.Options) *callback.Registry {
	t.Helper()
	reg := callback.NewRegistry(rt, opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		reg.Close(ctx)
	})
	return reg
}

func ctxFor(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// invoke calls a method and returns the response with its buffers copied.
func invoke(ctx context.Context, rt *actor.Runtime, typ, id, method string, req *actor.Request) (status int, body string, hdr http.Header, contentType string, err error) {
	if req == nil {
		req = &actor.Request{}
	}
	req.Method = method
	resp, err := rt.Invoke(ctx, actor.ID{Type: typ, ID: id}, req)
	if err != nil {
		return 0, "", nil, "", err
	}
	defer resp.Release()
	hdr = http.Header{}
	for _, h := range resp.Header {
		hdr.Add(string(h.Name), string(h.Value))
	}
	return resp.Status, string(resp.Body), hdr, string(resp.ContentType), nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appStatus(reg *callback.Registry, id string) (callback.AppStatus, bool) {
	for _, s := range reg.Apps() {
		if s.ID == id {
			return s, true
		}
	}
	return callback.AppStatus{}, false
}

func isUnavailable(err error) bool { return errors.Is(err, actor.ErrTypeUnavailable) }
