package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/granaryhq/granary/statestore"
)

// expiresSlack is how far an item's Expires may stray from the TTL the
// writer asked for, measured around the write: stores may round to
// milliseconds or take the time on a server.
const expiresSlack = time.Second

func withTTL(op statestore.Op, ttl time.Duration) statestore.Op {
	op.TTL = ttl
	return op
}

func testTTL(t *testing.T, s statestore.Store) {
	const (
		short = 400 * time.Millisecond
		long  = time.Hour
		index = "ttl"
	)
	start := time.Now()
	mustTransact(t, s,
		withTTL(put("short", "s"), short),
		withTTL(put("short-bulk", "sb"), short),
		withTTL(putIn(index, "short-indexed", "si"), short),
		withTTL(put("long", "l"), long),
		putIn(index, "stays", "st"),
		withTTL(put("cleared", "c1"), short),
		// A later put without TTL in the same transaction clears the TTL.
		withTTL(put("cleared-in-txn", "ct1"), short), put("cleared-in-txn", "ct2"),
		put("gains", "g1"),
		withTTL(put("fence-short", "record"), short),
	)
	mustTransact(t, s, put("cleared", "c2"))
	mustTransact(t, s, withTTL(put("gains", "g2"), short))

	shortKeys := []string{"short", "short-indexed", "gains", "short-bulk"}
	before, err := s.BulkGet(t.Context(), shortKeys)
	if err != nil {
		t.Fatalf("BulkGet: %v", err)
	}
	written := time.Now()
	// Only a read within the TTL can insist on seeing the short-lived keys.
	if written.Sub(start) < short-50*time.Millisecond {
		for _, item := range before {
			if !item.Exists() {
				t.Fatalf("%q vanished %v after a write with TTL %v", item.Key, written.Sub(start), short)
			}
			if item.Expires.Before(start.Add(short-expiresSlack)) || item.Expires.After(written.Add(short+expiresSlack)) {
				t.Errorf("%q expires at %v, want about %v", item.Key, item.Expires, start.Add(short))
			}
		}
	} else {
		t.Logf("the writes took %v, longer than the TTL %v allows for checking the items before expiry", written.Sub(start), short)
	}
	if l := wantValue(t, s, "long", "l"); l.Expires.Before(start.Add(long-expiresSlack)) || l.Expires.After(written.Add(long+expiresSlack)) {
		t.Errorf("long expires at %v, want about %v", l.Expires, start.Add(long))
	}
	for _, k := range []string{"cleared", "cleared-in-txn"} {
		if item := mustGet(t, s, k); !item.Expires.IsZero() {
			t.Errorf("%q, last put without TTL, expires at %v", k, item.Expires)
		}
	}

	// Wait for the short TTLs to pass, with a margin for coarse clocks.
	time.Sleep(time.Until(start.Add(short + 300*time.Millisecond)))

	// Each read path first meets its own expired key, so that a store which
	// drops expired keys lazily on one path cannot hide a bug of another.
	wantScan(t, s, index, 10, "stays")
	items, err := s.BulkGet(t.Context(), []string{"short-bulk"})
	if err != nil {
		t.Fatalf("BulkGet: %v", err)
	}
	if items[0].Exists() {
		t.Errorf("BulkGet returned %q after its TTL", items[0].Key)
	}
	for _, k := range []string{"short", "gains"} {
		if item, err := s.Get(t.Context(), k); !errors.Is(err, statestore.ErrNotFound) {
			t.Errorf("Get(%q) after its TTL = %+v, %v; want ErrNotFound", k, item, err)
		}
	}
	for _, k := range shortKeys {
		wantAbsent(t, s, k)
	}
	wantValue(t, s, "long", "l")
	if c := wantValue(t, s, "cleared", "c2"); !c.Expires.IsZero() {
		t.Errorf("cleared expires at %v", c.Expires)
	}
	wantValue(t, s, "cleared-in-txn", "ct2")

	// An expired fence record is absent for fence checks too.
	stale := statestore.Txn{Fence: &statestore.FenceCheck{Key: "fence-short", Record: []byte("record")}, Ops: []statestore.Op{put("behind-fence", "x")}}
	wantFenced(t, s.Transact(t.Context(), stale), "fence-short", "record", "")
	wantAbsent(t, s, "behind-fence")

	// An expired key is absent for conditions too.
	mustTransact(t, s, ifAbsent(put("short", "again")))
	wantValue(t, s, "short", "again")
	if before[1].Exists() {
		err := s.Transact(t.Context(), statestore.Txn{Ops: []statestore.Op{withETag(putIn(index, "short-indexed", "x"), before[1].ETag)}})
		if ce := wantCondition(t, err, "short-indexed"); ce.Have != "absent" {
			t.Errorf("ETag write on an expired key: Have = %q, want \"absent\"", ce.Have)
		}
	}
	wantScan(t, s, index, 10, "stays")
}
