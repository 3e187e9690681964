package actor

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Observer is told what the runtime does, per actor type, for metrics. The
// runtime asks for a type's TypeObserver once, when the type is first
// registered, and calls it on every turn, so its methods must be cheap and
// must not allocate. A nil Config.Observer observes nothing.
type Observer interface {
	Type(actorType string) TypeObserver
}

// TypeObserver is told about the turns and activations of one actor type.
type TypeObserver interface {
	// TurnStarted: a turn got the actor after waiting for wait (for the
	// actor's earlier turns and its activation).
	TurnStarted(wait time.Duration)
	// TurnEnded: a turn that started ran for run and failed with err (nil
	// when it succeeded).
	TurnEnded(run time.Duration, err error)
	Activated()
	Deactivated()
}

// noTypeObserver observes nothing.
type noTypeObserver struct{}

func (noTypeObserver) TurnStarted(time.Duration)      {}
func (noTypeObserver) TurnEnded(time.Duration, error) {}
func (noTypeObserver) Activated()                     {}
func (noTypeObserver) Deactivated()                   {}

// Span attributes of a turn.
var (
	attrActorType = attribute.Key("granary.actor.type")
	attrActorID   = attribute.Key("granary.actor.id")
	attrQueueWait = attribute.Key("granary.turn.queue_wait_ms")
)

// startTurnSpan starts the span of a turn of id when the runtime traces.
func (rt *Runtime) startTurnSpan(ctx context.Context, id ID) (context.Context, trace.Span) {
	if rt.tracer == nil {
		return ctx, nil
	}
	return rt.tracer.Start(ctx, "actor turn "+id.Type, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attrActorType.String(id.Type), attrActorID.String(id.ID)))
}

// endTurnSpan ends span (nil when not tracing) with the turn's outcome.
func endTurnSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// turnAdmitted records on span (nil when not tracing) how long the turn waited.
func turnAdmitted(span trace.Span, wait time.Duration) {
	if span == nil {
		return
	}
	span.AddEvent("turn started", trace.WithAttributes(attrQueueWait.Float64(float64(wait)/float64(time.Millisecond))))
	span.SetAttributes(attrQueueWait.Float64(float64(wait) / float64(time.Millisecond)))
}
