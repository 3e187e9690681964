package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/granaryhq/granary/statestore"
)

func testScanPaging(t *testing.T, s statestore.Store) {
	const index = "reminders{T/001}"
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]string, 60)
	for i := range keys {
		keys[i] = fmt.Sprintf("actor{T/%d}/reminder/r%d", rng.IntN(1000), i)
	}
	shuffled := slices.Clone(keys)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for chunk := range slices.Chunk(shuffled, 7) {
		ops := make([]statestore.Op, len(chunk))
		for i, k := range chunk {
			ops[i] = putIn(index, k, "v-"+k)
		}
		mustTransact(t, s, ops...)
	}
	// Keys outside the index.
	mustTransact(t, s, put("actor{T/1}/state/x", "not indexed"), putIn("reminders{T/002}", "actor{T/2}/reminder/o", "other index"))
	slices.Sort(keys)

	wantScanAtLimits(t, s, index, keys, 1, 3, 7, 59, 60, 61, 1000)
	items := scanAll(t, s, index, 13)
	for _, item := range items[:5] {
		if got := mustGet(t, s, item.Key); got.ETag != item.ETag || !got.Expires.Equal(item.Expires) {
			t.Errorf("Scan item %+v differs from Get %+v", item, got)
		}
	}

	ctx := t.Context()
	cases := []struct {
		after string
		limit int
		want  []string
	}{
		{"", 2, keys[:2]},
		{"a", 1, keys[:1]},                    // before every key
		{keys[10], 2, keys[11:13]},            // a member: strictly after it
		{keys[10] + "\x00", 1, keys[11:12]},   // between two members
		{keys[len(keys)-1], 10, nil},          // after the last
		{keys[len(keys)-1] + "\x00", 10, nil}, // after the last, not a member
		{"\xff\xff", 10, nil},                 // after everything
		{keys[len(keys)-2], 10, keys[len(keys)-1:]},
		{"", 0, nil},
	}
	for _, c := range cases {
		got, err := s.Scan(ctx, index, c.after, c.limit)
		if err != nil {
			t.Fatalf("Scan(after %q, limit %d): %v", c.after, c.limit, err)
		}
		if !slices.Equal(keysOf(got), c.want) {
			t.Errorf("Scan(after %q, limit %d) = %q, want %q", c.after, c.limit, keysOf(got), c.want)
		}
	}
	if got, err := s.Scan(ctx, "no-such-index", "", 10); err != nil || len(got) != 0 {
		t.Errorf("Scan of an unknown index = %v, %v; want nothing", got, err)
	}
	if _, err := s.Scan(ctx, index, "", -1); err == nil {
		t.Error("Scan accepted a negative limit")
	}
}

// wantScanAtLimits pages through index with each limit, wanting the keys
// want (sorted), each with the value "v-" + its key.
func wantScanAtLimits(t *testing.T, s statestore.Store, index string, want []string, limits ...int) {
	t.Helper()
	for _, limit := range limits {
		items := scanAll(t, s, index, limit)
		if got := keysOf(items); !slices.Equal(got, want) {
			t.Fatalf("limit %d: keys = %q, want %q", limit, got, want)
		}
		for _, item := range items {
			if string(item.Value) != "v-"+item.Key {
				t.Fatalf("limit %d: %q has value %q", limit, item.Key, item.Value)
			}
		}
	}
}

func testScanIndexesSeparate(t *testing.T, s statestore.Store) {
	// Index names and keys chosen so that joining index and key without a
	// separator, or with "/" or "{", would mix them up.
	members := map[string][]string{
		"r":     {"{a", "/0k", "r", "\x00"},
		"r{":    {"a", "b"},
		"r/0":   {"k", "r/0"},
		"rr":    {"x", "rr"},
		"R":     {"A"},
		"r\x00": {"\x00\x00"},
	}
	var ops []statestore.Op
	for index, keys := range members {
		for _, k := range keys {
			ops = append(ops, putIn(index, k, index))
		}
	}
	ops = append(ops, put("unindexed", "u"))
	mustTransact(t, s, ops...)
	for index, keys := range members {
		items := scanAll(t, s, index, 2)
		want := slices.Sorted(slices.Values(keys))
		if got := keysOf(items); !slices.Equal(got, want) {
			t.Errorf("Scan(%q) = %q, want %q", index, got, want)
		}
		for _, item := range items {
			if string(item.Value) != index {
				t.Errorf("Scan(%q) returned %q with value %q", index, item.Key, item.Value)
			}
		}
	}
}

