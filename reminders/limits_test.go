package reminders_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

// logBuffer collects log lines for assertions; slog handlers may be called
// from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// putRecord stores a reminder record as an older silo wrote it.
func putRecord(t *testing.T, store statestore.Store, id, name, value string) {
	t.Helper()
	op := statestore.Op{Kind: statestore.Put, Key: statestore.ReminderKey("T", id, name), Value: []byte(value),
		Index: statestore.ReminderIndex("T", statestore.ReminderBucket("T", id))}
	if err := store.Transact(context.Background(), statestore.Txn{Ops: []statestore.Op{op}}); err != nil {
		t.Fatal(err)
	}
}

// TestStoredPeriodBelowTheMinimumIsRaised: a reminder registered with a
// nanosecond period before the minimum was enforced is neither dropped nor
// fired at full speed when a silo loads it: it fires every MinPeriod, its
// record keeps the period as registered, and the load logs a warning.
func TestStoredPeriodBelowTheMinimumIsRaised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		defer store.Close()
		t0 := time.Now()
		first := t0.Add(5 * time.Millisecond)
		for _, c := range []struct{ name, period string }{{"ns", "1ns"}, {"every", "@every 1ns"}, {"iso", "PT0.000000001S"}} {
			putRecord(t, store, "a", c.name, fmt.Sprintf(`{"dueTime":"1ns","period":%q,"reg":%d,"next":%d}`,
				c.period, t0.Add(-time.Hour).UnixNano(), first.UnixNano()))
		}
		var logs logBuffer
		h := start(t, store, newPinger(), reminders.Config{Logger: logs.logger()})
		defer h.stop()
		if h.svc.Len() != 3 {
			t.Fatalf("%d reminders loaded, want 3", h.svc.Len())
		}
		sleep(time.Second)
		for _, name := range []string{"ns", "every", "iso"} {
			got := h.p.firesOf("a", name)
			// Due at +5ms, +15ms, ..., +995ms.
			if len(got) != 100 {
				t.Fatalf("%s fired %d times in a second, want 100 (every %v)", name, len(got), 10*time.Millisecond)
			}
			for i := 1; i < len(got); i++ {
				if d := got[i].Sub(got[i-1]); d != 10*time.Millisecond {
					t.Fatalf("%s: fires %d and %d are %v apart", name, i-1, i, d)
				}
			}
			info, ok := h.stored("a", name)
			if !ok || !info.NextFire.Equal(t0.Add(time.Second+5*time.Millisecond)) {
				t.Fatalf("%s stored as %+v (%v)", name, info, ok)
			}
		}
		if n := strings.Count(logs.String(), "period below the minimum"); n != 3 {
			t.Fatalf("%d warnings about the period logged, want one per reminder:\n%s", n, logs.String())
		}
	})
}
