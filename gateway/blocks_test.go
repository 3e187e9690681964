package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/blocks"
	silopb "github.com/granaryhq/granary/proto/silo"
)

// fakeBlocks records what the block routes were asked.
type fakeBlocks struct {
	method, store, topic, appID, path string
	rest                              []string
	bulk, forwarded                   bool
	err                               error
}

func (f *fakeBlocks) Serve(ctx *fasthttp.RequestCtx, method string, rest []string) error {
	f.method, f.rest = method, rest
	if f.err != nil {
		return f.err
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (f *fakeBlocks) ServePublish(ctx *fasthttp.RequestCtx, topic string) error {
	f.topic, f.bulk = topic, false
	ctx.SetStatusCode(http.StatusNoContent)
	return f.err
}

func (f *fakeBlocks) ServeBulkPublish(ctx *fasthttp.RequestCtx, topic string) error {
	f.topic, f.bulk = topic, true
	ctx.SetStatusCode(http.StatusOK)
	return f.err
}

type fakeInvoker struct{ fakeBlocks }

func (f *fakeInvoker) Serve(ctx *fasthttp.RequestCtx, appID string, path []byte, forwarded bool) error {
	f.appID, f.path, f.forwarded = appID, string(path), forwarded
	ctx.SetStatusCode(http.StatusAccepted)
	return f.err
}

func newBlocksServer() (*fakeBlocks, *fakeInvoker, *Server) {
	fb, inv := &fakeBlocks{}, &fakeInvoker{}
	s := New(&fakeBackend{}, Config{})
	s.SetBlocks(Blocks{State: map[string]StateStore{"statestore": fb, "orders": fb}, PubSub: map[string]PubSub{"pubsub": fb}, Invoke: inv})
	return fb, inv, s
}

func TestBlockRoutes(t *testing.T) {
	fb, inv, s := newBlocksServer()
	h := s.Handler()

	wantStatus(t, "state get", do(t, h, "GET", "/v1.0/state/orders/a%2Fb/c", ""), 204)
	if fb.method != "GET" || len(fb.rest) != 2 || fb.rest[0] != "a/b" || fb.rest[1] != "c" {
		t.Errorf("state route got %s %q", fb.method, fb.rest)
	}
	wantError(t, "unknown store", do(t, h, "GET", "/v1.0/state/nope/a", ""), 400, "ERR_STATE_STORE_NOT_FOUND", "nope", "orders, statestore")

	wantStatus(t, "publish", do(t, h, "POST", "/v1.0/publish/pubsub/orders", "{}"), 204)
	if fb.topic != "orders" || fb.bulk {
		t.Errorf("publish got topic %q bulk %v", fb.topic, fb.bulk)
	}
	wantStatus(t, "bulk publish", do(t, h, "POST", "/v1.0-alpha1/publish/bulk/pubsub/orders", "[]"), 200)
	if fb.topic != "orders" || !fb.bulk {
		t.Errorf("bulk publish got topic %q bulk %v", fb.topic, fb.bulk)
	}
	wantError(t, "unknown pubsub", do(t, h, "POST", "/v1.0/publish/nope/t", "{}"), 404, "ERR_PUBSUB_NOT_FOUND", "nope", "pubsub")
	wantError(t, "empty topic", do(t, h, "POST", "/v1.0/publish/pubsub/", "{}"), 404, "ERR_TOPIC_NAME_EMPTY")
	wantError(t, "GET publish", do(t, h, "GET", "/v1.0/publish/pubsub/t", ""), 405, codeMethodNotAllowed)

	for _, c := range []struct{ uri, app, path string }{
		{"/v1.0/invoke/shop/method/orders/1?x=%20", "shop", "/orders/1"},
		{"/v1.0/invoke/shop/method/a%2Fb", "shop", "/a%2Fb"},
		{"/v1.0/invoke/my%20app/method", "my app", "/"},
		{"/v1.0/invoke/shop/method/", "shop", "/"},
	} {
		wantStatus(t, c.uri, do(t, h, "PUT", c.uri, "x"), 202)
		if inv.appID != c.app || inv.path != c.path || inv.forwarded {
			t.Errorf("%s: invoked app %q path %q forwarded %v, want %q %q", c.uri, inv.appID, inv.path, inv.forwarded, c.app, c.path)
		}
	}
	wantError(t, "invoke without /method", do(t, h, "POST", "/v1.0/invoke/shop/methods/x", ""), 404, codeNotFound)
	wantError(t, "invoke without a method", do(t, h, "POST", "/v1.0/invoke/shop", ""), 404, codeNotFound)

	// The header form takes any path to the app it names.
	wantStatus(t, "dapr-app-id", do(t, h, "POST", "/orders/7?y=1", "x", "dapr-app-id", "shop"), 202)
	if inv.appID != "shop" || inv.path != "/orders/7" {
		t.Errorf("dapr-app-id: app %q path %q", inv.appID, inv.path)
	}
	wantError(t, "dapr-app-id with a bad id", do(t, h, "POST", "/x", "", "dapr-app-id", "a/b"), 400, codeBadRequest)
	wantStatus(t, "outbound health", do(t, h, "GET", "/v1.0/healthz/outbound", ""), 204)
}

func TestBlockErrorsKeepTheirStatusAndCode(t *testing.T) {
	fb, _, s := newBlocksServer()
	h := s.Handler()
	fb.err = blocks.Errorf(http.StatusConflict, "ERR_STATE_SAVE", "possible etag mismatch")
	wantError(t, "block error", do(t, h, "POST", "/v1.0/state/statestore", "[]"), 409, "ERR_STATE_SAVE", "etag")
	fb.err = blocks.NotAllowed("PATCH", "GET", "DELETE")
	resp := do(t, h, "PATCH", "/v1.0/state/statestore/k", "")
	wantError(t, "405", resp, 405, "ERR_METHOD_NOT_ALLOWED")
	if got := string(resp.Header.Peek("Allow")); got != "GET, DELETE" {
		t.Errorf("Allow %q", got)
	}
	fb.err = errors.New("disk on fire")
	wantError(t, "plain error", do(t, h, "POST", "/v1.0/state/statestore", "[]"), 500, "ERR_STATE_SAVE", "disk on fire")
}

func TestBlocksNotConfigured(t *testing.T) {
	_, h := newServer(Config{})
	wantError(t, "state", do(t, h, "GET", "/v1.0/state/statestore/a", ""), 500, "ERR_STATE_STORES_NOT_CONFIGURED")
	wantError(t, "publish", do(t, h, "POST", "/v1.0/publish/pubsub/t", "{}"), 400, "ERR_PUBSUB_NOT_CONFIGURED")
	wantError(t, "invoke", do(t, h, "POST", "/v1.0/invoke/a/method/b", ""), 500, "ERR_DIRECT_INVOKE")
}

// CallActor carries a system actor's *blocks.Error back as one, and its
// body as it is.
func TestCallActor(t *testing.T) {
	f := &fakeBackend{}
	s := New(f, Config{})
	f.resp = actor.Response{Status: 200, Body: []byte(`{"ok":true}`)}
	body, err := s.CallActor(context.Background(), actor.ID{Type: "granary.x", ID: "1"}, "m", []byte("in"))
	if err != nil || string(body) != `{"ok":true}` {
		t.Fatalf("CallActor: %q, %v", body, err)
	}
	if f.invoke.ID != (actor.ID{Type: "granary.x", ID: "1"}) || f.invoke.Method != "m" || f.invoke.Body != "in" {
		t.Fatalf("invoked %+v", f.invoke)
	}
	f.err = blocks.Errorf(http.StatusConflict, "ERR_X", "conflict")
	_, err = s.CallActor(context.Background(), actor.ID{Type: "granary.x", ID: "1"}, "m", nil)
	if be, ok := errors.AsType[*blocks.Error](err); !ok || be.Status != 409 || be.Code != "ERR_X" || be.Message != "conflict" {
		t.Fatalf("CallActor error %#v", err)
	}
	f.err = actor.ErrClosed
	_, err = s.CallActor(context.Background(), actor.ID{Type: "granary.x", ID: "1"}, "m", nil)
	if be, ok := errors.AsType[*blocks.Error](err); !ok || be.Status != 503 {
		t.Fatalf("CallActor of a closed runtime %#v", err)
	}
}

// A block's call forwarded to the actor's owner carries the gateway's API
// token: the owner's gateway checks it as it checks a client's.
func TestCallActorForwardsWithTheToken(t *testing.T) {
	c := &fakeCluster{locs: []Location{{Hosted: true, Addr: "10.0.0.2:7500", Version: 4}}, window: time.Second,
		reply: &silopb.ForwardReply{Status: 200, Body: []byte("ok")}}
	s := New(&fakeBackend{}, Config{Cluster: c, APIToken: "secret"})
	body, err := s.CallActor(context.Background(), actor.ID{Type: "granary.x", ID: "1"}, "m", nil)
	if err != nil || string(body) != "ok" {
		t.Fatalf("CallActor: %q, %v", body, err)
	}
	if len(c.tokens) != 1 || c.tokens[0] != "secret" {
		t.Fatalf("forwarded with tokens %q", c.tokens)
	}
}
