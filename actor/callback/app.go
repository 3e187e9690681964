// Package callback hosts actor types served by apps over HTTP, through the actor
// callback protocol (docs/api.md): the silo reads an app's /dapr/config,
// registers its entities with the runtime, calls the app for every turn, and
// probes its /healthz, withdrawing its types while it is unhealthy.
package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/busypoll"
	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/internal/grpcapp"
	"github.com/granaryhq/granary/statestore"
)

// Options configures how the silo talks to apps.
type Options struct {
	// Token, when set, is sent to apps as dapr-api-token.
	Token string
	// CallTimeout bounds one actor call to an app (default 60s).
	CallTimeout time.Duration
	// HealthInterval is the time between health probes (default 1s).
	HealthInterval time.Duration
	// HealthTimeout bounds one probe (default 1s).
	HealthTimeout time.Duration
	// HealthThreshold is how many failed probes in a row make an app unhealthy (default 3).
	HealthThreshold int
	// MaxResponseSize bounds an app's response body (default 4 MiB).
	MaxResponseSize int
	// MaxConns bounds the connections to one app (default 1024).
	MaxConns int
	// IdleConnTimeout closes pooled connections idle this long (default 1s),
	// shorter than the keep-alive timeout of common app servers, so a call
	// rarely meets a connection the app has just closed.
	IdleConnTimeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Clock paces health probes and bounds calls; nil means clock.Real.
	Clock clock.Clock
	// Observer, when set, gives the observer of an app's actor calls, for
	// metrics; it is asked once per registered app.
	Observer func(appID string) AppObserver
	// Tracer, when set, makes a client span of every actor call and sends
	// its context to the app in traceparent.
	Tracer trace.Tracer
	// Poller, when set, counts actor calls in flight and may poll for an
	// app's answer while they are few (see busypoll); nil never polls.
	Poller *busypoll.Poller
}

func (o *Options) setDefaults() {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 60 * time.Second
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = time.Second
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = time.Second
	}
	if o.HealthThreshold <= 0 {
		o.HealthThreshold = 3
	}
	if o.MaxResponseSize <= 0 {
		o.MaxResponseSize = 4 << 20
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 1024
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.Real
	}
}

// Runtime is what the registry needs of the actor runtime.
type Runtime interface {
	// RegisterTypes and UnregisterTypes take an app's types in one step.
	RegisterTypes(regs []actor.TypeRegistration) error
	UnregisterTypes(ctx context.Context, names []string)
	SetAvailable(name, reason string)
	// ConfirmClaim is asked right before every call of a turn (method,
	// reminder, timer) goes to the app; see actor.Runtime.ConfirmClaim.
	ConfirmClaim(ctx context.Context, id actor.ID, claim statestore.Claim) error
}

// Errors of Register, for callers that answer them differently.
var (
	// ErrNotAnApp: the URL answers, but not as an app serving the actor
	// callback protocol (its GET /dapr/config is 404).
	ErrNotAnApp = errors.New("not an app serving the actor callback protocol")
	// ErrConfig: the app's /dapr/config is not valid (see ParseConfig).
	ErrConfig = errors.New("unusable app config")
)

// Registry holds the apps registered with this silo.
type Registry struct {
	rt   Runtime
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	apps   map[string]*App
	owners map[string]string // actor type -> app ID
	closed bool
}

// NewRegistry returns an empty registry that registers app types with rt.
func NewRegistry(rt Runtime, opts Options) *Registry {
	opts.setDefaults()
	return &Registry{rt: rt, opts: opts, log: opts.Logger, apps: map[string]*App{}, owners: map[string]string{}}
}

// App is one registered app.
type App struct {
	id   string
	base string               // base URL without trailing slash
	path string               // escaped path of the base URL without trailing slash, prefixed to actor calls
	host string               // Host header
	hc   *fasthttp.HostClient // config reads and health probes
	reg  *Registry
	obs  AppObserver

	refreshMu sync.Mutex // one config read at a time
	// needConfig: registered in node mode, so /dapr/config must be served;
	// a sidecar's app may answer 404 (no actors) or not be up yet.
	needConfig bool

	mu       sync.Mutex
	pools    map[time.Duration]*callPool // actor calls, by the types' drain timeout
	types    []string
	healthy  bool
	read     bool // its config has been read at least once
	failures int
	lastErr  string
	stop     chan struct{}
	stopped  chan struct{}
}

