package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/silo"
	"github.com/granaryhq/granary/statestore"
)

func TestInvokeEveryVerb(t *testing.T) {
	for _, verb := range []string{"GET", "POST", "PUT", "DELETE"} {
		t.Run(verb, func(t *testing.T) {
			f, h := newServer(Config{})
			f.resp = actor.Response{
				Status:      200,
				Body:        []byte(`{"count":3}`),
				ContentType: []byte("application/json; charset=utf-8"),
				Header: []actor.HeaderField{
					{Name: []byte("X-App-Trace"), Value: []byte("t-42")},
					{Name: []byte("Set-Cookie"), Value: []byte("a=b")},
				},
			}
			resp := do(t, h, verb, "/v1.0/actors/Counter/c1/method/add?by=2&x=y", `{"n":2}`,
				"Content-Type", "application/vnd.test+json", "X-Client", "yes")
			wantStatus(t, verb, resp, 200)
			if got := string(resp.Body()); got != `{"count":3}` {
				t.Errorf("body %q", got)
			}
			if got := string(resp.Header.ContentType()); got != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
			if got := string(resp.Header.Peek("X-App-Trace")); got != "t-42" {
				t.Errorf("X-App-Trace %q, want the app's header forwarded", got)
			}
			if got := string(resp.Header.Peek("Set-Cookie")); got != "a=b" {
				t.Errorf("Set-Cookie %q, want the app's header forwarded", got)
			}
			wantCalls(t, verb, f, "Invoke Counter/c1")
			in := f.invoke
			if in.ID != (actor.ID{Type: "Counter", ID: "c1"}) || in.Method != "add" {
				t.Errorf("invoked %v method %q", in.ID, in.Method)
			}
			if verb != "GET" && in.Body != `{"n":2}` {
				t.Errorf("request body %q", in.Body)
			}
			if in.ContentType != "application/vnd.test+json" {
				t.Errorf("request content type %q", in.ContentType)
			}
			if in.Query != "by=2&x=y" {
				t.Errorf("query %q", in.Query)
			}
			if in.Header["x-client"] != "yes" {
				t.Errorf("client header not passed on: %v", in.Header)
			}
			if in.Chain != "" {
				t.Errorf("call chain %q without a reentrancy header", in.Chain)
			}
			if n := f.released.Load(); n != 1 {
				t.Errorf("response released %d times, want 1", n)
			}
		})
	}
}

func TestInvokeCarriesReentrancyChain(t *testing.T) {
	f, h := newServer(Config{})
	resp := do(t, h, "PUT", "/v1.0/actors/T/1/method/m", "", "Dapr-Reentrancy-Id", "chain-7")
	wantStatus(t, "invoke", resp, 200)
	if f.invoke.Chain != "chain-7" {
		t.Errorf("call chain %q, want chain-7", f.invoke.Chain)
	}
}

func TestInvokeEmptyResponse(t *testing.T) {
	f, h := newServer(Config{})
	resp := do(t, h, "POST", "/v1.0/actors/T/1/method/m", "")
	wantStatus(t, "invoke", resp, 200)
	if len(resp.Body()) != 0 {
		t.Errorf("body %q, want empty", resp.Body())
	}
	if f.released.Load() != 1 {
		t.Errorf("response not released")
	}
}

func TestInvokeAppErrorStatus(t *testing.T) {
	for _, status := range []int{201, 204, 301, 400, 404, 500, 503} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			f, h := newServer(Config{})
			f.resp = actor.Response{
				Status: status,
				Body:   []byte("boom from app"),
				Header: []actor.HeaderField{{Name: []byte("X-App-Trace"), Value: []byte("t")}},
			}
			resp := do(t, h, "PUT", "/v1.0/actors/T/1/method/explode", "")
			wantError(t, "app status", resp, 500, "ERR_ACTOR_INVOKE_METHOD",
				fmt.Sprintf("status %d", status), "boom from app", "T/1", "explode")
			if v := resp.Header.Peek("X-App-Trace"); v != nil {
				t.Errorf("error response carries the app's header X-App-Trace=%q", v)
			}
			if f.released.Load() != 1 {
				t.Errorf("response not released")
			}
		})
	}
}

