// Command counter-go is Granary's Counter example in Go. It hosts the actor
// type Counter over the actor callback protocol and keeps each counter's
// value in actor state through the sidecar's HTTP API, so a count survives
// deactivation, restarts and moves between silos. It uses only the standard
// library.
//
// Environment: APP_HOST (default 127.0.0.1) and APP_PORT (3000) to listen on;
// DAPR_HTTP_PORT (3500) or GRANARY_URL (the sidecar's full base URL);
// DAPR_API_TOKEN, sent to the sidecar; APP_API_TOKEN, required from callers;
// COUNTER_TRACE=1 logs every turn and deactivation with its activation
// (start and end times, the Granary-Activation header), which the cluster
// tests read to check that no two activations of one actor overlapped.
//
// Pub/sub: the method announce publishes the actor's count to the topic
// counter-events of the pub/sub "pubsub"; the app subscribes to that topic
// (GET /dapr/subscribe) and keeps the last 1,000 events it received, which
// GET /events lists.
//
// The app caches each count for the activation that read it: Granary names
// the activation of every call in the Granary-Activation header, so a count
// cached under an earlier activation (the actor ran elsewhere since) is read
// again from actor state rather than trusted.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	maxBody = 1 << 20 // bytes accepted in a request or a sidecar answer
	// maxSafeInt (2^53-1) is the largest integer every JSON implementation
	// keeps exactly; counts and increments stay within ±maxSafeInt.
	maxSafeInt = 1<<53 - 1
)

// actorConfig is the answer to GET /dapr/config.
var actorConfig = []byte(`{"entities":["Counter"],"actorIdleTimeout":"1h","drainOngoingCallTimeout":"30s","drainRebalancedActors":true}`)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	if err := run(ctx, os.Getenv, log); err != nil {
		log.Error("counter-go stopped", "err", err)
		os.Exit(1)
	}
}

// config is what the environment decides.
type config struct {
	addr       string // host:port the app listens on
	sidecarURL string // base URL of the sidecar, without a trailing slash
	daprToken  string // sent to the sidecar as dapr-api-token
	appToken   string // required from callers as dapr-api-token
	trace      bool   // log every turn and deactivation
}

func loadConfig(getenv func(string) string) (config, error) {
	cfg := config{daprToken: getenv("DAPR_API_TOKEN"), appToken: getenv("APP_API_TOKEN"), trace: getenv("COUNTER_TRACE") == "1"}
	port := cmp.Or(getenv("APP_PORT"), "3000")
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return config{}, fmt.Errorf("APP_PORT %q is not a port number", port)
	}
	cfg.addr = net.JoinHostPort(cmp.Or(getenv("APP_HOST"), "127.0.0.1"), port)
	cfg.sidecarURL = getenv("GRANARY_URL")
	if cfg.sidecarURL == "" {
		port := cmp.Or(getenv("DAPR_HTTP_PORT"), "3500")
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return config{}, fmt.Errorf("DAPR_HTTP_PORT %q is not a port number", port)
		}
		cfg.sidecarURL = "http://127.0.0.1:" + port
	}
	if u, err := url.Parse(cfg.sidecarURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return config{}, fmt.Errorf("GRANARY_URL %q is not an http(s) URL", cfg.sidecarURL)
	}
	cfg.sidecarURL = strings.TrimRight(cfg.sidecarURL, "/")
	return cfg, nil
}

func run(ctx context.Context, getenv func(string) string, log *slog.Logger) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: newCounterApp(cfg, log).handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("counter-go listening", "addr", ln.Addr().String(), "sidecar", cfg.sidecarURL)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// counterApp serves the Counter actor type.
type counterApp struct {
	cfg    config
	client *http.Client
	log    *slog.Logger

	mu     sync.Mutex
	counts map[string]cachedCount // the count of each actor read or written so far
	events []json.RawMessage      // the data of the latest events received, oldest first
}

// Pub/sub names: where announce publishes, and what the app subscribes to.
const (
	pubsubName  = "pubsub"
	eventsTopic = "counter-events"
	maxEvents   = 1000
)

// subscriptions is the answer to GET /dapr/subscribe.
var subscriptions = []byte(`[{"pubsubname":"` + pubsubName + `","topic":"` + eventsTopic + `","route":"/events"}]`)

// cachedCount is a count as the activation that read or wrote it knows it.
type cachedCount struct {
	activation string // the Granary-Activation header of its calls
	n          int64
}

// headerActivation names the activation a call of Granary's runs on.
const headerActivation = "Granary-Activation"

func newCounterApp(cfg config, log *slog.Logger) *counterApp {
	return &counterApp{cfg: cfg, client: &http.Client{
		Timeout: 10 * time.Second,
		// Turns run concurrently on many actors; keep a connection to the
		// sidecar for each instead of net/http's default of two.
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
	}, log: log, counts: map[string]cachedCount{}}
}

