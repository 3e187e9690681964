package reminders_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// bigData is valid JSON of about n bytes, different for each seed.
func bigData(n int, seed string) []byte {
	return []byte(`"` + seed + strings.Repeat("x", n-len(seed)-2) + `"`)
}

// readStore is a store that counts the reads of reminder data keys and
// remembers the largest value a scan returned.
type readStore struct {
	statestore.Store
	mu        sync.Mutex
	dataReads int
	maxScan   int
}

func (s *readStore) count(key string) {
	if strings.Contains(key, "}/reminderdata/") {
		s.mu.Lock()
		s.dataReads++
		s.mu.Unlock()
	}
}

func (s *readStore) Get(ctx context.Context, key string) (statestore.Item, error) {
	s.count(key)
	return s.Store.Get(ctx, key)
}

func (s *readStore) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	for _, k := range keys {
		s.count(k)
	}
	return s.Store.BulkGet(ctx, keys)
}

func (s *readStore) Scan(ctx context.Context, index, after string, limit int) ([]statestore.Item, error) {
	items, err := s.Store.Scan(ctx, index, after, limit)
	s.mu.Lock()
	for _, it := range items {
		s.maxScan = max(s.maxScan, len(it.Value))
	}
	s.mu.Unlock()
	return items, err
}

// reset forgets what was counted, so that only a new service's reads count.
func (s *readStore) reset() {
	s.mu.Lock()
	s.dataReads, s.maxScan = 0, 0
	s.mu.Unlock()
}

func (s *readStore) reads() (data, maxScan int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dataReads, s.maxScan
}

func (h *harness) createData(id, name, due, period string, data []byte) {
	h.t.Helper()
	err := h.svc.Create(context.Background(), actor.ID{Type: "T", ID: id},
		actor.ReminderSpec{Name: name, Data: data, DueTime: due, Period: period})
	if err != nil {
		h.t.Fatalf("create %s/%s: %v", id, name, err)
	}
}

func (p *pinger) dataOf(actorID, name string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, f := range p.fires {
		if f.actor == actorID && f.name == name {
			out = append(out, f.data)
		}
	}
	return out
}

func item(t *testing.T, store statestore.Store, key string) (statestore.Item, bool) {
	t.Helper()
	it, err := store.Get(context.Background(), key)
	if errors.Is(err, statestore.ErrNotFound) {
		return it, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return it, true
}

// TestLargeDataIsKeptApart: data above the inline size is written under a
// key of its own beside the record, read when the reminder fires and for
// GET, left alone by the flushes of the next due time, removed when the
// reminder is replaced with small data or deleted.
func TestLargeDataIsKeptApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		defer store.Close()
		h := start(t, store, newPinger(), reminders.Config{})
		defer h.stop()
		large := bigData(300_000, "first")
		h.createData("a", "big", "1s", "1s", large)
		h.createData("a", "small", "1s", "1s", []byte(`{"n":1}`))
		recKey, dataKey := statestore.ReminderKey("T", "a", "big"), statestore.ReminderDataKey("T", "a", "big")

		rec, ok := item(t, store, recKey)
		if !ok || len(rec.Value) > 1024 || strings.Contains(string(rec.Value), "first") {
			t.Fatalf("record of the large-data reminder: %d bytes (stored %v)", len(rec.Value), ok)
		}
		data, ok := item(t, store, dataKey)
		if !ok || string(data.Value) != string(large) {
			t.Fatalf("data key holds %d bytes (stored %v), want the %d given", len(data.Value), ok, len(large))
		}
		if _, ok := item(t, store, statestore.ReminderDataKey("T", "a", "small")); ok {
			t.Fatal("small data was written apart")
		}
		indexed := indexedReminders(t, store)
		if len(indexed) != 2 || strings.Contains(strings.Join(indexed, " "), "reminderdata") {
			t.Fatalf("indexed %v, want the two records only", indexed)
		}
		if info, ok := h.stored("a", "big"); !ok || string(info.Data) != string(large) {
			t.Fatalf("GET returns %d bytes of data, want %d", len(info.Data), len(large))
		}

		sleep(3500 * time.Millisecond) // fires at 1, 2, 3 s and their flushes
		got := h.p.dataOf("a", "big")
		if len(got) != 3 {
			t.Fatalf("large-data reminder fired %d times, want 3", len(got))
		}
		for i, d := range got {
			if d != string(large) {
				t.Fatalf("fire %d delivered %d bytes, want the %d registered", i, len(d), len(large))
			}
		}
		if d := h.p.dataOf("a", "small"); len(d) != 3 || d[0] != `{"n":1}` {
			t.Fatalf("small-data reminder delivered %q", d)
		}
		if after, _ := item(t, store, dataKey); after.ETag != data.ETag {
			t.Fatal("flushing the next due time rewrote the data key")
		}
		if info, _ := h.stored("a", "big"); string(info.Data) != string(large) || !info.NextFire.Equal(time.Now().Add(500*time.Millisecond)) {
			t.Fatalf("after the fires GET returns %d bytes, next fire %v", len(info.Data), info.NextFire)
		}

		// Replaced with small data: the data key goes in the same write.
		h.createData("a", "big", "1s", "1s", []byte(`"now small"`))
		if _, ok := item(t, store, dataKey); ok {
			t.Fatal("the data key outlived a replacement with small data")
		}
		sleep(1100 * time.Millisecond)
		if d := h.p.dataOf("a", "big"); len(d) != 4 || d[3] != `"now small"` {
			t.Fatalf("after the replacement delivered %d fires, last %.20q", len(d), d[len(d)-1])
		}

		// Large again, then deleted: both keys go.
		second := bigData(5000, "second")
		h.createData("a", "big", "1s", "1s", second)
		if info, _ := h.stored("a", "big"); string(info.Data) != string(second) {
			t.Fatalf("GET after a second replacement returns %d bytes", len(info.Data))
		}
		if err := h.svc.Delete(context.Background(), actor.ID{Type: "T", ID: "a"}, "big"); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{recKey, dataKey} {
			if _, ok := item(t, store, k); ok {
				t.Fatalf("%s still stored after delete", k)
			}
		}
		sleep(2 * time.Second)
		if d := h.p.dataOf("a", "big"); len(d) != 4 {
			t.Fatalf("deleted reminder fired: %d fires", len(d))
		}
	})
}

