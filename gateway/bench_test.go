package gateway

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
)

// echoBackend answers every Invoke at once with a fixed response.
type echoBackend struct {
	fakeBackend
	resp actor.Response
}

func (e *echoBackend) Invoke(_ context.Context, _ actor.ID, _ *actor.Request) (*actor.Response, error) {
	return &e.resp, nil
}

// BenchmarkInvoke measures one actor method call through the handler, from a
// parsed request to a filled response, with a backend that answers immediately.
func BenchmarkInvoke(b *testing.B) { benchInvoke(b, nil) }

// BenchmarkInvokeObserved is BenchmarkInvoke with the request metrics on:
// the figure to hold against BenchmarkInvoke, allocations included.
func BenchmarkInvokeObserved(b *testing.B) {
	var n atomic.Int64
	benchInvoke(b, func(string, int, time.Duration) { n.Add(1) })
	if n.Load() == 0 {
		b.Fatal("no request observed")
	}
}

func benchInvoke(b *testing.B, observe func(string, int, time.Duration)) {
	be := &echoBackend{resp: actor.Response{
		Status:      200,
		Body:        []byte(`{"count":1}`),
		ContentType: []byte("application/json"),
	}}
	h := New(be, Config{APIToken: "tok", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ObserveRequest: observe}).Handler()

	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1.0/actors/Counter/c-1/method/increment")
	req.Header.SetContentType("application/json")
	req.Header.Set("dapr-api-token", "tok")
	req.SetBodyString(`{"by":1}`)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)

	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}
