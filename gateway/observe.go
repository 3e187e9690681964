package gateway

import (
	"bytes"
	"context"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/internal/tracing"
)

// Route names, the values of the metrics' route label: a fixed set, so the
// label's cardinality is bounded whatever clients send.
const (
	routeActorMethod    = "actors/method"
	routeActorState     = "actors/state"
	routeActorReminders = "actors/reminders"
	routeActorTimers    = "actors/timers"
	routeActorOther     = "actors/other"
	routeState          = "state"
	routePublish        = "publish"
	routeBulkPublish    = "publish/bulk"
	routeInvoke         = "invoke"
	routeMetadata       = "metadata"
	routeHealthz        = "healthz"
	routeApps           = "apps"
	routeOther          = "other"
)

var (
	prefixActors      = []byte("/v1.0/actors/")
	prefixState       = []byte("/v1.0/state/")
	prefixPublish     = []byte("/v1.0/publish/")
	prefixBulkPublish = []byte("/v1.0-alpha1/publish/bulk/")
	prefixApps        = []byte("/v1.0-alpha1/apps/")
	prefixHealthz     = []byte("/v1.0/healthz")
	pathMetadata      = []byte("/v1.0/metadata")
)

// routeName names the route of a request from its raw path, without
// allocating. A request naming an app in dapr-app-id is an invocation.
func routeName(path []byte, appHeader bool) string {
	switch {
	case bytes.HasPrefix(path, prefixActors):
		// {type}/{id}/{kind}/...
		rest := path[len(prefixActors):]
		for range 2 {
			i := bytes.IndexByte(rest, '/')
			if i < 0 {
				return routeActorOther
			}
			rest = rest[i+1:]
		}
		if i := bytes.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		switch string(rest) {
		case "method":
			return routeActorMethod
		case "state":
			return routeActorState
		case "reminders":
			return routeActorReminders
		case "timers":
			return routeActorTimers
		}
		return routeActorOther
	case bytes.HasPrefix(path, invokePrefix) || appHeader:
		return routeInvoke
	case bytes.HasPrefix(path, prefixState):
		return routeState
	case bytes.HasPrefix(path, prefixPublish):
		return routePublish
	case bytes.HasPrefix(path, prefixBulkPublish):
		return routeBulkPublish
	case bytes.Equal(path, pathMetadata):
		return routeMetadata
	case bytes.HasPrefix(path, prefixHealthz):
		return routeHealthz
	case bytes.HasPrefix(path, prefixApps):
		return routeApps
	}
	return routeOther
}

// observe serves ctx, timing it for the metrics and, when tracing, in a
// server span that continues the client's trace (W3C traceparent and
// tracestate). The request's trace headers are replaced by the span's, so
// the app a call reaches, and the silo it is forwarded to, continue it.
func (s *Server) observe(ctx *fasthttp.RequestCtx) {
	began := time.Now()
	route := routeName(ctx.URI().PathOriginal(), len(ctx.Request.Header.PeekBytes(headerAppID)) > 0)
	var span trace.Span
	if s.cfg.Tracer != nil {
		tctx := tracing.TraceContext.Extract(context.Background(), tracing.RequestCarrier{Req: &ctx.Request})
		tctx, span = s.cfg.Tracer.Start(tctx, "gateway "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.route", route),
				attribute.String("http.request.method", string(ctx.Method())),
				attribute.String("url.path", string(ctx.URI().PathOriginal()))))
		tracing.TraceContext.Inject(tctx, tracing.RequestCarrier{Req: &ctx.Request})
		ctx.SetUserValue(traceContextKey, tctx)
	}
	s.serve(ctx)
	status := ctx.Response.StatusCode()
	if s.cfg.ObserveRequest != nil {
		s.cfg.ObserveRequest(route, status, time.Since(began))
	}
	if span != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, fasthttp.StatusMessage(status))
		}
		span.End()
	}
}

// traceContextKey is the user value under which a traced request keeps the
// context of its span.
const traceContextKey = "granary.traceContext"

// callContext is the context the calls a request makes run under: fallback,
// or when the request is traced, the context of its span.
func callContext(ctx *fasthttp.RequestCtx, fallback context.Context) context.Context {
	if tctx, ok := ctx.UserValue(traceContextKey).(context.Context); ok {
		return tctx
	}
	return fallback
}
