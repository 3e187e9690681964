package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/statestore"
)

func TestPutGetDelete(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		s := openTest(t, opts)
		ctx := context.Background()
		keys := []string{"plain", "actor{T/1}/state/x", "with\x00nul", "{", "}{", "\xff\xfe"}
		for i, k := range keys {
			mustTransact(t, s, put(k, "v"+strconv.Itoa(i)))
		}
		for i, k := range keys {
			item := mustGet(t, s, k)
			if item.Key != k || string(item.Value) != "v"+strconv.Itoa(i) || item.ETag == "" || !item.Expires.IsZero() {
				t.Errorf("Get(%q) = %+v", k, item)
			}
		}
		binary := []byte{0, 1, 2, 0xff, '\r', '\n'}
		mustTransact(t, s, statestore.Op{Kind: statestore.Put, Key: "bin", Value: binary})
		if got := mustGet(t, s, "bin").Value; !bytes.Equal(got, binary) {
			t.Errorf("binary value = %x, want %x", got, binary)
		}
		mustTransact(t, s, statestore.Op{Kind: statestore.Put, Key: "empty"})
		if item := mustGet(t, s, "empty"); len(item.Value) != 0 || !item.Exists() {
			t.Errorf("empty value: %+v", item)
		}

		mustTransact(t, s, del("plain"), del("never-existed"))
		_, err := s.Get(ctx, "plain")
		if !errors.Is(err, statestore.ErrNotFound) {
			t.Fatalf("Get after delete: %v, want ErrNotFound", err)
		}
		if want := `redis store 127.0.0.1:6379: get "plain": statestore: key not found`; err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	})
}

func TestETagsChangeAndNeverRepeat(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		s := openTest(t, opts)
		seen := map[string]bool{}
		for i := range 20 {
			mustTransact(t, s, put("k", "same value"))
			etag := mustGet(t, s, "k").ETag
			if seen[etag] {
				t.Fatalf("write %d: ETag %q repeated", i, etag)
			}
			seen[etag] = true
			if i%3 == 0 {
				mustTransact(t, s, del("k"))
			}
		}
		// Another store on the same keys draws its own ETags.
		other := openTest(t, Options{KeyPrefix: s.prefix})
		for range 5 {
			if err := other.Transact(context.Background(), statestore.Txn{Ops: []statestore.Op{put("k", "x")}}); err != nil {
				t.Fatal(err)
			}
			etag := mustGet(t, s, "k").ETag
			if seen[etag] {
				t.Fatalf("second store repeated ETag %q", etag)
			}
			seen[etag] = true
		}
	})
}

