package actor_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore/memstore"
)

// countingObserver counts what the runtime reports, per type.
type countingObserver struct {
	mu     sync.Mutex
	counts map[string]*typeCounts
}

type typeCounts struct {
	mu                          *sync.Mutex
	started, ended, failed      int
	activated, deactivated      int
	inFlight, maxInFlight       int
	longestWait, longestRunning time.Duration
}

func (o *countingObserver) Type(name string) actor.TypeObserver {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := &typeCounts{mu: &o.mu}
	o.counts[name] = c
	return c
}

func (c *typeCounts) TurnStarted(wait time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started++
	c.inFlight++
	c.maxInFlight = max(c.maxInFlight, c.inFlight)
	c.longestWait = max(c.longestWait, wait)
}

func (c *typeCounts) TurnEnded(run time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended++
	c.inFlight--
	c.longestRunning = max(c.longestRunning, run)
	if err != nil {
		c.failed++
	}
}

func (c *typeCounts) Activated()   { c.mu.Lock(); c.activated++; c.mu.Unlock() }
func (c *typeCounts) Deactivated() { c.mu.Lock(); c.deactivated++; c.mu.Unlock() }

func TestObserverAndTracerSeeEveryTurn(t *testing.T) {
	obs := &countingObserver{counts: map[string]*typeCounts{}}
	exp := tracetest.NewInMemoryExporter()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer("test")
	rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger(), Observer: obs, Tracer: tracer})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	rec := newRecorder()
	release, entered := make(chan struct{}), make(chan struct{})
	rec.handlers["slow"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
		close(entered)
		<-release
		return nil, nil
	}
	rec.handlers["fail"] = func(context.Context, *actor.Self, []byte) ([]byte, error) { return nil, errors.New("boom") }
	rec.register(t, rt, "T", actor.TypeConfig{})

	ctx, parent := tracer.Start(context.Background(), "client")
	// One slow turn holds the actor while a second call waits behind it.
	slow := make(chan error, 1)
	go func() { _, err := call(rt, ctx, "T", "a", "slow", ""); slow <- err }()
	waiting := make(chan error, 1)
	<-entered
	go func() {
		_, err := call(rt, ctx, "T", "a", "m", "")
		waiting <- err
	}()
	time.Sleep(60 * time.Millisecond)
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Fatal(err)
	}
	if _, err := call(rt, ctx, "T", "b", "fail", ""); err == nil {
		t.Fatal("the failing method did not fail")
	}
	parent.End()
	rt.Unregister(context.Background(), "T")

	c := obs.counts["T"]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started != 3 || c.ended != 3 || c.failed != 1 || c.inFlight != 0 || c.maxInFlight != 1 {
		t.Errorf("turns: started %d, ended %d, failed %d, in flight %d (max %d)", c.started, c.ended, c.failed, c.inFlight, c.maxInFlight)
	}
	if c.activated != 2 || c.deactivated != 2 {
		t.Errorf("activated %d, deactivated %d; want 2 and 2", c.activated, c.deactivated)
	}
	if c.longestWait < 30*time.Millisecond || c.longestRunning < 60*time.Millisecond {
		t.Errorf("longest wait %v (the call behind the slow turn), longest turn %v", c.longestWait, c.longestRunning)
	}

	var turns, failed int
	for _, s := range exp.GetSpans() {
		if s.Name != "actor turn T" {
			continue
		}
		turns++
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("a turn span is not a child of the caller's")
		}
		var wait bool
		for _, a := range s.Attributes {
			wait = wait || a.Key == "granary.turn.queue_wait_ms"
		}
		if !wait {
			t.Errorf("a turn span has no queue wait")
		}
		if s.Status.Code.String() == "Error" {
			failed++
		}
	}
	if turns != 3 || failed != 1 {
		t.Errorf("%d turn spans (%d failed), want 3 (1)", turns, failed)
	}
}
