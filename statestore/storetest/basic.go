package storetest

import (
	"errors"
	"strconv"
	"testing"

	"github.com/granaryhq/granary/statestore"
)

func testReadYourWrites(t *testing.T, s statestore.Store) {
	wantAbsent(t, s, "never-written")

	mustTransact(t, s, put("a", "1"), put("b", "2"), put("empty", ""))
	a := wantValue(t, s, "a", "1")
	b := wantValue(t, s, "b", "2")
	if !a.Expires.IsZero() {
		t.Errorf("a put without TTL expires at %v", a.Expires)
	}
	if a.ETag == b.ETag {
		t.Errorf("a and b, written in one transaction, share ETag %q", a.ETag)
	}
	if e := mustGet(t, s, "empty"); len(e.Value) != 0 {
		t.Errorf("empty value read back as %q", e.Value)
	}

	items, err := s.BulkGet(t.Context(), []string{"b", "a"})
	if err != nil {
		t.Fatalf("BulkGet: %v", err)
	}
	if len(items) != 2 || items[0].Key != "b" || items[1].Key != "a" ||
		string(items[0].Value) != "2" || string(items[1].Value) != "1" ||
		items[0].ETag != b.ETag || items[1].ETag != a.ETag {
		t.Fatalf("BulkGet(b, a) = %+v, want b=2 (etag %q), a=1 (etag %q)", items, b.ETag, a.ETag)
	}

	mustTransact(t, s, put("a", "3"))
	if a2 := wantValue(t, s, "a", "3"); a2.ETag == a.ETag {
		t.Errorf("overwrite kept ETag %q", a.ETag)
	}
	mustTransact(t, s, del("a"))
	wantAbsent(t, s, "a")
	wantValue(t, s, "b", "2")
}

func testBulkGet(t *testing.T, s statestore.Store) {
	mustTransact(t, s, put("a", "va"), put("b", "vb"), put("c", "vc"))
	keys := []string{"c", "missing", "a", "c", "b", "missing", "a"}
	items, err := s.BulkGet(t.Context(), keys)
	if err != nil {
		t.Fatalf("BulkGet: %v", err)
	}
	if len(items) != len(keys) {
		t.Fatalf("BulkGet returned %d items for %d keys", len(items), len(keys))
	}
	etags := map[string]string{}
	for i, key := range keys {
		item := items[i]
		if item.Key != key {
			t.Errorf("item %d has key %q, want %q", i, item.Key, key)
		}
		if key == "missing" {
			if item.Exists() || len(item.Value) != 0 || !item.Expires.IsZero() {
				t.Errorf("item %d for a missing key = %+v, want an empty item", i, item)
			}
			continue
		}
		if !item.Exists() || string(item.Value) != "v"+key {
			t.Errorf("item %d = %+v, want value %q", i, item, "v"+key)
		}
		if prev, ok := etags[key]; ok && prev != item.ETag {
			t.Errorf("duplicate key %q read with ETags %q and %q", key, prev, item.ETag)
		}
		etags[key] = item.ETag
		if got := mustGet(t, s, key); got.ETag != item.ETag {
			t.Errorf("BulkGet ETag %q of %q differs from Get ETag %q", item.ETag, key, got.ETag)
		}
	}

	for _, none := range [][]string{nil, {}} {
		items, err := s.BulkGet(t.Context(), none)
		if err != nil || len(items) != 0 {
			t.Errorf("BulkGet(%v) = %v, %v; want no items", none, items, err)
		}
	}
}

func testValuesAreCopied(t *testing.T, s statestore.Store) {
	value := []byte("original")
	if err := s.Transact(t.Context(), statestore.Txn{Ops: []statestore.Op{{Kind: statestore.Put, Key: "k", Value: value}}}); err != nil {
		t.Fatal(err)
	}
	copy(value, "XXXXXXXX")
	got := wantValue(t, s, "k", "original")
	copy(got.Value, "YYYYYYYY")
	items, err := s.BulkGet(t.Context(), []string{"k"})
	if err != nil {
		t.Fatal(err)
	}
	copy(items[0].Value, "ZZZZZZZZ")
	wantValue(t, s, "k", "original")
}