// testScanKeyPrefixIndex scans a reminder index, whose members a store may
// find by their key prefix (statestore.IndexKeyPrefix), among keys under
// that prefix that are not its members and members that are not under it.
func testScanKeyPrefixIndex(t *testing.T, s statestore.Store) {
	index := statestore.ReminderIndex("T", 1)
	prefix, ok := statestore.IndexKeyPrefix(index)
	if !ok {
		t.Fatalf("%q has no key prefix", index)
	}
	var members []string
	var ops []statestore.Op
	for i := range 12 {
		k := fmt.Sprintf("%sa%d/reminder/r%d", prefix, i%3, i)
		members = append(members, k)
		ops = append(ops, putIn(index, k, "v-"+k),
			put(fmt.Sprintf("%sa%d/state/s%d", prefix, i%3, i), "state"))
	}
	// Members not under the prefix, sorting before, among and after the others.
	for _, k := range []string{"actor{T/000}/z/reminder/r", prefix + "a1", "actor{T/001}/zz", "b"} {
		members = append(members, k)
		ops = append(ops, putIn(index, k, "v-"+k))
	}
	// Under the prefix but members of another index.
	other := statestore.ReminderIndex("T", 2)
	ops = append(ops, putIn(other, prefix+"a0/reminder/elsewhere", "other"), putIn("plain", prefix+"a1/reminder/plain", "plain"))
	mustTransact(t, s, ops...)
	slices.Sort(members)
	wantScanAtLimits(t, s, index, members, 1, 2, 5, 15, 16, 17, 100)
	wantScan(t, s, other, 10, prefix+"a0/reminder/elsewhere")
	wantScan(t, s, "plain", 10, prefix+"a1/reminder/plain")
	if got, err := s.Scan(t.Context(), index, members[3], 2); err != nil || !slices.Equal(keysOf(got), members[4:6]) {
		t.Errorf("Scan(after %q, 2) = %q, %v; want %q", members[3], keysOf(got), err, members[4:6])
	}

	// A deleted member leaves the scan, a rewritten one stays once, and a
	// deleted one put back returns.
	gone, kept, back := members[0], members[5], members[8]
	mustTransact(t, s, delIn(index, gone), delIn(index, back), putIn(index, kept, "v-"+kept), putIn(index, kept, "v-"+kept))
	want := slices.DeleteFunc(slices.Clone(members), func(k string) bool { return k == gone || k == back })
	wantScan(t, s, index, 3, want...)
	mustTransact(t, s, putIn(index, back, "v-"+back))
	wantScan(t, s, index, 4, append(want, back)...)
	wantScan(t, s, other, 10, prefix+"a0/reminder/elsewhere")
}

func testScanDeletes(t *testing.T, s statestore.Store) {
	const index = "del"
	var keys []string
	var ops []statestore.Op
	for i := range 10 {
		k := fmt.Sprintf("k%02d", i)
		keys = append(keys, k)
		ops = append(ops, putIn(index, k, "v"))
	}
	mustTransact(t, s, ops...)
	mustTransact(t, s, delIn(index, "k00"), delIn(index, "k04"), delIn(index, "k09"))
	wantScan(t, s, index, 3, "k01", "k02", "k03", "k05", "k06", "k07", "k08")

	// Overwrites keep a key in the index exactly once; a put brings a deleted key back.
	mustTransact(t, s, putIn(index, "k01", "v2"), putIn(index, "k01", "v3"))
	mustTransact(t, s, putIn(index, "k01", "v4"), putIn(index, "k04", "back"))
	wantScan(t, s, index, 3, "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08")
	if items := scanAll(t, s, index, 100); string(items[0].Value) != "v4" {
		t.Errorf("k01 scanned with value %q, want v4", items[0].Value)
	}

	ops = ops[:0]
	for _, k := range keys {
		ops = append(ops, delIn(index, k))
	}
	mustTransact(t, s, ops...)
	wantScan(t, s, index, 3)
}

// testScanUnderWrites pages through an index while writers add, rewrite and
// delete keys of it: every key committed before the scan started and not
// deleted must come back exactly once, in order.
func testScanUnderWrites(t *testing.T, s statestore.Store) {
	const (
		index   = "busy"
		pre     = 240
		writers = 3
		rounds  = 3
	)
	var preKeys []string
	for chunk := range slices.Chunk(seq(pre), 40) {
		ops := make([]statestore.Op, len(chunk))
		for i, n := range chunk {
			k := fmt.Sprintf("k%05d", 2*n)
			preKeys = append(preKeys, k)
			ops[i] = putIn(index, k, "pre")
		}
		mustTransact(t, s, ops...)
	}

	stop := make(chan struct{})
	started := make(chan struct{}, writers)
	var wg sync.WaitGroup
	// Stop the writers however the scan ends, before the store is closed.
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// A new key between two committed ones, a rewrite of a
				// committed one, and the removal of the new key.
				fresh := fmt.Sprintf("k%05d", 2*rng.IntN(pre)+1)
				var ops []statestore.Op
				switch i % 3 {
				case 0:
					ops = []statestore.Op{putIn(index, fresh, "fresh")}
				case 1:
					ops = []statestore.Op{putIn(index, preKeys[rng.IntN(pre)], fmt.Sprintf("rewrite %d", i))}
				case 2:
					ops = []statestore.Op{delIn(index, fresh), putIn(index, fmt.Sprintf("k%05d", 2*rng.IntN(pre)+1), "fresh")}
				}
				err := s.Transact(t.Context(), statestore.Txn{Ops: ops})
				if i == 0 {
					started <- struct{}{}
				}
				if err != nil {
					t.Errorf("writer %d: Transact: %v", w, err)
					return
				}
			}
		}()
	}
	for range writers {
		<-started
	}
	for range rounds {
		got := map[string]bool{}
		for _, item := range scanAll(t, s, index, 9) {
			got[item.Key] = true
		}
		for _, k := range preKeys {
			if !got[k] {
				t.Errorf("scan under writes missed %q", k)
			}
		}
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
