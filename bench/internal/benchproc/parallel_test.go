package benchproc

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestParallel(t *testing.T) {
	var sum atomic.Int64
	if err := Parallel(context.Background(), 100, 4, func(_ context.Context, i int) error {
		sum.Add(int64(i))
		return nil
	}); err != nil || sum.Load() != 4950 {
		t.Fatalf("sum %d, err %v", sum.Load(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Parallel(ctx, 10, 2, func(context.Context, int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestParallelStopsAtTheFirstError: after a call fails, no other call
// starts. Calls after item 3 end only when Parallel stops, so each worker
// holds at most one of them: 4 calls plus one per worker at most. Workers
// used to run what the feeder's select still handed them after the
// failure (2 runs in 500 went over the bound). The test this replaces let
// every call return at once and wanted at most 10 calls: on a loaded
// machine the other worker legitimately ran 7 items while the failing one
// waited for a CPU.
func TestParallelStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	const workers = 2
	for run := range 2000 {
		var calls atomic.Int64
		err := Parallel(context.Background(), 1000, workers, func(ctx context.Context, i int) error {
			calls.Add(1)
			switch {
			case i == 3:
				return boom
			case i > 3:
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		if !errors.Is(err, boom) || calls.Load() > 4+workers {
			t.Fatalf("run %d: err %v after %d calls, want boom after at most %d", run, err, calls.Load(), 4+workers)
		}
	}
}