// handler routes the actor callback protocol. Any other route is a 404.
func (a *counterApp) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dapr/config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, json.RawMessage(actorConfig))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /dapr/subscribe", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, json.RawMessage(subscriptions))
	})
	mux.HandleFunc("POST /events", a.receive)
	mux.HandleFunc("GET /events", a.listEvents)
	mux.HandleFunc("PUT /actors/Counter/{id}/method/{method}", a.method)
	mux.HandleFunc("PUT /actors/Counter/{id}/method/{kind}/{name}", a.callback)
	mux.HandleFunc("DELETE /actors/Counter/{id}", a.deactivate)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, &httpError{http.StatusNotFound, "no route for " + r.Method + " " + r.URL.Path})
	})
	if a.cfg.appToken == "" {
		return mux
	}
	want := []byte(a.cfg.appToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("dapr-api-token")), want) != 1 {
			a.fail(w, &httpError{http.StatusUnauthorized, "missing or wrong dapr-api-token"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// method runs one actor method: increment (optional body {"by": n}), get,
// reset or announce (publish the count).
func (a *counterApp) method(w http.ResponseWriter, r *http.Request) {
	id, method := r.PathValue("id"), r.PathValue("method")
	act := r.Header.Get(headerActivation)
	start := time.Now()
	var n int64
	var err error
	switch method {
	case "increment":
		var body map[string]any
		if body, err = readObject(w, r); err == nil {
			n, err = a.increment(r.Context(), id, act, body["by"])
		}
	case "get":
		n, err = a.load(r.Context(), id, act)
	case "reset":
		err = a.save(r.Context(), id, act, 0)
	case "announce":
		if n, err = a.load(r.Context(), id, act); err == nil {
			err = a.publish(r.Context(), fmt.Appendf(nil, `{"id":%q,"count":%d}`, id, n))
		}
	default:
		err = &httpError{http.StatusNotFound, fmt.Sprintf("Counter has no method %q", method)}
	}
	if a.cfg.trace {
		a.log.Info("turn", "actor", id, "method", method, "activation", act,
			"start", start.UnixNano(), "end", time.Now().UnixNano(), "count", n, "ok", err == nil)
	}
	a.reply(w, n, err)
}

// callback handles a reminder (method/remind/{name}) or timer
// (method/timer/{name}) firing: it logs the call and adds one.
func (a *counterApp) callback(w http.ResponseWriter, r *http.Request) {
	id, kind, name := r.PathValue("id"), r.PathValue("kind"), r.PathValue("name")
	if kind != "remind" && kind != "timer" {
		a.fail(w, &httpError{http.StatusNotFound, fmt.Sprintf("Counter has no method %q", kind+"/"+name)})
		return
	}
	body, err := readObject(w, r)
	if err != nil {
		a.fail(w, err)
		return
	}
	what := "timer fired"
	if kind == "remind" {
		what = "reminder fired"
	}
	data, _ := json.Marshal(body["data"]) // values decoded from JSON always marshal
	a.log.Info(what, "actor", id, "name", name, "data", string(data))
	n, err := a.increment(r.Context(), id, r.Header.Get(headerActivation), nil)
	a.reply(w, n, err)
}

// deactivate forgets the actor's cached count; its state stays in the store.
func (a *counterApp) deactivate(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	delete(a.counts, r.PathValue("id"))
	a.mu.Unlock()
	if a.cfg.trace {
		a.log.Info("deactivated", "actor", r.PathValue("id"), "activation", r.Header.Get(headerActivation), "at", time.Now().UnixNano())
	}
	w.WriteHeader(http.StatusOK)
}

// increment adds by (nil means 1) to the actor's count and saves it.
func (a *counterApp) increment(ctx context.Context, id, act string, by any) (int64, error) {
	step := int64(1)
	if by != nil {
		var ok bool
		if step, ok = safeInt(by); !ok {
			return 0, &httpError{http.StatusBadRequest, `"by" must be an integer within ±(2^53-1)`}
		}
	}
	n, err := a.load(ctx, id, act)
	if err != nil {
		return 0, err
	}
	if n += step; n > maxSafeInt || n < -maxSafeInt {
		return 0, &httpError{http.StatusBadRequest, "the count would leave ±(2^53-1)"}
	}
	return n, a.save(ctx, id, act, n)
}

// load returns the actor's count: from the cache when this activation put
// it there, else from actor state (GET .../state/count answers 200 with the
// value, or 204 when absent).
func (a *counterApp) load(ctx context.Context, id, act string) (int64, error) {
	a.mu.Lock()
	c, ok := a.counts[id]
	a.mu.Unlock()
	if ok && c.activation == act {
		return c.n, nil
	}
	var n int64
	status, body, err := a.sidecar(ctx, http.MethodGet, "/v1.0/actors/Counter/"+url.PathEscape(id)+"/state/count", nil)
	switch {
	case err != nil:
		return 0, fmt.Errorf("reading count: %w", err)
	case status == http.StatusNoContent:
		n = 0
	case status == http.StatusOK:
		var v any
		err := json.Unmarshal(body, &v)
		if n, ok = safeInt(v); err != nil || !ok {
			return 0, fmt.Errorf("reading count: stored value %s is not an integer", body)
		}
	default:
		return 0, fmt.Errorf("reading count: sidecar answered %d: %s", status, body)
	}
	a.mu.Lock()
	a.counts[id] = cachedCount{activation: act, n: n}
	a.mu.Unlock()
	return n, nil
}

// save writes the count with an actor state transaction and, only once the
// sidecar has accepted it (204), updates the cache.
func (a *counterApp) save(ctx context.Context, id, act string, n int64) error {
	tx := fmt.Appendf(nil, `[{"operation":"upsert","request":{"key":"count","value":%d}}]`, n)
	status, body, err := a.sidecar(ctx, http.MethodPost, "/v1.0/actors/Counter/"+url.PathEscape(id)+"/state", tx)
	if err != nil {
		return fmt.Errorf("saving count: %w", err)
	}
	if status != http.StatusNoContent {
		return fmt.Errorf("saving count: sidecar answered %d: %s", status, body)
	}
	a.mu.Lock()
	a.counts[id] = cachedCount{activation: act, n: n}
	a.mu.Unlock()
	return nil
}

// publish sends an event to the events topic; it returns once the sidecar
// has stored it (204).
func (a *counterApp) publish(ctx context.Context, data []byte) error {
	status, body, err := a.sidecar(ctx, http.MethodPost, "/v1.0/publish/"+pubsubName+"/"+eventsTopic, data)
	if err != nil {
		return fmt.Errorf("publishing: %w", err)
	}
	if status != http.StatusNoContent {
		return fmt.Errorf("publishing: sidecar answered %d: %s", status, body)
	}
	return nil
}

// receive takes one CloudEvent of the events topic and keeps its data.
func (a *counterApp) receive(w http.ResponseWriter, r *http.Request) {
	var ev struct {
		ID   string          `json:"id"`
		Data json.RawMessage `json:"data"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	if err != nil {
		// Not an event this app can read: retrying will not help.
		a.log.Warn("dropping an event that is not a CloudEvent", "err", err)
		writeJSON(w, http.StatusOK, map[string]string{"status": "DROP"})
		return
	}
	a.mu.Lock()
	a.events = append(a.events, ev.Data)
	if len(a.events) > maxEvents {
		a.events = a.events[len(a.events)-maxEvents:]
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"status": "SUCCESS"})
}

// listEvents answers the data of the events received, oldest first.
func (a *counterApp) listEvents(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	list := append([]json.RawMessage{}, a.events...)
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, list)
}

// sidecar makes one call to the sidecar and returns its status and body.
func (a *counterApp) sidecar(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.cfg.sidecarURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.cfg.daprToken != "" {
		req.Header.Set("dapr-api-token", a.cfg.daprToken)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, fmt.Errorf("reading sidecar answer: %w", err)
	}
	return resp.StatusCode, bytes.TrimSpace(data), nil
}

// httpError is an error with the status it answers with; others answer 500.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func (a *counterApp) reply(w http.ResponseWriter, n int64, err error) {
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"count": n})
}

func (a *counterApp) fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if he, ok := errors.AsType[*httpError](err); ok {
		status = he.status
	} else {
		a.log.Warn("call failed", "err", err)
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v) // only maps of strings and ints, and valid raw JSON (alone or in a list)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// readObject reads an optional JSON object body; empty or null means {}.
func readObject(w http.ResponseWriter, r *http.Request) (map[string]any, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
		return nil, &httpError{http.StatusRequestEntityTooLarge, "body larger than 1 MiB"}
	} else if err != nil {
		return nil, &httpError{http.StatusBadRequest, "reading body: " + err.Error()}
	}
	if len(body) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, &httpError{http.StatusBadRequest, "body is not JSON: " + err.Error()}
	}
	obj, ok := v.(map[string]any)
	if !ok && v != nil {
		return nil, &httpError{http.StatusBadRequest, "body must be a JSON object"}
	}
	return obj, nil
}

// safeInt reports the integer a decoded JSON number holds, if it is a whole
// number within ±maxSafeInt (so 3 and 3.0 are the same, as in JavaScript).
func safeInt(v any) (int64, bool) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || math.Abs(f) > maxSafeInt {
		return 0, false
	}
	return int64(f), true
}
