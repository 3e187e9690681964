package boltstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/storetest"
)

// openTemp opens a store in a new temporary directory, closed when t ends.
func openTemp(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func put(key, value string) statestore.Op {
	return statestore.Op{Kind: statestore.Put, Key: key, Value: []byte(value)}
}

func mustTransact(t testing.TB, s statestore.Store, ops ...statestore.Op) {
	t.Helper()
	if err := s.Transact(context.Background(), statestore.Txn{Ops: ops}); err != nil {
		t.Fatalf("Transact: %v", err)
	}
}

func mustGet(t testing.TB, s statestore.Store, key string) statestore.Item {
	t.Helper()
	item, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return item
}

// txID is the ID of the last committed write transaction; it grows by one
// with every commit.
func txID(t testing.TB, s *Store) int {
	t.Helper()
	var id int
	if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) statestore.Store {
		return openTemp(t, Options{})
	})
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustTransact(t, s,
		statestore.Op{Kind: statestore.Put, Key: "a", Value: []byte("1"), Index: "i"},
		statestore.Op{Kind: statestore.Put, Key: "ttl", Value: []byte("t"), TTL: time.Hour},
		put("gone", "x"))
	mustTransact(t, s, statestore.Op{Kind: statestore.Delete, Key: "gone"})
	claim := statestore.Claim{Cluster: "c", Version: 42, Silo: "s", Incarnation: "i"}
	if err := statestore.ClaimShard(ctx, s, "fence{T/000}", claim, false); err != nil {
		t.Fatal(err)
	}
	a := mustGet(t, s, "a")
	ttl := mustGet(t, s, "ttl")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if got := mustGet(t, s, "a"); got.ETag != a.ETag || string(got.Value) != "1" {
		t.Errorf("a after reopen = %+v, want %+v", got, a)
	}
	if got := mustGet(t, s, "ttl"); !got.Expires.Equal(ttl.Expires) {
		t.Errorf("ttl expires %v after reopen, want %v", got.Expires, ttl.Expires)
	}
	if _, err := s.Get(ctx, "gone"); !errors.Is(err, statestore.ErrNotFound) {
		t.Errorf("deleted key after reopen: %v", err)
	}
	if items, err := s.Scan(ctx, "i", "", 10); err != nil || len(items) != 1 || items[0].Key != "a" {
		t.Errorf("Scan after reopen = %v, %v", items, err)
	}
	// The claim is kept: the holder writes, an older version is refused.
	if err := s.Transact(ctx, statestore.Txn{Fence: &statestore.FenceCheck{Key: "fence{T/000}", Record: claim.HeldRecord()}}); err != nil {
		t.Errorf("fence check of the claim after reopen: %v", err)
	}
	older := claim
	older.Version = 41
	var ce *statestore.ClaimRefusedError
	if err := statestore.ClaimShard(ctx, s, "fence{T/000}", older, false); !errors.As(err, &ce) || ce.Holder != claim {
		t.Errorf("claim at version 41 after reopen: %v, want refused by version 42", err)
	}
	// The ETag sequence carries on: a write after reopen never reuses an ETag.
	mustTransact(t, s, put("a", "2"))
	if got := mustGet(t, s, "a"); got.ETag == a.ETag {
		t.Errorf("ETag %q reused after reopen", got.ETag)
	}
}

func TestOpenErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file ", 2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path string
		want string
	}{
		{filepath.Join(dir, "missing", "state.db"), "no such file or directory"},
		{garbage, "not a state file"},
		{foreign, "not a Granary state file"},
		{dir, ""}, // a directory
	}
	for _, c := range cases {
		s, err := Open(c.path, Options{LockTimeout: 100 * time.Millisecond})
		if err == nil {
			s.Close()
			t.Errorf("Open(%s) succeeded", c.path)
			continue
		}
		if !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s) error %q does not name the path and %q", c.path, err, c.want)
		}
	}
}