// AppStatus describes a registered app.
type AppStatus struct {
	ID      string   `json:"id"`
	URL     string   `json:"url"`
	Healthy bool     `json:"healthy"`
	Types   []string `json:"actorTypes"`
	Error   string   `json:"error,omitempty"`
}

// ParseAppURL checks an app base URL: http (a host, an optional path, no
// query or fragment), or grpc://host:port for an app that serves Dapr's
// gRPC app callback service (no actors: they stay on HTTP, as in Dapr).
func ParseAppURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("app URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != grpcapp.Scheme {
		return nil, fmt.Errorf("app URL %q: scheme must be http (or grpc for an app serving Dapr's gRPC app callbacks)", raw)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("app URL %q: want http://host:port with an optional path, or grpc://host:port", raw)
	}
	if u.Scheme == grpcapp.Scheme && strings.Trim(u.Path, "/") != "" {
		return nil, fmt.Errorf("app URL %q: a gRPC app has no path", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("app URL %q: port %s is not between 1 and 65535", raw, p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, fmt.Errorf("app URL %q: empty port", raw)
	}
	return u, nil
}

// Register adds an app (or re-registers it, re-reading its config) and starts
// probing its health. With wait, an unreachable app is an error; without, the
// app is kept and its types are registered once it answers (sidecar mode,
// where the app may start after the silo).
func (r *Registry) Register(ctx context.Context, appID, rawURL string, wait bool) error {
	if err := actor.ValidateName(appID); err != nil {
		return fmt.Errorf("app id %q %w", appID, err)
	}
	u, err := ParseAppURL(rawURL)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errors.New("app registry is closed")
	}
	app := r.apps[appID]
	if app != nil && app.base != strings.TrimSuffix(u.String(), "/") {
		r.mu.Unlock()
		// Moved: drop the old registration, then register anew.
		if err := r.Unregister(ctx, appID); err != nil {
			return err
		}
		return r.Register(ctx, appID, rawURL, wait)
	}
	created := app == nil
	if created {
		app = r.newApp(appID, u)
		app.needConfig = wait
		r.apps[appID] = app
		r.mu.Unlock()
		go app.probeLoop()
	} else {
		r.mu.Unlock()
	}
	err = app.refresh(ctx)
	if err != nil && wait {
		// A new app that cannot be read is not kept. An app registered
		// before keeps its types: its health probe decides about it.
		if created {
			_ = r.Unregister(ctx, appID)
		}
		return err
	}
	if err != nil {
		r.log.Warn("app not reachable yet; will register its actor types when it answers", "app", appID, "url", app.base, "err", err)
	}
	return nil
}