func TestConditions(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		s := openTest(t, opts)
		ctx := context.Background()
		transact := func(ops ...statestore.Op) error {
			return s.Transact(ctx, statestore.Txn{Ops: ops})
		}

		// First write wins.
		first := put("k", "first")
		first.IfAbsent = true
		if err := transact(first); err != nil {
			t.Fatalf("first IfAbsent: %v", err)
		}
		item := mustGet(t, s, "k")
		second := put("k", "second")
		second.IfAbsent = true
		err := transact(second)
		var ce *statestore.ConditionError
		if !errors.As(err, &ce) || !errors.Is(err, statestore.ErrETagMismatch) {
			t.Fatalf("second IfAbsent: %v, want ConditionError", err)
		}
		if *ce != (statestore.ConditionError{Key: "k", Want: "absent", Have: item.ETag}) {
			t.Errorf("ConditionError = %+v", *ce)
		}

		// Last write with a version check.
		stale := put("k", "stale")
		stale.ETag = "not-the-etag"
		err = transact(stale)
		if !errors.As(err, &ce) || *ce != (statestore.ConditionError{Key: "k", Want: "not-the-etag", Have: item.ETag}) {
			t.Fatalf("stale ETag: %v", err)
		}
		fresh := put("k", "fresh")
		fresh.ETag = item.ETag
		if err := transact(fresh); err != nil {
			t.Fatalf("current ETag: %v", err)
		}
		if got := mustGet(t, s, "k"); string(got.Value) != "fresh" || got.ETag == item.ETag {
			t.Errorf("after versioned put: %+v", got)
		}

		// An ETag condition on an absent key fails with Have "absent".
		missing := del("absent-key")
		missing.ETag = item.ETag
		if err := transact(missing); !errors.As(err, &ce) || ce.Have != "absent" {
			t.Errorf("ETag on absent key: %v", err)
		}

		// All or nothing: a failing condition in the last operation undoes the first.
		bad := put("k", "never")
		bad.IfAbsent = true
		if err := transact(put("other", "never"), bad); !errors.Is(err, statestore.ErrETagMismatch) {
			t.Fatalf("txn with failing op: %v", err)
		}
		if _, err := s.Get(ctx, "other"); !errors.Is(err, statestore.ErrNotFound) {
			t.Errorf("first op of refused txn applied: %v", err)
		}

		// Later operations see earlier ones.
		a := put("seq", "1")
		b := put("seq", "2")
		b.IfAbsent = true
		if err := transact(a, b); !errors.Is(err, statestore.ErrETagMismatch) {
			t.Errorf("IfAbsent after put in same txn: %v, want mismatch", err)
		}
		mustTransact(t, s, put("seq", "0"))
		c := put("seq", "3")
		c.IfAbsent = true
		if err := transact(del("seq"), c); err != nil {
			t.Errorf("IfAbsent after delete in same txn: %v", err)
		}
		if got := string(mustGet(t, s, "seq").Value); got != "3" {
			t.Errorf("seq = %q, want 3", got)
		}
	})
}

func TestTransactValidates(t *testing.T) {
	s := openTest(t, Options{})
	bad := []statestore.Txn{
		{Ops: []statestore.Op{{Kind: statestore.Put}}},
		{Ops: []statestore.Op{{Kind: 9, Key: "k"}}},
		{Ops: []statestore.Op{{Kind: statestore.Put, Key: "k", TTL: -time.Second}}},
		{Ops: []statestore.Op{{Kind: statestore.Delete, Key: "k", Value: []byte("x")}}},
		{Ops: []statestore.Op{{Kind: statestore.Put, Key: "k", ETag: "e", IfAbsent: true}}},
		{Fence: &statestore.FenceCheck{}, Ops: []statestore.Op{put("k", "v")}},
	}
	for i, txn := range bad {
		if err := s.Transact(context.Background(), txn); err == nil {
			t.Errorf("txn %d: accepted", i)
		}
	}
	if err := s.Transact(context.Background(), statestore.Txn{}); err != nil {
		t.Errorf("empty txn: %v", err)
	}
}

func TestTTL(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		s := openTest(t, opts)
		ctx := context.Background()
		before := time.Now()
		long := put("long", "v")
		long.TTL = time.Hour
		mustTransact(t, s, long)
		exp := mustGet(t, s, "long").Expires
		if exp.Before(before.Add(time.Hour-time.Second)) || exp.After(time.Now().Add(time.Hour+time.Second)) {
			t.Errorf("Expires = %v, want about an hour from %v", exp, before)
		}
		// A put without TTL clears it.
		mustTransact(t, s, put("long", "v2"))
		if exp := mustGet(t, s, "long").Expires; !exp.IsZero() {
			t.Errorf("Expires after put without TTL = %v", exp)
		}

		short := put("short", "v")
		short.TTL = 30 * time.Millisecond
		mustTransact(t, s, short)
		items, err := s.BulkGet(ctx, []string{"short"})
		if err != nil {
			t.Fatal(err)
		}
		if !items[0].Exists() && time.Since(before) < 30*time.Millisecond {
			t.Fatalf("short-lived key gone before its TTL: %+v", items[0])
		}
		waitGone(t, s, "short")
		if items, err := s.BulkGet(ctx, []string{"short"}); err != nil || items[0].Exists() {
			t.Errorf("BulkGet of expired key = %+v, %v", items, err)
		}
		// An IfAbsent put succeeds on an expired key.
		again := put("short", "again")
		again.IfAbsent = true
		if err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{again}}); err != nil {
			t.Errorf("IfAbsent on expired key: %v", err)
		}
	})
}