func TestSecondOpenFailsFastWhileInUse(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	other, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		other.Close()
		t.Fatal("a second Open of a file in use succeeded")
	}
	if !errors.Is(err, ErrInUse) {
		t.Errorf("error %v does not wrap ErrInUse", err)
	}
	for _, want := range []string{path, "data directory " + dir + " is in use by another process"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("second Open took %v", waited)
	}
}

func TestCommitsAreSynced(t *testing.T) {
	s := openTemp(t, Options{})
	if s.db.NoSync {
		t.Fatal("the store runs bbolt with NoSync")
	}
}

func TestKeyTooLong(t *testing.T) {
	s := openTemp(t, Options{})
	long := strings.Repeat("k", maxKeySize+1)
	err := s.Transact(context.Background(), statestore.Txn{Ops: []statestore.Op{put("ok", "v"), put(long, "v")}})
	if err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Fatalf("Transact with a %d-byte key: %v", len(long), err)
	}
	if _, err := s.Get(context.Background(), "ok"); !errors.Is(err, statestore.ErrNotFound) {
		t.Errorf("the valid operation of a refused transaction was applied: %v", err)
	}
	mustTransact(t, s, put(long[:maxKeySize], "v"))
}

func TestCancelledContext(t *testing.T) {
	s := openTemp(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v", err)
	}
	if err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{put("k", "v")}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Transact: %v", err)
	}
	if _, err := s.Get(context.Background(), "k"); !errors.Is(err, statestore.ErrNotFound) {
		t.Errorf("a cancelled Transact was applied: %v", err)
	}
}

// TestTTLFollowsTheClock checks expiry and the sweeper against a fake clock.
func TestTTLFollowsTheClock(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fake := clock.NewFake(start)
	swept := make(chan int)
	s, err := open(filepath.Join(t.TempDir(), "state.db"), Options{Clock: fake, SweepInterval: time.Minute}, swept)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var ops []statestore.Op
	for i := range 600 { // more than two sweeper chunks
		ops = append(ops, statestore.Op{Kind: statestore.Put, Key: "short" + strconv.Itoa(i), Value: []byte("s"), TTL: 30 * time.Second, Index: "i"})
	}
	ops = append(ops,
		statestore.Op{Kind: statestore.Put, Key: "later", Value: []byte("l"), TTL: 90 * time.Second, Index: "i"},
		statestore.Op{Kind: statestore.Put, Key: "renewed", Value: []byte("r1"), TTL: 30 * time.Second, Index: "i"},
		statestore.Op{Kind: statestore.Put, Key: "stays", Value: []byte("v"), Index: "i"})
	mustTransact(t, s, ops...)
	mustTransact(t, s, statestore.Op{Kind: statestore.Put, Key: "renewed", Value: []byte("r2"), Index: "i"})
	if got := mustGet(t, s, "short0").Expires; !got.Equal(start.Add(30 * time.Second)) {
		t.Errorf("Expires = %v, want %v", got, start.Add(30*time.Second))
	}

	fake.Advance(30*time.Second - time.Nanosecond)
	mustGet(t, s, "short0")
	fake.Advance(time.Nanosecond)
	if _, err := s.Get(ctx, "short0"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("Get at expiry: %v, want ErrNotFound", err)
	}
	// Invisible before the sweeper has run.
	if items, err := s.Scan(ctx, "i", "", 1000); err != nil || len(items) != 3 {
		t.Fatalf("Scan after expiry = %d items, %v; want later, renewed, stays", len(items), err)
	}
	if n := rawCount(t, s, kvBucket); n != 603 {
		t.Fatalf("kv holds %d records before the sweep, want 603", n)
	}

	fake.Advance(30 * time.Second) // the sweeper's interval
	if n := <-swept; n != 600 {
		t.Errorf("first sweep deleted %d keys, want 600", n)
	}
	if n := rawCount(t, s, kvBucket); n != 3 {
		t.Errorf("kv holds %d records after the sweep, want 3", n)
	}
	if n := rawCount(t, s, expBucket); n != 1 {
		t.Errorf("exp holds %d entries after the sweep, want 1 (later)", n)
	}
	if n := rawIndexCount(t, s, "i"); n != 3 {
		t.Errorf("index holds %d keys after the sweep, want 3", n)
	}

	fake.Advance(time.Minute)
	if n := <-swept; n != 1 {
		t.Errorf("second sweep deleted %d keys, want 1", n)
	}
	if n := rawIndexCount(t, s, "i"); n != 2 {
		t.Errorf("index holds %d keys after the second sweep, want 2", n)
	}
	if got := mustGet(t, s, "renewed"); string(got.Value) != "r2" || !got.Expires.IsZero() {
		t.Errorf("renewed = %+v", got)
	}
}