func TestInvokeAppErrorBodyTruncated(t *testing.T) {
	f, h := newServer(Config{})
	long := strings.Repeat("x", 1024) + "TAIL"
	f.resp = actor.Response{Status: 500, Body: []byte(long)}
	resp := do(t, h, "PUT", "/v1.0/actors/T/1/method/m", "")
	msg := wantError(t, "long app error", resp, 500, "ERR_ACTOR_INVOKE_METHOD", strings.Repeat("x", 1024)+"…")
	if strings.Contains(msg, "TAIL") {
		t.Errorf("message not truncated: %d bytes", len(msg))
	}
}

func TestInvokeErrorResponseHeaderPassthrough(t *testing.T) {
	for _, name := range []string{"X-DaprErrorResponseHeader", "x-daprerrorresponseheader"} {
		f, h := newServer(Config{})
		f.resp = actor.Response{
			Status:      418,
			Body:        []byte(`{"app":"teapot"}`),
			ContentType: []byte("application/problem+json"),
			Header: []actor.HeaderField{
				{Name: []byte(name), Value: []byte("Actor Error")},
				{Name: []byte("X-Retry-After"), Value: []byte("5")},
			},
		}
		resp := do(t, h, "PUT", "/v1.0/actors/T/1/method/m", "")
		wantStatus(t, name, resp, 418)
		if got := string(resp.Body()); got != `{"app":"teapot"}` {
			t.Errorf("%s: body %q, want the app's verbatim", name, got)
		}
		if got := string(resp.Header.ContentType()); got != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", name, got)
		}
		if got := string(resp.Header.Peek("X-Retry-After")); got != "5" {
			t.Errorf("%s: X-Retry-After %q", name, got)
		}
		if got := string(resp.Header.Peek("X-DaprErrorResponseHeader")); got != "Actor Error" {
			t.Errorf("%s: X-DaprErrorResponseHeader %q, want forwarded", name, got)
		}
		if f.released.Load() != 1 {
			t.Errorf("%s: response not released", name)
		}
	}
}

func TestTransact(t *testing.T) {
	for _, verb := range []string{"POST", "PUT"} {
		f, h := newServer(Config{})
		body := `[{"operation":"upsert","request":{"key":"a","value":{"v":1},"etag":"3","metadata":{"ttlInSeconds":"60"}}},
			{"operation":"delete","request":{"key":"b/c"}}]`
		resp := do(t, h, verb, "/v1.0/actors/T/1/state", body)
		wantStatus(t, verb, resp, 204)
		if len(resp.Body()) != 0 {
			t.Errorf("%s: body %q on 204", verb, resp.Body())
		}
		wantCalls(t, verb, f, "Transact T/1")
		want := []statestore.Op{
			{Kind: statestore.Put, Key: "a", Value: []byte(`{"v":1}`), ETag: "3", TTL: time.Minute},
			{Kind: statestore.Delete, Key: "b/c"},
		}
		if !reflect.DeepEqual(f.ops, want) {
			t.Errorf("%s: ops %+v, want %+v", verb, f.ops, want)
		}
	}
}

func TestTransactEmptyArraySkipsBackend(t *testing.T) {
	f, h := newServer(Config{})
	resp := do(t, h, "POST", "/v1.0/actors/T/1/state", " [] ")
	wantStatus(t, "empty transaction", resp, 204)
	wantCalls(t, "empty transaction", f)
}

func TestTransactBadBodies(t *testing.T) {
	rows := []struct {
		body, code, mentions string
	}{
		{``, "ERR_MALFORMED_REQUEST", "JSON array"},
		{`{"operation":"upsert"}`, "ERR_MALFORMED_REQUEST", "JSON array"},
		{`[{"operation":`, "ERR_MALFORMED_REQUEST", "not valid"},
		{`[{"operation":"merge","request":{"key":"k"}}]`, "ERR_BAD_REQUEST", "merge"},
		{`[{"operation":"upsert","request":{"key":""}}]`, "ERR_BAD_REQUEST", "empty"},
		{`[{"operation":"upsert","request":{"key":"k","metadata":{"ttlInSeconds":"soon"}}}]`, "ERR_BAD_REQUEST", "ttlInSeconds"},
	}
	for _, r := range rows {
		f, h := newServer(Config{})
		resp := do(t, h, "POST", "/v1.0/actors/T/1/state", r.body)
		wantError(t, r.body, resp, 400, r.code, r.mentions)
		wantCalls(t, r.body, f)
	}
}

