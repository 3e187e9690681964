package callback_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore/memstore"
)

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLoggingRuntime(t testing.TB) (*actor.Runtime, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt, logs
}

// decodeObject decodes a JSON object keeping its values raw.
func decodeObject(t *testing.T, body string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	return m
}

func TestRemind(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"],"reentrancy":{"enabled":true}}`)
	app.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) {
			name := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			switch name {
			case "cancel":
				w.Header().Set("X-DaprReminderCancel", "true")
			case "cancel-loud":
				w.Header().Set("X-DaprReminderCancel", "TRUE")
			case "keep":
				w.Header().Set("X-DaprReminderCancel", "false")
			case "fail":
				http.Error(w, "reminder handler broke", http.StatusInternalServerError)
				return
			case "nocontent":
				w.WriteHeader(http.StatusNoContent)
				return
			}
			w.Write([]byte("done"))
		}
	})
	rt := newRuntime(t)
	opts := calmOptions()
	opts.Token = "app-secret"
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	id := actor.ID{Type: "Counter", ID: "c 1"}

	tests := []struct {
		name       string
		wantCancel bool
		wantErr    string
	}{
		{name: "plain", wantCancel: false},
		{name: "cancel", wantCancel: true},
		{name: "cancel-loud", wantCancel: true},
		{name: "keep", wantCancel: false},
		{name: "fail", wantErr: "status 500"},
		{name: "nocontent", wantErr: "status 204"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cancel, err := rt.Remind(ctx, id, &actor.ReminderCall{Name: tc.name, Data: []byte(`{"n":[1,2]}`), DueTime: "1m", Period: "R5/PT10S"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.name) {
					t.Fatalf("Remind: %v; want an error naming the reminder and containing %q", err, tc.wantErr)
				}
				if cancel {
					t.Error("cancel reported alongside an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Remind: %v", err)
			}
			if cancel != tc.wantCancel {
				t.Errorf("cancel = %v; want %v", cancel, tc.wantCancel)
			}
		})
	}

	reqs := app.Requests("/actors/")
	if len(reqs) != len(tests) {
		t.Fatalf("app got %d calls; want %d", len(reqs), len(tests))
	}
	r := reqs[0]
	if r.Method != http.MethodPut || r.RequestURI != "/actors/Counter/c%201/method/remind/plain" {
		t.Errorf("reminder call = %s %s", r.Method, r.RequestURI)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := r.Header.Get("Dapr-Api-Token"); got != "app-secret" {
		t.Errorf("dapr-api-token = %q", got)
	}
	body := decodeObject(t, r.Body)
	if len(body) != 3 || string(body["data"]) != `{"n":[1,2]}` || string(body["dueTime"]) != `"1m"` || string(body["period"]) != `"R5/PT10S"` {
		t.Errorf("reminder body = %s; want data verbatim, dueTime and period, and nothing else", r.Body)
	}
}

func TestRemindBodyEdgeCases(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	id := actor.ID{Type: "Counter", ID: "c"}
	calls := []*actor.ReminderCall{
		{Name: "nodata"},
		{Name: "blank", Data: []byte("  ")},
		{Name: "html", Data: []byte(`"<b>&</b>"`), DueTime: "2030-01-01T00:00:00Z"},
		{Name: "daily report", Data: []byte(`42`), Period: "@every 10s"},
	}
	for _, c := range calls {
		if _, err := rt.Remind(ctx, id, c); err != nil {
			t.Fatalf("Remind %s: %v", c.Name, err)
		}
	}
	reqs := app.Requests("/actors/")
	if len(reqs) != len(calls) {
		t.Fatalf("got %d calls", len(reqs))
	}
	wantData := []string{"null", "null", `"<b>&</b>"`, "42"}
	for i, r := range reqs {
		body := decodeObject(t, r.Body)
		if string(body["data"]) != wantData[i] {
			t.Errorf("%s: data = %s; want %s (body %s)", calls[i].Name, body["data"], wantData[i], r.Body)
		}
		if got, want := string(body["dueTime"]), `"`+calls[i].DueTime+`"`; got != want {
			t.Errorf("%s: dueTime = %s; want %s", calls[i].Name, got, want)
		}
	}
	if got := reqs[3].RequestURI; got != "/actors/Counter/c/method/remind/daily%20report" {
		t.Errorf("request URI = %q; want the reminder name escaped", got)
	}
}