func testETagNeverRepeats(t *testing.T, s statestore.Store) {
	seen := map[string]int{}
	record := func(write int) {
		t.Helper()
		etag := mustGet(t, s, "k").ETag
		if prev, ok := seen[etag]; ok {
			t.Fatalf("write %d reused ETag %q of write %d", write, etag, prev)
		}
		seen[etag] = write
	}
	for i := range 30 {
		switch i % 5 {
		case 0, 1:
			mustTransact(t, s, put("k", "same value"))
		case 2:
			// Two puts in one transaction: the key still gets a new ETag.
			mustTransact(t, s, put("k", "same value"), put("k", "same value"))
		case 3:
			// Delete and create again: no ABA.
			mustTransact(t, s, del("k"))
			wantAbsent(t, s, "k")
			mustTransact(t, s, put("k", "same value"))
		case 4:
			mustTransact(t, s, del("k"), put("k", "same value"))
		}
		record(i)
	}
}

func testETagMismatch(t *testing.T, s statestore.Store) {
	mustTransact(t, s, put("k", "v1"))
	v1 := mustGet(t, s, "k")

	err := s.Transact(t.Context(), statestore.Txn{Ops: []statestore.Op{withETag(put("k", "bad"), "not-"+v1.ETag)}})
	ce := wantCondition(t, err, "k")
	if ce.Want != "not-"+v1.ETag || ce.Have != v1.ETag {
		t.Errorf("ConditionError = %+v, want Want %q, Have %q", *ce, "not-"+v1.ETag, v1.ETag)
	}
	wantUnchanged(t, s, v1)

	mustTransact(t, s, withETag(put("k", "v2"), v1.ETag))
	v2 := wantValue(t, s, "k", "v2")
	if v2.ETag == v1.ETag {
		t.Fatalf("conditional write kept ETag %q", v1.ETag)
	}

	// The first version's ETag is stale now, for puts and deletes alike.
	for _, op := range []statestore.Op{withETag(put("k", "v3"), v1.ETag), withETag(del("k"), v1.ETag)} {
		err := s.Transact(t.Context(), statestore.Txn{Ops: []statestore.Op{op}})
		if ce := wantCondition(t, err, "k"); ce.Want != v1.ETag || ce.Have != v2.ETag {
			t.Errorf("%v with stale ETag: ConditionError = %+v, want Want %q, Have %q", op.Kind, *ce, v1.ETag, v2.ETag)
		}
		wantUnchanged(t, s, v2)
	}

	mustTransact(t, s, withETag(del("k"), v2.ETag))
	wantAbsent(t, s, "k")

	// An ETag requires the key to exist.
	for _, op := range []statestore.Op{withETag(put("k", "v4"), v2.ETag), withETag(del("k"), v2.ETag), withETag(put("other", "x"), "1")} {
		err := s.Transact(t.Context(), statestore.Txn{Ops: []statestore.Op{op}})
		if ce := wantCondition(t, err, op.Key); ce.Have != "absent" || ce.Want != op.ETag {
			t.Errorf("%v of an absent key with ETag: ConditionError = %+v, want Want %q, Have \"absent\"", op.Kind, *ce, op.ETag)
		}
		wantAbsent(t, s, op.Key)
	}
}

func testIfAbsent(t *testing.T, s statestore.Store) {
	mustTransact(t, s, ifAbsent(put("k", "first")))
	first := wantValue(t, s, "k", "first")

	err := s.Transact(t.Context(), statestore.Txn{Ops: []statestore.Op{ifAbsent(put("k", "second"))}})
	if ce := wantCondition(t, err, "k"); ce.Want != "absent" || ce.Have != first.ETag {
		t.Errorf("ConditionError = %+v, want Want \"absent\", Have %q", *ce, first.ETag)
	}
	wantUnchanged(t, s, first)

	mustTransact(t, s, del("k"))
	mustTransact(t, s, ifAbsent(put("k", "third")))
	wantValue(t, s, "k", "third")
}