// TestInlineDataBoundary: up to 1 KiB of data stays in the record.
func TestInlineDataBoundary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		defer store.Close()
		h := start(t, store, newPinger(), reminders.Config{})
		defer h.stop()
		h.createData("a", "kib", "1h", "", bigData(1024, "k"))
		h.createData("a", "over", "1h", "", bigData(1025, "o"))
		if _, ok := item(t, store, statestore.ReminderDataKey("T", "a", "kib")); ok {
			t.Fatal("1024 bytes of data were kept apart")
		}
		if rec, _ := item(t, store, statestore.ReminderKey("T", "a", "kib")); len(rec.Value) < 1024 {
			t.Fatalf("the record of 1024 bytes of data is %d bytes", len(rec.Value))
		}
		if d, ok := item(t, store, statestore.ReminderDataKey("T", "a", "over")); !ok || len(d.Value) != 1025 {
			t.Fatalf("1025 bytes of data: data key %d bytes (stored %v)", len(d.Value), ok)
		}
	})
}

// TestLargeDataOneShotLeavesNothing: when a one-shot reminder's schedule
// ends, its record and its data key are both deleted.
func TestLargeDataOneShotLeavesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		defer store.Close()
		h := start(t, store, newPinger(), reminders.Config{})
		defer h.stop()
		large := bigData(2000, "once")
		h.createData("a", "once", "1s", "", large)
		sleep(2 * time.Second)
		if d := h.p.dataOf("a", "once"); len(d) != 1 || d[0] != string(large) {
			t.Fatalf("one-shot delivered %d fires", len(d))
		}
		for _, k := range []string{statestore.ReminderKey("T", "a", "once"), statestore.ReminderDataKey("T", "a", "once")} {
			if _, ok := item(t, store, k); ok {
				t.Fatalf("%s still stored after the one-shot fired", k)
			}
		}
	})
}

// heapAfterLoad registers n reminders with data from dataOf, restarts the
// service on the same store and returns how much the new service's load
// added to the heap, and the store as the new service saw it.
func heapAfterLoad(t *testing.T, n int, dataOf func(i int) []byte) (uint64, *readStore) {
	t.Helper()
	store := &readStore{Store: memstore.New()}
	t.Cleanup(func() { store.Close() })
	p := newPinger()
	h := start(t, store, p, reminders.Config{})
	for i := range n {
		h.createData(fmt.Sprintf("a%d", i%10), fmt.Sprintf("r%d", i), "1h", "1h", dataOf(i))
	}
	h.stop()
	h = nil // the stopped service's memory is not the new one's
	store.reset()
	before := heapInuse()
	h = start(t, store, p, reminders.Config{})
	t.Cleanup(h.stop)
	if h.svc.Len() != n {
		t.Fatalf("%d reminders loaded, want %d", h.svc.Len(), n)
	}
	after := heapInuse()
	if after < before {
		return 0, store
	}
	return after - before, store
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestLargeDataIsNotHeldInMemory is issue 17's tenth finding: the memory
// of a silo follows the number of its reminders, not their payloads, and a
// restart loads the reminders without reading their data.
func TestLargeDataIsNotHeldInMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, size = 200, 128 << 10 // 25 MiB of data in all
		small, _ := heapAfterLoad(t, n, func(i int) []byte { return []byte(fmt.Sprintf(`{"i":%d}`, i)) })
		large, store := heapAfterLoad(t, n, func(i int) []byte { return bigData(size, fmt.Sprint(i)) })
		t.Logf("heap added by loading %d reminders: %d KiB with small data, %d KiB with %d KiB each",
			n, small>>10, large>>10, size>>10)
		if large > small+4<<20 {
			t.Fatalf("loading %d reminders of %d KiB data added %d KiB to the heap, against %d KiB with small data",
				n, size>>10, large>>10, small>>10)
		}
		if reads, maxScan := store.reads(); reads != 0 || maxScan > 1024 {
			t.Fatalf("the load read %d data keys and scanned values of up to %d bytes", reads, maxScan)
		}
	})
}

