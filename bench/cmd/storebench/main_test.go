package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	if o.clients != 64 || o.actors != 1000 || o.duration != 20*time.Second || o.warmup != 3*time.Second ||
		o.redisURL != "redis://127.0.0.1:6379/13" || o.jsonPath != "" || o.strict {
		t.Errorf("defaults %+v", o)
	}
	o, err = parseFlags([]string{"--granary", exe, "--echoapp", exe, "--clients", "8", "--actors", "10",
		"--duration", "3s", "--warmup", "0s", "--redis", "redis://127.0.0.1:6379/5", "--json", "out.json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.clients != 8 || o.actors != 10 || o.duration != 3*time.Second || o.warmup != 0 ||
		o.redisURL != "redis://127.0.0.1:6379/5" || o.jsonPath != "out.json" {
		t.Errorf("parsed %+v", o)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	dir, exe := fakeExecutable(t)
	tests := [][]string{
		{"--granary", filepath.Join(dir, "missing"), "--echoapp", exe},
		{"--granary", exe, "--echoapp", dir},
		{"--granary", exe, "--echoapp", exe, "--duration", "0s"},
		{"--granary", exe, "--echoapp", exe, "--warmup", "-1s"},
		{"--granary", exe, "--echoapp", exe, "--clients", "0"},
		{"--granary", exe, "--echoapp", exe, "--actors", "0"},
		{"--granary", exe, "--echoapp", exe, "--redis", "redis://127.0.0.1:6379/0"},
		{"--granary", exe, "--echoapp", exe, "--redis", "http://127.0.0.1:6379/3"},
		{"--granary", exe, "--echoapp", exe, "extra"},
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

// stateOp is an operation of a transaction body as the gateway reads it.
type stateOp struct {
	Operation string `json:"operation"`
	Request   struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	} `json:"request"`
}

func decodeTxn(t *testing.T, body string) []stateOp {
	t.Helper()
	var ops []stateOp
	if err := json.Unmarshal([]byte(body), &ops); err != nil {
		t.Fatalf("transaction body %q is not a JSON array of operations: %v", body, err)
	}
	return ops
}

func TestRequests(t *testing.T) {
	ops := decodeTxn(t, fill(txnTemplate, "actor-7", 42))
	if len(ops) != 1 || ops[0].Operation != "upsert" || ops[0].Request.Key != stateKey ||
		string(ops[0].Request.Value) != `{"n":42}` {
		t.Errorf("transaction %+v", ops)
	}
	for tmpl, want := range map[string]string{
		txnPath:    "/v1.0/actors/Echo/actor-7/state",
		getPath:    "/v1.0/actors/Echo/actor-7/state/k",
		invokePath: "/v1.0/actors/Echo/actor-7/method/x",
	} {
		if got := fill(tmpl, "actor-7", 42); got != want {
			t.Errorf("fill(%q) = %q, want %q", tmpl, got, want)
		}
	}
	// The load generator must fill in the same request as fill does.
	if _, err := loadgen.Run(context.Background(), loadgen.Config{
		Addr: "127.0.0.1:1", Connections: 1, Duration: time.Millisecond,
		Request: loadgen.Request{Method: "POST", Path: txnPath, Body: txnTemplate, Actors: []string{"a"}},
	}); err != nil {
		t.Errorf("loadgen rejects the transaction request: %v", err)
	}
}

// fakeGateway answers the three routes the benchmark uses the way Granary's
// gateway does: a transaction needs an actor activated by a method call.
type fakeGateway struct {
	mu         sync.Mutex
	active     map[string]int // actor → method calls
	state      map[string]string
	txns       int
	failInvoke string // actor whose method call fails
	failTxn    string // actor whose transactions fail
}

// set changes the fake's behaviour between requests.
func (g *fakeGateway) set(change func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	change()
}

func newFakeGateway(t *testing.T) (*fakeGateway, string) {
	g := &fakeGateway{active: map[string]int{}, state: map[string]string{}}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv.URL
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1.0/actors/Echo/"), "/")
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	defer g.mu.Unlock()
	id := parts[0]
	switch {
	case r.Method == "POST" && len(parts) == 3 && parts[1] == "method":
		if id == g.failInvoke {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"errorCode":"ERR_ACTOR_INVOKE_METHOD","message":"app down"}`)
			return
		}
		g.active[id]++
		w.Write([]byte(`{"ok":true}`))
	case r.Method == "POST" && len(parts) == 2 && parts[1] == "state":
		if g.active[id] == 0 || id == g.failTxn {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"errorCode":"ERR_ACTOR_INSTANCE_MISSING","message":"actor `+id+` is not active"}`)
			return
		}
		var ops []stateOp
		if err := json.Unmarshal(body, &ops); err != nil || len(ops) != 1 || ops[0].Request.Key != stateKey {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"errorCode":"ERR_MALFORMED_REQUEST"}`)
			return
		}
		g.txns++
		g.state[id] = string(ops[0].Request.Value)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "GET" && len(parts) == 3 && parts[1] == "state":
		v, ok := g.state[id]
		if !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Write([]byte(v))
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestPrimeActivatesAndWritesEveryActor(t *testing.T) {
	g, base := newFakeGateway(t)
	ids := loadgen.ActorIDs(actorPrefix, 300)
	client := newHTTPClient(4)
	defer client.CloseIdleConnections()
	if err := prime(context.Background(), client, base, ids, 4); err != nil {
		t.Fatal(err)
	}
	if err := checkRead(context.Background(), client, base, ids); err != nil {
		t.Errorf("checkRead after prime: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.active) != len(ids) || len(g.state) != len(ids) || g.txns != len(ids) {
		t.Fatalf("%d actors activated, %d with state, %d transactions; want %d each", len(g.active), len(g.state), g.txns, len(ids))
	}
	for i, id := range ids {
		if g.active[id] != 1 {
			t.Errorf("actor %s called %d times", id, g.active[id])
		}
		if want := `{"n":` + itoa(i) + `}`; g.state[id] != want {
			t.Errorf("actor %s state %q, want %q", id, g.state[id], want)
		}
	}
}

func itoa(i int) string { return fill(loadgen.SeqPlaceholder, "", i) }

func TestPrimeStopsAtTheFirstFailure(t *testing.T) {
	g, base := newFakeGateway(t)
	g.failInvoke = "actor-37"
	ids := loadgen.ActorIDs(actorPrefix, 1000)
	client := newHTTPClient(4)
	defer client.CloseIdleConnections()
	err := prime(context.Background(), client, base, ids, 4)
	if err == nil || !strings.Contains(err.Error(), "actor actor-37") || !strings.Contains(err.Error(), "status 500") ||
		!strings.Contains(err.Error(), "app down") {
		t.Fatalf("prime with a failing actor: %v", err)
	}
	var activated int
	g.set(func() { activated = len(g.active) })
	if activated > 200 {
		t.Errorf("prime went on to %d actors after the failure", activated)
	}

	g.set(func() { g.failInvoke, g.failTxn = "", "actor-3" })
	err = prime(context.Background(), client, base, ids[:10], 2)
	if err == nil || !strings.Contains(err.Error(), "ERR_ACTOR_INSTANCE_MISSING") {
		t.Errorf("prime with a failing transaction: %v", err)
	}
}

func TestPrimeInterrupted(t *testing.T) {
	_, base := newFakeGateway(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := prime(ctx, newHTTPClient(1), base, loadgen.ActorIDs(actorPrefix, 10), 2)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("prime with a cancelled context: %v", err)
	}
}

func TestCheckRead(t *testing.T) {
	g, base := newFakeGateway(t)
	client := newHTTPClient(1)
	defer client.CloseIdleConnections()
	ids := []string{"actor-0"}
	if err := checkRead(context.Background(), client, base, ids); err == nil || !strings.Contains(err.Error(), "status 204") {
		t.Errorf("read of a missing key: %v", err)
	}
	g.set(func() { g.state["actor-0"] = `{"n":5}` })
	if err := checkRead(context.Background(), client, base, ids); err == nil || !strings.Contains(err.Error(), `want "{\"n\":0}"`) {
		t.Errorf("read of a wrong value: %v", err)
	}
	g.set(func() { g.state["actor-0"] = `{"n":0}` })
	if err := checkRead(context.Background(), client, base, ids); err != nil {
		t.Errorf("read of the written value: %v", err)
	}
}

func TestErrorDetail(t *testing.T) {
	g, base := newFakeGateway(t)
	ids := loadgen.ActorIDs(actorPrefix, 5)
	g.set(func() {
		for _, id := range ids {
			g.active[id] = 1
		}
		g.failTxn = "actor-2"
	})
	client := newHTTPClient(1)
	defer client.CloseIdleConnections()
	res := loadgen.Result{Errors: loadgen.Errors{Status: 3}, FirstError: "request 12: HTTP status 400"}
	got := errorDetail(context.Background(), client, base, "POST", txnPath, txnTemplate, ids, res)
	if !strings.HasPrefix(got, res.FirstError) || !strings.Contains(got, "actor-2 is not active") {
		t.Errorf("detail with a failing actor: %q", got)
	}

	g.set(func() { g.failTxn = "" })
	got = errorDetail(context.Background(), client, base, "POST", txnPath, txnTemplate, ids, res)
	if !strings.HasPrefix(got, res.FirstError) || !strings.Contains(got, "next 5 requests of this kind all succeeded") {
		t.Errorf("detail when the failure does not recur: %q", got)
	}
	got = errorDetail(context.Background(), client, base, "GET", getPath, "", loadgen.ActorIDs("unwritten-", 3), res)
	if !strings.Contains(got, "status 204 (want 200)") {
		t.Errorf("detail of reads of missing keys: %q", got)
	}

	var before int
	g.set(func() { before = g.txns })
	ioErrs := loadgen.Result{Errors: loadgen.Errors{IO: 2}, FirstError: "request 3: connection reset"}
	if got := errorDetail(context.Background(), client, base, "POST", txnPath, txnTemplate, ids, ioErrs); got != ioErrs.FirstError {
		t.Errorf("detail of I/O errors: %q", got)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.txns != before {
		t.Errorf("I/O errors were probed with %d requests", g.txns-before)
	}
}

func storeResult(name string, txnRPS float64, p99 time.Duration, errs int64) storeReport {
	res := func(rps float64) loadgen.Result {
		return loadgen.Result{Requests: int64(rps) * 20, RPS: rps, P50: p99 / 4, P90: p99 / 2, P99: p99,
			Errors: loadgen.Errors{Status: errs}}
	}
	s := storeReport{Store: name, Transact: res(txnRPS), Get: res(3 * txnRPS)}
	if errs > 0 {
		s.TransactError = "request 9: HTTP status 400; then POST …: status 400 (want 204): {\"errorCode\":\"ERR_ACTOR_INSTANCE_MISSING\"}"
	}
	return s
}

func TestEvaluate(t *testing.T) {
	good := func() report {
		return report{Clients: 64, Actors: 1000, Duration: "20s", Warmup: "3s", Stores: []storeReport{
			storeResult(storeBolt, 20000, 8*time.Millisecond, 0),
			storeResult(storeRedis, 17000, 10*time.Millisecond, 0),
		}}
	}
	tests := []struct {
		name   string
		change func(*report)
		failed string // the one target expected to fail; "" for none
	}{
		{"all met", func(*report) {}, ""},
		{"redis faster", func(r *report) { r.Stores[1].Transact.RPS = 25000 }, ""},
		{"exactly 70%", func(r *report) { r.Stores[1].Transact.RPS = 14000 }, ""},
		{"just under 70%", func(r *report) { r.Stores[1].Transact.RPS = 13999 }, "redis transaction rps"},
		{"redis answered nothing", func(r *report) { r.Stores[1].Transact = loadgen.Result{} }, "redis transaction rps"},
		{"bbolt answered nothing", func(r *report) {
			r.Stores[0].Transact = loadgen.Result{}
			r.Stores[1].Transact.RPS = 0
		}, "redis transaction rps"},
		{"redis run missing", func(r *report) { r.Stores = r.Stores[:1] }, "redis transaction rps"},
		{"errors on bbolt reads", func(r *report) { r.Stores[0].Get.Errors.IO = 1 }, "no failed requests"},
		{"errors on redis transactions", func(r *report) { r.Stores[1].Transact.Errors.Status = 4 }, "no failed requests"},
	}
	for _, tt := range tests {
		r := good()
		tt.change(&r)
		r.evaluate()
		var failed []string
		for _, tg := range r.Targets {
			if !tg.Pass {
				failed = append(failed, tg.Name)
			}
		}
		switch {
		case tt.failed == "" && (len(failed) != 0 || !r.Pass):
			t.Errorf("%s: failed %v", tt.name, failed)
		case tt.failed != "" && (len(failed) != 1 || !strings.HasPrefix(failed[0], tt.failed) || r.Pass):
			t.Errorf("%s: failed %v (pass %v), want only %q", tt.name, failed, r.Pass, tt.failed)
		}
	}

	r := good()
	r.evaluate()
	if r.TransactRatio != 0.85 || r.TransactP99Ratio != 1.25 || r.GetRatio != 0.85 {
		t.Errorf("ratios %v %v %v", r.TransactRatio, r.TransactP99Ratio, r.GetRatio)
	}
	var out strings.Builder
	printReport(&out, r)
	for _, want := range []string{"64 clients over 1000 actors", "bbolt  transact  20000", "redis  get       51000",
		"2.00ms  4.00ms  8.00ms", "transactions 85% of the rps at 1.25× the p99", "PASS  redis transaction rps ≥ 70% of bbolt",
		"overall: PASS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	r = good()
	r.Stores[1] = storeResult(storeRedis, 10000, 10*time.Millisecond, 2)
	r.evaluate()
	out.Reset()
	printReport(&out, r)
	for _, want := range []string{"redis transact errors: status 2", "ERR_ACTOR_INSTANCE_MISSING",
		"FAIL  redis transaction rps ≥ 70% of bbolt   50%", "FAIL  no failed requests", "overall: FAIL"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
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
	if err := json.Unmarshal(data, &back); err != nil || back.TransactRatio != 0.5 || back.Pass ||
		len(back.Stores) != 2 || back.Stores[1].Transact.Errors.Status != 2 || back.Stores[1].TransactError == "" {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
}
