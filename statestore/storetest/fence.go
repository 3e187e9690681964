package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/granaryhq/granary/statestore"
)

// Claims the fence behaviours use: cluster A at versions 1 and 2, and a
// process of another cluster.
var (
	claimA1  = statestore.Claim{Cluster: "A", Version: 1, Silo: "s1", Incarnation: "i1"}
	claimA2  = statestore.Claim{Cluster: "A", Version: 2, Silo: "s2", Incarnation: "i2"}
	claimB9  = statestore.Claim{Cluster: "B", Version: 9, Silo: "s1", Incarnation: "i9"}
	fenceKey = statestore.ShardFenceKey("T", 0x2a)
)

func fenced(key string, record []byte, ops ...statestore.Op) statestore.Txn {
	return statestore.Txn{Fence: &statestore.FenceCheck{Key: key, Record: record}, Ops: ops}
}

func held(c statestore.Claim) string { return string(c.HeldRecord()) }

func released(c statestore.Claim) string {
	return string(statestore.FenceRecord{Claim: c, Released: true}.Encode())
}

func mustClaim(t testing.TB, s statestore.Store, key string, c statestore.Claim, takeover bool) {
	t.Helper()
	if err := statestore.ClaimShard(t.Context(), s, key, c, takeover); err != nil {
		t.Fatalf("ClaimShard(%q, %v): %v", key, c, err)
	}
}

// wantRefused checks that err is a *ClaimRefusedError for key naming holder.
func wantRefused(t testing.TB, err error, key string, holder statestore.Claim) *statestore.ClaimRefusedError {
	t.Helper()
	if !errors.Is(err, statestore.ErrFenced) {
		t.Fatalf("claim error = %v, want one wrapping ErrFenced", err)
	}
	var ce *statestore.ClaimRefusedError
	if !errors.As(err, &ce) {
		t.Fatalf("claim error %v carries no *statestore.ClaimRefusedError", err)
	}
	if ce.Key != key || ce.Holder != holder || ce.Reason == "" {
		t.Fatalf("ClaimRefusedError = %+v, want key %q, holder %+v and a reason", *ce, key, holder)
	}
	return ce
}

// testFenceCheck: a fenced transaction applies only when the record is
// exactly the one required, and otherwise applies nothing at all.
func testFenceCheck(t *testing.T, s statestore.Store) {
	ctx := t.Context()
	const f = "fence{T/001}"
	record := "rec\x00ord \xff"
	mustTransact(t, s, put(f, record), putIn("idx", "k", "old"), put("gone", "g"))
	old, gone := mustGet(t, s, "k"), mustGet(t, s, "gone")

	for _, wrong := range []string{"rec", record + "x", "Rec\x00ord \xff", record[:len(record)-1]} {
		err := s.Transact(ctx, fenced(f, []byte(wrong), putIn("idx", "k", "new"), put("n", "x"), del("gone"), delIn("idx", "k")))
		wantFenced(t, err, f, wrong, record)
		wantUnchanged(t, s, old)
		wantUnchanged(t, s, gone)
		wantAbsent(t, s, "n")
		wantScan(t, s, "idx", 10, "k")
		// A check without operations is refused alike.
		wantFenced(t, s.Transact(ctx, fenced(f, []byte(wrong))), f, wrong, record)
	}

	if err := s.Transact(ctx, fenced(f, []byte(record), put("k", "new"), del("gone"))); err != nil {
		t.Fatalf("Transact with the exact record: %v", err)
	}
	wantValue(t, s, "k", "new")
	wantAbsent(t, s, "gone")
	if err := s.Transact(ctx, fenced(f, []byte(record))); err != nil {
		t.Errorf("check-only transaction with the exact record: %v", err)
	}
	// The check reads the record; it does not change it.
	wantValue(t, s, f, record)
	// A fenced transaction may itself write the record: the check is on the
	// state before it.
	if err := s.Transact(ctx, fenced(f, []byte(record), put(f, "moved on"), put("k", "last"))); err != nil {
		t.Fatalf("Transact that moves its own fence on: %v", err)
	}
	wantFenced(t, s.Transact(ctx, fenced(f, []byte(record), put("k", "late"))), f, record, "moved on")
	wantValue(t, s, "k", "last")
}