// TestLargeDataFiresAfterRestart: data kept apart survives a restart and is
// delivered exactly.
func TestLargeDataFiresAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		defer store.Close()
		p := newPinger()
		h := start(t, store, p, reminders.Config{})
		large := bigData(64<<10, "kept")
		h.createData("a", "big", "2s", "1s", large)
		h.stop()
		h = start(t, store, p, reminders.Config{})
		defer h.stop()
		sleep(2500 * time.Millisecond)
		if d := p.dataOf("a", "big"); len(d) != 1 || d[0] != string(large) {
			t.Fatalf("after the restart delivered %d fires (first %d bytes)", len(d), len(strings.Join(d, "")))
		}
	})
}

// TestInlineLargeDataOfOlderRecords: a record stored with its large data
// inline, as before data was kept apart, loads and fires; its next flush
// moves the data to its own key, and it fires the same after a restart.
func TestInlineLargeDataOfOlderRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		defer store.Close()
		t0 := time.Now()
		large := bigData(10_000, "inline")
		putRecord(t, store, "a", "old", fmt.Sprintf(`{"data":%s,"dueTime":"1s","period":"1s","reg":%d,"next":%d}`,
			large, t0.UnixNano(), t0.Add(time.Second).UnixNano()))
		p := newPinger()
		h := start(t, store, p, reminders.Config{})
		defer func() { h.stop() }() // whichever is running when the test ends
		if info, ok := h.stored("a", "old"); !ok || string(info.Data) != string(large) {
			t.Fatalf("GET of an inline record returns %d bytes", len(info.Data))
		}
		sleep(1500 * time.Millisecond) // the fire at 1s and its flush
		if d := p.dataOf("a", "old"); len(d) != 1 || d[0] != string(large) {
			t.Fatalf("inline record delivered %d fires", len(d))
		}
		rec, _ := item(t, store, statestore.ReminderKey("T", "a", "old"))
		data, ok := item(t, store, statestore.ReminderDataKey("T", "a", "old"))
		if len(rec.Value) > 1024 || !ok || string(data.Value) != string(large) {
			t.Fatalf("after the flush the record is %d bytes and the data key %d (stored %v)", len(rec.Value), len(data.Value), ok)
		}
		sleep(time.Second)
		h.stop()
		h = start(t, store, p, reminders.Config{})
		sleep(time.Second)
		d := p.dataOf("a", "old")
		if len(d) != 3 {
			t.Fatalf("%d fires in all, want 3", len(d))
		}
		for i := range d {
			if d[i] != string(large) {
				t.Fatalf("fire %d delivered %d bytes", i, len(d[i]))
			}
		}
	})
}

// TestDataSizeBound: data over Config.MaxDataSize (4 MiB by default) is
// refused as bad input.
func TestDataSizeBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, memstore.New(), newPinger(), reminders.Config{})
		defer h.stop()
		id := actor.ID{Type: "T", ID: "a"}
		err := h.svc.Create(context.Background(), id, actor.ReminderSpec{Name: "huge", Data: bigData(4<<20+1, "h")})
		if _, ok := errors.AsType[*reminders.InputError](err); !ok || !strings.Contains(err.Error(), "4194304") {
			t.Fatalf("4 MiB + 1 of data: %v, want an InputError naming the bound", err)
		}
		if err := h.svc.Create(context.Background(), id, actor.ReminderSpec{Name: "max", Data: bigData(4<<20, "m"), DueTime: "1h"}); err != nil {
			t.Fatalf("4 MiB of data: %v", err)
		}
		h2 := start(t, memstore.New(), newPinger(), reminders.Config{MaxDataSize: 100})
		defer h2.stop()
		err = h2.svc.Create(context.Background(), id, actor.ReminderSpec{Name: "x", Data: bigData(101, "x")})
		if _, ok := errors.AsType[*reminders.InputError](err); !ok {
			t.Fatalf("over a configured bound: %v", err)
		}
		if h.svc.Len() != 1 || h2.svc.Len() != 0 {
			t.Fatalf("refused reminders were scheduled")
		}
	})
}