func TestGetState(t *testing.T) {
	f, h := newServer(Config{})
	f.item = statestore.Item{Key: "k", Value: []byte(`{"a": [1, 2]}`), ETag: "17"}
	resp := do(t, h, "GET", "/v1.0/actors/T/1/state/k", "")
	wantStatus(t, "get state", resp, 200)
	if got := string(resp.Body()); got != `{"a": [1, 2]}` {
		t.Errorf("body %q, want the stored bytes", got)
	}
	if got := string(resp.Header.Peek("ETag")); got != "17" {
		t.Errorf("ETag %q", got)
	}
	if got := string(resp.Header.ContentType()); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	wantCalls(t, "get state", f, "GetState T/1")
	if f.stateKey != "k" {
		t.Errorf("key %q", f.stateKey)
	}
}

func TestGetStateKeys(t *testing.T) {
	rows := []struct{ path, key string }{
		{"/v1.0/actors/T/1/state/plain", "plain"},
		{"/v1.0/actors/T/1/state/a/b/c", "a/b/c"},
		{"/v1.0/actors/T/1/state/a%20b%2Fc", "a b/c"},
		{"/v1.0/actors/T/1/state/%E2%82%AC%3F%23", "€?#"},
		{"/v1.0/actors/T/1/state/x+y", "x+y"},
	}
	for _, r := range rows {
		f, h := newServer(Config{})
		f.item = statestore.Item{Value: []byte("1"), ETag: "1"}
		resp := do(t, h, "GET", r.path, "")
		wantStatus(t, r.path, resp, 200)
		if f.stateKey != r.key {
			t.Errorf("%s: key %q, want %q", r.path, f.stateKey, r.key)
		}
	}
}

func TestGetStateAbsent(t *testing.T) {
	f, h := newServer(Config{})
	f.err = fmt.Errorf("memstore: %w", statestore.ErrNotFound)
	resp := do(t, h, "GET", "/v1.0/actors/T/1/state/missing", "")
	wantStatus(t, "absent key", resp, 204)
	if len(resp.Body()) != 0 || resp.Header.Peek("ETag") != nil {
		t.Errorf("absent key: body %q, ETag %q", resp.Body(), resp.Header.Peek("ETag"))
	}
}

func TestGetStateBadKeys(t *testing.T) {
	rows := []struct{ path, mentions string }{
		{"/v1.0/actors/T/1/state/a%01b", "control character"},
		{"/v1.0/actors/T/1/state/a%7Fb", "control character"},
		{"/v1.0/actors/T/1/state/" + strings.Repeat("k", MaxStateKeyLength+1), "limit"},
		{"/v1.0/actors/T/1/state/a%zzb", "percent-encoding"},
	}
	for _, r := range rows {
		f, h := newServer(Config{})
		resp := do(t, h, "GET", r.path, "")
		wantError(t, r.path, resp, 400, "ERR_BAD_REQUEST", r.mentions)
		wantCalls(t, r.path, f)
	}
	// The longest allowed key passes.
	f, h := newServer(Config{})
	f.item = statestore.Item{Value: []byte("1"), ETag: "1"}
	long := strings.Repeat("k", MaxStateKeyLength)
	wantStatus(t, "longest key", do(t, h, "GET", "/v1.0/actors/T/1/state/"+long, ""), 200)
	if f.stateKey != long {
		t.Errorf("longest key arrived as %d bytes", len(f.stateKey))
	}
}