func TestTimer(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	fired := make(chan seen, 4)
	app.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/timer/broken") {
				w.WriteHeader(http.StatusBadGateway)
			}
			fired <- seen{Method: r.Method, RequestURI: r.RequestURI}
		}
	})
	rt, logs := newLoggingRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	once := func(time.Time, int) (time.Time, bool) { return time.Time{}, false }
	id := actor.ID{Type: "Counter", ID: "c"}
	spec := actor.TimerSpec{Name: "tick tock", Callback: "onTick", Data: []byte(`{"k":"v"}`), DueTime: "0s", Period: "", First: time.Now(), Next: once}
	if err := rt.CreateTimer(ctx, id, spec); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-fired:
		if s.Method != http.MethodPut || s.RequestURI != "/actors/Counter/c/method/timer/tick%20tock" {
			t.Errorf("timer call = %s %s", s.Method, s.RequestURI)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timer did not reach the app")
	}
	r := app.Requests("/actors/Counter/c/method/timer/")[0]
	body := decodeObject(t, r.Body)
	if string(body["data"]) != `{"k":"v"}` || string(body["callback"]) != `"onTick"` || string(body["dueTime"]) != `"0s"` || string(body["period"]) != `""` {
		t.Errorf("timer body = %s", r.Body)
	}

	// A timer the app fails is reported, not silently dropped.
	spec.Name, spec.Callback = "broken", ""
	if err := rt.CreateTimer(ctx, id, spec); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("second timer did not reach the app")
	}
	eventually(t, 5*time.Second, "the failed timer to be logged", func() bool {
		return strings.Contains(logs.String(), "status 502")
	})
	r = app.Requests("/actors/Counter/c/method/timer/broken")[0]
	if _, has := decodeObject(t, r.Body)["callback"]; has {
		t.Errorf("timer body %s carries an empty callback", r.Body)
	}
}

func TestDeactivate(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter","Grumpy"]}`)
	app.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/actors/Grumpy/") {
				http.Error(w, "no", http.StatusTeapot)
			}
		}
	})
	rt, logs := newLoggingRuntime(t)
	opts := calmOptions()
	opts.Token = "app-secret"
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	for _, id := range []actor.ID{{Type: "Counter", ID: "a b"}, {Type: "Grumpy", ID: "g"}} {
		if _, err := rt.Invoke(ctx, id, &actor.Request{Method: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	app.reset()
	if err := rt.Close(ctx); err != nil {
		t.Fatal(err)
	}
	dels := app.Requests("/actors/Counter/")
	if len(dels) != 1 {
		t.Fatalf("deactivation calls = %+v; want one", dels)
	}
	d := dels[0]
	if d.Method != http.MethodDelete || d.RequestURI != "/actors/Counter/a%20b" || d.Body != "" {
		t.Errorf("deactivation = %s %s body %q; want DELETE /actors/Counter/a%%20b without a body", d.Method, d.RequestURI, d.Body)
	}
	if got := d.Header.Get("Dapr-Api-Token"); got != "app-secret" {
		t.Errorf("dapr-api-token = %q", got)
	}
	if got := d.Header.Values("Content-Type"); len(got) != 0 {
		t.Errorf("Content-Type = %q on a bodiless DELETE", got)
	}
	if l := logs.String(); !strings.Contains(l, "status 418") || !strings.Contains(l, "Grumpy/g") {
		t.Errorf("a failed deactivation was not reported; logs:\n%s", l)
	}
}

// BenchmarkInvoke measures one call through the runtime and the registry to an
// app, showing the allocations of the hot path. The app runs in the same
// process, so net/http's own allocations for serving the call are included.
func BenchmarkInvoke(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/config" {
			w.Write([]byte(`{"entities":["Counter"]}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"v":1}`))
	}))
	b.Cleanup(srv.Close)
	rt := newRuntime(b)
	reg := newRegistry(b, rt, calmOptions())
	ctx := context.Background()
	if err := reg.Register(ctx, "app", srv.URL, true); err != nil {
		b.Fatal(err)
	}
	id := actor.ID{Type: "Counter", ID: "bench"}
	body := []byte(`{"delta":1}`)
	header := []actor.HeaderField{{Name: []byte("X-Request-Id"), Value: []byte("abc")}}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := rt.Invoke(ctx, id, &actor.Request{Method: "add", Body: body, Header: header})
		if err != nil {
			b.Fatal(err)
		}
		if resp.Status != http.StatusOK || string(resp.Body) != `{"v":1}` {
			b.Fatalf("answer %d %q", resp.Status, resp.Body)
		}
		resp.Release()
	}
}
