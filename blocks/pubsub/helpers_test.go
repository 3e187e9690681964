package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// fakeActors calls partition actors on one runtime directly.
type fakeActors struct {
	rt   atomic.Pointer[actor.Runtime]
	fail func(id actor.ID) error // when set and non-nil, the call fails so
}

func (f *fakeActors) CallActor(ctx context.Context, id actor.ID, method string, body []byte) ([]byte, error) {
	if f.fail != nil {
		if err := f.fail(id); err != nil {
			return nil, err
		}
	}
	resp, err := f.rt.Load().Invoke(ctx, id, &actor.Request{Method: method, Body: body})
	if err != nil {
		return nil, err
	}
	defer resp.Release()
	return bytes.Clone(resp.Body), nil
}

// fakeApps sends requests to the test servers registered per app ID, round
// robin over an app's instances.
type fakeApps struct {
	mu    sync.Mutex
	urls  map[string][]string
	next  map[string]int
	httpc *http.Client
}

func newFakeApps() *fakeApps {
	return &fakeApps{urls: map[string][]string{}, next: map[string]int{}, httpc: &http.Client{}}
}

func (f *fakeApps) add(appID, url string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.urls[appID] = append(f.urls[appID], url)
}

func (f *fakeApps) CallApp(ctx context.Context, appID string, req *fasthttp.Request, resp *fasthttp.Response) error {
	f.mu.Lock()
	urls := f.urls[appID]
	var url string
	if len(urls) > 0 {
		url = urls[f.next[appID]%len(urls)]
		f.next[appID]++
	}
	f.mu.Unlock()
	if url == "" {
		return blocks.Errorf(404, "ERR_DIRECT_INVOKE", "no instance of app %s", appID)
	}
	hreq, err := http.NewRequestWithContext(ctx, string(req.Header.Method()), url+string(req.RequestURI()), bytes.NewReader(req.Body()))
	if err != nil {
		return err
	}
	for k, v := range req.Header.All() {
		hreq.Header.Set(string(k), string(v))
	}
	hresp, err := f.httpc.Do(hreq)
	if err != nil {
		return blocks.Errorf(500, "ERR_DIRECT_INVOKE", "calling app %s: %v", appID, err)
	}
	defer hresp.Body.Close()
	body, err := io.ReadAll(hresp.Body)
	if err != nil {
		return blocks.Errorf(500, "ERR_DIRECT_INVOKE", "reading app %s: %v", appID, err)
	}
	resp.SetStatusCode(hresp.StatusCode)
	resp.Header.SetContentType(hresp.Header.Get("Content-Type"))
	resp.SetBody(body)
	return nil
}

// delivery is one request a fake app received.
type delivery struct {
	path, contentType string
	body              []byte
	traceparent       string
	ev                map[string]any // the CloudEvent, when the body is one
}

func (d delivery) id() string {
	s, _ := d.ev["id"].(string)
	return s
}

// fakeApp is a subscriber app on loopback: it answers GET /dapr/subscribe
// with subs and every other request with respond's answer.
type fakeApp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	subs    string
	got     []delivery
	respond func(d delivery, nth int) (status int, body string) // nth counts this body's deliveries, from 1
	counts  map[string]int
}

func newFakeApp(t *testing.T, subs string) *fakeApp {
	a := &fakeApp{subs: subs, counts: map[string]int{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeApp) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/dapr/subscribe" {
		a.mu.Lock()
		subs := a.subs
		a.mu.Unlock()
		if subs == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, subs)
		return
	}
	body, _ := io.ReadAll(r.Body)
	d := delivery{path: r.URL.Path, contentType: r.Header.Get("Content-Type"), body: body, traceparent: r.Header.Get("traceparent")}
	_ = json.Unmarshal(body, &d.ev)
	a.mu.Lock()
	a.got = append(a.got, d)
	a.counts[string(body)]++
	nth := a.counts[string(body)]
	respond := a.respond
	a.mu.Unlock()
	status, answer := http.StatusOK, ""
	if respond != nil {
		status, answer = respond(d, nth)
		if status == 0 { // hang until the caller gives up
			<-r.Context().Done()
			return
		}
	}
	w.WriteHeader(status)
	io.WriteString(w, answer)
}

func (a *fakeApp) setRespond(f func(d delivery, nth int) (int, string)) {
	a.mu.Lock()
	a.respond = f
	a.mu.Unlock()
}

func (a *fakeApp) deliveries() []delivery {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]delivery(nil), a.got...)
}

// ids returns the CloudEvent ids delivered to path, in order.
func (a *fakeApp) ids(path string) []string {
	var out []string
	for _, d := range a.deliveries() {
		if path == "" || d.path == path {
			out = append(out, d.id())
		}
	}
	return out
}

// logRecorder keeps the log records at warn level and above.
type logRecorder struct {
	mu   sync.Mutex
	recs []string
}

func (l *logRecorder) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= slog.LevelWarn }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &attrHandler{l: l, attrs: attrs}
}
func (l *logRecorder) WithGroup(string) slog.Handler { return l }

