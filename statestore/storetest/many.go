package storetest

import (
	"errors"
	"testing"

	"github.com/granaryhq/granary/statestore"
)

// testTransactMany checks statestore.MultiTransactor: the transactions apply
// in order, each atomically, and a refused one leaves the others alone.
func testTransactMany(t *testing.T, s statestore.Store, m statestore.MultiTransactor) {
	mustTransact(t, s, put("a", "1"))
	a1 := mustGet(t, s, "a")
	if err := s.Fence(t.Context(), "fence", 5); err != nil {
		t.Fatal(err)
	}
	txns := []statestore.Txn{
		{Ops: []statestore.Op{put("b", "1")}},
		{Fence: &statestore.FenceCheck{Key: "fence", Token: 3}, Ops: []statestore.Op{put("c", "1")}},
		{Ops: []statestore.Op{withETag(put("a", "2"), a1.ETag)}},
		{Ops: []statestore.Op{withETag(put("a", "3"), a1.ETag)}}, // a changed just before
		{Ops: []statestore.Op{put("d", "1"), withETag(put("e", "1"), "nope")}},
		{Fence: &statestore.FenceCheck{Key: "fence", Token: 5}, Ops: []statestore.Op{put("f", "1"), del("b")}},
		{Ops: []statestore.Op{{Kind: statestore.Put, Key: ""}}}, // invalid
	}
	errs := m.TransactMany(t.Context(), txns)
	if len(errs) != len(txns) {
		t.Fatalf("TransactMany returned %d errors for %d transactions", len(errs), len(txns))
	}
	want := []error{nil, statestore.ErrFenced, nil, statestore.ErrETagMismatch, statestore.ErrETagMismatch, nil, errAny}
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
	for _, k := range []string{"b", "c", "d", "e"} {
		wantAbsent(t, s, k)
	}
}

var errAny = errors.New("any error")
