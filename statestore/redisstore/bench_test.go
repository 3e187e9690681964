package redisstore

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/granaryhq/granary/statestore"
)

// benchClaim holds every shard of type Bench in the benchmarks.
var (
	benchClaim  = statestore.Claim{Cluster: "bench", Version: 1, Silo: "s", Incarnation: "i"}
	benchRecord = benchClaim.HeldRecord()
)

// actorWrite is the write a silo makes for one turn: a put of one state key,
// fenced by the claim of the actor's shard.
func actorWrite(actor int, value []byte) statestore.Txn {
	id := strconv.Itoa(actor)
	return statestore.Txn{
		Fence: &statestore.FenceCheck{Key: statestore.ShardFenceKey("Bench", statestore.ShardOf("Bench", id)), Record: benchRecord},
		Ops:   []statestore.Op{{Kind: statestore.Put, Key: statestore.ActorStateKey("Bench", id, "s"), Value: value}},
	}
}

// claimBench claims every shard of type Bench for benchClaim.
func claimBench(b *testing.B, s *Store) {
	keys := make([]string, statestore.ShardCount)
	for i := range keys {
		keys[i] = statestore.ShardFenceKey("Bench", i)
	}
	for i, err := range statestore.ClaimShards(context.Background(), s, keys, benchClaim, false) {
		if err != nil {
			b.Fatalf("claim %s: %v", keys[i], err)
		}
	}
}

func benchModes(b *testing.B, f func(b *testing.B, s *Store)) {
	for _, mode := range []struct {
		name string
		opts Options
	}{{"coalesced", Options{}}, {"direct", Options{NoCoalescing: true}}} {
		b.Run(mode.name, func(b *testing.B) {
			s := openTest(b, mode.opts)
			claimBench(b, s)
			f(b, s)
		})
	}
}

func BenchmarkTransact(b *testing.B) {
	value := make([]byte, 128)
	ctx := context.Background()
	b.Run("sequential", func(b *testing.B) {
		benchModes(b, func(b *testing.B, s *Store) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := s.Transact(ctx, actorWrite(i%1024, value)); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("parallel64", func(b *testing.B) {
		benchModes(b, func(b *testing.B, s *Store) {
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				actor := int(next.Add(1))
				for pb.Next() {
					if err := s.Transact(ctx, actorWrite(actor, value)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	})
}

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	value := string(make([]byte, 128))
	setup := func(b *testing.B, s *Store) {
		var ops []statestore.Op
		for i := range 64 {
			ops = append(ops, put(statestore.ActorStateKey("Bench", strconv.Itoa(i), "s"), value))
		}
		mustTransact(b, s, ops...)
	}
	b.Run("sequential", func(b *testing.B) {
		benchModes(b, func(b *testing.B, s *Store) {
			setup(b, s)
			key := statestore.ActorStateKey("Bench", "1", "s")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Get(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("parallel64", func(b *testing.B) {
		benchModes(b, func(b *testing.B, s *Store) {
			setup(b, s)
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				key := statestore.ActorStateKey("Bench", strconv.Itoa(int(next.Add(1))%64), "s")
				for pb.Next() {
					if _, err := s.Get(ctx, key); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	})
}

func BenchmarkBulkGet(b *testing.B) {
	for _, n := range []int{16, 256} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s := openTest(b, Options{})
			ctx := context.Background()
			keys := make([]string, n)
			var ops []statestore.Op
			for i := range keys {
				keys[i] = statestore.ActorStateKey("Bench", "1", strconv.Itoa(i))
				ops = append(ops, put(keys[i], string(make([]byte, 128))))
			}
			mustTransact(b, s, ops...)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.BulkGet(ctx, keys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
