// Package storetest is the conformance suite every statestore.Store must pass.
//
// A store's own test calls Run with a factory that opens a fresh, empty store;
// Run checks, one subtest per behaviour, everything the statestore.Store
// contract promises. The suite uses real time only for the TTL behaviours
// (short TTLs, well under two seconds of waiting in total) and makes no other
// assumption about timing, so a networked store runs it as well as an
// in-process one.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/granaryhq/granary/statestore"
)

// Run runs every behaviour of the suite as a subtest of t. Each subtest gets
// its own store from open, which must return a fresh, empty store and register
// its own cleanup (t.Cleanup) to close it. A subtest may close the store
// itself, so that cleanup must tolerate a store that is already closed.
func Run(t *testing.T, open func(t *testing.T) statestore.Store) {
	for _, b := range behaviours {
		t.Run(b.name, func(t *testing.T) {
			b.run(t, open(t))
		})
	}
	// Optional interfaces are checked for the stores that offer them.
	t.Run("TransactManyKeepsTransactionsApart", func(t *testing.T) {
		s := open(t)
		if m, ok := s.(statestore.MultiTransactor); ok {
			testTransactMany(t, s, m)
		}
	})
}

// behaviours lists what every store must do, in the order Run checks it.
var behaviours = []struct {
	name string
	run  func(t *testing.T, s statestore.Store)
}{
	{"ReadYourWrites", testReadYourWrites},
	{"BulkGetOrderDuplicatesAndMissing", testBulkGet},
	{"ValuesAreCopied", testValuesAreCopied},
	{"ETagChangesAndNeverRepeats", testETagNeverRepeats},
	{"ETagMismatchRefused", testETagMismatch},
	{"IfAbsentIsFirstWrite", testIfAbsent},
	{"EmptyETagIsLastWrite", testLastWrite},
	{"TransactionIsAllOrNothing", testAllOrNothing},
	{"OperationsApplyInOrder", testOperationsInOrder},
	{"InvalidTransactionsRejected", testInvalidTransactions},
	{"TTLExpiry", testTTL},
	{"FenceCheckWantsTheExactRecord", testFenceCheck},
	{"AbsentFenceRecordRefuses", testAbsentFence},
	{"WriteUnderALostClaimAppliesNothing", testWriteUnderLostClaim},
	{"RestartedProcessCannotWriteUnderItsPredecessorsClaim", testRestartedProcess},
	{"ClaimRules", testClaimRules},
	{"OtherClusterRefusedUnlessTakeover", testOtherCluster},
	{"ReleaseShard", testReleaseShard},
	{"ClaimShardsBatch", testClaimShards},
	{"ConcurrentClaimsAgree", testConcurrentClaims},
	{"NextVersionCountsUp", testNextVersion},
	{"ScanPagesInKeyOrder", testScanPaging},
	{"ScanIndexesAreSeparate", testScanIndexesSeparate},
	{"ScanOfAnIndexWithAKeyPrefix", testScanKeyPrefixIndex},
	{"DeletedKeysLeaveIndex", testScanDeletes},
	{"ScanCompleteUnderConcurrentWrites", testScanUnderWrites},
	{"LargeValues", testLargeValues},
	{"BinarySafeKeysAndValues", testBinarySafe},
	{"ConcurrentIncrementsLoseNothing", testConcurrentIncrements},
	{"ClosedStoreRefusesCalls", testClosed},
}

func put(key, value string) statestore.Op {
	return statestore.Op{Kind: statestore.Put, Key: key, Value: []byte(value)}
}

func putIn(index, key, value string) statestore.Op {
	op := put(key, value)
	op.Index = index
	return op
}

func del(key string) statestore.Op {
	return statestore.Op{Kind: statestore.Delete, Key: key}
}

func delIn(index, key string) statestore.Op {
	op := del(key)
	op.Index = index
	return op
}

func withETag(op statestore.Op, etag string) statestore.Op {
	op.ETag = etag
	return op
}

func ifAbsent(op statestore.Op) statestore.Op {
	op.IfAbsent = true
	return op
}

func mustTransact(t testing.TB, s statestore.Store, ops ...statestore.Op) {
	t.Helper()
	if err := s.Transact(t.Context(), statestore.Txn{Ops: ops}); err != nil {
		t.Fatalf("Transact(%s): %v", describe(ops), err)
	}
}

func mustGet(t testing.TB, s statestore.Store, key string) statestore.Item {
	t.Helper()
	item, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if item.Key != key || !item.Exists() {
		t.Fatalf("Get(%q) returned item with key %q, etag %q", key, item.Key, item.ETag)
	}
	return item
}