// waitGone polls until key has expired on the server (whose clock decides).
func waitGone(t testing.TB, s *Store, key string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Get(context.Background(), key)
		if errors.Is(err, statestore.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q did not expire", key)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFencedTransaction: a fence record is an item like any other, compared
// byte for byte inside the script, and the per-actor tokens of earlier
// versions (<prefix>f:<key>) are not read.
func TestFencedTransaction(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		s := openTest(t, opts)
		ctx := context.Background()
		fenceKey := statestore.ShardFenceKey("T", statestore.ShardOf("T", "a"))
		state := statestore.ActorStateKey("T", "a", "x")
		txn := func(record, value string) statestore.Txn {
			return statestore.Txn{Fence: &statestore.FenceCheck{Key: fenceKey, Record: []byte(record)}, Ops: []statestore.Op{put(state, value)}}
		}
		// An old-style token under the fence prefix counts for nothing.
		if err := s.client.Set(ctx, s.prefix+"f:"+fenceKey, "7", 0).Err(); err != nil {
			t.Fatal(err)
		}
		var fe *statestore.FencedError
		if err := s.Transact(ctx, txn("7", "v")); !errors.As(err, &fe) || fe.Found != nil {
			t.Fatalf("write against an absent record: %v", err)
		}
		// Lua strings hold any bytes: NUL, invalid UTF-8, a line break.
		record := "held\x00\xff\n1"
		mustTransact(t, s, put(fenceKey, record))
		if got := mustGet(t, s, fenceKey); string(got.Value) != record {
			t.Fatalf("fence record read back as %q", got.Value)
		}
		if err := s.Transact(ctx, txn(record, "ok")); err != nil {
			t.Fatalf("write with the exact record: %v", err)
		}
		for _, wrong := range []string{"held", record + "\x00", "held\x00\xfe\n1"} {
			err := s.Transact(ctx, txn(wrong, "stale"))
			if !errors.As(err, &fe) || fe.Key != fenceKey || string(fe.Want) != wrong || string(fe.Found) != record {
				t.Fatalf("write with record %q: %v", wrong, err)
			}
		}
		if got := string(mustGet(t, s, state).Value); got != "ok" {
			t.Errorf("a refused write applied: %q", got)
		}
	})
}

// TestFenceRace has a new claim take the shard while the old holder keeps
// writing: once the claim has returned, no write of the old one may land.
func TestFenceRace(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		s := openTest(t, opts)
		ctx := context.Background()
		fenceKey := statestore.ShardFenceKey("T", statestore.ShardOf("T", "race"))
		state := statestore.ActorStateKey("T", "race", "x")
		old := statestore.Claim{Cluster: "c", Version: 1, Silo: "s1", Incarnation: "i1"}
		if err := statestore.ClaimShard(ctx, s, fenceKey, old, false); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		written := make(chan struct{}, 1000)
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					err := s.Transact(ctx, statestore.Txn{
						Fence: &statestore.FenceCheck{Key: fenceKey, Record: old.HeldRecord()},
						Ops:   []statestore.Op{put(state, fmt.Sprintf("%d/%d", w, i))},
					})
					if errors.Is(err, statestore.ErrFenced) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					select {
					case written <- struct{}{}:
					default:
					}
				}
			})
		}
		for range 50 { // the old activation is writing
			<-written
		}
		newer := statestore.Claim{Cluster: "c", Version: 2, Silo: "s2", Incarnation: "i2"}
		if err := statestore.ClaimShard(ctx, s, fenceKey, newer, false); err != nil {
			t.Fatal(err)
		}
		atClaim := mustGet(t, s, state)
		wg.Wait()
		if after := mustGet(t, s, state); after.ETag != atClaim.ETag {
			t.Errorf("old activation wrote %q after the fence moved on (value at claim %q)", after.Value, atClaim.Value)
		}
	})
}

