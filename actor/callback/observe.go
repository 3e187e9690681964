package callback

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/internal/tracing"
)

// AppObserver is told about the actor calls to one app, for metrics. Its
// method runs on every call, so it must be cheap and must not allocate.
type AppObserver interface {
	// Called: a call answered status after d, or failed with err (status 0).
	Called(d time.Duration, status int, err error)
}

type noAppObserver struct{}

func (noAppObserver) Called(time.Duration, int, error) {}

func (o *Options) appObserver(appID string) AppObserver {
	if o.Observer == nil {
		return noAppObserver{}
	}
	return o.Observer(appID)
}

// startCallSpan starts the client span of one call to the app and writes its
// context into req's traceparent and tracestate, replacing the ones the
// client sent, so the app's spans nest under the call.
func (in *instance) startCallSpan(ctx context.Context, method string, req *fasthttp.Request) trace.Span {
	_, span := in.app.reg.opts.Tracer.Start(ctx, "app call "+in.app.id, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("granary.app.id", in.app.id),
			attribute.String("http.request.method", method),
			attribute.String("granary.actor.type", in.id.Type), attribute.String("granary.actor.id", in.id.ID)))
	tracing.TraceContext.Inject(trace.ContextWithSpan(ctx, span), tracing.RequestCarrier{Req: req})
	return span
}

func endCallSpan(span trace.Span, status int, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, "app answered "+fasthttp.StatusMessage(status))
		}
	}
	span.End()
}
