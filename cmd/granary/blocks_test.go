package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
	"github.com/granaryhq/granary/internal/testutil/redistest"
)

// devServer is `granary dev` run in this process.
type devServer struct {
	t      *testing.T
	base   string
	client *http.Client
	logs   *lockedBuffer
	done   chan error // runDev's return
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDev runs granary dev with args on a free port until the test ends,
// and waits until it is ready.
func startDev(t *testing.T, args ...string) *devServer {
	t.Helper()
	d := launchDev(t, args...)
	d.waitHealth(t, "/v1.0/healthz")
	return d
}

// launchDev runs granary dev with args on a free port until the test ends,
// without waiting for it.
func launchDev(t *testing.T, args ...string) *devServer {
	t.Helper()
	port := testutil.FreePort(t)
	d := &devServer{t: t, base: "http://127.0.0.1:" + strconv.Itoa(port), logs: &lockedBuffer{}, done: make(chan error, 1),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	ctx, cancel := context.WithCancel(context.Background())
	all := append([]string{"--http-port", strconv.Itoa(port), "--data-dir", t.TempDir(), "--shutdown-timeout", "5s", "--metrics-port", "0"}, args...)
	go func() { d.done <- runDev(ctx, all, io.Discard, d.logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-d.done; err != nil {
			t.Errorf("granary dev: %v", err)
		}
		d.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("granary dev log:\n%s", d.logs.String())
		}
	})
	return d
}

// status is the status a GET of path answers, 0 when it gets no answer.
func (d *devServer) status(path string) int {
	resp, err := d.client.Get(d.base + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitHealth waits until the health route path answers 204.
func (d *devServer) waitHealth(t *testing.T, path string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, "granary dev to answer "+path, func() error {
		select {
		case err := <-d.done:
			d.done <- err
			return fmt.Errorf("granary dev exited: %v\n%s", err, d.logs.String())
		default:
		}
		if got := d.status(path); got != http.StatusNoContent {
			return fmt.Errorf("%s answered %d", path, got)
		}
		return nil
	})
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, a.body) }

// errorCode is the errorCode of an error answer.
func (a answer) errorCode() string {
	var e struct {
		ErrorCode string `json:"errorCode"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.ErrorCode
}

func (d *devServer) do(method, path, body string, header ...string) answer {
	d.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, d.base+path, r)
	if err != nil {
		d.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := d.client.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

// expect checks an answer's status and, for an error, its code.
func expect(t *testing.T, what string, a answer, status int, code string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: %s, want status %d", what, a, status)
	}
	if code != "" && a.errorCode() != code {
		t.Fatalf("%s: %s, want error code %s", what, a, code)
	}
}

// stores are the state stores the state API is checked against.
func stores(t *testing.T) map[string][]string {
	return map[string][]string{
		"embedded": nil,
		"redis":    {"--state-store", redistest.URL(t), "--take-over"},
	}
}

func TestStateAPI(t *testing.T) {
	for name, args := range stores(t) {
		t.Run(name, func(t *testing.T) {
			d := startDev(t, args...)
			const st = "/v1.0/state/statestore"
			expect(t, "save", d.do("POST", st, `[{"key":"a","value":{"n":1}},{"key":"b","value":"text"}]`), 204, "")
			got := d.do("GET", st+"/a", "")
			expect(t, "get a", got, 200, "")
			if string(got.body) != `{"n":1}` || got.header.Get("ETag") == "" {
				t.Fatalf("get a: %s, ETag %q", got, got.header.Get("ETag"))
			}
			etag := got.header.Get("ETag")
			if b := d.do("GET", st+"/b", ""); string(b.body) != `"text"` {
				t.Fatalf("get b: %s", b)
			}
			expect(t, "get absent", d.do("GET", st+"/nothing", ""), 204, "")

			// ETags: a stale one is refused, the current one accepted.
			expect(t, "save with a wrong etag", d.do("POST", st, `[{"key":"a","value":2,"etag":"not-it"}]`), 409, "ERR_STATE_SAVE")
			expect(t, "save with the etag", d.do("POST", st, `[{"key":"a","value":2,"etag":`+strconv.Quote(etag)+`}]`), 204, "")
			after := d.do("GET", st+"/a", "")
			if string(after.body) != "2" || after.header.Get("ETag") == etag {
				t.Fatalf("after the conditional save: %s, ETag %q (was %q)", after, after.header.Get("ETag"), etag)
			}
			// First write: only while the key is absent.
			expect(t, "first-write of an existing key", d.do("POST", st, `[{"key":"a","value":3,"options":{"concurrency":"first-write"}}]`), 409, "ERR_STATE_SAVE")
			expect(t, "first-write of a new key", d.do("POST", st, `[{"key":"fw","value":1,"options":{"concurrency":"first-write"}}]`), 204, "")

			// Delete with If-Match.
			expect(t, "delete with a wrong If-Match", d.do("DELETE", st+"/a", "", "If-Match", "nope"), 409, "ERR_STATE_DELETE")
			expect(t, "delete with If-Match", d.do("DELETE", st+"/a", "", "If-Match", after.header.Get("ETag")), 204, "")
			expect(t, "get deleted", d.do("GET", st+"/a", ""), 204, "")
			expect(t, "delete absent", d.do("DELETE", st+"/a", ""), 204, "")

			// Bulk get, in the order asked, absent keys without data.
			bulk := d.do("POST", st+"/bulk", `{"keys":["b","a","fw"],"parallelism":4}`)
			expect(t, "bulk get", bulk, 200, "")
			var items []struct {
				Key  string          `json:"key"`
				Data json.RawMessage `json:"data"`
				ETag string          `json:"etag"`
			}
			if err := json.Unmarshal(bulk.body, &items); err != nil || len(items) != 3 {
				t.Fatalf("bulk get: %s (%v)", bulk, err)
			}
			if items[0].Key != "b" || string(items[0].Data) != `"text"` || items[0].ETag == "" ||
				items[1].Key != "a" || items[1].Data != nil || items[1].ETag != "" || items[2].Key != "fw" || string(items[2].Data) != "1" {
				t.Fatalf("bulk get: %s", bulk.body)
			}

			// A transaction over many keys (so many partitions) is
			// atomic: one stale ETag and nothing of it applies.
			var ops []string
			for i := range 20 {
				ops = append(ops, fmt.Sprintf(`{"operation":"upsert","request":{"key":"t%d","value":%d}}`, i, i))
			}
			bad := append(slices.Clone(ops), `{"operation":"upsert","request":{"key":"b","value":0,"etag":"stale"}}`)
			expect(t, "transaction with a stale etag", d.do("POST", st+"/transaction", `{"operations":[`+strings.Join(bad, ",")+`]}`), 409, "ERR_STATE_TRANSACTION")
			for i := range 20 {
				expect(t, "key of the refused transaction", d.do("GET", st+"/t"+strconv.Itoa(i), ""), 204, "")
			}
			ops = append(ops, `{"operation":"delete","request":{"key":"b"}}`)
			expect(t, "transaction", d.do("POST", st+"/transaction", `{"operations":[`+strings.Join(ops, ",")+`],"metadata":{"x":"y"}}`), 204, "")
			for i := range 20 {
				if g := d.do("GET", st+"/t"+strconv.Itoa(i), ""); string(g.body) != strconv.Itoa(i) {
					t.Fatalf("t%d after the transaction: %s", i, g)
				}
			}
			expect(t, "b deleted by the transaction", d.do("GET", st+"/b", ""), 204, "")
			expect(t, "one-key transaction", d.do("POST", st+"/transaction",
				`{"operations":[{"operation":"upsert","request":{"key":"one","value":1}},{"operation":"upsert","request":{"key":"one","value":2}}]}`), 204, "")
			if g := d.do("GET", st+"/one", ""); string(g.body) != "2" {
				t.Fatalf("one: %s", g)
			}

			// TTL.
			expect(t, "save with a TTL", d.do("POST", st, `[{"key":"short","value":1,"metadata":{"ttlInSeconds":"1"}}]`), 204, "")
			if g := d.do("GET", st+"/short", ""); g.status != 200 || g.header.Get("Metadata.ttlExpireTime") == "" {
				t.Fatalf("a key with a TTL: %s %v", g, g.header)
			}
			testutil.Eventually(t, 5*time.Second, "the key to expire", func() error {
				if g := d.do("GET", st+"/short", ""); g.status != 204 {
					return fmt.Errorf("still %s", g)
				}
				return nil
			})

			// Bad input.
			for _, c := range []struct {
				what, method, path, body string
				status                   int
				code                     string
			}{
				{"unknown store", "GET", "/v1.0/state/nope/a", "", 400, "ERR_STATE_STORE_NOT_FOUND"},
				{"malformed save", "POST", st, `[{"key":`, 400, "ERR_MALFORMED_REQUEST"},
				{"save of an object", "POST", st, `{"key":"a"}`, 400, "ERR_MALFORMED_REQUEST"},
				{"save without a key", "POST", st, `[{"value":1}]`, 400, "ERR_MALFORMED_REQUEST"},
				{"key with ||", "POST", st, `[{"key":"a||b","value":1}]`, 400, "ERR_MALFORMED_REQUEST"},
				{"invalid UTF-8 key", "POST", st, "[{\"key\":\"\xff\",\"value\":1}]", 400, "ERR_MALFORMED_REQUEST"},
				{"bad concurrency", "POST", st, `[{"key":"a","value":1,"options":{"concurrency":"any"}}]`, 400, "ERR_MALFORMED_REQUEST"},
				{"bad TTL", "POST", st, `[{"key":"a","value":1,"metadata":{"ttlInSeconds":"soon"}}]`, 400, "ERR_MALFORMED_REQUEST"},
				{"bulk get of an array", "POST", st + "/bulk", `["a"]`, 400, "ERR_MALFORMED_REQUEST"},
				{"unknown operation", "POST", st + "/transaction", `{"operations":[{"operation":"merge","request":{"key":"a"}}]}`, 400, "ERR_NOT_SUPPORTED_STATE_OPERATION"},
				{"transaction of an array", "POST", st + "/transaction", `[]`, 400, "ERR_MALFORMED_REQUEST"},
				{"PATCH", "PATCH", st + "/a", "", 405, "ERR_METHOD_NOT_ALLOWED"},
				{"a partition called directly", "POST", "/v1.0/actors/granary.state.statestore/1/method/save", `[]`, 403, ""},
			} {
				expect(t, c.what, d.do(c.method, c.path, c.body), c.status, c.code)
			}
			// Nothing acknowledged was lost to the bad requests.
			if g := d.do("GET", st+"/fw", ""); string(g.body) != "1" {
				t.Fatalf("fw after the bad requests: %s", g)
			}
		})
	}
}

// Concurrent conditional writes to one key: exactly one of the writers
// holding the same ETag wins.
func TestStateConcurrentETagWriters(t *testing.T) {
	d := startDev(t)
	const st = "/v1.0/state/statestore"
	expect(t, "save", d.do("POST", st, `[{"key":"k","value":0}]`), 204, "")
	etag := d.do("GET", st+"/k", "").header.Get("ETag")
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 16 {
		wg.Go(func() {
			a := d.do("POST", st, fmt.Sprintf(`[{"key":"k","value":%d,"etag":%q}]`, i+1, etag))
			mu.Lock()
			defer mu.Unlock()
			switch a.status {
			case 204:
				won++
			case 409:
			default:
				t.Errorf("writer %d: %s", i, a)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d writers with the same ETag won, want 1", won)
	}
}

func TestResourcesPathDeclaresMoreStores(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"orders.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: orders\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n",
		"events.yml":  "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.kafka\n  version: v1\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mail\nspec:\n  type: bindings.smtp\n  version: v1\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := startDev(t, "--resources-path", dir)
	expect(t, "save to orders", d.do("POST", "/v1.0/state/orders", `[{"key":"o1","value":"x"}]`), 204, "")
	expect(t, "orders is its own store", d.do("GET", "/v1.0/state/statestore/o1", ""), 204, "")
	if g := d.do("GET", "/v1.0/state/orders/o1", ""); string(g.body) != `"x"` {
		t.Fatalf("get from orders: %s", g)
	}
	unknown := d.do("GET", "/v1.0/state/nope/a", "")
	if !strings.Contains(string(unknown.body), "orders, statestore") {
		t.Fatalf("the unknown store's error does not name the configured ones: %s", unknown)
	}
	md := d.do("GET", "/v1.0/metadata", "")
	var meta struct {
		Components []struct{ Name, Type, Version string } `json:"components"`
	}
	if err := json.Unmarshal(md.body, &meta); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range meta.Components {
		got = append(got, c.Name+"="+c.Type+"/"+c.Version)
	}
	slices.Sort(got)
	want := []string{"events=pubsub.kafka/v1", "orders=state.redis/v1", "pubsub=pubsub.granary/v1", "statestore=state.granary/v1"}
	if !slices.Equal(got, want) {
		t.Fatalf("metadata components %v, want %v", got, want)
	}
	if !strings.Contains(d.logs.String(), "bindings.smtp") {
		t.Error("the skipped binding component is not logged")
	}
}

// echoApp answers every request with what it received.
type echoApp struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls int
}

func newEchoApp(t *testing.T, name string) *echoApp {
	e := &echoApp{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/dapr/config", "/dapr/subscribe":
			http.NotFound(w, r)
			return
		case "/healthz":
			return
		}
		e.mu.Lock()
		e.calls++
		e.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo-App", name)
		w.Header().Set("X-Echo-Foo", r.Header.Get("X-Foo"))
		w.Header().Set("X-Echo-Token", r.Header.Get("dapr-api-token"))
		w.Header().Set("Content-Type", "text/x-echo")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), body)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func TestServiceInvocation(t *testing.T) {
	app := newEchoApp(t, "echo")
	d := startDev(t, "--app-url", "echo="+app.srv.URL, "--api-token", "secret")
	tok := []string{"dapr-api-token", "secret"}
	for _, c := range []struct{ method, path, header, want string }{
		{"PUT", "/v1.0/invoke/echo/method/orders/42?x=1&y=%20", "", "PUT /orders/42?x=1&y=%20 body"},
		{"GET", "/v1.0/invoke/echo/method/a%2Fb", "", "GET /a%2Fb "},
		{"DELETE", "/v1.0/invoke/echo/method", "", "DELETE / "},
		{"POST", "/any/path?q", "echo", "POST /any/path?q body"},
	} {
		body := "body"
		if c.method == "GET" || c.method == "DELETE" {
			body = ""
		}
		hdr := append(slices.Clone(tok), "X-Foo", "bar")
		if c.header != "" {
			hdr = append(hdr, "dapr-app-id", c.header)
		}
		a := d.do(c.method, c.path, body, hdr...)
		if a.status != 201 || string(a.body) != c.want || a.header.Get("X-Echo-Foo") != "bar" ||
			a.header.Get("Content-Type") != "text/x-echo" || a.header.Get("X-Echo-App") != "echo" {
			t.Fatalf("%s %s: %s %v, want 201 %q with the app's headers", c.method, c.path, a, a.header, c.want)
		}
		if a.header.Get("X-Echo-Token") != "" {
			t.Fatalf("%s %s: the app received the API token", c.method, c.path)
		}
	}
	expect(t, "unknown app", d.do("POST", "/v1.0/invoke/nobody/method/x", "", tok...), 500, "ERR_DIRECT_INVOKE")
	expect(t, "bad route", d.do("POST", "/v1.0/invoke/echo/x", "", tok...), 404, "")
	expect(t, "no token", d.do("POST", "/v1.0/invoke/echo/method/x", ""), 401, "")

	// Sidecar mode: the metadata speaks for the one app.
	var md struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(d.do("GET", "/v1.0/metadata", "", tok...).body, &md); err != nil || md.ID != "echo" {
		t.Fatalf("metadata id %q (%v), want echo", md.ID, err)
	}
	expect(t, "outbound health", d.do("GET", "/v1.0/healthz/outbound", ""), 204, "")

	// An app that went away: the call fails with Dapr's code, at once.
	app.srv.Close()
	expect(t, "app down", d.do("POST", "/v1.0/invoke/echo/method/x", "", tok...), 500, "ERR_DIRECT_INVOKE")
}

func TestMetadataIDOfAnAppWithoutID(t *testing.T) {
	app := newEchoApp(t, "x")
	d := startDev(t, "--app-url", app.srv.URL)
	var md struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(d.do("GET", "/v1.0/metadata", "").body, &md); err != nil || md.ID != "app" {
		t.Fatalf("metadata id %q (%v), want app", md.ID, err)
	}
}

// subscriberApp subscribes to topics and records what it receives.
type subscriberApp struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    map[string][]map[string]any // by path
	subs   string
	delay  time.Duration // before answering GET /dapr/subscribe
	config string        // the answer to GET /dapr/config; none is 404
}

func newSubscriberApp(t *testing.T, subscriptions string) *subscriberApp {
	a := &subscriberApp{got: map[string][]map[string]any{}, subs: subscriptions}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/dapr/subscribe":
			a.mu.Lock()
			delay := a.delay
			a.mu.Unlock()
			time.Sleep(delay)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, a.subs)
			return
		case "/dapr/config":
			if a.config == "" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, a.config)
			return
		case "/healthz":
			return
		}
		var ev map[string]any
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.got[r.URL.Path] = append(a.got[r.URL.Path], ev)
		a.mu.Unlock()
		io.WriteString(w, `{"status":"SUCCESS"}`)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *subscriberApp) received(path string) []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.got[path])
}

// TestPublishOnceReadyReachesTheSubscriber: once granary dev reports ready
// (healthz 204), and once a registration through the API is answered, the
// app's subscriptions are known, so a message published at once is
// delivered, however slowly the app answers GET /dapr/subscribe.
func TestPublishOnceReadyReachesTheSubscriber(t *testing.T) {
	const subs = `[{"pubsubname":"pubsub","topic":"orders","route":"/orders"}]`
	t.Run("app given at startup", func(t *testing.T) {
		app := newSubscriberApp(t, subs)
		app.delay = 1500 * time.Millisecond
		d := startDev(t, "--app-url", "shop="+app.srv.URL)
		expect(t, "publish", d.do("POST", "/v1.0/publish/pubsub/orders", `{"n":1}`, "Content-Type", "application/json"), 204, "")
		waitDelivered(t, app, "/orders", 1)
	})
	t.Run("app registered through the API", func(t *testing.T) {
		app := newSubscriberApp(t, subs)
		app.delay, app.config = 1500*time.Millisecond, `{"entities":[]}`
		d := startDev(t)
		expect(t, "register", d.do("PUT", "/v1.0-alpha1/apps/shop", `{"url":"`+app.srv.URL+`"}`), 204, "")
		expect(t, "publish", d.do("POST", "/v1.0/publish/pubsub/orders", `{"n":1}`, "Content-Type", "application/json"), 204, "")
		waitDelivered(t, app, "/orders", 1)
	})
	t.Run("outbound health while starting", func(t *testing.T) {
		app := newSubscriberApp(t, subs)
		app.delay = 3 * time.Second
		d := launchDev(t, "--grpc-port", "0", "--app-url", "shop="+app.srv.URL)
		d.waitHealth(t, "/v1.0/healthz/outbound")
		if s := d.status("/v1.0/healthz"); s != http.StatusServiceUnavailable {
			t.Fatalf("healthz while the app's subscriptions are being read answered %d, want 503", s)
		}
		d.waitHealth(t, "/v1.0/healthz")
	})
}

func waitDelivered(t *testing.T, app *subscriberApp, path string, n int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "the message delivered", func() error {
		if got := len(app.received(path)); got != n {
			return fmt.Errorf("%d messages delivered to %s, want %d", got, path, n)
		}
		return nil
	})
}

func TestPubSubThroughDev(t *testing.T) {
	dir := t.TempDir()
	decl := "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: audit\nspec:\n  pubsubname: pubsub\n  topic: audit\n  routes:\n    default: /audit\nscopes:\n- shop\n"
	if err := os.WriteFile(filepath.Join(dir, "audit.yaml"), []byte(decl), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, args := range stores(t) {
		t.Run(name, func(t *testing.T) { testPubSubThroughDev(t, dir, args) })
	}
}

func testPubSubThroughDev(t *testing.T, dir string, args []string) {
	app := newSubscriberApp(t, `[{"pubsubname":"pubsub","topic":"orders","routes":{"rules":[{"match":"event.data.big == true","path":"/big"}],"default":"/orders"}}]`)
	d := startDev(t, append([]string{"--app-url", "shop=" + app.srv.URL, "--resources-path", dir}, args...)...)
	for i := range 10 {
		expect(t, "publish", d.do("POST", "/v1.0/publish/pubsub/orders", fmt.Sprintf(`{"n":%d,"big":%v}`, i, i%5 == 0), "Content-Type", "application/json"), 204, "")
	}
	expect(t, "publish to the declared subscription", d.do("POST", "/v1.0/publish/pubsub/audit", "hello", "Content-Type", "text/plain"), 204, "")
	testutil.Eventually(t, 10*time.Second, "every message delivered", func() error {
		if o, b, a := len(app.received("/orders")), len(app.received("/big")), len(app.received("/audit")); o != 8 || b != 2 || a != 1 {
			return fmt.Errorf("delivered %d to /orders, %d to /big, %d to /audit", o, b, a)
		}
		return nil
	})
	ev := app.received("/audit")[0]
	for field, want := range map[string]any{"specversion": "1.0", "topic": "audit", "pubsubname": "pubsub", "data": "hello",
		"datacontenttype": "text/plain", "type": "com.dapr.event.sent", "source": "shop"} {
		if ev[field] != want {
			t.Errorf("event field %s = %v, want %v (event %v)", field, ev[field], want, ev)
		}
	}
	var md struct {
		Subscriptions []struct {
			PubSubName string `json:"pubsubname"`
			Topic      string `json:"topic"`
			Type       string `json:"type"`
			Rules      struct {
				Rules []struct{ Match, Path string } `json:"rules"`
			} `json:"rules"`
		} `json:"subscriptions"`
	}
	if err := json.Unmarshal(d.do("GET", "/v1.0/metadata", "").body, &md); err != nil {
		t.Fatal(err)
	}
	var subs []string
	for _, s := range md.Subscriptions {
		var paths []string
		for _, r := range s.Rules.Rules {
			paths = append(paths, r.Path)
		}
		subs = append(subs, fmt.Sprintf("%s/%s %s %v", s.PubSubName, s.Topic, s.Type, paths))
	}
	slices.Sort(subs)
	if want := []string{"pubsub/audit declarative [/audit]", "pubsub/orders programmatic [/big /orders]"}; !slices.Equal(subs, want) {
		t.Errorf("metadata subscriptions %v, want %v", subs, want)
	}
	expect(t, "unknown pubsub", d.do("POST", "/v1.0/publish/nope/orders", "{}"), 404, "ERR_PUBSUB_NOT_FOUND")
	expect(t, "malformed cloudevent", d.do("POST", "/v1.0/publish/pubsub/orders", "{", "Content-Type", "application/cloudevents+json"), 400, "")
}
