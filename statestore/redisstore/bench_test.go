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

// actorWrite is the write a silo makes for one turn: a fenced put of one
// state key.
func actorWrite(actor int, value []byte) statestore.Txn {
	id := strconv.Itoa(actor)
	return statestore.Txn{
		Fence: &statestore.FenceCheck{Key: statestore.FenceKey("Bench", id), Token: 1},
		Ops:   []statestore.Op{{Kind: statestore.Put, Key: statestore.ActorStateKey("Bench", id, "s"), Value: value}},
	}
}

func benchModes(b *testing.B, f func(b *testing.B, s *Store)) {
	for _, mode := range []struct {
		name string
		opts Options
	}{{"coalesced", Options{}}, {"direct", Options{NoCoalescing: true}}} {
		b.Run(mode.name, func(b *testing.B) { f(b, openTest(b, mode.opts)) })
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