// TestSweeperRemovesEmptyIndex checks that an index whose last key expires
// leaves no bucket behind.
func TestSweeperRemovesEmptyIndex(t *testing.T) {
	fake := clock.NewFake(time.Unix(1000, 0))
	s := openTemp(t, Options{Clock: fake, SweepInterval: -1})
	mustTransact(t, s, statestore.Op{Kind: statestore.Put, Key: "k", Value: []byte("v"), TTL: time.Second, Index: "only"})
	fake.Advance(time.Second)
	if n, err := s.sweep(); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(idxBucket).Bucket([]byte("only")) != nil {
			t.Error("the empty index bucket is still there")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.sweep(); err != nil || n != 0 {
		t.Errorf("second sweep = %d, %v", n, err)
	}
}

func rawCount(t *testing.T, s *Store, bucket []byte) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func rawIndexCount(t *testing.T, s *Store, index string) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(idxBucket).Bucket([]byte(index)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGroupCommit checks that concurrent writers share commits: the ID of
// the last write transaction grows by one per commit.
func TestGroupCommit(t *testing.T) {
	s := openTemp(t, Options{MaxBatchDelay: 10 * time.Millisecond})
	ctx := context.Background()

	// Sequential writes commit one by one, which also shows that the
	// transaction ID counts commits.
	before := txID(t, s)
	for i := range 5 {
		mustTransact(t, s, put("seq"+strconv.Itoa(i), "v"))
	}
	if commits := txID(t, s) - before; commits != 5 {
		t.Fatalf("5 sequential writes made %d commits", commits)
	}

	const writers = 64
	before = txID(t, s)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{put("w"+strconv.Itoa(w), "v")}}); err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	commits := txID(t, s) - before
	t.Logf("%d concurrent writers, %d commits", writers, commits)
	if commits > writers/4 {
		t.Errorf("%d concurrent writers made %d commits; group commit should need far fewer", writers, commits)
	}
	for w := range writers {
		mustGet(t, s, "w"+strconv.Itoa(w))
	}
}

