package reminders_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/testutil/redistest"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/boltstore"
	"github.com/granaryhq/granary/statestore/redisstore"
)

// TestOnRealStores runs a restart through each shipped store on the real
// clock: reminders stored by one service are loaded by the next, every
// one-shot fires once and leaves the store and its index (with its data key,
// for data kept apart), and a periodic reminder stays indexed and delivers
// its data exactly.
func TestOnRealStores(t *testing.T) {
	stores := map[string]func(t *testing.T) statestore.Store{
		"bbolt": func(t *testing.T) statestore.Store {
			s, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), boltstore.Options{Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"redis": func(t *testing.T) statestore.Store {
			prefix := fmt.Sprintf("remtest-%d:", time.Now().UnixNano())
			s, err := redisstore.Open(context.Background(), redistest.URL(t), redisstore.Options{KeyPrefix: prefix, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			defer store.Close()
			p := newPinger()
			h := startReal(t, store, p)
			const oneShots = 50
			for i := range oneShots {
				h.create(fmt.Sprintf("a%d", i%7), fmt.Sprintf("once%d", i), "400ms", "", "")
			}
			h.create("p", "tick", "0s", "150ms", "")
			// Data kept apart from the record: a periodic and a one-shot.
			large := bigData(200_000, "real")
			h.createData("p", "big", "0s", "150ms", large)
			h.createData("p", "bigonce", "400ms", "", large)
			h.stop() // before the one-shots are due

			h = startReal(t, store, p)
			defer h.stop()
			deadline := time.Now().Add(10 * time.Second)
			for (p.total() < oneShots+6 || len(p.firesOf("p", "bigonce")) == 0) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			for i := range oneShots {
				if n := len(p.firesOf(fmt.Sprintf("a%d", i%7), fmt.Sprintf("once%d", i))); n != 1 {
					t.Fatalf("once%d fired %d times", i, n)
				}
			}
			if n := len(p.firesOf("p", "tick")); n < 2 {
				t.Fatalf("periodic reminder fired %d times after the restart", n)
			}
			for _, name := range []string{"big", "bigonce"} {
				d := p.dataOf("p", name)
				if len(d) == 0 || name == "bigonce" && len(d) != 1 {
					t.Fatalf("%s fired %d times", name, len(d))
				}
				for i := range d {
					if d[i] != string(large) {
						t.Fatalf("%s fire %d delivered %d bytes, want %d", name, i, len(d[i]), len(large))
					}
				}
			}
			if info, err := h.svc.Get(context.Background(), actor.ID{Type: "T", ID: "p"}, "big"); err != nil || string(info.Data) != string(large) {
				t.Fatalf("GET of the large-data reminder: %d bytes, %v", len(info.Data), err)
			}
			// The one-shots' records and index entries go with the next flush.
			deadline = time.Now().Add(5 * time.Second)
			var indexed []string
			for {
				indexed = indexedReminders(t, store)
				if len(indexed) == 2 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !slices.Equal(indexed, []string{statestore.ReminderKey("T", "p", "big"), statestore.ReminderKey("T", "p", "tick")}) {
				t.Fatalf("indexed after the one-shots fired: %v, want only the periodic reminders", indexed)
			}
			if _, err := store.Get(context.Background(), statestore.ReminderDataKey("T", "p", "bigonce")); !errors.Is(err, statestore.ErrNotFound) {
				t.Fatalf("data of the fired one-shot: %v, want it deleted", err)
			}
			if it, err := store.Get(context.Background(), statestore.ReminderDataKey("T", "p", "big")); err != nil || string(it.Value) != string(large) {
				t.Fatalf("data of the periodic reminder: %d bytes, %v", len(it.Value), err)
			}
		})
	}
}

func startReal(t *testing.T, store statestore.Store, p *pinger) *harness {
	t.Helper()
	rt, err := actor.New(actor.Config{Store: store, Logger: quiet(), Placement: singleSilo(t, store)})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.RegisterNative("T", func(self *actor.Self) actor.NativeActor {
		return &pingerActor{p: p, self: self}
	}, actor.TypeConfig{}); err != nil {
		t.Fatal(err)
	}
	svc, err := reminders.New(reminders.Config{Store: store, Actors: rt, Logger: quiet(), FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, store: store, rt: rt, svc: svc, p: p}
}

// indexedReminders lists every reminder key in type T's index.
func indexedReminders(t *testing.T, store statestore.Store) []string {
	t.Helper()
	var keys []string
	for b := range statestore.ReminderBuckets {
		items, err := store.Scan(context.Background(), statestore.ReminderIndex("T", b), "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			keys = append(keys, it.Key)
		}
	}
	return keys
}
