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

// commitMark is where a store's commits stood when a benchmark began.
type commitMark struct {
	tx    int
	pages int64
}

func markCommits(b *testing.B, s *Store) commitMark {
	st := s.db.Stats()
	return commitMark{tx: txID(b, s), pages: st.TxStats.GetWrite()}
}

// reportCommits adds commits and pages written per operation since m, and
// the operations per second, to the benchmark's output.
func reportCommits(b *testing.B, s *Store, m commitMark) {
	now := markCommits(b, s)
	b.ReportMetric(float64(now.tx-m.tx)/float64(b.N), "commits/op")
	b.ReportMetric(float64(now.pages-m.pages)/float64(b.N), "pages/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txn/s")
}

// BenchmarkTransactSequential is one writer: every write waits for its own
// commit and fsync.
func BenchmarkTransactSequential(b *testing.B) {
	s := openBench(b, Options{})
	ctx := context.Background()
	before := markCommits(b, s)
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
	before := markCommits(b, s)
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
// shaped like a reminder registration: a fence check, a put of a new
// reminder record in its shard's index and the delete of its absent data
// key. With the commit the store's one writer, this is the work a
// registration costs it.
func BenchmarkTransactReminderShape(b *testing.B) {
	s := openBench(b, Options{})
	transactIn64(b, s, reminderRegistration(s, b, 1000))
}

// BenchmarkTransactReminderShapeOn100k is BenchmarkTransactReminderShape on
// a store that already holds 100,000 reminders of 500 actors (as when
// reminderbench's http scenario has registered that many), so that the
// writes of one commit land on leaves of their own: pages/op is what a
// registration makes the commit write.
func BenchmarkTransactReminderShapeOn100k(b *testing.B) {
	s := openBench(b, Options{})
	register := reminderRegistration(s, b, 500)
	ctx := context.Background()
	for start := int64(0); start < 100_000; start += 1000 {
		var txns []statestore.Txn
		for i := start; i < start+1000; i++ {
			txns = append(txns, register(-i-1))
		}
		for _, err := range s.TransactMany(ctx, txns) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	transactIn64(b, s, register)
}

// reminderRegistration returns the transaction of registration i of a
// reminder on one of actors actors, each of whose shard fence records it
// stores first.
func reminderRegistration(s *Store, b *testing.B, actors int64) func(i int64) statestore.Txn {
	var fences []statestore.Op
	for a := range actors {
		id := strconv.FormatInt(a, 10)
		fences = append(fences, statestore.Op{Kind: statestore.Put, Key: statestore.ShardFenceKey("Counter", statestore.ShardOf("Counter", id)), Value: []byte("token")})
	}
	if err := s.Transact(context.Background(), statestore.Txn{Ops: fences}); err != nil {
		b.Fatal(err)
	}
	return func(i int64) statestore.Txn {
		id := strconv.FormatInt((i%actors+actors)%actors, 10)
		shard := statestore.ShardOf("Counter", id)
		name := "r" + strconv.FormatInt(i, 10)
		return statestore.Txn{
			Fence: &statestore.FenceCheck{Key: statestore.ShardFenceKey("Counter", shard), Record: []byte("token")},
			Ops: []statestore.Op{
				{Kind: statestore.Put, Key: statestore.ReminderKey("Counter", id, name), Value: benchValue, Index: statestore.ReminderIndex("Counter", shard)},
				{Kind: statestore.Delete, Key: statestore.ReminderDataKey("Counter", id, name)},
			},
		}
	}
}