func (l *logRecorder) find(sub ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, r := range l.recs {
		for _, s := range sub {
			if !strings.Contains(r, s) {
				continue next
			}
		}
		return true
	}
	return false
}

type attrHandler struct {
	l     *logRecorder
	attrs []slog.Attr
}

func (h *attrHandler) Enabled(ctx context.Context, lvl slog.Level) bool { return h.l.Enabled(ctx, lvl) }
func (h *attrHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(h.attrs...)
	return h.l.Handle(ctx, r)
}
func (h *attrHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &attrHandler{l: h.l, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}
func (h *attrHandler) WithGroup(string) slog.Handler { return h }

// harness is one silo: a runtime, its reminder service and a pubsub Service.
type harness struct {
	t      *testing.T
	store  statestore.Store
	rt     *actor.Runtime
	rem    *reminders.Service
	svc    *Service
	apps   *fakeApps
	actors *fakeActors
	logs   *logRecorder
	once   sync.Once
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig is the configuration tests start from: fast retries and recovery.
func testConfig() Config {
	return Config{
		Name:            "pubsub",
		RetrySchedule:   []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond},
		DeliveryTimeout: 5 * time.Second,
		RefreshInterval: 50 * time.Millisecond,
		RecoveryPeriod:  100 * time.Millisecond,
	}
}

func start(t testing.TB, store statestore.Store, apps *fakeApps, cfg Config) *harness {
	t.Helper()
	v, err := statestore.NextVersion(context.Background(), store, statestore.ClusterVersionKey("test"))
	if err != nil {
		t.Fatal(err)
	}
	placement := actor.NewSingleSilo(store, statestore.Claim{Cluster: "test", Version: v, Silo: "s", Incarnation: actor.NewIncarnation()}, quiet())
	rt, err := actor.New(actor.Config{Store: store, Logger: quiet(), Placement: placement})
	if err != nil {
		t.Fatal(err)
	}
	rem, err := reminders.New(reminders.Config{Store: store, Actors: rt, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	rt.SetReminders(rem)
	logs := &logRecorder{}
	actors := &fakeActors{}
	actors.rt.Store(rt)
	cfg.Runtime, cfg.Store, cfg.Actors, cfg.Apps = rt, store, actors, apps
	if cfg.Logger == nil {
		cfg.Logger = slog.New(logs)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{store: store, rt: rt, rem: rem, svc: svc, apps: apps, actors: actors, logs: logs}
	if tt, ok := t.(*testing.T); ok {
		h.t = tt
	}
	t.Cleanup(h.stop)
	return h
}

// newSilo starts a harness on a fresh memstore.
func newSilo(t *testing.T, cfg Config) *harness {
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	return start(t, store, newFakeApps(), cfg)
}

func (h *harness) stop() {
	h.once.Do(func() {
		h.svc.Close()
		h.rem.Stop()
		h.rt.Close(context.Background())
	})
}

// subscribe starts a fake app with the given /dapr/subscribe answer and syncs it.
func (h *harness) subscribe(appID, subs string) *fakeApp {
	h.t.Helper()
	a := newFakeApp(h.t, subs)
	h.apps.add(appID, a.srv.URL)
	if err := h.svc.SyncApp(context.Background(), appID, a.srv.URL); err != nil {
		h.t.Fatalf("SyncApp %s: %v", appID, err)
	}
	return a
}

// request builds a fasthttp request context for the publish handlers.
func request(uri, contentType, body string, headers ...string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI(uri)
	if contentType != "" {
		req.Header.SetContentType(contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	req.SetBodyString(body)
	rc := &fasthttp.RequestCtx{}
	rc.Init(&req, nil, nil)
	return rc
}

// publish publishes body to topic with the query (metadata) given, and
// fails the test unless it is acknowledged.
func (h *harness) publish(topic, query, contentType, body string, headers ...string) {
	h.t.Helper()
	rc := request("/v1.0/publish/pubsub/"+topic+query, contentType, body, headers...)
	if err := h.svc.ServePublish(rc, topic); err != nil {
		h.t.Fatalf("publish to %s: %v", topic, err)
	}
	if rc.Response.StatusCode() != http.StatusNoContent {
		h.t.Fatalf("publish to %s answered %d", topic, rc.Response.StatusCode())
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle waits a little to let anything that should not happen show.
func settle() { time.Sleep(100 * time.Millisecond) }

func subsJSON(subs ...Subscription) string {
	b, _ := json.Marshal(subs)
	return string(b)
}

func errorCode(err error) (int, string) {
	var be *blocks.Error
	if errors.As(err, &be) {
		return be.Status, be.Code
	}
	return 0, ""
}

// partitionIDs lists the actor IDs of a topic's partitions.
func partitionIDs(h *harness, topic string) []actor.ID {
	var out []actor.ID
	for p := 0; p < h.svc.cfg.Partitions; p++ {
		id, _ := topicActorID(p, topic)
		out = append(out, actor.ID{Type: h.svc.actorType, ID: id})
	}
	return out
}
