package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/statestore"
)

func indexedPut(index, key, value string) statestore.Op {
	op := put(key, value)
	op.Index = index
	return op
}

func indexedDel(index, key string) statestore.Op {
	op := del(key)
	op.Index = index
	return op
}

// scanAll pages through index limit items at a time.
func scanAll(t testing.TB, s *Store, index string, limit int) []string {
	t.Helper()
	var keys []string
	after := ""
	for {
		items, err := s.Scan(context.Background(), index, after, limit)
		if err != nil {
			t.Fatalf("Scan(%q, %q, %d): %v", index, after, limit, err)
		}
		for _, it := range items {
			if !it.Exists() || it.Key <= after {
				t.Fatalf("Scan returned %+v after %q", it, after)
			}
			keys = append(keys, it.Key)
			after = it.Key
		}
		if len(items) < limit {
			return keys
		}
	}
}

// members lists the raw index of the store, including keys that are gone.
func members(t testing.TB, s *Store, index string) []string {
	t.Helper()
	m, err := s.client.ZRange(context.Background(), s.indexKey(index), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestScan(t *testing.T) {
	modes(t, func(t *testing.T, opts Options) {
		s := openTest(t, opts)
		ctx := context.Background()
		index := statestore.ReminderIndex("T", 7)
		var want []string
		for i := range 25 {
			k := statestore.ReminderKey("T", strconv.Itoa(i), "r")
			mustTransact(t, s, indexedPut(index, k, "v"+strconv.Itoa(i)))
			want = append(want, k)
		}
		// Binary keys sort bytewise.
		for _, k := range []string{"\x00first", "\xfflast", "mid\x00dle"} {
			mustTransact(t, s, indexedPut(index, k, "b"))
			want = append(want, k)
		}
		mustTransact(t, s, put("not-indexed", "x"), indexedPut("other", "elsewhere", "x"))
		slices.Sort(want)
		for _, limit := range []int{1, 2, 7, 28, 100} {
			if got := scanAll(t, s, index, limit); !slices.Equal(got, want) {
				t.Errorf("limit %d: got %q, want %q", limit, got, want)
			}
		}
		items, err := s.Scan(ctx, index, "", 1)
		if err != nil || len(items) != 1 || items[0].Key != want[0] || string(items[0].Value) != "b" || items[0].ETag == "" {
			t.Errorf("first item = %+v, %v", items, err)
		}
		if items, err := s.Scan(ctx, index, want[len(want)-1], 10); err != nil || len(items) != 0 {
			t.Errorf("scan after the last key = %v, %v", items, err)
		}
		if items, err := s.Scan(ctx, "no-such-index", "", 10); err != nil || len(items) != 0 {
			t.Errorf("scan of unknown index = %v, %v", items, err)
		}
		if items, err := s.Scan(ctx, index, "", 0); err != nil || len(items) != 0 {
			t.Errorf("scan with limit 0 = %v, %v", items, err)
		}
		if _, err := s.Scan(ctx, index, "", -1); err == nil {
			t.Error("scan with negative limit accepted")
		}

		// A delete leaves the index at once, also from the raw set.
		gone := want[3]
		mustTransact(t, s, indexedDel(index, gone))
		want = slices.Delete(want, 3, 4)
		if got := scanAll(t, s, index, 5); !slices.Equal(got, want) {
			t.Errorf("after delete: got %q, want %q", got, want)
		}
	})
}

// TestDeleteLeavesRawIndex checks that a delete removes an old key from the
// sorted set itself, not just from Scan results.
func TestDeleteLeavesRawIndex(t *testing.T) {
	s := openTest(t, Options{})
	ageMarks(t, s, "idx") // no marks yet: nothing to age
	mustTransact(t, s, indexedPut("idx", "a", "1"), indexedPut("idx", "b", "1"))
	ageMarks(t, s, "idx")
	mustTransact(t, s, indexedDel("idx", "a"))
	if got := members(t, s, "idx"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("raw index after delete = %q, want [b]", got)
	}
}

// ageMarks backdates every mark of index by an hour, as if the keys had been
// put long ago.
func ageMarks(t testing.TB, s *Store, index string) {
	t.Helper()
	ctx := context.Background()
	marks, err := s.client.HGetAll(ctx, s.marksKey(index)).Result()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range marks {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("mark %q = %q", k, v)
		}
		s.client.HSet(ctx, s.marksKey(index), k, ms-time.Hour.Milliseconds())
	}
}

func TestScanSkipsAndCleansGoneKeys(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	const index = "idx{T/000}"

	// "expired": put with a short TTL, put long ago.
	exp := indexedPut(index, "expired", "v")
	exp.TTL = 20 * time.Millisecond
	mustTransact(t, s, exp, indexedPut(index, "live", "v"))
	// "refused": added to the index by a transaction whose condition failed.
	mustTransact(t, s, put("refused", "v"))
	refused := indexedPut(index, "refused", "v2")
	refused.ETag = "wrong"
	if err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{refused}}); err == nil {
		t.Fatal("refused put accepted")
	}
	mustTransact(t, s, del("refused"))
	ageMarks(t, s, index)
	waitGone(t, s, "expired")

	if got := scanAll(t, s, index, 10); !slices.Equal(got, []string{"live"}) {
		t.Errorf("scan = %q, want [live]", got)
	}
	if got := members(t, s, index); !slices.Equal(got, []string{"live"}) {
		t.Errorf("raw index after scan = %q, want gone keys removed", got)
	}
	if n, err := s.client.HLen(ctx, s.marksKey(index)).Result(); err != nil || n != 1 {
		t.Errorf("marks left = %d, %v; want 1", n, err)
	}
}

