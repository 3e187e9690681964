package storetest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/granaryhq/granary/statestore"
)

func testLargeValues(t *testing.T, s statestore.Store) {
	big := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	op := putIn("big", "big", "")
	op.Value = big
	mustTransact(t, s, op, put("small", "s"))

	if got := mustGet(t, s, "big"); !bytes.Equal(got.Value, big) {
		t.Fatalf("Get of a 1 MiB value returned %d bytes that differ", len(got.Value))
	}
	items, err := s.BulkGet(t.Context(), []string{"small", "big"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(items[1].Value, big) || string(items[0].Value) != "s" {
		t.Fatal("BulkGet of a 1 MiB value and a small one returned different bytes")
	}
	scanned := scanAll(t, s, "big", 10)
	if len(scanned) != 1 || !bytes.Equal(scanned[0].Value, big) {
		t.Fatal("Scan of a 1 MiB value returned different bytes")
	}
}

func testBinarySafe(t *testing.T, s statestore.Store) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	keys := []string{
		"\x00", "a\x00b", "\x00\x00", "\xff\xfe\xfd", "\xc3\x28", "\x80",
		"{", "}", "{}", "}{", "a{b}/c", "/", "//", "actor{T/1}/state/{x}",
		" ", "\n\r\t", "key with spaces", string(all),
	}
	const index = "bin{/}\x00\xff"
	var ops []statestore.Op
	values := map[string][]byte{}
	for i, k := range keys {
		v := append(slices.Clone(all), k...)
		v = append(v, byte(i))
		values[k] = v
		op := putIn(index, k, "")
		op.Value = v
		ops = append(ops, op)
	}
	ops = append(ops, statestore.Op{Kind: statestore.Put, Key: "nul-value", Value: []byte{0}},
		statestore.Op{Kind: statestore.Put, Key: "bad-utf8", Value: []byte("\xc3\x28\xa0\xa1")})
	mustTransact(t, s, ops...)

	for _, k := range keys {
		if got := mustGet(t, s, k); !bytes.Equal(got.Value, values[k]) {
			t.Errorf("Get(%q) = %x, want %x", k, got.Value, values[k])
		}
	}
	items, err := s.BulkGet(t.Context(), keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, item := range items {
		if item.Key != keys[i] || !bytes.Equal(item.Value, values[keys[i]]) {
			t.Errorf("BulkGet item %d = %q/%x, want %q", i, item.Key, item.Value, keys[i])
		}
	}
	scanned := scanAll(t, s, index, 5)
	if got, want := keysOf(scanned), slices.Sorted(slices.Values(keys)); !slices.Equal(got, want) {
		t.Fatalf("Scan keys = %q, want %q", got, want)
	}
	for _, item := range scanned {
		if !bytes.Equal(item.Value, values[item.Key]) {
			t.Errorf("Scan value of %q = %x, want %x", item.Key, item.Value, values[item.Key])
		}
	}
	if got := mustGet(t, s, "nul-value"); !bytes.Equal(got.Value, []byte{0}) {
		t.Errorf("NUL value read back as %x", got.Value)
	}
	if got := mustGet(t, s, "bad-utf8"); string(got.Value) != "\xc3\x28\xa0\xa1" {
		t.Errorf("invalid UTF-8 value read back as %x", got.Value)
	}
	mustTransact(t, s, delIn(index, "\x00"), delIn(index, string(all)))
	wantAbsent(t, s, "\x00")
	wantAbsent(t, s, string(all))
	if got := len(scanAll(t, s, index, 100)); got != len(keys)-2 {
		t.Errorf("Scan after deleting two binary keys returned %d keys, want %d", got, len(keys)-2)
	}
}

// testConcurrentIncrements runs read-modify-write increments of one counter
// from many goroutines, retrying on ETag mismatch: no update may be lost.
func testConcurrentIncrements(t *testing.T, s statestore.Store) {
	const (
		workers     = 100
		each        = 2
		maxAttempts = 20000
	)
	mustTransact(t, s, put("counter", "0"))
	var succeeded atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			done := 0
			for attempt := 0; done < each; attempt++ {
				if attempt == maxAttempts {
					t.Errorf("worker %d: no increment after %d attempts", w, attempt)
					return
				}
				item, err := s.Get(t.Context(), "counter")
				if err != nil {
					t.Errorf("worker %d: Get: %v", w, err)
					return
				}
				n, err := strconv.Atoi(string(item.Value))
				if err != nil {
					t.Errorf("worker %d: counter holds %q", w, item.Value)
					return
				}
				err = s.Transact(t.Context(), statestore.Txn{Ops: []statestore.Op{withETag(put("counter", strconv.Itoa(n+1)), item.ETag)}})
				switch {
				case err == nil:
					succeeded.Add(1)
					done++
				case errors.Is(err, statestore.ErrETagMismatch):
				default:
					t.Errorf("worker %d: Transact: %v", w, err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	final := mustGet(t, s, "counter")
	if got, want := string(final.Value), strconv.FormatInt(succeeded.Load(), 10); got != want {
		t.Fatalf("counter = %s after %s successful increments: updates were lost", got, want)
	}
	if succeeded.Load() != workers*each {
		t.Fatalf("%d increments succeeded, want %d", succeeded.Load(), workers*each)
	}
}

func testClosed(t *testing.T, s statestore.Store) {
	mustTransact(t, s, put("k", "v"), put("f", "record"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	_, getErr := s.Get(ctx, "k")
	_, bulkErr := s.BulkGet(ctx, []string{"k"})
	_, scanErr := s.Scan(ctx, "i", "", 10)
	calls := []struct {
		name string
		err  error
	}{
		{"Get", getErr},
		{"BulkGet", bulkErr},
		{"Scan", scanErr},
		{"Transact", s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{put("k", "v2")}})},
		{"fenced Transact", s.Transact(ctx, statestore.Txn{Fence: &statestore.FenceCheck{Key: "f", Record: []byte("record")}, Ops: []statestore.Op{put("k", "v3")}})},
		{"ClaimShard", statestore.ClaimShard(ctx, s, "g", claimA1, false)},
	}
	for _, c := range calls {
		if !errors.Is(c.err, statestore.ErrClosed) {
			t.Errorf("%s after Close: %v, want an error wrapping ErrClosed", c.name, c.err)
		}
	}
}