// testAbsentFence: no record, no write, and the error says none was found.
func testAbsentFence(t *testing.T, s statestore.Store) {
	ctx := t.Context()
	mustTransact(t, s, put("k", "v"))
	k := mustGet(t, s, "k")
	wantFenced(t, s.Transact(ctx, fenced("fence{T/000}", []byte("r"), put("k", "w"), put("n", "x"))), "fence{T/000}", "r", "")
	wantUnchanged(t, s, k)
	wantAbsent(t, s, "n")
	// A deleted record is absent again.
	mustTransact(t, s, put("fence{T/000}", "r"))
	mustTransact(t, s, del("fence{T/000}"))
	wantFenced(t, s.Transact(ctx, fenced("fence{T/000}", []byte("r"), put("n", "x"))), "fence{T/000}", "r", "")
	wantAbsent(t, s, "n")
}

// testWriteUnderLostClaim: once another claim took the shard, a write under
// the claim that lost it applies nothing of its transaction.
func testWriteUnderLostClaim(t *testing.T, s statestore.Store) {
	ctx := t.Context()
	state := statestore.ActorStateKey("T", "a", "count")
	index := statestore.ReminderIndex("T", statestore.ShardOf("T", "a"))
	reminder := statestore.ReminderKey("T", "a", "tick")
	mustClaim(t, s, fenceKey, claimA1, false)
	if err := s.Transact(ctx, fenced(fenceKey, claimA1.HeldRecord(), put(state, "1"), putIn(index, reminder, "r1"))); err != nil {
		t.Fatalf("write under the held claim: %v", err)
	}
	before, rem := mustGet(t, s, state), mustGet(t, s, reminder)

	mustClaim(t, s, fenceKey, claimA2, false) // a newer version takes the shard
	err := s.Transact(ctx, fenced(fenceKey, claimA1.HeldRecord(),
		put(state, "2"), put(statestore.ActorStateKey("T", "a", "new"), "x"), delIn(index, reminder)))
	wantFenced(t, err, fenceKey, held(claimA1), held(claimA2))
	wantUnchanged(t, s, before)
	wantUnchanged(t, s, rem)
	wantAbsent(t, s, statestore.ActorStateKey("T", "a", "new"))
	wantScan(t, s, index, 10, reminder)
	// The new holder writes.
	if err := s.Transact(ctx, fenced(fenceKey, claimA2.HeldRecord(), delIn(index, reminder))); err != nil {
		t.Fatalf("write under the new claim: %v", err)
	}
	wantScan(t, s, index, 10)
}

// testRestartedProcess: a process restarted with the same silo ID and a new
// incarnation, at the same version, neither claims the shard nor writes
// under its predecessor's claim; at a newer version it claims the shard and
// its predecessor's writes stop.
func testRestartedProcess(t *testing.T, s statestore.Store) {
	ctx := t.Context()
	before := statestore.Claim{Cluster: "dev/s1", Version: 5, Silo: "s1", Incarnation: "old"}
	restarted := before
	restarted.Incarnation = "new"
	state := statestore.ActorStateKey("T", "a", "k")
	mustClaim(t, s, fenceKey, before, false)

	ce := wantRefused(t, statestore.ClaimShard(ctx, s, fenceKey, restarted, false), fenceKey, before)
	if ce.Newer || ce.OtherCluster || ce.Released {
		t.Errorf("same version held by the predecessor: refusal %+v, want neither newer, other cluster nor released", *ce)
	}
	// Even with takeover: it overrides another cluster only.
	wantRefused(t, statestore.ClaimShard(ctx, s, fenceKey, restarted, true), fenceKey, before)
	wantFenced(t, s.Transact(ctx, fenced(fenceKey, restarted.HeldRecord(), put(state, "new"))), fenceKey, held(restarted), held(before))
	wantAbsent(t, s, state)

	restarted.Version = 6
	mustClaim(t, s, fenceKey, restarted, false)
	wantFenced(t, s.Transact(ctx, fenced(fenceKey, before.HeldRecord(), put(state, "old"))), fenceKey, held(before), held(restarted))
	if err := s.Transact(ctx, fenced(fenceKey, restarted.HeldRecord(), put(state, "new"))); err != nil {
		t.Fatal(err)
	}
	wantValue(t, s, state, "new")
	// The predecessor, back at its old version, is refused as older.
	ce = wantRefused(t, statestore.ClaimShard(ctx, s, fenceKey, before, false), fenceKey, restarted)
	if !ce.Newer {
		t.Errorf("a claim below the record's version: refusal %+v, want Newer", *ce)
	}
}