func TestTimers(t *testing.T) {
	for _, verb := range []string{"POST", "PUT"} {
		f, h := newServer(Config{})
		body := `{"data":{"n":1},"dueTime":"1m30s","period":"R5/PT10S","ttl":"1h","callback":"onTick"}`
		resp := do(t, h, verb, "/v1.0/actors/T/1/timers/tick", body)
		wantStatus(t, verb, resp, 204)
		wantCalls(t, verb, f, "CreateTimer T/1")
		want := silo.TimerRequest{Name: "tick", Callback: "onTick", Data: []byte(`{"n":1}`),
			DueTime: "1m30s", Period: "R5/PT10S", TTL: "1h"}
		if !reflect.DeepEqual(f.timer, want) {
			t.Errorf("%s: timer %+v, want %+v", verb, f.timer, want)
		}
	}

	// An empty body asks for one fire now; "data": null is no data.
	for _, body := range []string{"", " ", `{"data":null}`} {
		f, h := newServer(Config{})
		resp := do(t, h, "POST", "/v1.0/actors/T/1/timers/now", body)
		wantStatus(t, fmt.Sprintf("body %q", body), resp, 204)
		if f.timer.Name != "now" || len(f.timer.Data) != 0 || f.timer.DueTime != "" || f.timer.Period != "" {
			t.Errorf("body %q: timer %+v", body, f.timer)
		}
	}

	f, h := newServer(Config{})
	resp := do(t, h, "DELETE", "/v1.0/actors/T/1/timers/tick", "")
	wantStatus(t, "delete timer", resp, 204)
	wantCalls(t, "delete timer", f, "DeleteTimer T/1")
	if f.name != "tick" {
		t.Errorf("deleted timer %q", f.name)
	}
}

func TestScheduleBadBodies(t *testing.T) {
	for _, kind := range []string{"timers", "reminders"} {
		for _, body := range []string{`[1]`, `"x"`, `{"dueTime":5}`, `{"period":`} {
			f, h := newServer(Config{})
			resp := do(t, h, "POST", "/v1.0/actors/T/1/"+kind+"/r", body)
			wantError(t, kind+" "+body, resp, 400, "ERR_MALFORMED_REQUEST")
			wantCalls(t, kind+" "+body, f)
		}
	}
}

func TestReminders(t *testing.T) {
	for _, verb := range []string{"POST", "PUT"} {
		f, h := newServer(Config{})
		body := `{"data":"hello","dueTime":"PT1M","period":"@every 10s","ttl":"2030-01-01T00:00:00Z","callback":"ignored"}`
		resp := do(t, h, verb, "/v1.0/actors/T/1/reminders/wake", body)
		wantStatus(t, verb, resp, 204)
		wantCalls(t, verb, f, "CreateReminder T/1")
		want := silo.ReminderRequest{Name: "wake", Data: []byte(`"hello"`), DueTime: "PT1M",
			Period: "@every 10s", TTL: "2030-01-01T00:00:00Z"}
		if !reflect.DeepEqual(f.reminder, want) {
			t.Errorf("%s: reminder %+v, want %+v", verb, f.reminder, want)
		}
	}

	f, h := newServer(Config{})
	f.info = silo.ReminderInfo{ActorID: "1", ActorType: "T", Name: "wake", Data: []byte(`{"x":[1,2]}`),
		DueTime: "PT1M", Period: "R5/PT10S", TTL: "1h"}
	resp := do(t, h, "GET", "/v1.0/actors/T/1/reminders/wake", "")
	wantStatus(t, "get reminder", resp, 200)
	wantCalls(t, "get reminder", f, "GetReminder T/1")
	if f.name != "wake" {
		t.Errorf("got reminder %q", f.name)
	}
	if got := string(resp.Header.ContentType()); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	var got map[string]any
	if err := json.Unmarshal(resp.Body(), &got); err != nil {
		t.Fatalf("reminder body %q: %v", resp.Body(), err)
	}
	// The protocol's fields, as registered; the body may carry more.
	want := map[string]any{"actorID": "1", "actorType": "T", "name": "wake",
		"data": map[string]any{"x": []any{1.0, 2.0}}, "dueTime": "PT1M", "period": "R5/PT10S", "ttl": "1h"}
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("reminder body %s: %s = %v, want %v", resp.Body(), k, got[k], v)
		}
	}

	f, h = newServer(Config{})
	f.err = fmt.Errorf("reminders: %w", statestore.ErrNotFound)
	resp = do(t, h, "GET", "/v1.0/actors/T/1/reminders/gone", "")
	wantError(t, "absent reminder", resp, 404, "ERR_ACTOR_REMINDER_NOT_FOUND", "gone", "T/1")

	f, h = newServer(Config{})
	resp = do(t, h, "DELETE", "/v1.0/actors/T/1/reminders/wake", "")
	wantStatus(t, "delete reminder", resp, 204)
	wantCalls(t, "delete reminder", f, "DeleteReminder T/1")
	if f.name != "wake" {
		t.Errorf("deleted reminder %q", f.name)
	}
}