// TestScanKeepsPendingKeys: a key marked in the index moments ago whose put
// has not committed yet must stay in the index, or the put would commit a key
// no Scan finds.
func TestScanKeepsPendingKeys(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	const index = "idx"
	if _, err := s.mark(ctx, map[string][]string{index: {"pending"}}); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, s, index, 10); len(got) != 0 {
		t.Errorf("scan = %q, want nothing", got)
	}
	if got := members(t, s, index); !slices.Equal(got, []string{"pending"}) {
		t.Fatalf("pending key removed from the index: %q", got)
	}
	mustTransact(t, s, indexedPut(index, "pending", "v"))
	if got := scanAll(t, s, index, 10); !slices.Equal(got, []string{"pending"}) {
		t.Errorf("scan after commit = %q", got)
	}
}

// TestDeleteKeepsRecreatedKey: a delete's index removal runs after its
// commit; if the key was put again meanwhile, it must stay indexed.
func TestDeleteKeepsRecreatedKey(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	const index = "idx"
	mustTransact(t, s, indexedPut(index, "k", "v1"))
	ageMarks(t, s, index)
	// The delete commits...
	res, err := s.runTxn(ctx, []string{s.dataKey("k")}, []any{"", "", "d", "", "", "0", []byte{}, ""})
	if err != nil {
		t.Fatal(err)
	}
	out, err := parseTxn(statestore.Txn{Ops: []statestore.Op{indexedDel(index, "k")}}, res)
	if err != nil || out.err != nil {
		t.Fatal(err, out.err)
	}
	// ...a put of the key marks and commits...
	mustTransact(t, s, indexedPut(index, "k", "v2"))
	// ...and only then the delete's index removal arrives.
	if err := s.unindex(ctx, map[string][]string{index: {"k"}}, out.committedAt); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, s, index, 10); !slices.Equal(got, []string{"k"}) {
		t.Errorf("re-created key lost from the index: scan = %q", got)
	}
}

// TestLateTransactionWritesNothing: a transaction reaching Redis after its
// index marks' window is refused before writing, and Transact marks again.
func TestLateTransactionWritesNothing(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	res, err := s.runTxn(ctx, []string{s.dataKey("k")}, []any{"", "1", "p", "", "", "0", []byte("v"), s.etags.reserve(1).at(0)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := parseTxn(statestore.Txn{Ops: []statestore.Op{put("k", "v")}}, res)
	if err != nil || !out.late {
		t.Fatalf("deadline in the past: %+v, %v", out, err)
	}
	if _, err := s.Get(ctx, "k"); err == nil {
		t.Error("late transaction wrote")
	}

	// A window that has always passed: Transact marks maxLateAttempts
	// times, is refused each time, and reports it.
	s.window = -time.Hour
	err = s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{indexedPut("idx", "k", "v")}})
	if err == nil || !strings.Contains(err.Error(), "3 times") {
		t.Errorf("always late: %v", err)
	}
	if _, err := s.Get(ctx, "k"); err == nil {
		t.Error("a refused transaction wrote")
	}
}

func TestScanManyGone(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	const index = "idx"
	// 300 gone keys before 3 live ones: one Scan with a small limit must
	// page past all of them.
	gone := make([]string, 300)
	for i := range gone {
		gone[i] = fmt.Sprintf("a%03d", i)
	}
	if _, err := s.mark(ctx, map[string][]string{index: gone}); err != nil {
		t.Fatal(err)
	}
	ageMarks(t, s, index)
	mustTransact(t, s, indexedPut(index, "b1", "v"), indexedPut(index, "b2", "v"), indexedPut(index, "b3", "v"))
	items, err := s.Scan(ctx, index, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Key != "b1" || items[1].Key != "b2" {
		t.Errorf("scan = %+v", items)
	}
	if n, err := s.client.ZCard(ctx, s.indexKey(index)).Result(); err != nil || n != 3 {
		t.Errorf("index size = %d, %v; want 3", n, err)
	}
}
