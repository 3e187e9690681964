// Package observed wraps a statestore.Store so that each operation is
// timed for metrics and, when tracing, made a span of the caller's trace.
// The wrapper changes nothing else: every call goes to the store as it came.
package observed

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/statestore"
)

// Recorder is told of each operation: the store's name, the operation, how
// long it took and whether it failed. A key absent, a condition or a fence
// that refused a write is an answer, not a failure.
type Recorder func(store, op string, d time.Duration, failed bool)

// Wrap returns s, observed. record may be nil (no metrics), and tracer nil
// (no spans); with both nil it returns s itself. The wrapper is a
// statestore.MultiTransactor when s is one.
func Wrap(s statestore.Store, name string, record Recorder, tracer trace.Tracer) statestore.Store {
	if record == nil && tracer == nil {
		return s
	}
	if record == nil {
		record = func(string, string, time.Duration, bool) {}
	}
	o := &store{s: s, name: name, record: record, tracer: tracer}
	if m, ok := s.(statestore.MultiTransactor); ok {
		return &multiStore{store: o, m: m}
	}
	return o
}

type store struct {
	s      statestore.Store
	name   string
	record Recorder
	tracer trace.Tracer
}

// Operation names, as the metrics label them.
const (
	opGet          = "get"
	opBulkGet      = "bulk_get"
	opTransact     = "transact"
	opScan         = "scan"
	opTransactMany = "transact_many"
)

// begin starts timing op and, when tracing within a trace, its span.
func (o *store) begin(ctx context.Context, op string) (context.Context, time.Time, trace.Span) {
	var span trace.Span
	if o.tracer != nil && trace.SpanContextFromContext(ctx).IsValid() {
		ctx, span = o.tracer.Start(ctx, "store "+op, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", o.name), attribute.String("db.operation.name", op)))
	}
	return ctx, time.Now(), span
}

func (o *store) end(op string, began time.Time, span trace.Span, err error) {
	failed := failure(err)
	o.record(o.name, op, time.Since(began), failed)
	if span != nil {
		if failed {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// failure reports whether err is a failure of the store rather than an
// answer: absent key, condition or fence.
func failure(err error) bool {
	return err != nil && !errors.Is(err, statestore.ErrNotFound) &&
		!errors.Is(err, statestore.ErrETagMismatch) && !errors.Is(err, statestore.ErrFenced)
}

func (o *store) Get(ctx context.Context, key string) (statestore.Item, error) {
	ctx, began, span := o.begin(ctx, opGet)
	it, err := o.s.Get(ctx, key)
	o.end(opGet, began, span, err)
	return it, err
}

func (o *store) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	ctx, began, span := o.begin(ctx, opBulkGet)
	items, err := o.s.BulkGet(ctx, keys)
	o.end(opBulkGet, began, span, err)
	return items, err
}

func (o *store) Transact(ctx context.Context, txn statestore.Txn) error {
	ctx, began, span := o.begin(ctx, opTransact)
	err := o.s.Transact(ctx, txn)
	o.end(opTransact, began, span, err)
	return err
}

func (o *store) Scan(ctx context.Context, index, after string, limit int) ([]statestore.Item, error) {
	ctx, began, span := o.begin(ctx, opScan)
	items, err := o.s.Scan(ctx, index, after, limit)
	o.end(opScan, began, span, err)
	return items, err
}

func (o *store) Close() error { return o.s.Close() }

// Unwrap returns the store observed.
func (o *store) Unwrap() statestore.Store { return o.s }

// multiStore is the wrapper of a MultiTransactor.
type multiStore struct {
	*store
	m statestore.MultiTransactor
}

func (o *multiStore) TransactMany(ctx context.Context, txns []statestore.Txn) []error {
	ctx, began, span := o.begin(ctx, opTransactMany)
	errs := o.m.TransactMany(ctx, txns)
	// The batch failed when the store did: then every transaction did.
	var err error
	if len(errs) > 0 && failure(errs[0]) {
		err = errs[0]
		for _, e := range errs[1:] {
			if !errors.Is(e, err) {
				err = nil
				break
			}
		}
	}
	o.end(opTransactMany, began, span, err)
	return errs
}