func TestHealthz(t *testing.T) {
	f, h := newServer(Config{})
	resp := do(t, h, "GET", "/v1.0/healthz", "")
	wantStatus(t, "healthz", resp, 204)
	wantCalls(t, "healthz", f, "Ready")

	f, h = newServer(Config{})
	f.readyErr = errors.New("silo s1 is shutting down")
	resp = do(t, h, "GET", "/v1.0/healthz", "")
	wantError(t, "healthz not ready", resp, 503, "ERR_ACTOR_RUNTIME_CLOSED", "silo s1 is shutting down")
	wantError(t, "outbound healthz while shutting down", do(t, h, "GET", "/v1.0/healthz/outbound", ""), 503, "ERR_ACTOR_RUNTIME_CLOSED", "shutting down")

	// While the silo starts, the API serves calls but the silo is not ready.
	f.readyErr = fmt.Errorf("%w: silo s1 is registering its apps", silo.ErrStarting)
	wantError(t, "healthz while starting", do(t, h, "GET", "/v1.0/healthz", ""), 503, "ERR_HEALTH_NOT_READY", "registering its apps")
	wantStatus(t, "outbound healthz while starting", do(t, h, "GET", "/v1.0/healthz/outbound", ""), 204)
}

func TestMetadata(t *testing.T) {
	f, h := newServer(Config{})
	f.meta = silo.Metadata{
		ID:             "s1",
		RuntimeVersion: "granary/test",
		Actors:         []silo.ActiveActors{{Type: "Counter", Count: 3, Available: true}},
		Placement:      silo.PlacementStatus{Mode: "single-silo", TableVersion: 1, Members: []string{"s1"}},
		StateStore:     "<mem & more>",
	}
	resp := do(t, h, "GET", "/v1.0/metadata", "")
	wantStatus(t, "metadata", resp, 200)
	if got := string(resp.Header.ContentType()); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	if !bytes.Contains(resp.Body(), []byte(`"<mem & more>"`)) {
		t.Errorf("metadata body %s: HTML characters escaped", resp.Body())
	}
	var got silo.Metadata
	if err := json.Unmarshal(resp.Body(), &got); err != nil {
		t.Fatalf("metadata body %q: %v", resp.Body(), err)
	}
	if !reflect.DeepEqual(got, f.meta) {
		t.Errorf("metadata %+v, want %+v", got, f.meta)
	}
}