func (r *Registry) newApp(id string, u *url.URL) *App {
	return &App{
		id:      id,
		base:    strings.TrimSuffix(u.String(), "/"),
		path:    strings.TrimSuffix(u.EscapedPath(), "/"),
		host:    u.Host,
		reg:     r,
		hc:      newHostClient(u.Host, &r.opts),
		obs:     r.opts.appObserver(id),
		pools:   map[time.Duration]*callPool{},
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

// Unregister removes an app and its actor types.
func (r *Registry) Unregister(ctx context.Context, appID string) error {
	r.mu.Lock()
	app := r.apps[appID]
	if app == nil {
		r.mu.Unlock()
		return fmt.Errorf("app %q is not registered", appID)
	}
	delete(r.apps, appID)
	r.mu.Unlock()
	close(app.stop)
	<-app.stopped
	// Wait for a config read in flight, so that the types it registers are
	// removed too; refresh does nothing once stop is closed.
	app.refreshMu.Lock()
	app.setTypes(ctx, nil)
	app.refreshMu.Unlock()
	app.hc.CloseIdleConnections()
	if grpcapp.IsURL(app.base) {
		grpcapp.Forget(app.base)
	}
	app.mu.Lock()
	for _, p := range app.pools {
		p.hc.CloseIdleConnections()
	}
	app.mu.Unlock()
	r.log.Info("app unregistered", "app", appID)
	return nil
}

// Apps lists the registered apps by ID.
func (r *Registry) Apps() []AppStatus {
	r.mu.Lock()
	apps := make([]*App, 0, len(r.apps))
	for _, a := range r.apps {
		apps = append(apps, a)
	}
	r.mu.Unlock()
	out := make([]AppStatus, 0, len(apps))
	for _, a := range apps {
		a.mu.Lock()
		out = append(out, AppStatus{ID: a.id, URL: a.base, Healthy: a.healthy, Types: slices.Clone(a.types), Error: a.lastErr})
		a.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// AppURL returns the base URL of the app registered as appID, and whether
// its last health probe succeeded; ok is false when no such app is
// registered.
func (r *Registry) AppURL(appID string) (base string, healthy, ok bool) {
	r.mu.Lock()
	a := r.apps[appID]
	r.mu.Unlock()
	if a == nil {
		return "", false, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.base, a.healthy, true
}

// Pending reports whether some registered app has not yet had its config read.
func (r *Registry) Pending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.apps {
		a.mu.Lock()
		pending := !a.read
		a.mu.Unlock()
		if pending {
			return true
		}
	}
	return false
}

// Close stops probing and unregisters every app's types.
func (r *Registry) Close(ctx context.Context) {
	r.mu.Lock()
	r.closed = true
	ids := make([]string, 0, len(r.apps))
	for id := range r.apps {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	for _, id := range ids {
		_ = r.Unregister(ctx, id)
	}
}

// refresh reads the app's config and (re)registers its types.
func (a *App) refresh(ctx context.Context) error {
	a.refreshMu.Lock()
	defer a.refreshMu.Unlock()
	select {
	case <-a.stop:
		return fmt.Errorf("app %s was unregistered", a.id)
	default:
	}
	if grpcapp.IsURL(a.base) {
		// A gRPC app hosts no actors: it is read when it answers.
		if err := grpcapp.Healthy(ctx, a.base, a.reg.opts.HealthTimeout+4*time.Second); err != nil {
			err = fmt.Errorf("gRPC app %s at %s: %w", a.id, a.base, err)
			a.markFailure(err)
			return err
		}
		a.mu.Lock()
		a.healthy, a.read, a.failures, a.lastErr = true, true, 0, ""
		a.mu.Unlock()
		return nil
	}
	body, err := a.get(ctx, "/dapr/config", a.reg.opts.HealthTimeout+4*time.Second, !a.needConfig)
	if err != nil {
		a.markFailure(err)
		return err
	}
	types, warnings, err := ParseConfig(body)
	if err != nil {
		err = fmt.Errorf("app %s: %w: %w", a.id, ErrConfig, err)
		a.markFailure(err)
		return err
	}
	for _, w := range warnings {
		a.reg.log.Warn("app config", "app", a.id, "warning", w)
	}
	if err := a.setTypes(ctx, types); err != nil {
		a.mu.Lock()
		a.lastErr = err.Error()
		a.mu.Unlock()
		return err
	}
	a.mu.Lock()
	a.healthy, a.read, a.failures, a.lastErr = true, true, 0, ""
	a.mu.Unlock()
	return nil
}

// setTypes makes the app host exactly the given types (nil: none).
func (a *App) setTypes(ctx context.Context, types map[string]actor.TypeConfig) error {
	r := a.reg
	r.mu.Lock()
	var conflicts []string
	for name := range types {
		if owner, ok := r.owners[name]; ok && owner != a.id {
			conflicts = append(conflicts, fmt.Sprintf("%s (hosted by app %s)", name, owner))
		}
	}
	if len(conflicts) > 0 {
		r.mu.Unlock()
		sort.Strings(conflicts)
		return fmt.Errorf("app %s: actor types already hosted by another app: %s", a.id, strings.Join(conflicts, ", "))
	}
	a.mu.Lock()
	old := a.types
	a.mu.Unlock()
	var removed []string
	for _, name := range old {
		if _, keep := types[name]; !keep {
			removed = append(removed, name)
			delete(r.owners, name)
		}
	}
	names := make([]string, 0, len(types))
	for name := range types {
		r.owners[name] = a.id
		names = append(names, name)
	}
	sort.Strings(names)
	r.mu.Unlock()

	if len(removed) > 0 {
		r.rt.UnregisterTypes(ctx, removed)
	}
	regs := make([]actor.TypeRegistration, len(names))
	for i, name := range names {
		cfg := types[name]
		regs[i] = actor.TypeRegistration{Name: name, Type: &appType{app: a, name: name, pool: a.pool(cfg.DrainTimeout)}, Config: cfg}
	}
	if err := r.rt.RegisterTypes(regs); err != nil {
		return fmt.Errorf("app %s: registering its actor types: %w", a.id, err)
	}
	for _, name := range names {
		r.rt.SetAvailable(name, "")
	}
	a.mu.Lock()
	a.types = names
	a.mu.Unlock()
	if len(names) > 0 || len(removed) > 0 {
		r.log.Info("app actor types", "app", a.id, "url", a.base, "types", summarize(names), "removed", summarize(removed))
	}
	return nil
}

// pool returns the call pool of the app's types with drain timeout d. Types
// that may be aborted at different times get different connections.
func (a *App) pool(d time.Duration) *callPool {
	if d <= 0 {
		d = actor.DefaultDrainTimeout
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pools[d]
	if p == nil {
		p = newCallPool(a.host, &a.reg.opts)
		a.pools[d] = p
	}
	return p
}

func (a *App) markFailure(err error) {
	a.mu.Lock()
	a.lastErr = err.Error()
	a.mu.Unlock()
}

// probeLoop probes /healthz until the app is unregistered.
func (a *App) probeLoop() {
	defer close(a.stopped)
	opts := &a.reg.opts
	t := opts.Clock.NewTimer(opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C():
		}
		a.probe()
		t.Reset(opts.HealthInterval)
	}
}

func (a *App) probe() {
	opts := &a.reg.opts
	var err error
	if grpcapp.IsURL(a.base) {
		err = grpcapp.Healthy(context.Background(), a.base, opts.HealthTimeout)
	} else {
		_, err = a.get(context.Background(), "/healthz", opts.HealthTimeout, false)
	}
	a.mu.Lock()
	wasHealthy := a.healthy
	if err == nil {
		a.failures = 0
		a.mu.Unlock()
		if !wasHealthy {
			// Recovered (or answering for the first time): re-read the config.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := a.refresh(ctx); err != nil {
				a.reg.log.Warn("app answers /healthz but its config could not be read", "app", a.id, "err", err)
			} else {
				a.reg.log.Info("app healthy", "app", a.id)
			}
			cancel()
		}
		return
	}
	a.failures++
	a.lastErr = err.Error()
	turnUnhealthy := wasHealthy && a.failures >= opts.HealthThreshold
	if turnUnhealthy {
		a.healthy = false
	}
	types := slices.Clone(a.types)
	a.mu.Unlock()
	if turnUnhealthy {
		reason := fmt.Sprintf("app %s is unhealthy: %v", a.id, err)
		a.reg.log.Warn("app unhealthy; its actor types are unavailable until it recovers", "app", a.id, "types", types, "err", err)
		for _, name := range types {
			a.reg.rt.SetAvailable(name, reason)
		}
	}
}

// get performs a GET to the app and returns the body of a 2xx answer. With
// notFoundIsEmpty a 404 counts as an empty success.
func (a *App) get(ctx context.Context, path string, timeout time.Duration, notFoundIsEmpty bool) ([]byte, error) {
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(a.base + path)
	req.Header.SetHost(a.host)
	req.Header.Set("Dapr-App-Id", a.id)
	if a.reg.opts.Token != "" {
		req.Header.Set("dapr-api-token", a.reg.opts.Token)
	}
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, d.Sub(a.reg.opts.Clock.Now()))
	}
	resp, err := do(ctx, a.hc, req, timeout)
	if err != nil {
		return nil, fmt.Errorf("GET %s%s: %w", a.base, path, err)
	}
	defer fasthttp.ReleaseResponse(resp)
	switch code := resp.StatusCode(); {
	case code >= 200 && code < 300:
		return slices.Clone(resp.Body()), nil
	case code == 404 && notFoundIsEmpty:
		return nil, nil
	case code == 404 && path == "/dapr/config":
		return nil, fmt.Errorf("app %s at %s is %w: GET /dapr/config answered 404", a.id, a.base, ErrNotAnApp)
	case code == 404 && path == "/healthz":
		// An app that does not implement /healthz but answers is alive.
		return nil, nil
	default:
		return nil, fmt.Errorf("GET %s%s: status %d: %s", a.base, path, code, truncate(resp.Body(), 200))
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// summarize keeps a log line short for apps with many types.
func summarize(names []string) any {
	if len(names) <= 20 {
		return names
	}
	return fmt.Sprintf("%d types (%s, ...)", len(names), strings.Join(names[:5], ", "))
}