// wantValue checks that key holds value.
func wantValue(t testing.TB, s statestore.Store, key, value string) statestore.Item {
	t.Helper()
	item := mustGet(t, s, key)
	if string(item.Value) != value {
		t.Fatalf("Get(%q) = %q, want %q", key, item.Value, value)
	}
	return item
}

// wantAbsent checks that Get and BulkGet both report key absent.
func wantAbsent(t testing.TB, s statestore.Store, key string) {
	t.Helper()
	item, err := s.Get(t.Context(), key)
	if !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", key, item, err)
	}
	items, err := s.BulkGet(t.Context(), []string{key})
	if err != nil {
		t.Fatalf("BulkGet(%q): %v", key, err)
	}
	if len(items) != 1 || items[0].Exists() {
		t.Fatalf("BulkGet(%q) = %+v; want one absent item", key, items)
	}
}

// wantUnchanged checks that key still holds the exact version before.
func wantUnchanged(t testing.TB, s statestore.Store, before statestore.Item) {
	t.Helper()
	now := mustGet(t, s, before.Key)
	if now.ETag != before.ETag || !bytes.Equal(now.Value, before.Value) {
		t.Fatalf("%q changed: was %q (etag %q), now %q (etag %q)", before.Key, before.Value, before.ETag, now.Value, now.ETag)
	}
}

// wantCondition checks that err is a *ConditionError for key wrapping
// ErrETagMismatch, and returns it.
func wantCondition(t testing.TB, err error, key string) *statestore.ConditionError {
	t.Helper()
	if !errors.Is(err, statestore.ErrETagMismatch) {
		t.Fatalf("error = %v, want one wrapping ErrETagMismatch", err)
	}
	var ce *statestore.ConditionError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v carries no *statestore.ConditionError", err)
	}
	if ce.Key != key {
		t.Fatalf("ConditionError.Key = %q, want %q", ce.Key, key)
	}
	return ce
}

// wantFenced checks that err is a *FencedError wrapping ErrFenced with the
// given fields; found "" means no record was found.
func wantFenced(t testing.TB, err error, key, want, found string) {
	t.Helper()
	if !errors.Is(err, statestore.ErrFenced) {
		t.Fatalf("error = %v, want one wrapping ErrFenced", err)
	}
	var fe *statestore.FencedError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v carries no *statestore.FencedError", err)
	}
	if fe.Key != key || string(fe.Want) != want || string(fe.Found) != found || (found == "") != (fe.Found == nil) {
		t.Fatalf("FencedError = {Key: %q, Want: %q, Found: %q (nil: %v)}, want key %q, want %q, found %q", fe.Key, fe.Want, fe.Found, fe.Found == nil, key, want, found)
	}
}

// scanAll pages through index limit items at a time and checks that the
// pages come in strictly increasing key order.
func scanAll(t testing.TB, s statestore.Store, index string, limit int) []statestore.Item {
	t.Helper()
	var all []statestore.Item
	after := ""
	for {
		page, err := s.Scan(t.Context(), index, after, limit)
		if err != nil {
			t.Fatalf("Scan(%q, %q, %d): %v", index, after, limit, err)
		}
		if len(page) > limit {
			t.Fatalf("Scan(%q, %q, %d) returned %d items", index, after, limit, len(page))
		}
		for _, item := range page {
			if item.Key <= after {
				t.Fatalf("Scan(%q, %q, %d) returned %q, not after %q", index, after, limit, item.Key, after)
			}
			if !item.Exists() {
				t.Fatalf("Scan(%q) returned %q without an ETag", index, item.Key)
			}
			after = item.Key
		}
		all = append(all, page...)
		if len(page) == 0 {
			return all
		}
	}
}

func keysOf(items []statestore.Item) []string {
	keys := make([]string, len(items))
	for i, item := range items {
		keys[i] = item.Key
	}
	return keys
}

// wantScan checks that a complete paging through index returns exactly keys.
func wantScan(t testing.TB, s statestore.Store, index string, limit int, keys ...string) {
	t.Helper()
	want := slices.Clone(keys)
	slices.Sort(want)
	if got := keysOf(scanAll(t, s, index, limit)); !slices.Equal(got, want) {
		t.Fatalf("Scan(%q) keys = %q, want %q", index, got, want)
	}
}

func describe(ops []statestore.Op) string {
	var b bytes.Buffer
	for i, op := range ops {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%v %q", op.Kind, op.Key)
	}
	return b.String()
}
