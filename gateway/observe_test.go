package gateway

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/actor"
)

func TestRouteName(t *testing.T) {
	for _, c := range []struct {
		path   string
		appHdr bool
		want   string
	}{
		{"/v1.0/actors/T/a/method/m", false, routeActorMethod},
		{"/v1.0/actors/T/a/method/m/deeper", false, routeActorMethod},
		{"/v1.0/actors/T/a/state", false, routeActorState},
		{"/v1.0/actors/T/a/state/k", false, routeActorState},
		{"/v1.0/actors/T/a/reminders/r", false, routeActorReminders},
		{"/v1.0/actors/T/a/timers/t", false, routeActorTimers},
		{"/v1.0/actors/T/a", false, routeActorOther},
		{"/v1.0/actors/T/a/me%74hod/m", false, routeActorOther},
		{"/v1.0/actors/", false, routeActorOther},
		{"/v1.0/state/statestore", false, routeState},
		{"/v1.0/state/statestore/k", false, routeState},
		{"/v1.0/publish/pubsub/t", false, routePublish},
		{"/v1.0-alpha1/publish/bulk/pubsub/t", false, routeBulkPublish},
		{"/v1.0/invoke/app/method/x", false, routeInvoke},
		{"/anything", true, routeInvoke},
		{"/v1.0/metadata", false, routeMetadata},
		{"/v1.0/metadata/x", false, routeOther},
		{"/v1.0/healthz", false, routeHealthz},
		{"/v1.0/healthz/outbound", false, routeHealthz},
		{"/v1.0-alpha1/apps/a", false, routeApps},
		{"/", false, routeOther},
		{"/secret/" + string(make([]byte, 100)), false, routeOther},
	} {
		if got := routeName([]byte(c.path), c.appHdr); got != c.want {
			t.Errorf("routeName(%q, %v) = %q, want %q", c.path, c.appHdr, got, c.want)
		}
	}
}

// spanBackend records the span its Invoke was called under.
type spanBackend struct {
	echoBackend
	got trace.SpanContext
}

func (b *spanBackend) Invoke(ctx context.Context, id actor.ID, r *actor.Request) (*actor.Response, error) {
	b.got = trace.SpanContextFromContext(ctx)
	return b.echoBackend.Invoke(ctx, id, r)
}

// A traced request continues the client's trace, runs its call under the
// gateway's span and passes the span on in traceparent.
func TestRequestContinuesTheClientsTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	be := &spanBackend{echoBackend: echoBackend{resp: actor.Response{Status: 200}}}
	var observed []string
	h := New(be, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Tracer: tp.Tracer("t"),
		ObserveRequest: func(route string, status int, _ time.Duration) { observed = append(observed, route) }}).Handler()
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1.0/actors/T/a/method/m")
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx.Init(&req, nil, nil)
	h(&ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.Name != "gateway actors/method" || s.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		s.Parent.SpanID().String() != "00f067aa0ba902b7" || s.SpanKind != trace.SpanKindServer {
		t.Fatalf("span %s in trace %s under %s (kind %v)", s.Name, s.SpanContext.TraceID(), s.Parent.SpanID(), s.SpanKind)
	}
	if be.got.SpanID() != s.SpanContext.SpanID() {
		t.Errorf("the call ran under span %s, not the gateway's %s", be.got.SpanID(), s.SpanContext.SpanID())
	}
	if got := string(ctx.Request.Header.Peek("traceparent")); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-"+s.SpanContext.SpanID().String()+"-01" {
		t.Errorf("traceparent passed on is %q", got)
	}
	if len(observed) != 1 || observed[0] != routeActorMethod {
		t.Errorf("observed %v", observed)
	}
}
