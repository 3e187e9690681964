package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/granaryhq/granary/internal/testutil/redistest"
	"github.com/granaryhq/granary/statestore"
)

var prefixes atomic.Uint64

// uniquePrefix is a key prefix no other store of this test process uses.
func uniquePrefix(t testing.TB) string {
	name := strings.NewReplacer("{", "(", "}", ")", "/", ".").Replace(t.Name())
	return fmt.Sprintf("t%d:%s:", prefixes.Add(1), name)
}

var quiet = slog.New(slog.DiscardHandler)

// openAt opens a store on url with a key prefix of its own, closed when t ends.
func openAt(t testing.TB, url string, opts Options) *Store {
	t.Helper()
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = uniquePrefix(t)
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	s, err := Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// openTest opens a store on the shared test Redis.
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	return openAt(t, redistest.URL(t), opts)
}

// modes runs f once with each way of sending transactions.
func modes(t *testing.T, f func(t *testing.T, opts Options)) {
	t.Run("coalesced", func(t *testing.T) { f(t, Options{}) })
	t.Run("direct", func(t *testing.T) { f(t, Options{NoCoalescing: true}) })
}

func put(key, value string) statestore.Op {
	return statestore.Op{Kind: statestore.Put, Key: key, Value: []byte(value)}
}

func del(key string) statestore.Op {
	return statestore.Op{Kind: statestore.Delete, Key: key}
}

func mustTransact(t testing.TB, s *Store, ops ...statestore.Op) {
	t.Helper()
	if err := s.Transact(context.Background(), statestore.Txn{Ops: ops}); err != nil {
		t.Fatalf("Transact: %v", err)
	}
}

func mustGet(t testing.TB, s *Store, key string) statestore.Item {
	t.Helper()
	item, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return item
}
