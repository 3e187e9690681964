package callback_test

import (
	"context"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
	"github.com/granaryhq/granary/statestore/memstore"
)

type appCalls struct {
	mu       sync.Mutex
	statuses []int
}

func (a *appCalls) Called(_ time.Duration, status int, _ error) {
	a.mu.Lock()
	a.statuses = append(a.statuses, status)
	a.mu.Unlock()
}

// Each actor call to the app is observed and made a client span, whose
// context the app receives in traceparent in place of the client's.
func TestAppCallsAreObservedAndTraced(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	exp := tracetest.NewInMemoryExporter()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer("test")
	calls := map[string]*appCalls{}
	opts := calmOptions()
	opts.Tracer = tracer
	opts.Observer = func(appID string) callback.AppObserver {
		calls[appID] = &appCalls{}
		return calls[appID]
	}
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "shop", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	app.reset()
	tctx, parent := tracer.Start(ctx, "turn")
	clientTP := []actor.HeaderField{{Name: []byte("traceparent"), Value: []byte("00-11111111111111111111111111111111-2222222222222222-01")}}
	if _, _, _, _, err := invoke(tctx, rt, "Counter", "a", "m", &actor.Request{Header: clientTP}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	var span tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == "app call shop" {
			span = s
		}
	}
	if span.Name == "" || span.SpanKind != trace.SpanKindClient || span.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("no client span of the app call under the turn: %+v", exp.GetSpans())
	}
	got := app.Requests("/actors/Counter/a/method/m")
	if len(got) != 1 {
		t.Fatalf("the app got %d calls", len(got))
	}
	want := "00-" + parent.SpanContext().TraceID().String() + "-" + span.SpanContext.SpanID().String() + "-01"
	if tp := got[0].Header.Values("Traceparent"); len(tp) != 1 || tp[0] != want {
		t.Errorf("the app got traceparent %q, want [%q]", tp, want)
	}
	c := calls["shop"]
	if c == nil || len(c.statuses) == 0 || c.statuses[len(c.statuses)-1] != 200 {
		t.Fatalf("the app's calls observed: %+v", c)
	}
}
