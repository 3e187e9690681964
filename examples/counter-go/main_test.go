package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSidecar is the part of the sidecar's actor state API the app uses,
// with a count of reads and a record of every transaction body.
type fakeSidecar struct {
	token string // required dapr-api-token, if not empty

	mu        sync.Mutex
	values    map[string]string // actor id → raw JSON of its count
	reads     int
	txs       []string
	failSaves bool
	published []string // bodies published to pubsub/counter-events
}

func newFakeSidecar(t testing.TB) (*fakeSidecar, *httptest.Server) {
	s := &fakeSidecar{values: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/actors/Counter/{id}/state/count", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.reads++
		v, ok := s.values[r.PathValue("id")]
		if !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		_, _ = io.WriteString(w, v)
	})
	mux.HandleFunc("POST /v1.0/actors/Counter/{id}/state", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.txs = append(s.txs, string(body))
		if s.failSaves {
			http.Error(w, `{"errorCode":"ERR_ACTOR_STATE_TRANSACTION_SAVE","message":"disk full"}`, http.StatusInternalServerError)
			return
		}
		var ops []struct {
			Operation string
			Request   struct {
				Key   string
				Value json.RawMessage
			}
		}
		if err := json.Unmarshal(body, &ops); err != nil || len(ops) != 1 || ops[0].Operation != "upsert" || ops[0].Request.Key != "count" {
			http.Error(w, `{"errorCode":"ERR_MALFORMED_REQUEST","message":"unexpected transaction"}`, http.StatusBadRequest)
			return
		}
		s.values[r.PathValue("id")] = string(ops[0].Request.Value)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1.0/publish/pubsub/counter-events", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.published = append(s.published, string(body))
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" && r.Header.Get("dapr-api-token") != s.token {
			http.Error(w, `{"errorCode":"ERR_UNAUTHORIZED","message":"bad token"}`, http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *fakeSidecar) set(id, raw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[id] = raw
}

func (s *fakeSidecar) get(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[id]
}

func (s *fakeSidecar) snapshot() (reads int, txs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads, append([]string(nil), s.txs...)
}

// newTestApp returns the app's handler wired to sidecarURL and the buffer its log goes to.
func newTestApp(cfg config) (http.Handler, *bytes.Buffer) {
	var logs bytes.Buffer
	return newCounterApp(cfg, slog.New(slog.NewTextHandler(&logs, nil))).handler(), &logs
}

// call sends one request to h; headers come as name, value pairs.
func call(h http.Handler, method, path, body string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// wantCount checks a 200 {"count": n} answer.
func wantCount(t *testing.T, rec *httptest.ResponseRecorder, n int64) {
	t.Helper()
	if rec.Code != http.StatusOK || rec.Body.String() != fmt.Sprintf(`{"count":%d}`, n) {
		t.Fatalf("got %d %s, want 200 {\"count\":%d}", rec.Code, rec.Body, n)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
}

func TestConfigAndHealth(t *testing.T) {
	h, _ := newTestApp(config{sidecarURL: "http://127.0.0.1:1"})
	rec := call(h, "GET", "/dapr/config", "")
	want := `{"entities":["Counter"],"actorIdleTimeout":"1h","drainOngoingCallTimeout":"30s","drainRebalancedActors":true}`
	if rec.Code != 200 || rec.Body.String() != want || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("config: %d %q %q", rec.Code, rec.Body, rec.Header().Get("Content-Type"))
	}
	if rec := call(h, "GET", "/healthz", ""); rec.Code != 200 {
		t.Fatalf("healthz: %d", rec.Code)
	}
}

func TestIncrementGetReset(t *testing.T) {
	side, srv := newFakeSidecar(t)
	h, _ := newTestApp(config{sidecarURL: srv.URL})
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", ""), 1)
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", `{"by":5}`), 6)
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", `{"by":-2.0}`), 4)
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", `null`), 5)
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/get", ""), 5)
	reads, txs := side.snapshot()
	if reads != 1 {
		t.Errorf("state reads = %d, want 1 (later calls use the cache)", reads)
	}
	wantTx := `[{"operation":"upsert","request":{"key":"count","value":1}}]`
	if len(txs) != 4 || txs[0] != wantTx || !strings.Contains(txs[3], `"value":5}`) {
		t.Errorf("transactions = %q, want 4 starting with %s", txs, wantTx)
	}
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/reset", ""), 0)
	if v := side.get("a"); v != "0" {
		t.Errorf("stored after reset = %q, want 0", v)
	}
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/get", ""), 0)
}

func TestFirstReadUsesStoredCount(t *testing.T) {
	side, srv := newFakeSidecar(t)
	side.set("a b", "41")
	h, _ := newTestApp(config{sidecarURL: srv.URL})
	wantCount(t, call(h, "PUT", "/actors/Counter/a%20b/method/increment", ""), 42)
	wantCount(t, call(h, "PUT", "/actors/Counter/other/method/get", ""), 0)
}

func TestSaveFailureLeavesCacheAlone(t *testing.T) {
	side, srv := newFakeSidecar(t)
	h, logs := newTestApp(config{sidecarURL: srv.URL})
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", ""), 1)
	side.mu.Lock()
	side.failSaves = true
	side.mu.Unlock()
	rec := call(h, "PUT", "/actors/Counter/a/method/increment", "")
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "disk full") {
		t.Fatalf("failed save: %d %s, want 500 with the sidecar's error", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), "call failed") {
		t.Errorf("failure not logged: %s", logs)
	}
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/get", ""), 1)
	side.mu.Lock()
	side.failSaves = false
	side.mu.Unlock()
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", ""), 2)
}

func TestReadFailures(t *testing.T) {
	side, srv := newFakeSidecar(t)
	side.set("junk", `"seven"`)
	side.set("huge", "9007199254740991")
	h, _ := newTestApp(config{sidecarURL: srv.URL})
	if rec := call(h, "PUT", "/actors/Counter/junk/method/get", ""); rec.Code != 500 || !strings.Contains(rec.Body.String(), "not an integer") {
		t.Errorf("non-integer state: %d %s", rec.Code, rec.Body)
	}
	if rec := call(h, "PUT", "/actors/Counter/huge/method/increment", ""); rec.Code != 400 {
		t.Errorf("count past 2^53-1: %d %s, want 400", rec.Code, rec.Body)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	h, _ = newTestApp(config{sidecarURL: down.URL})
	if rec := call(h, "PUT", "/actors/Counter/a/method/get", ""); rec.Code != 500 || !strings.Contains(rec.Body.String(), "reading count") {
		t.Errorf("sidecar down: %d %s", rec.Code, rec.Body)
	}
}

func TestDeactivateDropsCache(t *testing.T) {
	side, srv := newFakeSidecar(t)
	h, _ := newTestApp(config{sidecarURL: srv.URL})
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", ""), 1)
	side.set("a", "10") // changed behind the activation's back
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/get", ""), 1)
	if rec := call(h, "DELETE", "/actors/Counter/a", ""); rec.Code != 200 {
		t.Fatalf("deactivate: %d", rec.Code)
	}
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/get", ""), 10)
	if reads, _ := side.snapshot(); reads != 2 {
		t.Errorf("state reads = %d, want 2", reads)
	}
}

func TestReminderAndTimerCallbacks(t *testing.T) {
	_, srv := newFakeSidecar(t)
	h, logs := newTestApp(config{sidecarURL: srv.URL})
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/remind/nightly", `{"data":{"note":"hi"},"dueTime":"1s","period":""}`), 1)
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/timer/tick", `{"data":7,"callback":"","dueTime":"","period":"1s"}`), 2)
	for _, want := range []string{`msg="reminder fired" actor=a name=nightly data="{\"note\":\"hi\"}"`, `msg="timer fired" actor=a name=tick data=7`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		method, path, body string
		status             int
	}{
		{"PUT", "/actors/Counter/a/method/increment", `{`, 400},
		{"PUT", "/actors/Counter/a/method/increment", `[1]`, 400},
		{"PUT", "/actors/Counter/a/method/increment", `"x"`, 400},
		{"PUT", "/actors/Counter/a/method/increment", `{"by":"2"}`, 400},
		{"PUT", "/actors/Counter/a/method/increment", `{"by":1.5}`, 400},
		{"PUT", "/actors/Counter/a/method/increment", `{"by":true}`, 400},
		{"PUT", "/actors/Counter/a/method/increment", `{"by":9007199254740992}`, 400},
		{"PUT", "/actors/Counter/a/method/increment", `{"by":1e400}`, 400},
		{"PUT", "/actors/Counter/a/method/increment", `{} {}`, 400},
		{"PUT", "/actors/Counter/a/method/increment", `{"by":1}` + strings.Repeat(" ", maxBody), 413},
		{"PUT", "/actors/Counter/a/method/remind/r", `{"data":`, 400},
		{"PUT", "/actors/Counter/a/method/timer/t", `[]`, 400},
		{"PUT", "/actors/Counter/a/method/explode", ``, 404},
		{"PUT", "/actors/Counter/a/method/remind", ``, 404},
		{"PUT", "/actors/Counter/a/method/other/x", ``, 404},
		{"PUT", "/actors/Counter/a/method/remind/x/y", ``, 404},
		{"PUT", "/actors/Other/a/method/get", ``, 404},
		{"POST", "/actors/Counter/a/method/get", ``, 404},
		{"GET", "/nowhere", ``, 404},
	}
	side, srv := newFakeSidecar(t)
	h, _ := newTestApp(config{sidecarURL: srv.URL})
	for _, tt := range tests {
		rec := call(h, tt.method, tt.path, tt.body)
		var body struct{ Error string }
		if rec.Code != tt.status || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error == "" {
			t.Errorf("%s %s %.40q: %d %s, want %d with a JSON error", tt.method, tt.path, tt.body, rec.Code, rec.Body, tt.status)
		}
	}
	if reads, txs := side.snapshot(); reads != 0 || len(txs) != 0 {
		t.Errorf("bad input reached the sidecar: %d reads, %d transactions", reads, len(txs))
	}
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", `{"by":2}`), 2)
}

func TestTokens(t *testing.T) {
	side, srv := newFakeSidecar(t)
	side.token = "side-secret"
	h, _ := newTestApp(config{sidecarURL: srv.URL, appToken: "app-secret", daprToken: "side-secret"})
	for _, token := range []string{"", "wrong"} {
		rec := call(h, "GET", "/dapr/config", "", "dapr-api-token", token)
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("token %q: %d %s, want 401 JSON", token, rec.Code, rec.Body)
		}
	}
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", "", "dapr-api-token", "app-secret"), 1)

	h, _ = newTestApp(config{sidecarURL: srv.URL}) // no sidecar token configured
	if rec := call(h, "PUT", "/actors/Counter/b/method/get", ""); rec.Code != 500 || !strings.Contains(rec.Body.String(), "401") {
		t.Errorf("without the sidecar token: %d %s, want 500 reporting the sidecar's 401", rec.Code, rec.Body)
	}
}

func TestConcurrentActors(t *testing.T) {
	side, srv := newFakeSidecar(t)
	h, _ := newTestApp(config{sidecarURL: srv.URL})
	const actors, calls = 6, 15
	var wg sync.WaitGroup
	for i := range actors {
		wg.Go(func() { // one turn at a time per actor, as the silo guarantees
			for range calls {
				call(h, "PUT", fmt.Sprintf("/actors/Counter/c%d/method/increment", i), "")
			}
		})
	}
	wg.Wait()
	for i := range actors {
		if v := side.get(fmt.Sprintf("c%d", i)); v != fmt.Sprint(calls) {
			t.Errorf("actor c%d stored %q, want %d", i, v, calls)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		env     map[string]string
		want    config
		wantErr bool
	}{
		{env: nil, want: config{addr: "127.0.0.1:3000", sidecarURL: "http://127.0.0.1:3500"}},
		{env: map[string]string{"APP_HOST": "0.0.0.0", "APP_PORT": "4000", "DAPR_HTTP_PORT": "3600", "DAPR_API_TOKEN": "d", "APP_API_TOKEN": "a"},
			want: config{addr: "0.0.0.0:4000", sidecarURL: "http://127.0.0.1:3600", daprToken: "d", appToken: "a"}},
		{env: map[string]string{"GRANARY_URL": "https://granary.example:8443/", "DAPR_HTTP_PORT": "x"},
			want: config{addr: "127.0.0.1:3000", sidecarURL: "https://granary.example:8443"}},
		{env: map[string]string{"APP_PORT": "http"}, wantErr: true},
		{env: map[string]string{"APP_PORT": "70000"}, wantErr: true},
		{env: map[string]string{"DAPR_HTTP_PORT": "-1"}, wantErr: true},
		{env: map[string]string{"GRANARY_URL": "127.0.0.1:3500"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := loadConfig(func(k string) string { return tt.env[k] })
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%v: got %+v, %v; want %+v, error %v", tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}

// lineWriter hands each write (one slog record) to a channel.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) {
	w <- string(p)
	return len(p), nil
}

func TestRunServesAndStops(t *testing.T) {
	_, srv := newFakeSidecar(t)
	lines := make(lineWriter, 16)
	env := map[string]string{"APP_PORT": "0", "GRANARY_URL": srv.URL}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, func(k string) string { return env[k] }, slog.New(slog.NewTextHandler(lines, nil)))
	}()

	start := <-lines
	_, rest, ok := strings.Cut(start, " addr=")
	addr, _, _ := strings.Cut(rest, " ")
	if !ok || addr == "" {
		t.Fatalf("no address in the start line %q", start)
	}
	resp, err := http.Post("http://"+addr+"/actors/Counter/a/method/increment", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound { // the silo calls with PUT
		t.Errorf("POST: %d, want 404", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancellation")
	}
	if err := run(context.Background(), func(k string) string { return map[string]string{"APP_PORT": "x"}[k] }, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("run accepted APP_PORT=x")
	}
}

// FuzzIncrementBody checks that no body makes increment fail other than with
// 400 or 413, and that every answer is JSON.
func FuzzIncrementBody(f *testing.F) {
	for _, seed := range []string{``, `null`, `{}`, `{"by":3}`, `{"by":-1e3}`, `{"by":1.5}`, `{"by":"1"}`, `[`, `{"by":9007199254740991}`} {
		f.Add([]byte(seed))
	}
	// A sidecar that stores nothing: every read is absent, every save accepted.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	h, _ := newTestApp(config{sidecarURL: srv.URL})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := call(h, "PUT", "/actors/Counter/f/method/increment", string(body))
		var answer map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("answer %d %q is not JSON", rec.Code, rec.Body)
		}
		switch rec.Code {
		case 200:
			if _, ok := answer["count"].(float64); !ok {
				t.Fatalf("200 without a count: %s", rec.Body)
			}
		case 400, 413:
		default:
			t.Fatalf("body %q: status %d %s", body, rec.Code, rec.Body)
		}
	})
}

func TestCountCachedUnderAnotherActivationIsReadAgain(t *testing.T) {
	side, srv := newFakeSidecar(t)
	h, _ := newTestApp(config{sidecarURL: srv.URL})
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", "", headerActivation, "1/s1/x"), 1)
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", "", headerActivation, "1/s1/x"), 2)
	// The actor ran on another silo meanwhile (this app was not told it
	// was deactivated): its count moved on in actor state.
	side.set("a", "10")
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", "", headerActivation, "3/s1/y"), 11)
	if reads, _ := side.snapshot(); reads != 2 {
		t.Errorf("state reads = %d, want 2 (one per activation)", reads)
	}
}

func TestTraceLogsTurnsAndDeactivations(t *testing.T) {
	_, srv := newFakeSidecar(t)
	h, logs := newTestApp(config{sidecarURL: srv.URL, trace: true})
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", "", headerActivation, "2/s1/x"), 1)
	call(h, "DELETE", "/actors/Counter/a", "", headerActivation, "2/s1/x")
	out := logs.String()
	for _, want := range []string{"msg=turn actor=a method=increment activation=2/s1/x", "count=1 ok=true", "msg=deactivated actor=a activation=2/s1/x"} {
		if !strings.Contains(out, want) {
			t.Errorf("trace lacks %q:\n%s", want, out)
		}
	}
}

func TestAnnouncePublishesAndEventsAreKept(t *testing.T) {
	side, srv := newFakeSidecar(t)
	h, _ := newTestApp(config{sidecarURL: srv.URL})
	rec := call(h, "GET", "/dapr/subscribe", "")
	if rec.Code != 200 || rec.Body.String() != `[{"pubsubname":"pubsub","topic":"counter-events","route":"/events"}]` {
		t.Fatalf("subscribe: %d %s", rec.Code, rec.Body)
	}
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/increment", `{"by":3}`), 3)
	wantCount(t, call(h, "PUT", "/actors/Counter/a/method/announce", ""), 3)
	side.mu.Lock()
	published := append([]string(nil), side.published...)
	side.mu.Unlock()
	if len(published) != 1 || published[0] != `{"id":"a","count":3}` {
		t.Fatalf("published %q", published)
	}

	for i := range maxEvents + 2 {
		ev := fmt.Sprintf(`{"id":"e%d","specversion":"1.0","type":"com.dapr.event.sent","data":{"n":%d}}`, i, i)
		if rec := call(h, "POST", "/events", ev, "Content-Type", "application/cloudevents+json"); rec.Code != 200 || rec.Body.String() != `{"status":"SUCCESS"}` {
			t.Fatalf("event %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if rec := call(h, "POST", "/events", "not json"); rec.Code != 200 || rec.Body.String() != `{"status":"DROP"}` {
		t.Fatalf("garbage event: %d %s", rec.Code, rec.Body)
	}
	var list []map[string]int
	if err := json.Unmarshal(call(h, "GET", "/events", "").Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != maxEvents || list[0]["n"] != 2 || list[maxEvents-1]["n"] != maxEvents+1 {
		t.Fatalf("%d events kept, first %v last %v", len(list), list[0], list[len(list)-1])
	}
}
