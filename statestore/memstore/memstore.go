// Package memstore is the in-memory twin of the durable state stores: a
// statestore.Store with the same semantics, kept in a map, for unit tests of
// the code built on the store. Nothing survives the process.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/statestore"
)

// Store is an in-memory statestore.Store. It is safe for concurrent use.
type Store struct {
	clock clock.Clock

	mu      sync.Mutex
	closed  bool
	seq     uint64 // the last ETag drawn; ETags never repeat
	items   map[string]*entry
	indexes map[string]map[string]struct{} // index name -> member keys
}

type entry struct {
	value   []byte
	etag    string
	expires time.Time // zero: never
	index   string
}

// Option configures a Store.
type Option func(*Store)

// WithClock makes the store read time, for TTLs, from c instead of the wall clock.
func WithClock(c clock.Clock) Option {
	return func(s *Store) { s.clock = c }
}

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{
		clock:   clock.Real,
		items:   map[string]*entry{},
		indexes: map[string]map[string]struct{}{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

var _ statestore.Store = (*Store)(nil)

// live returns the entry of key unless it is absent or expired; an expired
// entry is removed on the way. It requires s.mu.
func (s *Store) live(key string, now time.Time) *entry {
	e := s.items[key]
	if e == nil {
		return nil
	}
	if !e.expires.IsZero() && !now.Before(e.expires) {
		s.remove(key, e)
		return nil
	}
	return e
}

// remove drops key and its index membership. It requires s.mu.
func (s *Store) remove(key string, e *entry) {
	delete(s.items, key)
	if e.index == "" {
		return
	}
	members := s.indexes[e.index]
	delete(members, key)
	if len(members) == 0 {
		delete(s.indexes, e.index)
	}
}

func (e *entry) item(key string) statestore.Item {
	return statestore.Item{Key: key, Value: slices.Clone(e.value), ETag: e.etag, Expires: e.expires}
}

// begin locks the store for a call, failing when it is closed or ctx is done.
func (s *Store) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %s: %w", op, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("memstore: %s: %w", op, statestore.ErrClosed)
	}
	return nil
}

// Get returns the live item stored under key.
func (s *Store) Get(ctx context.Context, key string) (statestore.Item, error) {
	if err := s.begin(ctx, "get"); err != nil {
		return statestore.Item{}, err
	}
	defer s.mu.Unlock()
	e := s.live(key, s.clock.Now())
	if e == nil {
		return statestore.Item{}, fmt.Errorf("memstore: get %q: %w", key, statestore.ErrNotFound)
	}
	return e.item(key), nil
}

// BulkGet returns one item per key, in the order of keys, all read at one instant.
func (s *Store) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	if err := s.begin(ctx, "bulk get"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now := s.clock.Now()
	items := make([]statestore.Item, len(keys))
	for i, key := range keys {
		if e := s.live(key, now); e != nil {
			items[i] = e.item(key)
		} else {
			items[i] = statestore.Item{Key: key}
		}
	}
	return items, nil
}

// Transact applies txn atomically.
func (s *Store) Transact(ctx context.Context, txn statestore.Txn) error {
	if err := txn.Validate(); err != nil {
		return fmt.Errorf("memstore: transact: %w", err)
	}
	if err := s.begin(ctx, "transact"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	now := s.clock.Now()
	if f := txn.Fence; f != nil {
		e := s.live(f.Key, now)
		if e == nil || !bytes.Equal(e.value, f.Record) {
			fe := &statestore.FencedError{Key: f.Key, Want: slices.Clone(f.Record)}
			if e != nil {
				fe.Found = slices.Clone(e.value)
			}
			return fmt.Errorf("memstore: transact: %w", fe)
		}
	}
	if err := s.check(txn.Ops, now); err != nil {
		return fmt.Errorf("memstore: transact: %w", err)
	}
	for _, op := range txn.Ops {
		s.apply(op, now)
	}
	return nil
}

// check evaluates the conditions of ops in order, each against the state as
// the earlier operations leave it, without changing anything. It requires s.mu.
func (s *Store) check(ops []statestore.Op, now time.Time) error {
	// pending holds the ETag each key will have after the operations so far;
	// "" means absent.
	pending := map[string]string{}
	next := s.seq
	for _, op := range ops {
		have, seen := pending[op.Key]
		if !seen {
			if e := s.live(op.Key, now); e != nil {
				have = e.etag
			}
		}
		if err := condition(op, have); err != nil {
			return err
		}
		if op.Kind == statestore.Put {
			next++
			pending[op.Key] = formatETag(next)
		} else {
			pending[op.Key] = ""
		}
	}
	return nil
}

// condition checks op's condition against have, the key's ETag ("" for absent).
func condition(op statestore.Op, have string) error {
	switch {
	case op.ETag != "" && op.ETag != have:
		return &statestore.ConditionError{Key: op.Key, Want: op.ETag, Have: orAbsent(have)}
	case op.ETag == "" && op.IfAbsent && have != "":
		return &statestore.ConditionError{Key: op.Key, Want: "absent", Have: have}
	}
	return nil
}

func orAbsent(etag string) string {
	if etag == "" {
		return "absent"
	}
	return etag
}

func formatETag(seq uint64) string { return strconv.FormatUint(seq, 10) }

// apply performs one checked operation. It requires s.mu.
func (s *Store) apply(op statestore.Op, now time.Time) {
	if old := s.items[op.Key]; old != nil {
		s.remove(op.Key, old)
	}
	if op.Kind == statestore.Delete {
		return
	}
	s.seq++
	e := &entry{value: slices.Clone(op.Value), etag: formatETag(s.seq), index: op.Index}
	if e.value == nil {
		e.value = []byte{}
	}
	if op.TTL > 0 {
		e.expires = now.Add(op.TTL)
	}
	s.items[op.Key] = e
	if op.Index != "" {
		members := s.indexes[op.Index]
		if members == nil {
			members = map[string]struct{}{}
			s.indexes[op.Index] = members
		}
		members[op.Key] = struct{}{}
	}
}

// Scan returns up to limit live items of index after the key after, in key order.
func (s *Store) Scan(ctx context.Context, index, after string, limit int) ([]statestore.Item, error) {
	if limit < 0 {
		return nil, fmt.Errorf("memstore: scan %q: negative limit %d", index, limit)
	}
	if err := s.begin(ctx, "scan"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now := s.clock.Now()
	var keys []string
	for k := range s.indexes[index] {
		if k > after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	items := []statestore.Item{}
	for _, k := range keys {
		if len(items) == limit {
			break
		}
		if e := s.live(k, now); e != nil {
			items = append(items, e.item(k))
		}
	}
	return items, nil
}

// Close empties the store. Calls after Close fail with statestore.ErrClosed;
// Close itself may be called again.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.items, s.indexes = nil, nil
	return nil
}

var _ statestore.MultiTransactor = (*Store)(nil)

// TransactMany applies the transactions in order, each as Transact would.
func (s *Store) TransactMany(ctx context.Context, txns []statestore.Txn) []error {
	errs := make([]error, len(txns))
	for i, txn := range txns {
		errs[i] = s.Transact(ctx, txn)
	}
	return errs
}
