package app

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/history"
)

const testClaim = "3/silo-a/inc-1"

// harness is an App served on loopback beside a fake gateway.
type harness struct {
	t    *testing.T
	gw   *fakeGateway
	srv  *httptest.Server
	path string // the history file
}

func newHarness(t *testing.T, configure func(*Config)) *harness {
	t.Helper()
	gw := newFakeGateway(t)
	h := &harness{t: t, gw: gw, path: filepath.Join(t.TempDir(), "history.jsonl")}
	cfg := Config{
		GatewayURL:  gw.srv.URL + "/",
		HistoryPath: h.path,
		Client:      &http.Client{Timeout: 5 * time.Second},
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if configure != nil {
		configure(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.srv = httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		h.srv.Close()
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// call makes one request; claim "" sends no activation header. It returns
// the status and the body, trimmed.
func (h *harness) call(method, path, claim, body string) (int, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	if claim != "" {
		req.Header.Set(HeaderActivation, claim)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading answer: %v", method, path, err)
	}
	return resp.StatusCode, strings.TrimSpace(string(data))
}

// expect makes a call and fails the test unless it answers status and body.
func (h *harness) expect(method, path, body string, wantStatus int, wantBody string) {
	h.t.Helper()
	status, got := h.call(method, path, testClaim, body)
	if status != wantStatus || got != wantBody {
		h.t.Fatalf("%s %s %s: answered %d %s, want %d %s", method, path, body, status, got, wantStatus, wantBody)
	}
}

// history reads the history file back, which also checks every record.
func (h *harness) history() *history.Run {
	h.t.Helper()
	run, err := history.ReadFile(h.path)
	if err != nil {
		h.t.Fatalf("reading history: %v", err)
	}
	return run
}

// checkTurns checks that the history holds exactly the turns of actor
// typ/id with the methods and commit flags given, well timed.
func (h *harness) checkTurns(typ, id string, want []wantTurn) []history.Turn {
	h.t.Helper()
	turns := h.history().Turns
	if len(turns) != len(want) {
		h.t.Fatalf("history has %d turns, want %d: %+v", len(turns), len(want), turns)
	}
	for i, tu := range turns {
		w := want[i]
		if tu.Type != typ || tu.Actor != id || tu.Method != w.method || tu.Committed != w.committed {
			h.t.Errorf("turn %d is %s/%s %q committed=%v, want %s/%s %q committed=%v",
				i, tu.Type, tu.Actor, tu.Method, tu.Committed, typ, id, w.method, w.committed)
		}
		if tu.Activation != testClaim || tu.Silo != "silo-a" || tu.Version != 3 || tu.Incarnation != "inc-1" {
			h.t.Errorf("turn %d ran under %q (silo %q, version %d, incarnation %q), want %q",
				i, tu.Activation, tu.Silo, tu.Version, tu.Incarnation, testClaim)
		}
		if tu.Start == 0 || tu.End < tu.Start {
			h.t.Errorf("turn %d runs [%d, %d]", i, tu.Start, tu.End)
		}
		switch {
		case tu.Committed && (tu.CommitAt < tu.Start || tu.CommitAt > tu.End):
			h.t.Errorf("turn %d committed at %d, outside [%d, %d]", i, tu.CommitAt, tu.Start, tu.End)
		case !tu.Committed && tu.CommitAt != 0:
			h.t.Errorf("turn %d has commit time %d without a commit", i, tu.CommitAt)
		}
	}
	return turns
}

type wantTurn struct {
	method    string
	committed bool
}

// steppingClock is a clock that moves on by a millisecond at every reading.
func steppingClock() func() time.Time {
	var mu sync.Mutex
	t := time.Unix(1_700_000_000, 0)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

func TestRegister(t *testing.T) {
	h := newHarness(t, nil)
	const r = "/actors/ChaosRegister/r1/method/"
	h.expect("PUT", r+"read", "", 200, `{"value":null}`)
	h.expect("PUT", r+"write", `{"req":"w1","value":5}`, 200, `{"ok":true}`)
	h.expect("PUT", r+"read", `{"req":"rd"}`, 200, `{"value":5}`)

	before := h.gw.applied()
	h.expect("PUT", r+"cas", `{"req":"c1","expect":4,"value":9}`, 200, `{"ok":false,"value":5}`)
	if n := h.gw.applied(); n != before {
		t.Fatalf("a failed compare-and-set made %d transactions", n-before)
	}
	if _, ok := h.gw.value(TypeRegister, "r1", AuditKey("c1")); ok {
		t.Fatal("a failed compare-and-set left an audit record")
	}
	h.expect("PUT", r+"cas", `{"req":"c2","expect":5,"value":9}`, 200, `{"ok":true}`)
	h.expect("PUT", r+"read", "", 200, `{"value":9}`)
	h.expect("PUT", "/actors/ChaosRegister/r2/method/cas", `{"req":"c3","expect":0,"value":1}`, 200, `{"ok":false,"value":null}`)
	if v, ok := h.gw.value(TypeRegister, "r2", registerKey); ok {
		t.Fatalf("a compare-and-set on an absent register wrote %s", v)
	}
	if n := h.gw.applied(); n != 2 {
		t.Fatalf("%d transactions, want 2 (the write and one compare-and-set)", n)
	}

	turns := h.history().Turns
	if len(turns) != 7 {
		t.Fatalf("%d turns logged, want 7", len(turns))
	}
	want := []wantTurn{{"read", false}, {"write", true}, {"read", false}, {"cas", false}, {"cas", true}, {"read", false}}
	for i, w := range want {
		if turns[i].Method != w.method || turns[i].Committed != w.committed {
			t.Errorf("turn %d: %q committed=%v, want %q committed=%v", i, turns[i].Method, turns[i].Committed, w.method, w.committed)
		}
	}
	if last := turns[6]; last.Actor != "r2" || last.Committed {
		t.Errorf("last turn %+v, want an uncommitted turn of r2", last)
	}
}

func TestCounter(t *testing.T) {
	h := newHarness(t, nil)
	const c = "/actors/ChaosCounter/c1/method/"
	h.expect("PUT", c+"incr", `{"req":"a"}`, 200, `{"value":1}`)
	h.expect("PUT", c+"incr", `{"req":"b","delta":1}`, 200, `{"value":2}`)
	h.expect("PUT", c+"incr", `{"req":"a"}`, 200, `{"value":1}`) // a retry: the value it made
	if n := h.gw.applied(); n != 2 {
		t.Fatalf("%d transactions, want 2: a retried increment was applied again", n)
	}
	h.expect("PUT", c+"get", "", 200, `{"value":2}`)
	h.expect("PUT", c+"incr", `{"req":"c","delta":5}`, 200, `{"value":7}`)
	if v, _ := h.gw.value(TypeCounter, "c1", requestKey("c")); string(v) != "7" {
		t.Fatalf("req/c holds %s, want 7", v)
	}
	h.checkTurns(TypeCounter, "c1", []wantTurn{
		{"incr", true}, {"incr", true}, {"incr", false}, {"get", false}, {"incr", true},
	})

	h.expect("PUT", "/actors/ChaosCounter/fresh/method/get", "", 200, `{"value":0}`)
}

func TestAuditRecordsAndCommitTimes(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Now = steppingClock() })
	h.expect("PUT", "/actors/ChaosRegister/r1/method/write", `{"req":"w1","value":3}`, 200, `{"ok":true}`)
	h.expect("PUT", "/actors/ChaosRegister/r1/method/cas", `{"req":"w2","expect":3,"value":4}`, 200, `{"ok":true}`)
	turns := h.checkTurns(TypeRegister, "r1", []wantTurn{{"write", true}, {"cas", true}})

	h.expect("PUT", "/actors/ChaosCounter/c1/method/incr", `{"req":"i1"}`, 200, `{"value":1}`)
	turns = append(turns, h.history().Turns[2])

	for i, w := range []struct{ typ, id, req, key string }{
		{TypeRegister, "r1", "w1", registerKey},
		{TypeRegister, "r1", "w2", registerKey},
		{TypeCounter, "c1", "i1", counterKey},
	} {
		raw, ok := h.gw.value(w.typ, w.id, AuditKey(w.req))
		if !ok {
			t.Fatalf("no audit record for %s", w.req)
		}
		var got Audit
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("audit record %s: %v", raw, err)
		}
		want := Audit{Claim: testClaim, At: turns[i].CommitAt, Key: w.key}
		if got != want {
			t.Errorf("audit record of %s is %+v, want %+v", w.req, got, want)
		}
		// With a clock that moves at every reading, the commit falls
		// strictly inside its turn.
		if tu := turns[i]; !(tu.Start < tu.CommitAt && tu.CommitAt < tu.End) {
			t.Errorf("turn of %s committed at %d, not inside (%d, %d)", w.req, tu.CommitAt, tu.Start, tu.End)
		}
	}
	for _, c := range h.gw.seenClaims() {
		if c != testClaim {
			t.Fatalf("a state call carried activation %q, want %q", c, testClaim)
		}
	}
}

func TestFailingStateAPI(t *testing.T) {
	h := newHarness(t, nil)
	h.gw.fail(true, false)
	// A turn that fails before it sends any write did nothing, and says so.
	for _, call := range []struct{ path, body string }{
		{"/actors/ChaosRegister/r1/method/read", ""},
		{"/actors/ChaosRegister/r1/method/cas", `{"req":"c1","value":2,"expect":1}`},
	} {
		status, body := h.call("PUT", call.path, testClaim, call.body)
		var answer abortedAnswer
		if status != 200 || json.Unmarshal([]byte(body), &answer) != nil || answer.OK ||
			!strings.Contains(answer.Aborted, "500") || !strings.Contains(answer.Aborted, "store unavailable") {
			t.Fatalf("%s with a failing gateway answered %d %s, want 200 {ok: false, aborted: naming the gateway's status and body}", call.path, status, body)
		}
	}

	h.gw.fail(false, true)
	for _, call := range []struct{ path, body string }{
		{"/actors/ChaosRegister/r1/method/write", `{"req":"w1","value":1}`},
		{"/actors/ChaosCounter/r1/method/incr", `{"req":"i1"}`},
	} {
		status, body := h.call("PUT", call.path, testClaim, call.body)
		if status != 500 || !strings.Contains(body, "state transaction") {
			t.Fatalf("%s with failing transactions answered %d %s, want 500", call.path, status, body)
		}
	}
	turns := h.history().Turns
	if len(turns) != 4 {
		t.Fatalf("%d turns logged, want 4", len(turns))
	}
	for i, tu := range turns {
		if tu.Committed || tu.CommitAt != 0 {
			t.Errorf("turn %d (%s) logged as committed at %d", i, tu.Method, tu.CommitAt)
		}
	}
	if n := h.gw.applied(); n != 0 {
		t.Fatalf("%d transactions applied", n)
	}
}

func TestBadBody(t *testing.T) {
	h := newHarness(t, nil)
	for _, body := range []string{`{"req":`, `{"value":1}`, `{"req":"x","value":"one"}`} {
		status, answer := h.call("PUT", "/actors/ChaosRegister/r1/method/write", testClaim, body)
		if status != 400 || !strings.Contains(answer, `"error"`) {
			t.Fatalf("write %s answered %d %s, want 400", body, status, answer)
		}
	}
	h.checkTurns(TypeRegister, "r1", []wantTurn{{"write", false}, {"write", false}, {"write", false}})
}

func TestMissingActivation(t *testing.T) {
	h := newHarness(t, nil)
	for _, claim := range []string{"", "garbage", "x/silo-a/inc", "3/silo-a"} {
		for _, c := range []struct{ method, path string }{
			{"PUT", "/actors/ChaosRegister/r1/method/write"},
			{"PUT", "/actors/ChaosTicker/t1/method/remind/r"},
			{"DELETE", "/actors/ChaosCounter/c1"},
		} {
			status, body := h.call(c.method, c.path, claim, `{"req":"w1","value":1}`)
			if status != 400 || !strings.Contains(body, HeaderActivation) {
				t.Errorf("%s %s with activation %q answered %d %s, want 400", c.method, c.path, claim, status, body)
			}
		}
	}
	run := h.history()
	if len(run.Turns)+len(run.Ticks) != 0 {
		t.Fatalf("calls without a valid activation were logged: %+v %+v", run.Turns, run.Ticks)
	}
	if calls := h.gw.seenClaims(); len(calls) != 0 {
		t.Fatalf("calls without a valid activation reached the gateway %d times", len(calls))
	}
}

func TestTicker(t *testing.T) {
	h := newHarness(t, nil)
	const k = "/actors/ChaosTicker/t1/method/"
	h.expect("PUT", k+"remind/r1", `{"data":"eyJ4IjoxfQ==","dueTime":"1s","period":"2s"}`, 200, "")
	h.expect("PUT", k+"remind/r2", "", 200, "")
	h.expect("PUT", k+"timer/t", "", 200, "")
	turns := h.checkTurns(TypeTicker, "t1", []wantTurn{{"remind/r1", false}, {"remind/r2", false}, {"timer/t", false}})
	ticks := h.history().Ticks
	if len(ticks) != 2 {
		t.Fatalf("%d ticks logged, want 2: %+v", len(ticks), ticks)
	}
	for i, name := range []string{"r1", "r2"} {
		k := ticks[i]
		if k.Type != TypeTicker || k.Actor != "t1" || k.Reminder != name || k.Activation != testClaim {
			t.Errorf("tick %d is %+v, want reminder %s of ChaosTicker/t1 under %s", i, k, name, testClaim)
		}
		if k.At < turns[i].Start || k.At > turns[i].End {
			t.Errorf("tick %d at %d, outside its turn [%d, %d]", i, k.At, turns[i].Start, turns[i].End)
		}
	}
	if n := h.gw.applied(); n != 0 {
		t.Fatalf("the ticker made %d transactions", n)
	}
}

func TestDeactivate(t *testing.T) {
	h := newHarness(t, nil)
	h.expect("PUT", "/actors/ChaosCounter/c1/method/incr", `{"req":"a"}`, 200, `{"value":1}`)
	h.expect("DELETE", "/actors/ChaosCounter/c1", "", 200, "")
	h.checkTurns(TypeCounter, "c1", []wantTurn{{"incr", true}, {history.MethodDeactivate, false}})
}

func TestUnknownRoutes(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct{ method, path string }{
		{"PUT", "/actors/Nope/x/method/read"},
		{"PUT", "/actors/ChaosRegister/x/method/incr"},
		{"PUT", "/actors/ChaosRegister/x/method/remind/r"},
		{"PUT", "/actors/ChaosTicker/x/method/read"},
		{"PUT", "/actors/ChaosTicker/x/method/remind/"},
		{"DELETE", "/actors/Nope/x"},
		{"GET", "/nowhere"},
	} {
		status, body := h.call(c.method, c.path, testClaim, "")
		var answer errorBody
		if err := json.Unmarshal([]byte(body), &answer); status != 404 || err != nil || answer.Error == "" {
			t.Errorf("%s %s answered %d %s, want 404 {\"error\": ...}", c.method, c.path, status, body)
		}
	}
	if run := h.history(); len(run.Turns)+len(run.Ticks) != 0 {
		t.Fatalf("calls to no actor method were logged: %+v", run.Turns)
	}
}

func TestConfigAndHealth(t *testing.T) {
	for _, c := range []struct {
		idle time.Duration
		want string
	}{{0, "15s"}, {42 * time.Second, "42s"}} {
		h := newHarness(t, func(cfg *Config) { cfg.IdleTimeout = c.idle })
		status, body := h.call("GET", "/dapr/config", "", "")
		want := fmt.Sprintf(`{"entities":["ChaosRegister","ChaosCounter","ChaosTicker"],"actorIdleTimeout":%q,"drainOngoingCallTimeout":"5s","drainRebalancedActors":true}`, c.want)
		if status != 200 || body != want {
			t.Errorf("config answered %d %s, want 200 %s", status, body, want)
		}
		if status, _ := h.call("GET", "/healthz", "", ""); status != 200 {
			t.Errorf("healthz answered %d", status)
		}
	}
}

func TestConcurrentTurns(t *testing.T) {
	h := newHarness(t, nil)
	const actors, incrs = 8, 10
	var wg sync.WaitGroup
	for a := range actors {
		wg.Go(func() {
			for i := range incrs {
				path := fmt.Sprintf("/actors/ChaosCounter/c%d/method/incr", a)
				status, body := h.call("PUT", path, testClaim, fmt.Sprintf(`{"req":"r%d-%d"}`, a, i))
				if want := fmt.Sprintf(`{"value":%d}`, i+1); status != 200 || body != want {
					t.Errorf("%s answered %d %s, want 200 %s", path, status, body, want)
				}
			}
		})
	}
	wg.Wait()
	turns := h.history().Turns
	if len(turns) != actors*incrs {
		t.Fatalf("%d turns logged, want %d", len(turns), actors*incrs)
	}
	for _, tu := range turns {
		if !tu.Committed {
			t.Fatalf("turn %+v not committed", tu)
		}
	}
}

func TestHistoryAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	gw := newFakeGateway(t)
	for range 2 {
		a, err := New(Config{GatewayURL: gw.srv.URL, HistoryPath: path, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		req := httptest.NewRequest("DELETE", "/actors/ChaosTicker/t1", nil)
		req.Header.Set(HeaderActivation, testClaim)
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("deactivation answered %d", rec.Code)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	run, err := history.ReadFile(path)
	if err != nil {
		t.Fatalf("reading history: %v", err)
	}
	if len(run.Turns) != 2 {
		t.Fatalf("%d turns after two apps wrote one each: the second truncated the file?", len(run.Turns))
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	for _, cfg := range []Config{
		{HistoryPath: path},
		{GatewayURL: "127.0.0.1:7001", HistoryPath: path},
		{GatewayURL: "ftp://127.0.0.1:7001", HistoryPath: path},
		{GatewayURL: "http://127.0.0.1:7001"},
		{GatewayURL: "http://127.0.0.1:7001", HistoryPath: filepath.Join(path, "no", "such", "dir")},
		{GatewayURL: "http://127.0.0.1:7001", HistoryPath: path, IdleTimeout: -time.Second},
	} {
		if a, err := New(cfg); err == nil {
			_ = a.Close()
			t.Errorf("New(%+v) accepted it", cfg)
		}
	}
}

// The silo's Granary-Claim-Confirmed header is logged with the turn; a
// value that is not a time is left out.
func TestTurnRecordsTheConfirmation(t *testing.T) {
	h := newHarness(t, nil)
	for _, v := range []string{"1796216882753976005", "soon", "-5"} {
		req, err := http.NewRequest("DELETE", h.srv.URL+"/actors/ChaosCounter/c1", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(HeaderActivation, testClaim)
		req.Header.Set(HeaderConfirmed, v)
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	turns := h.history().Turns
	if len(turns) != 3 {
		t.Fatalf("history has %d turns, want 3", len(turns))
	}
	for i, want := range []int64{1796216882753976005, 0, 0} {
		if turns[i].Confirmed != want {
			t.Errorf("turn %d: Confirmed = %d, want %d", i, turns[i].Confirmed, want)
		}
	}
}
