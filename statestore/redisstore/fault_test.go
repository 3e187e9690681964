package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil/redistest"
	"github.com/granaryhq/granary/statestore"
)

// eventually polls f until it returns nil or timeout passes. The store
// reconnects on its own, at a pace the client library sets.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAcknowledgedWritesSurviveKill writes, kills redis-server with SIGKILL,
// starts it again on the same port and directory, and reads every
// acknowledged write back through the same store.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		srv := redistest.StartServer(t, true)
		s := openAt(t, srv.URL(), opts)
		ctx := context.Background()
		const index = "reminders{T/000}"
		const n = 200
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					k := "k" + strconv.Itoa(i)
					op := indexedPut(index, k, "v"+strconv.Itoa(i))
					if err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{op}}); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		claim := statestore.Claim{Cluster: "c", Version: 42, Silo: "s", Incarnation: "i"}
		if err := statestore.ClaimShard(ctx, s, "fence{T/000}", claim, false); err != nil {
			t.Fatal(err)
		}

		srv.Kill()
		srv.Restart()

		var items []statestore.Item
		eventually(t, 5*time.Second, func() error {
			var err error
			items, err = s.Scan(ctx, index, "", n+10)
			return err
		})
		if len(items) != n {
			t.Errorf("scan after restart: %d items, want %d", len(items), n)
		}
		keys := make([]string, n)
		for i := range keys {
			keys[i] = "k" + strconv.Itoa(i)
		}
		got, err := s.BulkGet(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		for i, item := range got {
			if string(item.Value) != "v"+strconv.Itoa(i) {
				t.Errorf("%s after restart = %+v", keys[i], item)
			}
		}
		var ce *statestore.ClaimRefusedError
		older := claim
		older.Version = 41
		if err := statestore.ClaimShard(ctx, s, "fence{T/000}", older, false); !errors.As(err, &ce) || ce.Holder != claim {
			t.Errorf("claim at an older version after restart: %v, want refused by version 42", err)
		}
		if err := s.Transact(ctx, statestore.Txn{Fence: &statestore.FenceCheck{Key: "fence{T/000}", Record: claim.HeldRecord()}}); err != nil {
			t.Errorf("fence check of the claim after restart: %v", err)
		}
	})
}

// TestServerDown: while Redis is down every call fails fast with an error
// naming the address; once it is back, the same store works again.
func TestServerDown(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		srv := redistest.StartServer(t, true)
		s := openAt(t, srv.URL(), opts)
		ctx := context.Background()
		mustTransact(t, s, indexedPut("idx", "k", "before"))
		srv.Kill()

		calls := map[string]func() error{
			"get": func() error { _, err := s.Get(ctx, "k"); return err },
			"bulk get": func() error {
				_, err := s.BulkGet(ctx, []string{"k", "j"})
				return err
			},
			"transact": func() error {
				return s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{put("k", "during")}})
			},
			"transact: add to index": func() error {
				return s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{indexedPut("idx", "j", "during")}})
			},
			"scan": func() error { _, err := s.Scan(ctx, "idx", "", 10); return err },
		}
		for name, call := range calls {
			for range 3 { // also once the pool has given up dialing
				start := time.Now()
				err := call()
				if err == nil {
					t.Fatalf("%s succeeded with the server down", name)
				}
				prefix := "redis store " + srv.Addr() + ": " + name
				if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), "connection refused") {
					t.Errorf("%s error = %q, want %q… connection refused", name, err, prefix)
				}
				if errors.Is(err, statestore.ErrNotFound) || errors.Is(err, statestore.ErrETagMismatch) {
					t.Errorf("%s: outage reported as %v", name, err)
				}
				if d := time.Since(start); d > 500*time.Millisecond {
					t.Errorf("%s took %v to fail", name, d)
				}
			}
		}

		srv.Restart()
		eventually(t, 5*time.Second, func() error {
			return s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{put("k", "after")}})
		})
		if got := string(mustGet(t, s, "k").Value); got != "after" {
			t.Errorf("k = %q, want after", got)
		}
		if items, err := s.Scan(ctx, "idx", "", 10); err != nil || len(items) != 1 {
			t.Errorf("scan after restart = %v, %v", items, err)
		}
	})
}

// TestRestartUnderLoad kills and restarts Redis while 32 writers run. Writes
// fail during the outage and succeed again after it; every write that was
// acknowledged is there afterwards.
func TestRestartUnderLoad(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		srv := redistest.StartServer(t, true)
		s := openAt(t, srv.URL(), opts)
		ctx := context.Background()

		var acked sync.Map // key -> value
		var okCount, failCount atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 32 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					k := fmt.Sprintf("w%d/%d", w, i)
					err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{put(k, k)}})
					if err == nil {
						acked.Store(k, k)
						okCount.Add(1)
						continue
					}
					if !strings.Contains(err.Error(), srv.Addr()) {
						t.Errorf("error without the address: %v", err)
					}
					failCount.Add(1)
					time.Sleep(time.Millisecond) // back off while Redis is down
				}
			})
		}
		waitFor := func(n int64) {
			eventually(t, 10*time.Second, func() error {
				if okCount.Load() < n {
					return fmt.Errorf("%d acknowledged writes, waiting for %d", okCount.Load(), n)
				}
				return nil
			})
		}
		waitFor(300)
		srv.Kill()
		eventually(t, 5*time.Second, func() error {
			if failCount.Load() == 0 {
				return errors.New("no write has failed yet")
			}
			return nil
		})
		srv.Restart()
		waitFor(okCount.Load() + 300) // writes succeed again through the same store
		close(stop)
		wg.Wait()

		var keys []string
		acked.Range(func(k, _ any) bool {
			keys = append(keys, k.(string))
			return true
		})
		// Kill again: what was acknowledged must come back from disk.
		srv.Kill()
		srv.Restart()
		var items []statestore.Item
		eventually(t, 5*time.Second, func() error {
			var err error
			items, err = s.BulkGet(ctx, keys)
			return err
		})
		lost := 0
		for i, item := range items {
			if string(item.Value) != keys[i] {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("%d of %d acknowledged writes lost", lost, len(keys))
		}
		t.Logf("%d acknowledged, %d failed during the outage", len(keys), failCount.Load())
	})
}