func TestBulkGet(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	mustTransact(t, s, put("a", "1"), put("c", "3"))
	items, err := s.BulkGet(ctx, []string{"c", "b", "a", "c"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"3", "", "1", "3"}
	if len(items) != len(want) {
		t.Fatalf("got %d items", len(items))
	}
	for i, w := range want {
		if items[i].Exists() != (w != "") || string(items[i].Value) != w {
			t.Errorf("item %d = %+v, want value %q", i, items[i], w)
		}
	}
	if items[1].Key != "b" {
		t.Errorf("absent item key = %q, want b", items[1].Key)
	}
	if items, err := s.BulkGet(ctx, nil); err != nil || len(items) != 0 {
		t.Errorf("BulkGet(nil) = %v, %v", items, err)
	}
	many := make([]string, 1000)
	for i := range many {
		many[i] = fmt.Sprintf("many/%04d", i)
	}
	if items, err := s.BulkGet(ctx, many); err != nil || len(items) != len(many) {
		t.Errorf("BulkGet of 1000: %d items, %v", len(items), err)
	}
}

// TestConcurrentCounter increments one counter from many goroutines with
// ETag compare-and-set: every acknowledged increment must count.
func TestConcurrentCounter(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		s := openTest(t, opts)
		ctx := context.Background()
		const workers, each = 16, 25
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range each {
					for {
						var n int
						var etag string
						item, err := s.Get(ctx, "counter")
						switch {
						case errors.Is(err, statestore.ErrNotFound):
						case err != nil:
							t.Error(err)
							return
						default:
							n, _ = strconv.Atoi(string(item.Value))
							etag = item.ETag
						}
						op := put("counter", strconv.Itoa(n+1))
						op.ETag = etag
						op.IfAbsent = etag == ""
						err = s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{op}})
						if err == nil {
							break
						}
						if !errors.Is(err, statestore.ErrETagMismatch) {
							t.Error(err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		if got := string(mustGet(t, s, "counter").Value); got != strconv.Itoa(workers*each) {
			t.Errorf("counter = %s, want %d", got, workers*each)
		}
	})
}

func TestClosed(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		s := openTest(t, opts)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		errs := []error{
			s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{put("k", "v")}}),
			statestore.ClaimShard(ctx, s, "fence{T/000}", statestore.Claim{Cluster: "c", Version: 1, Silo: "s", Incarnation: "i"}, false),
		}
		_, err := s.Get(ctx, "k")
		errs = append(errs, err)
		_, err = s.BulkGet(ctx, []string{"k"})
		errs = append(errs, err)
		_, err = s.Scan(ctx, "i", "", 10)
		errs = append(errs, err)
		for i, err := range errs {
			if !errors.Is(err, statestore.ErrClosed) {
				t.Errorf("call %d after Close: %v, want ErrClosed", i, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestKeyPrefixIsolates(t *testing.T) {
	a := openTest(t, Options{})
	b := openTest(t, Options{})
	mustTransact(t, a, put("k", "a"))
	if _, err := b.Get(context.Background(), "k"); !errors.Is(err, statestore.ErrNotFound) {
		t.Errorf("store b sees store a's key: %v", err)
	}
	// The raw Redis key starts with the prefix, and the layout's hash tag is
	// its first brace pair.
	shard := statestore.ShardOf("T", "i")
	key := statestore.ActorStateKey("T", "i", "x")
	if got, want := a.dataKey(key), fmt.Sprintf("%sd:actor{T/%03x}/i/state/x", a.prefix, shard); got != want {
		t.Errorf("dataKey = %q, want %q", got, want)
	}
	if got, want := a.dataKey(statestore.ShardFenceKey("T", shard)), fmt.Sprintf("%sd:fence{T/%03x}", a.prefix, shard); got != want {
		t.Errorf("dataKey of the shard fence = %q, want %q", got, want)
	}
}
