package observed

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
	"github.com/granaryhq/granary/statestore/storetest"
)

// The wrapper passes the conformance suite: it changes nothing a store does.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) statestore.Store {
		s := Wrap(memstore.New(), "mem", func(string, string, time.Duration, bool) {}, nil)
		if _, ok := s.(statestore.MultiTransactor); !ok {
			t.Fatal("the wrapper of a MultiTransactor is not one")
		}
		return s
	})
}

type op struct {
	store, op string
	failed    bool
}

type recorder struct {
	mu  sync.Mutex
	ops []op
}

func (r *recorder) record(store, name string, _ time.Duration, failed bool) {
	r.mu.Lock()
	r.ops = append(r.ops, op{store, name, failed})
	r.mu.Unlock()
}

// failingStore fails every call.
type failingStore struct{ statestore.Store }

var errDown = errors.New("store down")

func (failingStore) Get(context.Context, string) (statestore.Item, error) {
	return statestore.Item{}, errDown
}

func TestRecordsOperationsAndFailures(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	s := Wrap(memstore.New(), "mem", rec.record, nil)
	if err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{{Kind: statestore.Put, Key: "k", Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "absent"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("Get of an absent key: %v", err)
	}
	err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{{Kind: statestore.Put, Key: "k", Value: []byte("w"), ETag: "stale"}}})
	if !errors.Is(err, statestore.ErrETagMismatch) {
		t.Fatalf("stale ETag: %v", err)
	}
	if _, err := s.BulkGet(ctx, []string{"k"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scan(ctx, "i", "", 10); err != nil {
		t.Fatal(err)
	}
	s.(statestore.MultiTransactor).TransactMany(ctx, []statestore.Txn{{Ops: []statestore.Op{{Kind: statestore.Delete, Key: "k"}}}})
	broken := Wrap(failingStore{memstore.New()}, "broken", rec.record, nil)
	if _, ok := broken.(statestore.MultiTransactor); ok {
		t.Fatal("the wrapper of a store without TransactMany claims it")
	}
	if _, err := broken.Get(ctx, "k"); !errors.Is(err, errDown) {
		t.Fatalf("failing Get: %v", err)
	}
	want := []op{
		{"mem", "transact", false}, {"mem", "get", false}, {"mem", "transact", false},
		{"mem", "bulk_get", false}, {"mem", "scan", false}, {"mem", "transact_many", false},
		{"broken", "get", true},
	}
	if len(rec.ops) != len(want) {
		t.Fatalf("recorded %v, want %v", rec.ops, want)
	}
	for i := range want {
		if rec.ops[i] != want[i] {
			t.Errorf("operation %d: %v, want %v", i, rec.ops[i], want[i])
		}
	}
}

// Spans are made only within a trace, as children of the caller's span.
func TestSpansWithinATrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tracer := tp.Tracer("test")
	s := Wrap(memstore.New(), "mem", nil, tracer)
	if _, err := s.Get(context.Background(), "k"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans outside a trace", n)
	}
	ctx, parent := tracer.Start(context.Background(), "turn")
	if _, err := s.Get(ctx, "k"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatal(err)
	}
	parent.End()
	spans := exp.GetSpans()
	if len(spans) != 2 || spans[0].Name != "store get" || spans[0].Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("spans %+v, want store get under the turn", spans)
	}
	if Wrap(memstore.New(), "mem", nil, nil) == nil {
		t.Fatal("nil")
	}
	raw := memstore.New()
	if Wrap(raw, "mem", nil, nil) != statestore.Store(raw) {
		t.Fatal("with neither metrics nor tracing the store is not returned as it is")
	}
}
