package storetest

import (
	"errors"
	"testing"

	"github.com/granaryhq/granary/statestore"
)

// testTransactMany checks statestore.MultiTransactor: the transactions apply
// in order, each atomically, and a refused one leaves the others alone.
func testTransactMany(t *testing.T, s statestore.Store, m statestore.MultiTransactor) {
	mustTransact(t, s, put("a", "1"), put("fence", "record 5"))
	a1 := mustGet(t, s, "a")
	txns := []statestore.Txn{
		{Ops: []statestore.Op{put("b", "1")}},
		{Fence: &statestore.FenceCheck{Key: "fence", Record: []byte("record 3")}, Ops: []statestore.Op{put("c", "1")}},
		{Ops: []statestore.Op{withETag(put("a", "2"), a1.ETag)}},
		{Ops: []statestore.Op{withETag(put("a", "3"), a1.ETag)}}, // a changed just before
		{Ops: []statestore.Op{put("d", "1"), withETag(put("e", "1"), "nope")}},
		{Fence: &statestore.FenceCheck{Key: "fence", Record: []byte("record 5")}, Ops: []statestore.Op{put("f", "1"), del("b")}},
		{Ops: []statestore.Op{{Kind: statestore.Put, Key: ""}}}, // invalid
		// A fence check sees the transactions before it: this one moves
		// the record on, so the next is refused.
		{Ops: []statestore.Op{put("fence", "record 6")}},
		{Fence: &statestore.FenceCheck{Key: "fence", Record: []byte("record 5")}, Ops: []statestore.Op{put("g", "1")}},
	}
	errs := m.TransactMany(t.Context(), txns)
	if len(errs) != len(txns) {
		t.Fatalf("TransactMany returned %d errors for %d transactions", len(errs), len(txns))
	}
	want := []error{nil, statestore.ErrFenced, nil, statestore.ErrETagMismatch, statestore.ErrETagMismatch, nil, errAny, nil, statestore.ErrFenced}
	for i, w := range want {
		switch {
		case w == nil && errs[i] != nil:
			t.Errorf("transaction %d: %v, want success", i, errs[i])
		case w == errAny && errs[i] == nil:
			t.Errorf("transaction %d: succeeded, want an error", i)
		case w != nil && w != errAny && !errors.Is(errs[i], w):
			t.Errorf("transaction %d: %v, want %v", i, errs[i], w)
		}
	}
	wantValue(t, s, "a", "2")
	wantValue(t, s, "f", "1")
	for _, k := range []string{"b", "c", "d", "e", "g"} {
		wantAbsent(t, s, k)
	}
}

var errAny = errors.New("any error")
