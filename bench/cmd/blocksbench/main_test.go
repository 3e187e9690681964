package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchtest"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

func fakeExecutable(t *testing.T) (dir, exe string) { return benchtest.FakeExecutable(t) }

func TestParseFlagsDefaults(t *testing.T) {
	_, exe := fakeExecutable(t)
	o, err := parseFlags([]string{"--granary", exe, "--echoapp", exe}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.clients != 64 || o.keys != 10000 || o.actors != 1000 || o.duration != 15*time.Second || o.warmup != 3*time.Second ||
		o.pubRate != 5000 || o.drainTimeout != 30*time.Second || o.redisURL != "redis://127.0.0.1:6379/11" ||
		o.jsonPath != "" || o.strict || strings.Join(o.parts, ",") != "state,invoke,pubsub" {
		t.Errorf("defaults %+v", o)
	}
	o, err = parseFlags([]string{"--granary", exe, "--echoapp", exe, "--clients", "8", "--keys", "100", "--actors", "10",
		"--duration", "3s", "--warmup", "0s", "--pub-rate", "200", "--drain-timeout", "5s", "--redis", "redis://127.0.0.1:6379/5",
		"--parts", "pubsub, state,pubsub", "--json", "out.json", "--strict"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.clients != 8 || o.keys != 100 || o.actors != 10 || o.duration != 3*time.Second || o.warmup != 0 || o.pubRate != 200 ||
		o.drainTimeout != 5*time.Second || o.redisURL != "redis://127.0.0.1:6379/5" || o.jsonPath != "out.json" || !o.strict ||
		strings.Join(o.parts, ",") != "pubsub,state" || o.has(partInvoke) || !o.has(partPubSub) {
		t.Errorf("parsed %+v", o)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	dir, exe := fakeExecutable(t)
	ok := []string{"--granary", exe, "--echoapp", exe}
	tests := [][]string{
		{"--granary", filepath.Join(dir, "missing"), "--echoapp", exe},
		{"--granary", exe, "--echoapp", dir},
		append(ok, "--duration", "0s"),
		append(ok, "--warmup", "-1s"),
		append(ok, "--clients", "0"),
		append(ok, "--keys", "0"),
		append(ok, "--actors", "0"),
		append(ok, "--pub-rate", "0"),
		append(ok, "--drain-timeout", "0s"),
		append(ok, "--parts", "state,queues"),
		append(ok, "--parts", " , "),
		append(ok, "--redis", "redis://127.0.0.1:6379/0"),
		append(ok, "--redis", "http://127.0.0.1:6379/3"),
		append(ok, "extra"),
		{"--no-such-flag"},
	}
	for _, args := range tests {
		var stderr strings.Builder
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 {
			t.Errorf("run %v = %d, want 2", args, code)
		}
		if stderr.Len() == 0 {
			t.Errorf("run %v said nothing", args)
		}
	}
}

func TestRequests(t *testing.T) {
	var items []saveItem
	if err := json.Unmarshal([]byte(fill(saveBody, "k7", 42)), &items); err != nil || len(items) != 1 ||
		items[0].Key != "k7" || items[0].Value.N != 42 {
		t.Errorf("save body %q: %+v, %v", fill(saveBody, "k7", 42), items, err)
	}
	for tmpl, want := range map[string]string{
		savePath:   "/v1.0/state/statestore",
		getPath:    "/v1.0/state/statestore/k7",
		actorPath:  "/v1.0/actors/Echo/k7/method/x",
		svcPath:    "/v1.0/invoke/echo/method/actors/Echo/svc/method/echo",
		directPath: "/actors/Echo/svc/method/echo",
		svcBody:    `{"n":42}`,
	} {
		if got := fill(tmpl, "k7", 42); got != want {
			t.Errorf("fill(%q) = %q, want %q", tmpl, got, want)
		}
	}
	// The load generator must take every request the loads send.
	for _, req := range []loadgen.Request{
		{Method: "POST", Path: savePath, Body: saveBody, Actors: []string{"k0"}},
		{Method: "GET", Path: getPath, Actors: []string{"k0"}},
		{Method: "POST", Path: actorPath, Actors: []string{"a"}},
		{Method: "PUT", Path: svcPath, Body: svcBody},
		{Method: "PUT", Path: directPath, Body: svcBody},
	} {
		if _, err := loadgen.Run(context.Background(), loadgen.Config{
			Addr: "127.0.0.1:1", Connections: 1, Duration: time.Millisecond, Request: req,
		}); err != nil {
			t.Errorf("loadgen rejects %s %s: %v", req.Method, req.Path, err)
		}
	}
}

// fakeState answers the state routes the benchmark uses the way Granary's
// gateway does.
type fakeState struct {
	mu       sync.Mutex
	state    map[string]string
	saves    int
	maxBatch int
	failKey  string // a save holding it answers 500
}

func newFakeState(t *testing.T) (*fakeState, string) {
	f := &fakeState{state: map[string]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeState) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == "POST" && r.URL.Path == savePath:
		var items []struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(body, &items); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"errorCode":"ERR_MALFORMED_REQUEST"}`)
			return
		}
		for _, it := range items {
			if it.Key == f.failKey {
				w.WriteHeader(http.StatusInternalServerError)
				io.WriteString(w, `{"errorCode":"ERR_STATE_SAVE","message":"store down"}`)
				return
			}
		}
		f.saves++
		f.maxBatch = max(f.maxBatch, len(items))
		for _, it := range items {
			f.state[it.Key] = string(it.Value)
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "POST" && r.URL.Path == bulkPath:
		var req struct{ Keys []string }
		_ = json.Unmarshal(body, &req)
		var out []map[string]any
		for _, k := range req.Keys {
			item := map[string]any{"key": k}
			if v, ok := f.state[k]; ok {
				item["data"] = json.RawMessage(v)
				item["etag"] = "1"
			}
			out = append(out, item)
		}
		json.NewEncoder(w).Encode(out)
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, savePath+"/"):
		v, ok := f.state[strings.TrimPrefix(r.URL.Path, savePath+"/")]
		if !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		io.WriteString(w, v)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (f *fakeState) set(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
}

func TestPreloadAndVerify(t *testing.T) {
	f, base := newFakeState(t)
	keys := loadgen.ActorIDs(keyPrefix, 1050)
	client := newHTTPClient(4)
	defer client.CloseIdleConnections()
	if err := verifyKeys(context.Background(), client, base, keys); err == nil || !strings.Contains(err.Error(), `want key "k0" data {"n":0}`) {
		t.Errorf("verify before the preload: %v", err)
	}
	if err := preload(context.Background(), client, base, keys, 4); err != nil {
		t.Fatal(err)
	}
	f.set(func() {
		if len(f.state) != len(keys) || f.saves != 11 || f.maxBatch != preloadBatch {
			t.Errorf("%d keys in %d saves of at most %d; want %d in 11 of at most %d", len(f.state), f.saves, f.maxBatch,
				len(keys), preloadBatch)
		}
		if f.state["k1049"] != `{"n":1049}` {
			t.Errorf("k1049 holds %q", f.state["k1049"])
		}
	})
	if err := verifyKeys(context.Background(), client, base, keys); err != nil {
		t.Errorf("verify after the preload: %v", err)
	}
	f.set(func() { f.state["k1020"] = `{"n":5}` })
	if err := verifyKeys(context.Background(), client, base, keys); err == nil || !strings.Contains(err.Error(), `key "k1020" data {"n":5}`) {
		t.Errorf("verify with a wrong value: %v", err)
	}

	f.set(func() { f.failKey = "k537" })
	err := preload(context.Background(), client, base, keys, 4)
	if err == nil || !strings.Contains(err.Error(), "keys k500…k599") || !strings.Contains(err.Error(), "store down") {
		t.Errorf("preload with a failing save: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := preload(ctx, client, base, keys, 2); err == nil {
		t.Error("preload with a cancelled context succeeded")
	}
}

func TestErrorDetail(t *testing.T) {
	f, base := newFakeState(t)
	client := newHTTPClient(1)
	defer client.CloseIdleConnections()
	keys := loadgen.ActorIDs(keyPrefix, 5)
	l := load{method: "GET", path: getPath, ids: keys, want: http.StatusOK}
	res := loadgen.Result{Errors: loadgen.Errors{Status: 3}, FirstError: "request 12: HTTP status 500"}
	if got := errorDetail(context.Background(), client, base, l, res); !strings.HasPrefix(got, res.FirstError) ||
		!strings.Contains(got, "status 204 (want 200)") {
		t.Errorf("detail of reads of missing keys: %q", got)
	}
	f.set(func() {
		for i, k := range keys {
			f.state[k] = strconv.Itoa(i)
		}
	})
	if got := errorDetail(context.Background(), client, base, l, res); !strings.Contains(got, "next 5 requests of this kind all succeeded") {
		t.Errorf("detail when the failure does not recur: %q", got)
	}
	io := loadgen.Result{Errors: loadgen.Errors{IO: 2}, FirstError: "request 3: connection reset"}
	if got := errorDetail(context.Background(), client, base, l, io); got != io.FirstError {
		t.Errorf("detail of I/O errors: %q", got)
	}
}

// event is a CloudEvent as Granary delivers one.
func event(run string, seq uint64, t int64) []byte {
	data := appendPayload(nil, run, seq, t)
	return []byte(`{"data":` + string(data) + `,"datacontenttype":"application/json","id":"e-` + strconv.FormatUint(seq, 10) +
		`","pubsubname":"pubsub","source":"bench","specversion":"1.0","time":"2026-12-01T10:00:00Z","topic":"bench","type":"com.dapr.event.sent"}`)
}

func TestPayload(t *testing.T) {
	var p payload
	if err := json.Unmarshal(appendPayload([]byte("junk"), runLat, 17, 1700000000123456789)[4:], &p); err != nil ||
		p != (payload{Run: runLat, Seq: 17, T: 1700000000123456789}) {
		t.Errorf("payload %+v, %v", p, err)
	}
}

func TestSubscriberDeliver(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSubscriber(func() time.Time { return now })
	s.begin(runTput)
	sent := now.Add(-5 * time.Millisecond).UnixNano()
	for seq := uint64(1); seq <= 10; seq++ {
		if got := string(s.deliver(event(runTput, seq, sent))); got != `{"status":"SUCCESS"}` {
			t.Fatalf("answer %s", got)
		}
	}
	now = now.Add(time.Second)
	// A duplicate is acknowledged and counted, not measured again.
	if got := string(s.deliver(event(runTput, 3, sent))); got != `{"status":"SUCCESS"}` {
		t.Errorf("answer to a duplicate: %s", got)
	}
	s.deliver(event(runTput, 11, now.Add(-50*time.Millisecond).UnixNano()))
	v := s.view(runTput)
	if v.delivered != 11 || v.dups != 1 || s.delivered(runTput) != 11 || v.latency.Count() != 11 {
		t.Errorf("delivered %d, dups %d, latencies %d", v.delivered, v.dups, v.latency.Count())
	}
	if p50, max := v.latency.Quantile(0.5), v.latency.Max(); p50 < 4900*time.Microsecond || p50 > 5100*time.Microsecond ||
		max != 50*time.Millisecond {
		t.Errorf("latency p50 %v max %v", p50, max)
	}
	if !v.first.Equal(time.Unix(1000, 0)) || !v.last.Equal(now) {
		t.Errorf("first %v last %v", v.first, v.last)
	}
	// Acknowledged 1…12 less 5; 5 arrived though its publish failed, 12 never came.
	missing, unacked := s.missing(runTput, []uint64{1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12})
	if missing != 1 || unacked != 1 {
		t.Errorf("missing %d, unacked %d; want 1 and 1", missing, unacked)
	}
	if m, u := s.missing("never-begun", []uint64{1, 2}); m != 2 || u != 0 {
		t.Errorf("missing of a run not begun: %d %d", m, u)
	}

	// Runs not begun are acknowledged and counted apart; unreadable
	// deliveries are dropped.
	if got := string(s.deliver(event(runLat, 1, sent))); got != `{"status":"SUCCESS"}` {
		t.Errorf("answer for a run not begun: %s", got)
	}
	for _, bad := range []string{`not json`, `{"id":"x"}`, `{"data":"a string"}`, `{"data":{"seq":1,"t":5}}`, `{"data":{"run":"latency","seq":1}}`} {
		if got := string(s.deliver([]byte(bad))); got != `{"status":"DROP"}` {
			t.Errorf("answer to %s: %s", bad, got)
		}
	}
	unknown, malformed, first := s.oddities()
	if unknown != 1 || malformed != 5 || !strings.Contains(first, "not json") {
		t.Errorf("unknown %d, malformed %d, first %q", unknown, malformed, first)
	}
	s.begin(runLat)
	s.deliver(event(runLat, 1, sent))
	s.deliver(event(runLat, 1, sent))
	if s.duplicates() != 2 || s.view(runTput).delivered != 11 || s.view(runLat).delivered != 1 {
		t.Errorf("duplicates %d", s.duplicates())
	}
	s.begin(runTput) // beginning again keeps what was counted
	if s.view(runTput).delivered != 11 {
		t.Error("begin reset a run")
	}
}

func TestSubscriberServe(t *testing.T) {
	s := newSubscriber(time.Now)
	addr, stop, err := startSubscriber(s)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	client := newHTTPClient(1)
	defer client.CloseIdleConnections()
	base := "http://" + addr
	ctx := context.Background()
	got, err := benchproc.Call(ctx, client, "GET", base+"/dapr/subscribe", "", 200)
	var subs []map[string]string
	if err != nil || json.Unmarshal(got, &subs) != nil || len(subs) != 1 ||
		subs[0]["pubsubname"] != "pubsub" || subs[0]["topic"] != "bench" || subs[0]["route"] != "/deliver" {
		t.Errorf("GET /dapr/subscribe: %s, %v", got, err)
	}
	if _, err := benchproc.Call(ctx, client, "GET", base+"/dapr/config", "", 404); err != nil {
		t.Errorf("GET /dapr/config: %v", err)
	}
	if _, err := benchproc.Call(ctx, client, "GET", base+"/healthz", "", 200); err != nil {
		t.Errorf("GET /healthz: %v", err)
	}
	s.begin(runProbe)
	req, _ := http.NewRequest("POST", base+route, strings.NewReader(string(event(runProbe, 1, time.Now().UnixNano()))))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"status":"SUCCESS"}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("delivery answered %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if s.delivered(runProbe) != 1 {
		t.Errorf("delivered %d", s.delivered(runProbe))
	}
	if _, err := benchproc.Call(ctx, client, "GET", base+route, "", 404); err != nil {
		t.Errorf("GET of the route: %v", err)
	}
}

// fakePublish answers publishes as the gateway does and hands each message
// to the subscriber, the way a delivery would.
func fakePublish(t *testing.T, sub *subscriber, fail func(n int64) bool) (addr string, published *atomic.Int64) {
	published = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || r.URL.Path != publishPath || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		n := published.Add(1)
		if fail != nil && fail(n) {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}`)
			return
		}
		sub.deliver([]byte(`{"data":` + string(body) + `}`))
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), published
}

func TestPublishLoad(t *testing.T) {
	sub := newSubscriber(time.Now)
	sub.begin(runTput)
	addr, published := fakePublish(t, sub, func(n int64) bool { return n%10 == 0 })
	pub := newPublisher(addr, 4)
	defer pub.close()
	res := pub.publishLoad(context.Background(), pubLoad{clients: 4, duration: 200 * time.Millisecond, run: runTput})
	if len(res.acked) == 0 || res.failures == 0 || res.codes[500] != res.failures || res.sent != int64(len(res.acked))+res.failures ||
		!strings.Contains(res.firstErr, "status 500 (want 204)") || res.latency.Count() != uint64(len(res.acked)) {
		t.Fatalf("closed loop: %d acked, %d failed %v (%q), %d sent", len(res.acked), res.failures, res.codes, res.firstErr, res.sent)
	}
	if missing, unacked := sub.missing(runTput, res.acked); missing != 0 || unacked != 0 {
		t.Errorf("missing %d, unacked %d", missing, unacked)
	}
	if got := int64(len(res.acked)) + res.failures; got != published.Load() {
		t.Errorf("%d publishes counted, the server saw %d", got, published.Load())
	}

	// Paced: 1000/s, the first 100 ms a warm-up.
	sub.begin(runLatWarmup)
	sub.begin(runLat)
	res = pub.publishLoad(context.Background(), pubLoad{clients: 4, rate: 1000, warmup: 100 * time.Millisecond,
		duration: 300 * time.Millisecond, warmRun: runLatWarmup, run: runLat})
	if n := len(res.acked) + int(res.failures); n < 240 || n > 300 || res.due != 300 || int64(n) != res.sent {
		t.Errorf("paced at 1000/s for 300 ms: %d publishes measured, %d sent, %d due", n, res.sent, res.due)
	}
	if w := sub.delivered(runLatWarmup); w < 70 || w > 110 {
		t.Errorf("paced warm-up of 100 ms: %d publishes", w)
	}
	if sub.delivered(runLat) != int64(len(res.acked)) {
		t.Errorf("%d delivered of %d", sub.delivered(runLat), len(res.acked))
	}

	r := &runner{o: options{clients: 4}, progress: func(string, ...any) {}}
	pr := r.summarize(sub, runLat, res, 1000)
	if pr.Published != int64(len(res.acked)) || pr.Delivered != pr.Published || pr.Missing != 0 || pr.TargetRate != 1000 ||
		pr.PublishRate < 300 || pr.PublishRate > 1000 || pr.Window <= 0 || pr.LatencyP99 <= 0 {
		t.Errorf("summary %+v", pr)
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.drain(context.Background(), sub, runLat, res.acked, time.Second) })
	wg.Wait()
}

func TestDueCount(t *testing.T) {
	start := time.Unix(100, 0)
	for _, tt := range []struct {
		from, to time.Duration
		rate     int
		want     int64
	}{
		{0, time.Second, 5000, 5000},
		{3 * time.Second, 18 * time.Second, 5000, 75000},
		{100 * time.Millisecond, 400 * time.Millisecond, 1000, 300},
		{0, 1500 * time.Microsecond, 1000, 2}, // due at 0 and 1 ms
		{-time.Second, 0, 1000, 0},
	} {
		if got := dueCount(start, start.Add(tt.from), start.Add(tt.to), tt.rate); got != tt.want {
			t.Errorf("dueCount(%v, %v, %d/s) = %d, want %d", tt.from, tt.to, tt.rate, got, tt.want)
		}
	}
}

func TestPacedPublishesSkippedWhenTheServerIsSlow(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	pub := newPublisher(strings.TrimPrefix(srv.URL, "http://"), 2)
	defer pub.close()
	began := time.Now()
	res := pub.publishLoad(context.Background(), pubLoad{clients: 2, rate: 1000, duration: 300 * time.Millisecond, run: runLat})
	// Two clients answered in 10 ms each send at most 200/s: about 60 of
	// the 300 due; the rest are skipped, not sent late.
	if took := time.Since(began); took > 450*time.Millisecond {
		t.Errorf("the run took %v", took)
	}
	if res.due != 300 || res.sent < 20 || res.sent > 70 || res.failures != 0 || res.maxLag > 50*time.Millisecond {
		t.Errorf("due %d, sent %d, failed %d, max lag %v", res.due, res.sent, res.failures, res.maxLag)
	}
	r := &runner{o: options{clients: 2}}
	pr := r.summarize(newSubscriber(time.Now), runLat, res, 1000)
	if pr.Skipped != 300-pr.Sent || pr.Missing != pr.Published || pr.PublishRate > 250 {
		t.Errorf("summary %+v", pr)
	}
}

func TestDrainAndProbeWithAFakeGateway(t *testing.T) {
	sub := newSubscriber(time.Now)
	var lines []string
	var mu sync.Mutex
	r := &runner{o: options{clients: 2}, progress: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, format)
	}}
	addr, _ := fakePublish(t, sub, nil)
	pub := newPublisher(addr, 2)
	defer pub.close()
	if n, err := r.waitSubscribed(context.Background(), pub, sub); err != nil || n != 1 {
		t.Fatalf("waitSubscribed: %d, %v", n, err)
	}
	// Waiting for messages that never come ends at the timeout.
	sub.begin(runTput)
	began := time.Now()
	r.drain(context.Background(), sub, runTput, []uint64{1 << 40}, 100*time.Millisecond)
	if d := time.Since(began); d < 100*time.Millisecond || d > time.Second {
		t.Errorf("drain waited %v", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "stopped waiting") {
		t.Errorf("progress %q", lines)
	}
}

func goodReport() report {
	res := func(rps float64, p99 time.Duration) loadgen.Result {
		return loadgen.Result{Requests: int64(rps) * 15, RPS: rps, P50: p99 / 4, P90: p99 / 2, P99: p99, Max: 2 * p99}
	}
	run := func(name string, published int64, delivered float64, p99 time.Duration) pubsubRun {
		return pubsubRun{Run: name, Clients: 64, Sent: published, Published: published, PublishRate: float64(published) / 15,
			Delivered: published, DeliveredRate: delivered, Window: 15 * time.Second, Drain: 20 * time.Millisecond,
			LatencyP50: p99 / 5, LatencyP90: p99 / 2, LatencyP99: p99, LatencyMax: 2 * p99}
	}
	return report{Duration: "15s", Warmup: "3s", Clients: 64, Keys: 10000, Actors: 1000, PubRate: 5000, Parts: allParts,
		Stores: []storeReport{
			{Store: storeBolt, Keys: 10000, Preload: time.Second, Save: res(16000, 8*time.Millisecond), Get: res(45000, 4*time.Millisecond),
				Invoke: res(20000, 6*time.Millisecond)},
			{Store: storeRedis, Keys: 10000, Save: res(12000, 9*time.Millisecond), Get: res(40000, 4*time.Millisecond),
				Invoke: res(20000, 6*time.Millisecond)},
		},
		Invoke: &invokeReport{AppID: "echo", Method: "PUT", Path: svcPath, DirectPath: directPath,
			Gateway: res(20000, 9*time.Millisecond), Direct: res(36000, 6*time.Millisecond)},
		PubSub: &pubsubReport{Clients: 64, Rate: 5000, SubscribedAfter: 50 * time.Millisecond,
			Throughput: run(runTput, 180000, 12000, 80*time.Millisecond), Latency: run(runLat, 75000, 5000, 30*time.Millisecond)},
	}
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*report)
		failed string // the one target expected to fail; "" for none
	}{
		{"all met", func(*report) {}, ""},
		{"get exactly 1.5×", func(r *report) { r.Stores[0].Get.RPS = 30000 }, ""},
		{"bbolt get just under 1.5×", func(r *report) { r.Stores[0].Get.RPS = 29999 }, "bbolt get"},
		{"redis get slow", func(r *report) { r.Stores[1].Get.RPS = 20000 }, "redis get"},
		{"no invocations", func(r *report) { r.Stores[1].Invoke = loadgen.Result{} }, "redis get"},
		{"bbolt save slow", func(r *report) { r.Stores[0].Save.RPS = 14999 }, "bbolt save"},
		{"redis save slow has no target", func(r *report) { r.Stores[1].Save.RPS = 100 }, ""},
		{"invoke under half", func(r *report) { r.Invoke.Gateway.RPS = 17999 }, "service invocation"},
		{"invoke exactly half", func(r *report) { r.Invoke.Gateway.RPS = 18000 }, ""},
		{"invoke not measured", func(r *report) { r.Invoke.Direct = loadgen.Result{} }, "service invocation"},
		{"delivery slow", func(r *report) { r.PubSub.Throughput.DeliveredRate = 9999 }, "pub/sub delivered"},
		{"p99 too high", func(r *report) { r.PubSub.Latency.LatencyP99 = 101 * time.Millisecond }, "pub/sub p99"},
		{"rate not reached", func(r *report) { r.PubSub.Latency.PublishRate = 4700 }, "pub/sub p99"},
		{"latency nothing delivered", func(r *report) { r.PubSub.Latency.Delivered = 0 }, "pub/sub p99"},
		{"duplicates are no failure", func(r *report) { r.PubSub.Throughput.Duplicates = 7; r.PubSub.AllDuplicates = 9 }, ""},
		{"messages missing", func(r *report) { r.PubSub.Latency.Missing = 3 }, "pub/sub every acknowledged"},
		{"failed publishes", func(r *report) { r.PubSub.Latency.PublishFailures = 2 }, "no failed requests"},
		{"failed gets", func(r *report) { r.Stores[1].Get.Errors.IO = 1 }, "no failed requests"},
		{"failed direct calls", func(r *report) { r.Invoke.Direct.Errors.Status = 1 }, "no failed requests"},
	}
	for _, tt := range tests {
		r := goodReport()
		tt.change(&r)
		r.evaluate()
		var failed []string
		for _, tg := range r.Targets {
			if !tg.Pass {
				failed = append(failed, tg.Name)
			}
		}
		switch {
		case len(r.Targets) != 8:
			t.Errorf("%s: %d targets", tt.name, len(r.Targets))
		case tt.failed == "" && (len(failed) != 0 || !r.Pass):
			t.Errorf("%s: failed %v", tt.name, failed)
		case tt.failed != "" && (len(failed) != 1 || !strings.HasPrefix(failed[0], tt.failed) || r.Pass):
			t.Errorf("%s: failed %v (pass %v), want only %q", tt.name, failed, r.Pass, tt.failed)
		}
	}

	// Only the targets of the parts run.
	r := goodReport()
	r.Stores, r.Invoke = nil, nil
	r.evaluate()
	if len(r.Targets) != 4 || !r.Pass {
		t.Errorf("pub/sub only: %+v", r.Targets)
	}
}

func TestPrintReport(t *testing.T) {
	r := goodReport()
	r.evaluate()
	if r.Stores[0].GetToInvoke != 2.25 || r.Invoke.Ratio != 20000.0/36000 {
		t.Errorf("ratios %v %v", r.Stores[0].GetToInvoke, r.Invoke.Ratio)
	}
	var out strings.Builder
	printReport(&out, r)
	for _, want := range []string{
		"64 clients over 10000 keys, 15s per load after 3s warm-up",
		"bbolt  save        16000  2.00ms  4.00ms  8.00ms  16.0ms       0  ≥ 15000 rps",
		"bbolt  get         45000", "≥ 1.5× invocation: 2.25× PASS",
		"redis  save        12000", "(no target)", "redis  invocation  20000",
		"PUT /v1.0/invoke/echo/method/actors/Echo/svc/method/echo through the gateway",
		"gateway  20000", "≥ 50% of direct: 56% PASS",
		"throughput          180000", "12000", "≥ 10000 delivered/s: PASS",
		"latency @5000/s      75000", "p99 ≤ 100ms: PASS",
		"PASS  bbolt get ≥ 1.5× actor invocation rate", "2.25× (45000 vs 20000 rps)",
		"PASS  bbolt save ≥ 15000 rps", "16000 rps",
		"PASS  service invocation ≥ 50% of direct", "56% (20000 vs 36000 rps)",
		"PASS  pub/sub delivered ≥ 10000 msg/s", "PASS  pub/sub p99 ≤ 100ms at 5000 msg/s", "p99 30.0ms at 5000 msg/s published",
		"PASS  pub/sub every acknowledged message delivered", "0 missing of 255000",
		"overall: PASS",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	// Failures, errors and a part that could not run.
	r = goodReport()
	r.Stores[1] = storeReport{Store: storeRedis, Error: "redis at 127.0.0.1:6379 does not answer"}
	r.Stores[0].Get.Errors.Status, r.Stores[0].Get.StatusCodes = 2, map[int]int64{500: 2}
	r.Stores[0].GetError = "request 9: HTTP status 500; then GET …: status 500 (want 200): {\"errorCode\":\"ERR_STATE_GET\"}"
	r.PubSub = &pubsubReport{Clients: 64, Rate: 5000, Error: "no probe message was delivered within 30s"}
	r.evaluate()
	out.Reset()
	printReport(&out, r)
	for _, want := range []string{
		"redis  save            -       -       -       -       -       -  not measured", "bbolt get errors: status 2 map[500:2]", "ERR_STATE_GET",
		"throughput               -          -        -          -            -     -        -      -        -        -        -        -  not measured", "errors:\n  redis state: redis at 127.0.0.1:6379 does not answer\n  pub/sub: no probe message",
		"FAIL  redis get ≥ 1.5× actor invocation rate", notMeasured,
		"FAIL  pub/sub delivered ≥ 10000 msg/s", "FAIL  no failed requests", "overall: FAIL",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if errs := r.errors(); len(errs) != 2 {
		t.Errorf("errors %q", errs)
	}

	path := filepath.Join(t.TempDir(), "out.json")
	if err := benchproc.WriteJSON(path, r); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(data, &back); err != nil || back.Pass || len(back.Stores) != 2 || back.Stores[1].Error == "" ||
		back.PubSub == nil || back.PubSub.Error == "" || back.Invoke == nil || back.Invoke.Ratio != r.Invoke.Ratio ||
		len(back.Targets) != len(r.Targets) {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
}