// testClaimRules checks every case of ClaimShard's rules from every kind of
// record, and that a refused claim leaves the record as it was.
func testClaimRules(t *testing.T, s statestore.Store) {
	ctx := t.Context()
	a := func(version uint64, silo, inc string) statestore.Claim {
		return statestore.Claim{Cluster: "A", Version: version, Silo: silo, Incarnation: inc}
	}
	me := a(5, "s1", "i1")
	cases := []struct {
		name     string
		record   string // "" for absent
		takeover bool
		win      bool
		newer    bool // a refusal sets Newer
		other    bool // a refusal sets OtherCluster
		holder   statestore.Claim
	}{
		{name: "absent", win: true},
		{name: "equal, claimed again", record: held(me), win: true},
		{name: "held at an older version", record: held(a(4, "s2", "i2")), win: true},
		{name: "held at version 0", record: held(a(0, "s1", "i0")), win: true},
		{name: "released at an older version", record: released(a(3, "s2", "i2")), win: true},
		{name: "released at the same version by another silo", record: released(a(5, "s2", "i2")), win: true},
		{name: "released by the claim itself", record: released(me), win: true},
		{name: "held at a newer version", record: held(a(6, "s2", "i2")), newer: true, holder: a(6, "s2", "i2")},
		{name: "released at a newer version", record: released(a(7, "s1", "i1")), newer: true, holder: a(7, "s1", "i1")},
		{name: "newer version, takeover", record: held(a(6, "s2", "i2")), takeover: true, newer: true, holder: a(6, "s2", "i2")},
		{name: "same version, another silo", record: held(a(5, "s2", "i1")), holder: a(5, "s2", "i1")},
		{name: "same version, another incarnation", record: held(a(5, "s1", "i2")), holder: a(5, "s1", "i2")},
		{name: "another cluster", record: held(claimB9), other: true, holder: claimB9},
		{name: "another cluster, released", record: released(claimB9), other: true, holder: claimB9},
		{name: "another cluster, lower version", record: held(statestore.Claim{Cluster: "B", Version: 1, Silo: "s1", Incarnation: "i1"}), other: true,
			holder: statestore.Claim{Cluster: "B", Version: 1, Silo: "s1", Incarnation: "i1"}},
		{name: "another cluster, takeover", record: held(claimB9), takeover: true, win: true},
		{name: "another cluster, released, takeover", record: released(claimB9), takeover: true, win: true},
		{name: "not a fence record", record: "hello"},
		{name: "not a fence record, takeover", record: "granary-shard-fence/1 held A 05 s1 i1", takeover: true},
	}
	for i, c := range cases {
		key := statestore.ShardFenceKey("Rules", i)
		if c.record != "" {
			mustTransact(t, s, put(key, c.record))
		}
		var before statestore.Item
		if c.record != "" {
			before = mustGet(t, s, key)
		}
		err := statestore.ClaimShard(ctx, s, key, me, c.takeover)
		if c.win {
			if err != nil {
				t.Errorf("%s: claim refused: %v", c.name, err)
				continue
			}
			after := wantValue(t, s, key, held(me))
			if c.record == held(me) && after.ETag != before.ETag {
				t.Errorf("%s: claiming again rewrote the record", c.name)
			}
			continue
		}
		ce := wantRefused(t, err, key, c.holder)
		if ce.Newer != c.newer || ce.OtherCluster != c.other {
			t.Errorf("%s: refusal %+v, want Newer %v, OtherCluster %v", c.name, *ce, c.newer, c.other)
		}
		if wantReleased := c.record == released(c.holder) && c.holder != (statestore.Claim{}); ce.Released != wantReleased {
			t.Errorf("%s: refusal says released %v, want %v", c.name, ce.Released, wantReleased)
		}
		wantUnchanged(t, s, before)
	}
}

