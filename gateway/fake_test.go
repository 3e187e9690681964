package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/silo"
	"github.com/granaryhq/granary/statestore"
)

// seenInvoke is a copy of what the backend received for one Invoke; the
// request's byte slices are only valid during the call, so they are copied.
type seenInvoke struct {
	ID          actor.ID
	Method      string
	Body        string
	ContentType string
	Query       string
	Header      map[string]string // canonical lower-case name → value
	Chain       string            // actor.CallChain of the call's context
}

// fakeBackend records every call and answers with what the test configured.
type fakeBackend struct {
	mu    sync.Mutex
	calls []string // "Invoke T/1", "Transact T/1", ...

	invoke   seenInvoke
	stateID  actor.ID
	stateKey string
	ops      []statestore.Op
	timer    silo.TimerRequest
	reminder silo.ReminderRequest
	name     string // timer or reminder name of a get/delete
	appID    string
	appURL   string

	// err is returned by every method that can fail.
	err error
	// resp is the template of Invoke's answer (Status 0 means 200).
	resp     actor.Response
	released atomic.Int32
	item     statestore.Item
	info     silo.ReminderInfo
	meta     silo.Metadata
	readyErr error
}

func (f *fakeBackend) record(op string, id actor.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == (actor.ID{}) {
		f.calls = append(f.calls, op)
		return
	}
	f.calls = append(f.calls, op+" "+id.String())
}

// Calls returns the calls made so far.
func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBackend) Invoke(ctx context.Context, id actor.ID, req *actor.Request) (*actor.Response, error) {
	f.record("Invoke", id)
	seen := seenInvoke{
		ID:          id,
		Method:      req.Method,
		Body:        string(req.Body),
		ContentType: string(req.ContentType),
		Query:       string(req.Query),
		Header:      map[string]string{},
		Chain:       actor.CallChain(ctx),
	}
	for _, h := range req.Header {
		seen.Header[strings.ToLower(string(h.Name))] = string(h.Value)
	}
	f.mu.Lock()
	f.invoke = seen
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	resp := f.resp
	if resp.Status == 0 {
		resp.Status = 200
	}
	resp.SetRelease(func() { f.released.Add(1) })
	return &resp, nil
}

func (f *fakeBackend) GetState(_ context.Context, id actor.ID, key string) (statestore.Item, error) {
	f.record("GetState", id)
	f.mu.Lock()
	f.stateID, f.stateKey = id, key
	f.mu.Unlock()
	if f.err != nil {
		return statestore.Item{}, f.err
	}
	return f.item, nil
}

func (f *fakeBackend) Transact(_ context.Context, id actor.ID, ops []statestore.Op) error {
	f.record("Transact", id)
	f.mu.Lock()
	f.stateID = id
	f.ops = append([]statestore.Op(nil), ops...)
	f.mu.Unlock()
	return f.err
}

func (f *fakeBackend) CreateTimer(_ context.Context, id actor.ID, req silo.TimerRequest) error {
	f.record("CreateTimer", id)
	f.mu.Lock()
	req.Data = append([]byte(nil), req.Data...)
	f.timer = req
	f.mu.Unlock()
	return f.err
}

func (f *fakeBackend) DeleteTimer(_ context.Context, id actor.ID, name string) error {
	f.record("DeleteTimer", id)
	f.mu.Lock()
	f.name = name
	f.mu.Unlock()
	return f.err
}

func (f *fakeBackend) CreateReminder(_ context.Context, id actor.ID, req silo.ReminderRequest) error {
	f.record("CreateReminder", id)
	f.mu.Lock()
	req.Data = append([]byte(nil), req.Data...)
	f.reminder = req
	f.mu.Unlock()
	return f.err
}

func (f *fakeBackend) GetReminder(_ context.Context, id actor.ID, name string) (silo.ReminderInfo, error) {
	f.record("GetReminder", id)
	f.mu.Lock()
	f.name = name
	f.mu.Unlock()
	if f.err != nil {
		return silo.ReminderInfo{}, f.err
	}
	return f.info, nil
}

func (f *fakeBackend) DeleteReminder(_ context.Context, id actor.ID, name string) error {
	f.record("DeleteReminder", id)
	f.mu.Lock()
	f.name = name
	f.mu.Unlock()
	return f.err
}

func (f *fakeBackend) RegisterApp(_ context.Context, appID, url string) error {
	f.record("RegisterApp "+appID, actor.ID{})
	f.mu.Lock()
	f.appID, f.appURL = appID, url
	f.mu.Unlock()
	return f.err
}

func (f *fakeBackend) UnregisterApp(_ context.Context, appID string) error {
	f.record("UnregisterApp "+appID, actor.ID{})
	f.mu.Lock()
	f.appID = appID
	f.mu.Unlock()
	return f.err
}

func (f *fakeBackend) Metadata() silo.Metadata {
	f.record("Metadata", actor.ID{})
	return f.meta
}

func (f *fakeBackend) Ready() error {
	f.record("Ready", actor.ID{})
	return f.readyErr
}

var _ Backend = (*fakeBackend)(nil)

// do runs one request through h in memory and returns a copy of the response.
// hdr holds header name/value pairs.
func do(t testing.TB, h fasthttp.RequestHandler, method, uri, body string, hdr ...string) *fasthttp.Response {
	t.Helper()
	if len(hdr)%2 != 0 {
		t.Fatalf("do: odd header list %q", hdr)
	}
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	if body != "" {
		req.SetBodyString(body)
	}
	for i := 0; i < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	h(&ctx)
	resp := new(fasthttp.Response)
	ctx.Response.CopyTo(resp)
	return resp
}

// newServer returns a gateway over a fresh fake backend.
func newServer(cfg Config) (*fakeBackend, fasthttp.RequestHandler) {
	f := &fakeBackend{}
	return f, New(f, cfg).Handler()
}

// wantStatus checks a successful response's status.
func wantStatus(t *testing.T, what string, resp *fasthttp.Response, status int) {
	t.Helper()
	if resp.StatusCode() != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, resp.StatusCode(), status, resp.Body())
	}
}

// wantError checks that resp is the protocol's JSON error with this status and
// code, whose message contains every string of mentions.
func wantError(t *testing.T, what string, resp *fasthttp.Response, status int, code string, mentions ...string) string {
	t.Helper()
	if resp.StatusCode() != status {
		t.Errorf("%s: status %d, want %d; body %s", what, resp.StatusCode(), status, resp.Body())
	}
	if ct := string(resp.Header.ContentType()); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var fields map[string]any
	if err := json.Unmarshal(resp.Body(), &fields); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", what, resp.Body(), err)
	}
	if len(fields) != 2 {
		t.Errorf("%s: body %s has %d fields, want errorCode and message only", what, resp.Body(), len(fields))
	}
	gotCode, _ := fields["errorCode"].(string)
	msg, _ := fields["message"].(string)
	if gotCode != code {
		t.Errorf("%s: errorCode %q, want %q (message %q)", what, gotCode, code, msg)
	}
	if msg == "" {
		t.Errorf("%s: empty message", what)
	}
	for _, m := range mentions {
		if !strings.Contains(msg, m) {
			t.Errorf("%s: message %q does not mention %q", what, msg, m)
		}
	}
	return msg
}

// wantCalls checks the backend's calls, in order.
func wantCalls(t *testing.T, what string, f *fakeBackend, want ...string) {
	t.Helper()
	got := f.Calls()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("%s: backend calls %q, want %q", what, got, want)
	}
}