func TestApps(t *testing.T) {
	for _, verb := range []string{"PUT", "POST"} {
		f, h := newServer(Config{})
		resp := do(t, h, verb, "/v1.0-alpha1/apps/shop", `{"url":"http://127.0.0.1:3000"}`)
		wantStatus(t, verb, resp, 204)
		wantCalls(t, verb, f, "RegisterApp shop")
		if f.appURL != "http://127.0.0.1:3000" {
			t.Errorf("%s: url %q", verb, f.appURL)
		}
	}

	f, h := newServer(Config{})
	resp := do(t, h, "DELETE", "/v1.0-alpha1/apps/shop", "")
	wantStatus(t, "unregister", resp, 204)
	wantCalls(t, "unregister", f, "UnregisterApp shop")

	rows := []struct {
		name, method, path, body string
		err                      error
		status                   int
		code, mentions           string
	}{
		{"not JSON", "PUT", "/v1.0-alpha1/apps/shop", `url=x`, nil, 400, "ERR_MALFORMED_REQUEST", "url"},
		{"no url", "PUT", "/v1.0-alpha1/apps/shop", `{}`, nil, 400, "ERR_BAD_REQUEST", "url"},
		{"bad app id", "PUT", "/v1.0-alpha1/apps/%2E%2E", `{"url":"http://x"}`, nil, 400, "ERR_BAD_REQUEST", "app id"},
		{"input error", "PUT", "/v1.0-alpha1/apps/shop", `{"url":"ftp://x"}`,
			silo.InputError{Err: errors.New("app URL scheme must be http")}, 400, "ERR_BAD_REQUEST", "scheme"},
		{"app unreachable", "PUT", "/v1.0-alpha1/apps/shop", `{"url":"http://x"}`,
			errors.New("reading /dapr/config: connection refused"), 502, "ERR_APP_REGISTRATION", "connection refused"},
		{"unknown app", "DELETE", "/v1.0-alpha1/apps/nope", ``,
			errors.New("app nope is not registered"), 404, "ERR_APP_REGISTRATION", "not registered"},
		{"wrong verb", "GET", "/v1.0-alpha1/apps/shop", ``, nil, 405, "ERR_METHOD_NOT_ALLOWED", "GET"},
	}
	for _, r := range rows {
		f, h := newServer(Config{})
		f.err = r.err
		resp := do(t, h, r.method, r.path, r.body)
		wantError(t, r.name, resp, r.status, r.code, r.mentions)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	const invoke, reminder = "GET, POST, PUT, DELETE", "GET, POST, PUT, DELETE"
	rows := []struct{ method, path, allow string }{
		{"PATCH", "/v1.0/actors/T/1/method/m", invoke},
		{"HEAD", "/v1.0/actors/T/1/method/m", invoke},
		{"GET", "/v1.0/actors/T/1/state", "POST, PUT"},
		{"DELETE", "/v1.0/actors/T/1/state", "POST, PUT"},
		{"POST", "/v1.0/actors/T/1/state/k", "GET"},
		{"PUT", "/v1.0/actors/T/1/state/k", "GET"},
		{"DELETE", "/v1.0/actors/T/1/state/k", "GET"},
		{"PATCH", "/v1.0/actors/T/1/reminders/r", reminder},
		{"GET", "/v1.0/actors/T/1/timers/t", "POST, PUT, DELETE"},
		{"PATCH", "/v1.0/actors/T/1/timers/t", "POST, PUT, DELETE"},
		{"POST", "/v1.0/healthz", "GET"},
		{"PUT", "/v1.0/metadata", "GET"},
		{"PATCH", "/v1.0-alpha1/apps/a", "PUT, POST, DELETE"},
	}
	for _, r := range rows {
		f, h := newServer(Config{})
		resp := do(t, h, r.method, r.path, "")
		wantError(t, r.method+" "+r.path, resp, http.StatusMethodNotAllowed, "ERR_METHOD_NOT_ALLOWED", r.method)
		if got := string(resp.Header.Peek("Allow")); got != r.allow {
			t.Errorf("%s %s: Allow %q, want %q", r.method, r.path, got, r.allow)
		}
		wantCalls(t, r.method+" "+r.path, f)
	}
}

func TestNoRoute(t *testing.T) {
	for _, p := range []string{
		"/",
		"/v1.0",
		"/v1.0/nothing",
		"/v1.0/healthz/deep",
		"/v2.0/healthz",
		"/v1.0/actors/T/1/method",
		"/v1.0/actors/T/1/method/a/b",
		"/v1.0/actors/T/1/method/m/",
		"/v1.0/actors/T/1/unknown/x",
		"/v1.0/actors/T/1/reminders",
		"/v1.0/actors/T/1/timers/a/b",
		"/v1.0-alpha1/apps",
		"/v1.0-alpha1/apps/a/b",
		"/V1.0/healthz",
	} {
		f, h := newServer(Config{})
		resp := do(t, h, "GET", p, "")
		wantError(t, p, resp, 404, "ERR_NOT_FOUND")
		wantCalls(t, p, f)
	}
}

func TestInvalidNames(t *testing.T) {
	long := strings.Repeat("n", actor.MaxNameLength+1)
	rows := []struct{ method, path, mentions string }{
		{"PUT", "/v1.0/actors//1/method/m", "actor type"},
		{"PUT", "/v1.0/actors/a%2Fb/1/method/m", "actor type"},
		{"PUT", "/v1.0/actors/%2E%2E/1/method/m", "actor type"},
		{"PUT", "/v1.0/actors/./1/method/m", "actor type"},
		{"PUT", "/v1.0/actors/T%00/1/method/m", "actor type"},
		{"PUT", "/v1.0/actors/" + long + "/1/method/m", "actor type"},
		{"PUT", "/v1.0/actors/T//method/m", "actor id"},
		{"PUT", "/v1.0/actors/T/a%5Cb/method/m", "actor id"},
		{"PUT", "/v1.0/actors/T/a%23b/method/m", "actor id"},
		{"PUT", "/v1.0/actors/T/a%3Fb/method/m", "actor id"},
		{"PUT", "/v1.0/actors/T/a%0Ab/method/m", "actor id"},
		{"GET", "/v1.0/actors/T/%2E%2E/state/k", "actor id"},
		{"PUT", "/v1.0/actors/T/1/method/", "method"},
		{"PUT", "/v1.0/actors/T/1/method/a%2Fb", "method"},
		{"PUT", "/v1.0/actors/T/1/method/..", "method"},
		{"PUT", "/v1.0/actors/T/1/method/" + long, "method"},
		{"POST", "/v1.0/actors/T/1/reminders/a%3Fb", "reminder name"},
		{"GET", "/v1.0/actors/T/1/reminders/", "reminder name"},
		{"DELETE", "/v1.0/actors/T/1/reminders/%09", "reminder name"},
		{"POST", "/v1.0/actors/T/1/timers/a%5Cb", "timer name"},
		{"DELETE", "/v1.0/actors/T/1/timers/.", "timer name"},
		{"PUT", "/v1.0-alpha1/apps/a%2Fb", "app id"},
		{"PUT", "/v1.0/actors/T%zz/1/method/m", "percent-encoding"},
		{"PUT", "/v1.0/actors/T/1/method/m%", "percent-encoding"},
	}
	for _, r := range rows {
		f, h := newServer(Config{})
		resp := do(t, h, r.method, r.path, `{"url":"http://x"}`)
		wantError(t, r.method+" "+r.path, resp, 400, "ERR_BAD_REQUEST", r.mentions)
		wantCalls(t, r.method+" "+r.path, f)
	}
}

func TestPercentEncodedSegments(t *testing.T) {
	f, h := newServer(Config{})
	resp := do(t, h, "POST", "/v1.0/actors/My%20Type/id%2B%C3%A9%25/method/do%20it", "")
	wantStatus(t, "invoke", resp, 200)
	if want := (actor.ID{Type: "My Type", ID: "id+é%"}); f.invoke.ID != want {
		t.Errorf("id %+v, want %+v", f.invoke.ID, want)
	}
	if f.invoke.Method != "do it" {
		t.Errorf("method %q", f.invoke.Method)
	}

	f, h = newServer(Config{})
	wantStatus(t, "timer", do(t, h, "DELETE", "/v1.0/actors/T/1/timers/t%20one", ""), 204)
	if f.name != "t one" {
		t.Errorf("timer name %q", f.name)
	}

	f, h = newServer(Config{})
	wantStatus(t, "reminder", do(t, h, "DELETE", "/v1.0/actors/T/1/reminders/%E2%8F%B0", ""), 204)
	if f.name != "⏰" {
		t.Errorf("reminder name %q", f.name)
	}

	f, h = newServer(Config{})
	wantStatus(t, "app", do(t, h, "DELETE", "/v1.0-alpha1/apps/my%20app", ""), 204)
	if f.appID != "my app" {
		t.Errorf("app id %q", f.appID)
	}

	// Route words may be encoded too: they are compared after decoding.
	f, h = newServer(Config{})
	wantStatus(t, "encoded route", do(t, h, "GET", "/v1.0/%68ealthz", ""), 204)
	wantCalls(t, "encoded route", f, "Ready")
}

func TestAPIToken(t *testing.T) {
	const token = "s3cret-token"
	routes := []struct{ method, path, body string }{
		{"PUT", "/v1.0/actors/T/1/method/m", ""},
		{"POST", "/v1.0/actors/T/1/state", `[{"operation":"delete","request":{"key":"k"}}]`},
		{"GET", "/v1.0/actors/T/1/state/k", ""},
		{"POST", "/v1.0/actors/T/1/reminders/r", ""},
		{"GET", "/v1.0/actors/T/1/reminders/r", ""},
		{"DELETE", "/v1.0/actors/T/1/timers/t", ""},
		{"GET", "/v1.0/metadata", ""},
		{"PUT", "/v1.0-alpha1/apps/a", `{"url":"http://x"}`},
		{"GET", "/v1.0/no/such/route", ""},
	}
	for _, r := range routes {
		what := r.method + " " + r.path
		for _, hdr := range [][]string{
			nil,
			{"dapr-api-token", ""},
			{"dapr-api-token", "wrong"},
			{"dapr-api-token", token + "x"},
			{"dapr-api-token", token[:len(token)-1]},
			{"Authorization", "Bearer " + token},
		} {
			f, h := newServer(Config{APIToken: token})
			resp := do(t, h, r.method, r.path, r.body, hdr...)
			wantError(t, fmt.Sprintf("%s %q", what, hdr), resp, 401, "ERR_UNAUTHORIZED", "dapr-api-token")
			wantCalls(t, fmt.Sprintf("%s %q", what, hdr), f)
		}
		for _, name := range []string{"dapr-api-token", "Dapr-Api-Token", "DAPR-API-TOKEN"} {
			f, h := newServer(Config{APIToken: token})
			resp := do(t, h, r.method, r.path, r.body, name, token)
			if resp.StatusCode() == 401 {
				t.Errorf("%s with %s: refused: %s", what, name, resp.Body())
			}
			if r.path != "/v1.0/no/such/route" && len(f.Calls()) != 1 {
				t.Errorf("%s with %s: backend calls %q", what, name, f.Calls())
			}
		}
	}

	// healthz needs no token, and ignores a wrong one.
	for _, hdr := range [][]string{nil, {"dapr-api-token", "wrong"}} {
		f, h := newServer(Config{APIToken: token})
		resp := do(t, h, "GET", "/v1.0/healthz", "", hdr...)
		wantStatus(t, fmt.Sprintf("healthz %q", hdr), resp, 204)
		wantCalls(t, "healthz", f, "Ready")
	}

	// Without a configured token, no header is needed.
	f, h := newServer(Config{})
	wantStatus(t, "no token configured", do(t, h, "GET", "/v1.0/metadata", ""), 200)
	wantCalls(t, "no token configured", f, "Metadata")
}

func TestNamesAndKeysMustBeUTF8(t *testing.T) {
	rows := []struct{ method, path, mentions string }{
		{"GET", "/v1.0/actors/T/1/state/%FF%FE", "state key"},
		{"GET", "/v1.0/actors/T/1/state/a/%C3", "state key"},
		{"GET", "/v1.0/actors/T/1/state/%ED%A0%80", "state key"},
		{"PUT", "/v1.0/actors/%FF/1/method/m", "actor type"},
		{"PUT", "/v1.0/actors/T/%C3%28/method/m", "actor id"},
		{"PUT", "/v1.0/actors/T/1/method/%E2%82", "method"},
		{"POST", "/v1.0/actors/T/1/reminders/%FE", "reminder name"},
		{"DELETE", "/v1.0/actors/T/1/timers/%C0%AF", "timer name"},
		{"PUT", "/v1.0-alpha1/apps/%FF", "app id"},
	}
	for _, r := range rows {
		f, h := newServer(Config{})
		resp := do(t, h, r.method, r.path, `{"url":"http://x"}`)
		wantError(t, r.method+" "+r.path, resp, 400, "ERR_BAD_REQUEST", r.mentions, "UTF-8")
		wantCalls(t, r.method+" "+r.path, f)
	}
}