// testOtherCluster: another cluster's record is refused, naming the holder,
// unless the claim is a takeover.
func testOtherCluster(t *testing.T, s statestore.Store) {
	ctx := t.Context()
	mustClaim(t, s, fenceKey, claimB9, false)
	err := statestore.ClaimShard(ctx, s, fenceKey, claimA1, false)
	ce := wantRefused(t, err, fenceKey, claimB9)
	if !ce.OtherCluster || ce.Newer || ce.Released {
		t.Fatalf("refusal %+v, want OtherCluster only", *ce)
	}
	for _, name := range []string{`"B"`, `"s1"`, `"i9"`, "version 9", fenceKey} {
		if !contains(err.Error(), name) {
			t.Errorf("refusal %q does not name %s", err, name)
		}
	}
	wantValue(t, s, fenceKey, held(claimB9))
	mustClaim(t, s, fenceKey, claimA1, true)
	wantValue(t, s, fenceKey, held(claimA1))
	// The cluster that lost the shard is refused in turn.
	wantRefused(t, statestore.ClaimShard(ctx, s, fenceKey, claimB9, false), fenceKey, claimA1)
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// testReleaseShard: only the holder releases, releasing is idempotent, a
// released record fences its old holder's writes, and a later claim of the
// cluster wins it.
func testReleaseShard(t *testing.T, s statestore.Store) {
	ctx := t.Context()
	wantFenced(t, statestore.ReleaseShard(ctx, s, fenceKey, claimA1), fenceKey, held(claimA1), "")
	mustClaim(t, s, fenceKey, claimA1, false)
	wantFenced(t, statestore.ReleaseShard(ctx, s, fenceKey, claimA2), fenceKey, held(claimA2), held(claimA1))
	for range 2 {
		if err := statestore.ReleaseShard(ctx, s, fenceKey, claimA1); err != nil {
			t.Fatalf("ReleaseShard by the holder: %v", err)
		}
		wantValue(t, s, fenceKey, released(claimA1))
	}
	wantFenced(t, s.Transact(ctx, fenced(fenceKey, claimA1.HeldRecord(), put("k", "v"))), fenceKey, held(claimA1), released(claimA1))
	wantAbsent(t, s, "k")
	// Another process of the cluster at the same version claims the release.
	same := claimA1
	same.Silo = "s3"
	mustClaim(t, s, fenceKey, same, false)
	wantFenced(t, statestore.ReleaseShard(ctx, s, fenceKey, claimA1), fenceKey, held(claimA1), held(same))
	rec, err := statestore.ParseFenceRecord(mustGet(t, s, fenceKey).Value)
	if err != nil || rec.Claim != same || rec.Released {
		t.Fatalf("record after the claim = %+v, %v", rec, err)
	}
}

// testClaimShards claims a batch with every kind of outcome in it.
func testClaimShards(t *testing.T, s statestore.Store) {
	ctx := t.Context()
	keys := make([]string, 8)
	for i := range keys {
		keys[i] = statestore.ShardFenceKey("Batch", i)
	}
	mustClaim(t, s, keys[1], claimA1, false)                                                                 // older: won
	mustClaim(t, s, keys[2], claimA2, false)                                                                 // ours: kept
	mustClaim(t, s, keys[3], claimB9, false)                                                                 // another cluster: refused
	mustClaim(t, s, keys[4], statestore.Claim{Cluster: "A", Version: 3, Silo: "x", Incarnation: "y"}, false) // newer: refused
	mustTransact(t, s, put(keys[5], "garbage"))                                                              // unreadable: refused
	batch := append(slices.Clone(keys), keys[0])                                                             // a key twice
	errs := statestore.ClaimShards(ctx, s, batch, claimA2, false)
	if len(errs) != len(batch) {
		t.Fatalf("ClaimShards returned %d errors for %d keys", len(errs), len(batch))
	}
	for _, i := range []int{0, 1, 2, 6, 7, 8} {
		if errs[i] != nil {
			t.Errorf("key %q: %v, want claimed", batch[i], errs[i])
		}
		wantValue(t, s, batch[i], held(claimA2))
	}
	if ce := wantRefused(t, errs[3], keys[3], claimB9); !ce.OtherCluster {
		t.Errorf("another cluster's record: %+v", *ce)
	}
	if ce := wantRefused(t, errs[4], keys[4], statestore.Claim{Cluster: "A", Version: 3, Silo: "x", Incarnation: "y"}); !ce.Newer {
		t.Errorf("a newer record: %+v", *ce)
	}
	wantRefused(t, errs[5], keys[5], statestore.Claim{})
	wantValue(t, s, keys[3], held(claimB9))
	wantValue(t, s, keys[5], "garbage")

	// With takeover the other cluster's record goes too; the rest stays.
	errs = statestore.ClaimShards(ctx, s, keys, claimA2, true)
	for i, err := range errs {
		switch i {
		case 4, 5:
			if !errors.Is(err, statestore.ErrFenced) {
				t.Errorf("takeover batch, key %q: %v, want refused", keys[i], err)
			}
		default:
			if err != nil {
				t.Errorf("takeover batch, key %q: %v", keys[i], err)
			}
		}
	}
	wantValue(t, s, keys[3], held(claimA2))
	if errs := statestore.ClaimShards(ctx, s, nil, claimA2, false); len(errs) != 0 {
		t.Errorf("an empty batch returned %v", errs)
	}
	bad := claimA2
	bad.Silo = "two words"
	for _, err := range statestore.ClaimShards(ctx, s, keys[:2], bad, false) {
		if err == nil || errors.Is(err, statestore.ErrFenced) {
			t.Errorf("batch with an invalid claim: %v, want a plain error", err)
		}
	}
}

// testConcurrentClaims races claims of one record: the versions written
// only go up, at most one process per version wins, and the record ends
// with the newest claim that won.
func testConcurrentClaims(t *testing.T, s statestore.Store) {
	const versions, perVersion = 4, 2
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		winner = map[uint64][]statestore.Claim{}
	)
	start := make(chan struct{})
	for v := range versions {
		for p := range perVersion {
			c := statestore.Claim{Cluster: "A", Version: uint64(v + 1), Silo: "s", Incarnation: fmt.Sprintf("p%d", p)}
			wg.Go(func() {
				<-start
				err := statestore.ClaimShard(t.Context(), s, fenceKey, c, false)
				if err != nil && !errors.Is(err, statestore.ErrFenced) {
					t.Errorf("claim %v: %v", c, err)
				}
				if err == nil {
					mu.Lock()
					winner[c.Version] = append(winner[c.Version], c)
					mu.Unlock()
				}
			})
		}
	}
	close(start)
	wg.Wait()
	var newest statestore.Claim
	for v, won := range winner {
		if len(won) > 1 {
			t.Errorf("version %d: %d processes won the claim: %v", v, len(won), won)
		}
		if v > newest.Version {
			newest = won[0]
		}
	}
	if newest == (statestore.Claim{}) {
		t.Fatal("no claim won")
	}
	wantValue(t, s, fenceKey, held(newest))
}

// testNextVersion: the counter starts at 1, counts up, and hands concurrent
// callers different values.
func testNextVersion(t *testing.T, s statestore.Store) {
	key := statestore.ClusterVersionKey("dev/s1")
	for want := uint64(1); want <= 3; want++ {
		got, err := statestore.NextVersion(t.Context(), s, key)
		if err != nil || got != want {
			t.Fatalf("NextVersion = %d, %v; want %d", got, err, want)
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[uint64]bool{}
	)
	for range 8 {
		wg.Go(func() {
			v, err := statestore.NextVersion(t.Context(), s, key)
			if errors.Is(err, statestore.ErrETagMismatch) {
				return // lost every attempt to the others: allowed
			}
			if err != nil {
				t.Errorf("NextVersion: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[v] {
				t.Errorf("NextVersion returned %d twice", v)
			}
			seen[v] = true
		})
	}
	wg.Wait()
	wantValue(t, s, key, fmt.Sprint(3+len(seen)))
	mustTransact(t, s, put(key, "07"))
	if _, err := statestore.NextVersion(t.Context(), s, key); err == nil {
		t.Error("NextVersion counted up from a counter that is not canonical decimal")
	}
}
