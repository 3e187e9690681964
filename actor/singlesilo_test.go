package actor_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// countingStore counts the calls that reach the store and fails them all
// while failing is set.
type countingStore struct {
	*memstore.Store
	calls   atomic.Int64
	failing atomic.Bool
}

var errStoreDown = errors.New("store down")

func (s *countingStore) enter() error {
	s.calls.Add(1)
	if s.failing.Load() {
		return errStoreDown
	}
	return nil
}

func (s *countingStore) Get(ctx context.Context, key string) (statestore.Item, error) {
	if err := s.enter(); err != nil {
		return statestore.Item{}, err
	}
	return s.Store.Get(ctx, key)
}

func (s *countingStore) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	return s.Store.BulkGet(ctx, keys)
}

func (s *countingStore) Transact(ctx context.Context, txn statestore.Txn) error {
	if err := s.enter(); err != nil {
		return err
	}
	return s.Store.Transact(ctx, txn)
}

func (s *countingStore) TransactMany(ctx context.Context, txns []statestore.Txn) []error {
	if err := s.enter(); err != nil {
		errs := make([]error, len(txns))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	return s.Store.TransactMany(ctx, txns)
}

// logBuffer collects a logger's lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

var (
	devA  = statestore.Claim{Cluster: "dev/host-3500", Version: 4, Silo: "host-3500", Incarnation: "aaaa"}
	devB  = statestore.Claim{Cluster: "dev/host-3600", Version: 1, Silo: "host-3600", Incarnation: "bbbb"}
	typeT = "T"
)

func fenceRecords(t *testing.T, store statestore.Store, actorType string) []statestore.Item {
	t.Helper()
	keys := make([]string, statestore.ShardCount)
	for i := range keys {
		keys[i] = statestore.ShardFenceKey(actorType, i)
	}
	items, err := store.BulkGet(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// ClaimTypes claims every shard of the type, and a claimed shard is answered
// from memory: no store call per turn.
func TestSingleSiloClaimsEveryShardOnce(t *testing.T) {
	store := &countingStore{Store: memstore.New()}
	p := actor.NewSingleSilo(store, devA, quietLogger())
	if err := p.ClaimTypes(context.Background(), typeT); err != nil {
		t.Fatal(err)
	}
	for _, item := range fenceRecords(t, store, typeT) {
		if string(item.Value) != string(devA.HeldRecord()) {
			t.Fatalf("%s = %q, want the held claim", item.Key, item.Value)
		}
	}
	before := store.calls.Load()
	for _, id := range []string{"a", "b", "c", "d"} {
		c, err := p.Claim(context.Background(), actor.ID{Type: typeT, ID: id})
		if err != nil || c != devA {
			t.Fatalf("Claim(%s) = %v, %v; want %v", id, c, err, devA)
		}
	}
	if n := store.calls.Load() - before; n != 0 {
		t.Fatalf("Claim of claimed shards made %d store calls, want none", n)
	}
	if p.Held() != devA {
		t.Fatalf("Held() = %v", p.Held())
	}
}

// Without ClaimTypes, a type's shards are claimed in one batch on its first
// use: one BulkGet and one TransactMany.
func TestSingleSiloClaimsATypeOnFirstUse(t *testing.T) {
	store := &countingStore{Store: memstore.New()}
	rt, err := actor.New(actor.Config{Store: store, Logger: quietLogger(), Placement: actor.NewSingleSilo(store, devA, quietLogger())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	rec := newRecorder()
	rec.register(t, rt, typeT, actor.TypeConfig{})
	if _, err := call(rt, context.Background(), typeT, "a", "echo", ""); err != nil {
		t.Fatal(err)
	}
	if n := store.calls.Load(); n != 2 {
		t.Fatalf("the first call made %d store calls, want 2 (one BulkGet, one TransactMany)", n)
	}
	if got := fenceRecords(t, store, typeT)[statestore.ShardCount-1]; string(got.Value) != string(devA.HeldRecord()) {
		t.Fatalf("last shard's record = %q, want the held claim", got.Value)
	}
	before := store.calls.Load()
	if _, err := call(rt, context.Background(), typeT, "b", "echo", ""); err != nil {
		t.Fatal(err)
	}
	if n := store.calls.Load() - before; n != 0 {
		t.Fatalf("a call after the claim made %d store calls", n)
	}
}

// A second silo of another cluster on the same store serves none of the
// first one's shards: ClaimTypes reports the holder, the refusal is logged
// at error level, and calls answer ErrNotOwner without activating anything.
func TestSingleSiloRefusedByAnotherClusterNamesTheHolder(t *testing.T) {
	store := memstore.New()
	if err := actor.NewSingleSilo(store, devA, quietLogger()).ClaimTypes(context.Background(), typeT); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	second := actor.NewSingleSilo(store, devB, logs.logger())
	err := second.ClaimTypes(context.Background(), typeT)
	var ce *statestore.ClaimRefusedError
	if !errors.As(err, &ce) || ce.Holder != devA || !ce.OtherCluster {
		t.Fatalf("ClaimTypes on another cluster's shards: %v, want refused by %v", err, devA)
	}
	if !strings.Contains(err.Error(), "4096 of 4096 shards refused") {
		t.Errorf("ClaimTypes error %q does not count the refused shards", err)
	}
	line := logs.String()
	for _, want := range []string{"level=ERROR", "type=T", "refused=4096", "holder=" + devA.String(), "holderCluster=" + devA.Cluster} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}

	rt, err := actor.New(actor.Config{Store: store, Logger: quietLogger(), Placement: second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	rec := newRecorder()
	rec.register(t, rt, typeT, actor.TypeConfig{})
	_, err = call(rt, context.Background(), typeT, "a", "echo", "")
	if !errors.Is(err, actor.ErrNotOwner) || !errors.As(err, &ce) || ce.Holder != devA {
		t.Fatalf("call on a shard held by another cluster: %v, want ErrNotOwner naming %v", err, devA)
	}
	if n := activations(rec, "a"); n != 0 {
		t.Fatalf("the refused actor was activated %d times", n)
	}
	// The holder's records are untouched.
	for _, item := range fenceRecords(t, store, typeT) {
		if string(item.Value) != string(devA.HeldRecord()) {
			t.Fatalf("%s = %q after the refused claims", item.Key, item.Value)
		}
	}
}

// With TakeOver, the records of another cluster are claimed, and the silo
// that held them can write no more.
func TestSingleSiloTakeOver(t *testing.T) {
	store := memstore.New()
	first := actor.NewSingleSilo(store, devA, quietLogger())
	rt := newRuntimeWith(t, store, first)
	rec := newRecorder()
	rec.handlers["save"] = func(ctx context.Context, self *actor.Self, body []byte) ([]byte, error) {
		return body, self.Transact(ctx, statestore.Op{Kind: statestore.Put, Key: "k", Value: body})
	}
	rec.register(t, rt, typeT, actor.TypeConfig{})
	if _, err := call(rt, context.Background(), typeT, "a", "save", "1"); err != nil {
		t.Fatal(err)
	}
	if err := actor.NewSingleSilo(store, devB, quietLogger()).TakeOver().ClaimTypes(context.Background(), typeT); err != nil {
		t.Fatalf("take-over: %v", err)
	}
	if _, err := call(rt, context.Background(), typeT, "a", "save", "2"); !errors.Is(err, actor.ErrFenced) {
		t.Fatalf("write of the silo whose shards were taken over: %v, want ErrFenced", err)
	}
	if got := string(mustState(t, rt, actor.ID{Type: typeT, ID: "a"}, "k")); got != "1" {
		t.Fatalf("state = %q, want 1", got)
	}
}

// A silo restarted on the same store with a newer version of its cluster
// claims its shards back, and its predecessor can no longer write.
func TestSingleSiloRestartedAtANewerVersion(t *testing.T) {
	store := memstore.New()
	old := newRuntimeWith(t, store, actor.NewSingleSilo(store, devA, quietLogger()))
	recOld := newRecorder()
	recOld.handlers["save"] = func(ctx context.Context, self *actor.Self, body []byte) ([]byte, error) {
		return body, self.Transact(ctx, statestore.Op{Kind: statestore.Put, Key: "k", Value: body})
	}
	recOld.register(t, old, typeT, actor.TypeConfig{})
	if _, err := call(old, context.Background(), typeT, "a", "save", "old"); err != nil {
		t.Fatal(err)
	}
	// Same version, new incarnation: refused.
	same := devA
	same.Incarnation = "cccc"
	if err := actor.NewSingleSilo(store, same, quietLogger()).ClaimTypes(context.Background(), typeT); !errors.Is(err, statestore.ErrFenced) {
		t.Fatalf("restart at the same version: %v, want refused", err)
	}
	next := same
	next.Version++
	if err := actor.NewSingleSilo(store, next, quietLogger()).ClaimTypes(context.Background(), typeT); err != nil {
		t.Fatalf("restart at a newer version: %v", err)
	}
	if _, err := call(old, context.Background(), typeT, "a", "save", "late"); !errors.Is(err, actor.ErrFenced) {
		t.Fatalf("predecessor's write: %v, want ErrFenced", err)
	}
}

// A claim that failed because the store failed is tried again on next use;
// the failure is no ownership answer.
func TestSingleSiloRetriesAfterAStoreFailure(t *testing.T) {
	store := &countingStore{Store: memstore.New()}
	p := actor.NewSingleSilo(store, devA, quietLogger())
	store.failing.Store(true)
	id := actor.ID{Type: typeT, ID: "a"}
	_, err := p.Claim(context.Background(), id)
	if !errors.Is(err, errStoreDown) || errors.Is(err, actor.ErrNotOwner) {
		t.Fatalf("Claim while the store is down: %v, want the store's error, not ErrNotOwner", err)
	}
	if err := p.ClaimTypes(context.Background(), typeT); !errors.Is(err, errStoreDown) {
		t.Fatalf("ClaimTypes while the store is down: %v", err)
	}
	store.failing.Store(false)
	if c, err := p.Claim(context.Background(), id); err != nil || c != devA {
		t.Fatalf("Claim once the store is back = %v, %v", c, err)
	}
}

// An invalid claim is refused before anything is written.
func TestSingleSiloInvalidClaim(t *testing.T) {
	store := memstore.New()
	bad := devA
	bad.Silo = "two words"
	if err := actor.NewSingleSilo(store, bad, quietLogger()).ClaimTypes(context.Background(), typeT); err == nil {
		t.Fatal("an invalid claim was accepted")
	}
	for _, item := range fenceRecords(t, store, typeT) {
		if item.Exists() {
			t.Fatalf("%s written by an invalid claim", item.Key)
		}
	}
}

func newRuntimeWith(t *testing.T, store statestore.Store, p actor.Placement) *actor.Runtime {
	t.Helper()
	rt, err := actor.New(actor.Config{Store: store, Logger: quietLogger(), Placement: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}