func testLastWrite(t *testing.T, s statestore.Store) {
	mustTransact(t, s, put("k", "one"))
	mustTransact(t, s, put("k", "two"))
	wantValue(t, s, "k", "two")
	mustTransact(t, s, del("k"))
	mustTransact(t, s, del("k"))
	mustTransact(t, s, del("never-existed"))
	wantAbsent(t, s, "k")
}

func testAllOrNothing(t *testing.T, s statestore.Store) {
	const index = "all"
	mustTransact(t, s, put("keep", "kept"), putIn(index, "gone", "g"))
	keep := mustGet(t, s, "keep")
	gone := mustGet(t, s, "gone")

	body := []statestore.Op{
		put("new1", "n1"),
		put("keep", "changed"),
		delIn(index, "gone"),
		putIn(index, "new2", "n2"),
	}
	for _, last := range []statestore.Op{
		withETag(put("keep", "again"), "stale-etag"),
		ifAbsent(put("keep", "again")),
		withETag(del("new3"), "no-such-etag"),
	} {
		ops := append(append([]statestore.Op(nil), body...), last)
		err := s.Transact(t.Context(), statestore.Txn{Ops: ops})
		wantCondition(t, err, last.Key)
		wantAbsent(t, s, "new1")
		wantAbsent(t, s, "new2")
		wantUnchanged(t, s, keep)
		wantUnchanged(t, s, gone)
		wantScan(t, s, index, 10, "gone")
	}

	mustTransact(t, s, body...)
	wantValue(t, s, "new1", "n1")
	wantValue(t, s, "new2", "n2")
	wantValue(t, s, "keep", "changed")
	wantAbsent(t, s, "gone")
	wantScan(t, s, index, 10, "new2")
}

// testOperationsInOrder pins down the ordering rule of the contract: the
// operations of a transaction apply in order, and the condition of each is
// evaluated against the state as modified by the earlier operations of the
// same transaction (not against the state before the transaction).
func testOperationsInOrder(t *testing.T, s statestore.Store) {
	const pre = "pre-txn"
	cases := []struct {
		name   string
		exists bool // whether k holds pre before the transaction
		ops    func(etag string) []statestore.Op
		// failing names the expected outcome: "" for success, otherwise the
		// Have of the expected ConditionError ("new" when it is an ETag drawn
		// inside the transaction, which the caller cannot know).
		failing string
		want    string // k's value afterwards; "" for absent
	}{
		{"put then delete leaves it absent", false, func(string) []statestore.Op {
			return []statestore.Op{put("k", "v"), del("k")}
		}, "", ""},
		{"delete then put leaves the put", true, func(string) []statestore.Op {
			return []statestore.Op{del("k"), put("k", "v")}
		}, "", "v"},
		{"later put wins", false, func(string) []statestore.Op {
			return []statestore.Op{put("k", "v1"), put("k", "v2")}
		}, "", "v2"},
		{"delete then IfAbsent put succeeds", true, func(string) []statestore.Op {
			return []statestore.Op{del("k"), ifAbsent(put("k", "v"))}
		}, "", "v"},
		{"put then IfAbsent put fails", false, func(string) []statestore.Op {
			return []statestore.Op{put("k", "v1"), ifAbsent(put("k", "v2"))}
		}, "new", ""},
		{"pre-transaction ETag is stale after an earlier put", true, func(etag string) []statestore.Op {
			return []statestore.Op{withETag(put("k", "v1"), etag), withETag(put("k", "v2"), etag)}
		}, "new", pre},
		{"pre-transaction ETag fails after an earlier delete", true, func(etag string) []statestore.Op {
			return []statestore.Op{withETag(del("k"), etag), withETag(put("k", "v"), etag)}
		}, "absent", pre},
		{"ETag condition after an earlier put of another key", true, func(etag string) []statestore.Op {
			return []statestore.Op{put("other", "o"), withETag(put("k", "v"), etag)}
		}, "", "v"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Fresh keys per case: the store is shared by the cases.
			k, other := "k"+strconv.Itoa(i), "other"+strconv.Itoa(i)
			rename := func(ops []statestore.Op) []statestore.Op {
				for j := range ops {
					switch ops[j].Key {
					case "k":
						ops[j].Key = k
					case "other":
						ops[j].Key = other
					}
				}
				return ops
			}
			var before statestore.Item
			if c.exists {
				mustTransact(t, s, put(k, pre))
				before = mustGet(t, s, k)
			}
			err := s.Transact(t.Context(), statestore.Txn{Ops: rename(c.ops(before.ETag))})
			switch {
			case c.failing == "" && err != nil:
				t.Fatalf("Transact: %v", err)
			case c.failing != "":
				ce := wantCondition(t, err, k)
				switch c.failing {
				case "new":
					if ce.Have == "absent" || ce.Have == before.ETag {
						t.Errorf("ConditionError.Have = %q, want the ETag of the earlier put", ce.Have)
					}
				default:
					if ce.Have != c.failing {
						t.Errorf("ConditionError.Have = %q, want %q", ce.Have, c.failing)
					}
				}
				// Nothing applied.
				if c.exists {
					wantUnchanged(t, s, before)
				}
				wantAbsent(t, s, other)
			}
			if c.want == "" {
				wantAbsent(t, s, k)
			} else {
				wantValue(t, s, k, c.want)
			}
		})
	}
}

