package boltstore

import (
	"context"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/granaryhq/granary/statestore"
)

func openBench(b *testing.B, opts Options) *Store {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

var benchValue = make([]byte, 128)

// benchKey spreads writes over a fixed set of actor state keys.
func benchKey(i int64) string {
	return statestore.ActorStateKey("Counter", strconv.FormatInt(i%10000, 10), "state")
}

// reportCommits adds commits per operation, and the operations per second,
// to the benchmark's output.
func reportCommits(b *testing.B, s *Store, before int) {
	commits := txID(b, s) - before
	b.ReportMetric(float64(commits)/float64(b.N), "commits/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txn/s")
}

// BenchmarkTransactSequential is one writer: every write waits for its own
// commit and fsync.
func BenchmarkTransactSequential(b *testing.B) {
	s := openBench(b, Options{})
	ctx := context.Background()
	before := txID(b, s)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		txn := statestore.Txn{Ops: []statestore.Op{{Kind: statestore.Put, Key: benchKey(int64(i)), Value: benchValue}}}
		if err := s.Transact(ctx, txn); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCommits(b, s, before)
}

// BenchmarkTransactParallel runs 64 concurrent writers (32 per core on two
// cores), which group commit lets share commits.
func BenchmarkTransactParallel(b *testing.B) {
	s := openBench(b, Options{})
	transactIn64(b, s, func(i int64) statestore.Txn {
		return statestore.Txn{Ops: []statestore.Op{{Kind: statestore.Put, Key: benchKey(i), Value: benchValue}}}
	})
}

// transactIn64 has 64 concurrent writers commit txnOf(1), txnOf(2), … to s
// for b.N transactions in all, and reports the commits they took.
func transactIn64(b *testing.B, s *Store, txnOf func(i int64) statestore.Txn) {
	ctx := context.Background()
	var next atomic.Int64
	before := txID(b, s)
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Transact(ctx, txnOf(next.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportCommits(b, s, before)
}

func BenchmarkGet(b *testing.B) {
	s := openBench(b, Options{})
	ctx := context.Background()
	var ops []statestore.Op
	for i := range int64(10000) {
		ops = append(ops, statestore.Op{Kind: statestore.Put, Key: benchKey(i), Value: benchValue})
	}
	if err := s.Transact(ctx, statestore.Txn{Ops: ops}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Get(ctx, benchKey(int64(i))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkScan100(b *testing.B) {
	s := openBench(b, Options{})
	ctx := context.Background()
	var ops []statestore.Op
	for i := range int64(10000) {
		ops = append(ops, statestore.Op{Kind: statestore.Put, Key: benchKey(i), Value: benchValue, Index: "bench"})
	}
	if err := s.Transact(ctx, statestore.Txn{Ops: ops}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	after := ""
	for range b.N {
		items, err := s.Scan(ctx, "bench", after, 100)
		if err != nil {
			b.Fatal(err)
		}
		if len(items) < 100 {
			after = ""
		} else {
			after = items[len(items)-1].Key
		}
	}
}

// BenchmarkTransactReminderShape runs 64 concurrent writers of transactions
// shaped like a reminder registration: a fence check, an indexed put of a
// new key and the delete of an absent one. With the commit the store's one
// writer, this is the work a registration costs it.
func BenchmarkTransactReminderShape(b *testing.B) {
	s := openBench(b, Options{})
	fence := &statestore.FenceCheck{Key: "fence", Record: []byte("token")}
	if err := s.Transact(context.Background(), statestore.Txn{Ops: []statestore.Op{{Kind: statestore.Put, Key: fence.Key, Value: fence.Record}}}); err != nil {
		b.Fatal(err)
	}
	transactIn64(b, s, func(i int64) statestore.Txn {
		key := statestore.ReminderKey("Counter", strconv.FormatInt(i%1000, 10), "r"+strconv.FormatInt(i/1000, 10))
		return statestore.Txn{Fence: fence, Ops: []statestore.Op{
			{Kind: statestore.Put, Key: key, Value: benchValue, Index: "reminders"},
			{Kind: statestore.Delete, Key: key + "/data"},
		}}
	})
}