// TestRefusedCallersDoNotSplitTheBatch races many IfAbsent writers of one
// key: all pass the early check, exactly one wins inside the shared commit,
// and the refused ones do not force the batch to be re-run one by one.
func TestRefusedCallersDoNotSplitTheBatch(t *testing.T) {
	s := openTemp(t, Options{MaxBatchDelay: 10 * time.Millisecond})
	var winnerApplied atomic.Int64
	s.applyHook = func(op statestore.Op) error {
		if op.Key == "winner" {
			winnerApplied.Add(1)
		}
		return nil
	}
	const writers = 64
	before := txID(t, s)
	start := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			op := put("winner", strconv.Itoa(w))
			op.IfAbsent = true
			results[w] = s.Transact(context.Background(), statestore.Txn{Ops: []statestore.Op{op, put("mine"+strconv.Itoa(w), "x")}})
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for w, err := range results {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("writers %d and %d both won", winner, w)
			}
			winner = w
		case errors.Is(err, statestore.ErrETagMismatch):
			if _, err := s.Get(context.Background(), "mine"+strconv.Itoa(w)); !errors.Is(err, statestore.ErrNotFound) {
				t.Errorf("refused writer %d's other op was applied: %v", w, err)
			}
		default:
			t.Errorf("writer %d: %v", w, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	if got := string(mustGet(t, s, "winner").Value); got != strconv.Itoa(winner) {
		t.Errorf("winner holds %q, want %d", got, winner)
	}
	mustGet(t, s, "mine"+strconv.Itoa(winner))
	if commits := txID(t, s) - before; commits > writers/4 {
		t.Errorf("%d racing writers made %d commits", writers, commits)
	}
	// A refusal that failed the batch function would make bbolt roll the
	// batch back and run the rest again, applying the winner again each time.
	if n := winnerApplied.Load(); n != 1 {
		t.Errorf("the winning put was applied %d times; refusals must not re-run the batch", n)
	}
}

// TestFailedCallIsRetriedAlone makes the application of one call fail inside
// a shared commit: bbolt rolls the batch back and runs the others again, and
// each of them must still be applied exactly once.
func TestFailedCallIsRetriedAlone(t *testing.T) {
	s := openTemp(t, Options{MaxBatchDelay: 10 * time.Millisecond})
	const writers = 16
	poison := errors.New("injected failure")
	var applied atomic.Int64 // applications of the good writers' ops, re-runs included
	s.applyHook = func(op statestore.Op) error {
		if op.Key == "poison" {
			return poison
		}
		if op.Key != "k"+strconv.Itoa(writers) {
			applied.Add(1)
		}
		return nil
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, writers+1)
	for w := range writers + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ops := []statestore.Op{put("k"+strconv.Itoa(w), "v")}
			if w == writers {
				ops = append(ops, put("poison", "p"))
				// Join the batch after the good writers, well inside its
				// 10ms delay, so that it fails after they were applied.
				time.Sleep(2 * time.Millisecond)
			}
			errs[w] = s.Transact(context.Background(), statestore.Txn{Ops: ops})
		}()
	}
	close(start)
	wg.Wait()
	if !errors.Is(errs[writers], poison) {
		t.Errorf("poisoned call: %v, want the injected failure", errs[writers])
	}
	if _, err := s.Get(context.Background(), "k"+strconv.Itoa(writers)); !errors.Is(err, statestore.ErrNotFound) {
		t.Errorf("the poisoned call's first op was applied: %v", err)
	}
	seen := map[string]bool{}
	for w := range writers {
		if errs[w] != nil {
			t.Errorf("writer %d: %v", w, errs[w])
			continue
		}
		etag := mustGet(t, s, "k"+strconv.Itoa(w)).ETag
		if seen[etag] {
			t.Errorf("ETag %q given twice", etag)
		}
		seen[etag] = true
	}
	if applied.Load() <= writers {
		t.Fatalf("the good writers' ops were applied %d times: the batch was never re-run, so the test proved nothing", applied.Load())
	}
	// Every put drew exactly one sequence number: re-runs drew none.
	var seq uint64
	if err := s.db.View(func(tx *bolt.Tx) error { seq = tx.Bucket(kvBucket).Sequence(); return nil }); err != nil {
		t.Fatal(err)
	}
	if seq != writers {
		t.Errorf("the ETag sequence is at %d after %d puts", seq, writers)
	}
}

// TestWritesQueuedDuringACommitShareTheNext holds one commit open while
// writers arrive a few milliseconds apart, as requests across a network do:
// all of them must share the next commit, not be cut into batches by a timer
// and queued one behind another, each with a commit of its own.
func TestWritesQueuedDuringACommitShareTheNext(t *testing.T) {
	s := openTemp(t, Options{})
	release := make(chan struct{})
	s.applyHook = func(op statestore.Op) error {
		if op.Key == "slow" {
			<-release
		}
		return nil
	}
	ctx := context.Background()
	before := txID(t, s)
	var wg sync.WaitGroup
	wg.Go(func() { mustTransact(t, s, put("slow", "v")) })
	time.Sleep(5 * time.Millisecond) // the slow write's commit has started
	const writers = 8
	for w := range writers {
		wg.Go(func() {
			if err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{put("w"+strconv.Itoa(w), "v")}}); err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		})
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	close(release)
	wg.Wait()
	// One commit for the slow write and one for the rest; a straggler
	// scheduled late may need a third.
	if commits := txID(t, s) - before; commits > 3 {
		t.Errorf("a held commit and %d writers queued behind it made %d commits; want 2", writers, commits)
	}
}