func testInvalidTransactions(t *testing.T, s statestore.Store) {
	valid := put("valid", "v")
	cases := []struct {
		name string
		txn  statestore.Txn
	}{
		{"empty key", statestore.Txn{Ops: []statestore.Op{valid, put("", "v")}}},
		{"delete with value", statestore.Txn{Ops: []statestore.Op{valid, {Kind: statestore.Delete, Key: "d", Value: []byte("x")}}}},
		{"delete with TTL", statestore.Txn{Ops: []statestore.Op{valid, {Kind: statestore.Delete, Key: "d", TTL: 1}}}},
		{"negative TTL", statestore.Txn{Ops: []statestore.Op{valid, {Kind: statestore.Put, Key: "n", TTL: -1}}}},
		{"ETag and IfAbsent", statestore.Txn{Ops: []statestore.Op{valid, {Kind: statestore.Put, Key: "b", ETag: "1", IfAbsent: true}}}},
		{"unknown kind", statestore.Txn{Ops: []statestore.Op{valid, {Kind: 0, Key: "u"}}}},
		{"unknown kind 9", statestore.Txn{Ops: []statestore.Op{valid, {Kind: 9, Key: "u"}}}},
		{"fence with empty key", statestore.Txn{Fence: &statestore.FenceCheck{Record: []byte("r")}, Ops: []statestore.Op{valid}}},
		{"fence with empty record", statestore.Txn{Fence: &statestore.FenceCheck{Key: "f"}, Ops: []statestore.Op{valid}}},
	}
	for _, c := range cases {
		if c.txn.Validate() == nil {
			t.Fatalf("%s: Txn.Validate accepts the case", c.name)
		}
		err := s.Transact(t.Context(), c.txn)
		if err == nil {
			t.Errorf("%s: Transact accepted an invalid transaction", c.name)
		} else if errors.Is(err, statestore.ErrETagMismatch) || errors.Is(err, statestore.ErrFenced) || errors.Is(err, statestore.ErrClosed) {
			t.Errorf("%s: Transact error %v looks like a data condition, not a rejected shape", c.name, err)
		}
		wantAbsent(t, s, "valid")
	}

	if err := s.Transact(t.Context(), statestore.Txn{}); err != nil {
		t.Errorf("empty transaction: %v", err)
	}
}
