package reminders_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/reminders/schedule"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// pinger is a native actor type that records the reminders it receives.
// Tests script failures, cancellation and blocking per reminder name.
type pinger struct {
	mu      sync.Mutex
	fires   []fire
	started []string                   // actor/name of every fire begun, in order
	fail    map[string]int             // reminder name → fires left to fail
	cancel  map[string]bool            // reminder name → answer cancel
	block   map[string]<-chan struct{} // actor ID → blocks its reminders until closed
}

type fire struct {
	actor, name, data string
	at                time.Time
}

func newPinger() *pinger {
	return &pinger{fail: map[string]int{}, cancel: map[string]bool{}, block: map[string]<-chan struct{}{}}
}

func (p *pinger) firesOf(actorID, name string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Time
	for _, f := range p.fires {
		if f.actor == actorID && f.name == name {
			out = append(out, f.at)
		}
	}
	return out
}

func (p *pinger) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.fires)
}

type pingerActor struct {
	p    *pinger
	self *actor.Self
}

func (a *pingerActor) Invoke(ctx context.Context, method string, body []byte) ([]byte, error) {
	switch method {
	case "arm": // a reminder registered from inside a turn, through Self
		return nil, a.self.CreateReminder(ctx, actor.ReminderSpec{Name: "self", Data: body, DueTime: "1s", Period: "1s"})
	case "disarm":
		return nil, a.self.DeleteReminder(ctx, "self")
	}
	return []byte(`{}`), nil
}

func (a *pingerActor) Remind(ctx context.Context, name string, data []byte) (bool, error) {
	p := a.p
	p.mu.Lock()
	block := p.block[a.self.ID().ID]
	p.started = append(p.started, a.self.ID().ID+"/"+name)
	p.mu.Unlock()
	if block != nil {
		<-block
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail[name] > 0 {
		p.fail[name]--
		return false, fmt.Errorf("scripted failure of %s", name)
	}
	p.fires = append(p.fires, fire{actor: a.self.ID().ID, name: name, data: string(data), at: time.Now()})
	return p.cancel[name], nil
}

type harness struct {
	t     *testing.T
	store statestore.Store
	rt    *actor.Runtime
	svc   *reminders.Service
	p     *pinger
	cfg   reminders.Config
}

// start runs a runtime hosting type "T" and a reminder service on store.
func start(t *testing.T, store statestore.Store, p *pinger, cfg reminders.Config) *harness {
	t.Helper()
	return startPlaced(t, store, p, cfg, singleSilo(t, store))
}

// singleSilo is the placement of one start of a test silo on store: a
// SingleSilo whose version counts the starts on that store, as granary
// dev's does, so that a restarted silo wins its predecessor's shards.
func singleSilo(t *testing.T, store statestore.Store) *actor.SingleSilo {
	t.Helper()
	v, err := statestore.NextVersion(context.Background(), store, statestore.ClusterVersionKey("test"))
	if err != nil {
		t.Fatal(err)
	}
	return actor.NewSingleSilo(store, statestore.Claim{Cluster: "test", Version: v, Silo: "s", Incarnation: actor.NewIncarnation()}, quiet())
}

// startPlaced is start with a placement deciding which actors the silo owns.
func startPlaced(t *testing.T, store statestore.Store, p *pinger, cfg reminders.Config, placement actor.Placement) *harness {
	t.Helper()
	cfg.Placement = placement
	rt, err := actor.New(actor.Config{Store: store, Logger: quiet(), Placement: placement})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.RegisterNative("T", func(self *actor.Self) actor.NativeActor {
		return &pingerActor{p: p, self: self}
	}, actor.TypeConfig{}); err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Actors = store, rt
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	svc, err := reminders.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rt.SetReminders(svc)
	synctest.Wait() // the initial load of type T
	return &harness{t: t, store: store, rt: rt, svc: svc, p: p, cfg: cfg}
}

// stop ends the service and the runtime; the store stays open.
func (h *harness) stop() {
	h.svc.Stop()
	h.rt.Close(context.Background())
}

func (h *harness) create(id, name, due, period, ttl string) {
	h.t.Helper()
	err := h.svc.Create(context.Background(), actor.ID{Type: "T", ID: id},
		actor.ReminderSpec{Name: name, Data: []byte(`{"n":1}`), DueTime: due, Period: period, TTL: ttl})
	if err != nil {
		h.t.Fatalf("create %s/%s: %v", id, name, err)
	}
}

func (h *harness) stored(id, name string) (reminders.Info, bool) {
	h.t.Helper()
	info, err := h.svc.Get(context.Background(), actor.ID{Type: "T", ID: id}, name)
	if errors.Is(err, statestore.ErrNotFound) {
		return reminders.Info{}, false
	}
	if err != nil {
		h.t.Fatalf("get %s/%s: %v", id, name, err)
	}
	return info, true
}

// sleep advances the bubble's clock and lets everything due run.
func sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestPeriodicFiresOnScheduleAndRecordsNextDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, memstore.New(), newPinger(), reminders.Config{})
		defer h.stop()
		t0 := time.Now()
		h.create("a", "tick", "2s", "1s", "")
		if info, ok := h.stored("a", "tick"); !ok || !info.NextFire.Equal(t0.Add(2*time.Second)) || string(info.Data) != `{"n":1}` {
			t.Fatalf("stored before the first fire: %+v %v", info, ok)
		}
		sleep(1900 * time.Millisecond)
		if n := len(h.p.firesOf("a", "tick")); n != 0 {
			t.Fatalf("fired %d times before the due time", n)
		}
		sleep(3200 * time.Millisecond) // now t0+5.1s: fires at 2, 3, 4, 5
		got := h.p.firesOf("a", "tick")
		want := []time.Duration{2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second}
		if len(got) != len(want) {
			t.Fatalf("fires at %v, want %d fires", got, len(want))
		}
		for i, at := range got {
			if d := at.Sub(t0); d != want[i] {
				t.Errorf("fire %d at +%v, want +%v", i, d, want[i])
			}
		}
		sleep(100 * time.Millisecond) // a flush
		info, _ := h.stored("a", "tick")
		if want := t0.Add(6 * time.Second); !info.NextFire.Equal(want) {
			t.Errorf("stored next fire %v, want %v", info.NextFire, want)
		}
	})
}

func TestOneShotFiresOnceAndIsDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, memstore.New(), newPinger(), reminders.Config{})
		defer h.stop()
		h.create("a", "once", "1s", "", "")
		sleep(5 * time.Second)
		if n := len(h.p.firesOf("a", "once")); n != 1 {
			t.Fatalf("one-shot fired %d times", n)
		}
		if _, ok := h.stored("a", "once"); ok {
			t.Fatal("one-shot still stored after its fire")
		}
		if h.svc.Len() != 0 {
			t.Fatalf("%d reminders still scheduled", h.svc.Len())
		}
	})
}

func TestRepetitionsAndTTLEndTheSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, memstore.New(), newPinger(), reminders.Config{})
		defer h.stop()
		h.create("a", "r3", "0s", "R3/PT1S", "")
		h.create("a", "ttl", "0s", "1s", "2500ms")
		sleep(10 * time.Second)
		if n := len(h.p.firesOf("a", "r3")); n != 3 {
			t.Errorf("R3 fired %d times", n)
		}
		if n := len(h.p.firesOf("a", "ttl")); n != 3 { // at 0, 1 and 2s; 3s is past the TTL
			t.Errorf("ttl 2.5s fired %d times", n)
		}
		for _, name := range []string{"r3", "ttl"} {
			if _, ok := h.stored("a", name); ok {
				t.Errorf("%s still stored after its schedule ended", name)
			}
		}
	})
}

func TestCancelByActorDeletes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPinger()
		p.cancel["stop"] = true
		h := start(t, memstore.New(), p, reminders.Config{})
		defer h.stop()
		h.create("a", "stop", "1s", "1s", "")
		sleep(5 * time.Second)
		if n := len(p.firesOf("a", "stop")); n != 1 {
			t.Fatalf("cancelled reminder fired %d times", n)
		}
		if _, ok := h.stored("a", "stop"); ok {
			t.Fatal("cancelled reminder still stored")
		}
	})
}

func TestReplaceAndDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, memstore.New(), newPinger(), reminders.Config{})
		defer h.stop()
		t0 := time.Now()
		h.create("a", "r", "1s", "1s", "")
		sleep(1500 * time.Millisecond) // fired once at +1s
		h.create("a", "r", "10s", "", "")
		sleep(5 * time.Second)
		if got := h.p.firesOf("a", "r"); len(got) != 1 {
			t.Fatalf("old schedule kept firing after replacement: %v", got)
		}
		if info, _ := h.stored("a", "r"); info.Period != "" || !info.NextFire.Equal(t0.Add(11500*time.Millisecond)) {
			t.Fatalf("stored after replace: %+v", info)
		}
		id := actor.ID{Type: "T", ID: "a"}
		for range 2 { // idempotent
			if err := h.svc.Delete(context.Background(), id, "r"); err != nil {
				t.Fatal(err)
			}
		}
		sleep(20 * time.Second)
		if got := h.p.firesOf("a", "r"); len(got) != 1 {
			t.Fatalf("deleted reminder fired: %v", got)
		}
		if _, ok := h.stored("a", "r"); ok {
			t.Fatal("deleted reminder still stored")
		}
	})
}

func TestBadRegistrations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, memstore.New(), newPinger(), reminders.Config{})
		defer h.stop()
		ctx := context.Background()
		cases := []struct {
			name  string
			id    actor.ID
			spec  actor.ReminderSpec
			field string // the schedule field named, or ""
			want  error
		}{
			{"R0", actor.ID{Type: "T", ID: "a"}, actor.ReminderSpec{Name: "x", Period: "R0/PT1S"}, "period", nil},
			{"negative due", actor.ID{Type: "T", ID: "a"}, actor.ReminderSpec{Name: "x", DueTime: "-1s"}, "dueTime", nil},
			{"ttl before due", actor.ID{Type: "T", ID: "a"}, actor.ReminderSpec{Name: "x", DueTime: "10s", Period: "1s", TTL: "2000-01-01T00:00:05Z"}, "ttl", nil},
			{"impossible cron", actor.ID{Type: "T", ID: "a"}, actor.ReminderSpec{Name: "x", Period: "0 0 30 2 *"}, "period", nil},
			{"nanosecond period", actor.ID{Type: "T", ID: "a"}, actor.ReminderSpec{Name: "x", Period: "1ns"}, "period", nil},
			{"nanosecond @every", actor.ID{Type: "T", ID: "a"}, actor.ReminderSpec{Name: "x", Period: "@every 1ns"}, "period", nil},
			{"nanosecond ISO 8601", actor.ID{Type: "T", ID: "a"}, actor.ReminderSpec{Name: "x", Period: "R5/PT0.000000001S"}, "period", nil},
			{"due below a millisecond", actor.ID{Type: "T", ID: "a"}, actor.ReminderSpec{Name: "x", DueTime: "1ns"}, "dueTime", nil},
			{"bad data", actor.ID{Type: "T", ID: "a"}, actor.ReminderSpec{Name: "x", Data: []byte("{")}, "", nil},
			{"bad name", actor.ID{Type: "T", ID: "a"}, actor.ReminderSpec{Name: "a/b"}, "", nil},
			{"not hosted", actor.ID{Type: "Nobody", ID: "a"}, actor.ReminderSpec{Name: "x", DueTime: "1s"}, "", actor.ErrTypeNotHosted},
		}
		for _, c := range cases {
			err := h.svc.Create(ctx, c.id, c.spec)
			if err == nil {
				t.Errorf("%s: accepted", c.name)
				continue
			}
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Errorf("%s: %v, want %v", c.name, err, c.want)
				}
				continue
			}
			if _, ok := errors.AsType[*reminders.InputError](err); !ok {
				t.Errorf("%s: %v is not an InputError", c.name, err)
			}
			if c.field != "" {
				fe, ok := errors.AsType[*schedule.FieldError](err)
				if !ok || fe.Field != c.field {
					t.Errorf("%s: %v does not name field %s", c.name, err, c.field)
				}
			}
		}
		if h.svc.Len() != 0 {
			t.Fatalf("bad registrations scheduled %d reminders", h.svc.Len())
		}
		if _, err := h.svc.Get(ctx, actor.ID{Type: "Nobody", ID: "a"}, "x"); !errors.Is(err, actor.ErrTypeNotHosted) {
			t.Fatalf("get on an unhosted type: %v", err)
		}
		if err := h.svc.Delete(ctx, actor.ID{Type: "Nobody", ID: "a"}, "x"); !errors.Is(err, actor.ErrTypeNotHosted) {
			t.Fatalf("delete on an unhosted type: %v", err)
		}
	})
}

func TestFailedFireRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPinger()
		p.fail["once"] = 3
		h := start(t, memstore.New(), p, reminders.Config{RetryBackoff: time.Second, MaxRetryBackoff: 8 * time.Second, MaxRetries: 5})
		defer h.stop()
		t0 := time.Now()
		h.create("a", "once", "0s", "", "")
		sleep(time.Minute)
		got := p.firesOf("a", "once")
		// Attempts at 0 (fails), 1s (fails), 3s (fails), 7s (delivered).
		if len(got) != 1 || got[0].Sub(t0) != 7*time.Second {
			t.Fatalf("delivered at %v, want once at +7s", got)
		}
		if _, ok := h.stored("a", "once"); ok {
			t.Fatal("one-shot still stored after delivery")
		}
	})
}

func TestPersistentFailureKeepsReminder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPinger()
		p.fail["tick"] = 1 << 30
		p.fail["once"] = 1 << 30
		h := start(t, memstore.New(), p, reminders.Config{RetryBackoff: time.Second, MaxRetryBackoff: 4 * time.Second, MaxRetries: 2})
		defer h.stop()
		t0 := time.Now()
		h.create("a", "tick", "0s", "1m", "")
		h.create("a", "once", "0s", "", "")
		sleep(30 * time.Second)
		// tick: attempts at 0, 1, 3s, then it waits for +1m.
		if info, ok := h.stored("a", "tick"); !ok || !info.NextFire.Equal(t0.Add(time.Minute)) {
			t.Fatalf("periodic reminder after retries: %+v stored=%v, want next fire at +1m", info, ok)
		}
		if _, ok := h.stored("a", "once"); !ok {
			t.Fatal("failing one-shot reminder was dropped")
		}
		p.mu.Lock()
		p.fail["tick"], p.fail["once"] = 0, 0
		p.mu.Unlock()
		sleep(40 * time.Second)
		if got := p.firesOf("a", "tick"); len(got) != 1 || got[0].Sub(t0) != time.Minute {
			t.Fatalf("tick delivered at %v, want at +1m", got)
		}
		if got := p.firesOf("a", "once"); len(got) != 1 {
			t.Fatalf("one-shot delivered %d times after recovery, want 1", len(got))
		}
	})
}

func TestRestartLoadsAndCatchesUpOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		defer store.Close()
		p := newPinger()
		h := start(t, store, p, reminders.Config{})
		t0 := time.Now()
		h.create("a", "tick", "1s", "1s", "")
		h.create("b", "later", "1h", "", "")
		h.create("c", "soon", "30s", "", "")
		sleep(2500 * time.Millisecond) // fires at 1s and 2s
		h.stop()
		if n := len(p.firesOf("a", "tick")); n != 2 {
			t.Fatalf("before the restart tick fired %d times", n)
		}

		sleep(time.Minute) // down for a minute: tick misses ~60 fires, soon is overdue
		h = start(t, store, p, reminders.Config{})
		defer h.stop()
		sleep(10 * time.Millisecond)
		if h.svc.Len() != 2 { // tick and later; soon fired at once and is done
			t.Fatalf("after restart %d reminders scheduled, want 2", h.svc.Len())
		}
		tick := p.firesOf("a", "tick")
		if len(tick) != 3 {
			t.Fatalf("after restart tick fired %d times in total, want 3 (one catch-up)", len(tick))
		}
		if n := len(p.firesOf("c", "soon")); n != 1 {
			t.Fatalf("overdue one-shot fired %d times", n)
		}
		sleep(2 * time.Second)
		tick = p.firesOf("a", "tick")
		if len(tick) != 5 {
			t.Fatalf("tick fired %d times, want 5", len(tick))
		}
		// Back on its schedule: whole seconds after t0.
		if d := tick[4].Sub(t0); d%time.Second != 0 {
			t.Fatalf("resumed off schedule: +%v", d)
		}
		if n := len(p.firesOf("b", "later")); n != 0 {
			t.Fatalf("reminder due in an hour fired %d times", n)
		}
	})
}

func TestUnhostedTypeStopsFiringAndReloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPinger()
		h := start(t, memstore.New(), p, reminders.Config{})
		defer h.stop()
		h.create("a", "tick", "1s", "1s", "")
		sleep(1500 * time.Millisecond)
		h.rt.Unregister(context.Background(), "T")
		synctest.Wait()
		if h.svc.Len() != 0 {
			t.Fatalf("%d reminders scheduled after the type went away", h.svc.Len())
		}
		sleep(5 * time.Second)
		if n := len(p.firesOf("a", "tick")); n != 1 {
			t.Fatalf("fired %d times, want 1 (none while unhosted)", n)
		}
		if err := h.rt.RegisterNative("T", func(self *actor.Self) actor.NativeActor {
			return &pingerActor{p: p, self: self}
		}, actor.TypeConfig{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if h.svc.Len() != 1 {
			t.Fatalf("%d reminders scheduled after the type came back", h.svc.Len())
		}
		sleep(1100 * time.Millisecond)
		if n := len(p.firesOf("a", "tick")); n < 2 {
			t.Fatalf("not firing after the type came back (%d fires)", n)
		}
	})
}

func TestSlowActorDoesNotDelayOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPinger()
		unblock := make(chan struct{})
		p.block["slow"] = unblock
		// One type: the slow actor's three fires may hold three of the four
		// workers, so the type's bound is all of them.
		h := start(t, memstore.New(), p, reminders.Config{Workers: 4, WorkersPerType: 4})
		defer h.stop()
		t0 := time.Now()
		for i := range 3 {
			h.create("slow", fmt.Sprintf("s%d", i), "1s", "", "")
		}
		for i := range 20 {
			h.create(fmt.Sprintf("fast%d", i), "r", "1s", "", "")
		}
		sleep(1100 * time.Millisecond)
		for i := range 20 {
			got := p.firesOf(fmt.Sprintf("fast%d", i), "r")
			if len(got) != 1 || got[0].Sub(t0) != time.Second {
				t.Fatalf("fast%d fired at %v while another actor was blocked", i, got)
			}
		}
		close(unblock)
		synctest.Wait()
		if p.total() != 23 {
			t.Fatalf("%d fires after unblocking, want 23", p.total())
		}
	})
}

func TestFencedWriteDropsTheReminder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		p := newPinger()
		h := start(t, store, p, reminders.Config{})
		defer h.stop()
		h.create("a", "tick", "1s", "1s", "")
		sleep(1500 * time.Millisecond)
		// Another silo took actor a's shard over with a newer version.
		if statestore.ShardOf("T", "a") == statestore.ShardOf("T", "b") {
			t.Fatal("actors a and b share a shard; the test needs them apart")
		}
		takeShard(t, store, actor.ID{Type: "T", ID: "a"})
		sleep(5 * time.Second)
		if n := len(p.firesOf("a", "tick")); n > 2 {
			t.Fatalf("fenced reminder went on firing: %d fires", n)
		}
		if h.svc.Len() != 0 {
			t.Fatalf("fenced reminder still scheduled")
		}
		err := h.svc.Create(context.Background(), actor.ID{Type: "T", ID: "b"}, actor.ReminderSpec{Name: "x", DueTime: "1s"})
		if err != nil {
			t.Fatalf("unfenced actor refused: %v", err)
		}
	})
}

func TestStopWritesPendingDueTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		p := newPinger()
		h := start(t, store, p, reminders.Config{FlushInterval: time.Hour})
		t0 := time.Now()
		h.create("a", "tick", "1s", "1s", "")
		h.create("a", "once", "1s", "", "")
		sleep(1500 * time.Millisecond)
		h.stop()
		info, err := readInfo(store, "a", "tick")
		if err != nil || !info.NextFire.Equal(t0.Add(2*time.Second)) {
			t.Fatalf("after stop: %+v %v, want next fire at +2s", info, err)
		}
		if _, err := readInfo(store, "a", "once"); !errors.Is(err, statestore.ErrNotFound) {
			t.Fatalf("fired one-shot after stop: %v", err)
		}
	})
}

// readInfo reads a record without a service, as a new silo would.
func readInfo(store statestore.Store, id, name string) (reminders.Info, error) {
	item, err := store.Get(context.Background(), statestore.ReminderKey("T", id, name))
	if err != nil {
		return reminders.Info{}, err
	}
	return reminders.DecodeInfo(actor.ID{Type: "T", ID: id}, name, item.Value)
}

func TestConcurrentCreateDeleteWhileFiring(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPinger()
		h := start(t, memstore.New(), p, reminders.Config{FlushInterval: 10 * time.Millisecond})
		defer h.stop()
		ctx := context.Background()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 50 {
					id := actor.ID{Type: "T", ID: fmt.Sprintf("a%d", i%5)}
					name := fmt.Sprintf("r%d", g)
					if err := h.svc.Create(ctx, id, actor.ReminderSpec{Name: name, DueTime: "10ms", Period: "20ms"}); err != nil {
						t.Error(err)
					}
					time.Sleep(15 * time.Millisecond)
					if i%3 == 0 {
						if err := h.svc.Delete(ctx, id, name); err != nil {
							t.Error(err)
						}
					}
				}
			})
		}
		wg.Wait()
		sleep(100 * time.Millisecond)
		// What is scheduled must be exactly what is stored.
		ids := map[string]bool{}
		for g := range 8 {
			for a := range 5 {
				if _, ok := h.stored(fmt.Sprintf("a%d", a), fmt.Sprintf("r%d", g)); ok {
					ids[fmt.Sprintf("a%d/r%d", a, g)] = true
				}
			}
		}
		if h.svc.Len() != len(ids) {
			t.Fatalf("%d reminders scheduled, %d stored", h.svc.Len(), len(ids))
		}
	})
}

// ring is a placement table shared by test silos: one silo owns every actor.
type ring struct {
	mu      sync.Mutex
	version uint64
	owner   string
}

func (r *ring) set(version uint64, owner string) {
	r.mu.Lock()
	r.version, r.owner = version, owner
	r.mu.Unlock()
}

// view is the ring as one silo sees it. It claims an actor's shard in the
// store the first time it is asked for it at a version.
type view struct {
	r     *ring
	self  string
	store statestore.Store

	mu      sync.Mutex
	claimed map[string]uint64 // fence key → version claimed at
}

func newView(r *ring, self string, store statestore.Store) *view {
	return &view{r: r, self: self, store: store, claimed: map[string]uint64{}}
}

func (v *view) claimAt(version uint64) statestore.Claim {
	return statestore.Claim{Cluster: "ring", Version: version, Silo: v.self, Incarnation: "1"}
}

func (v *view) Claim(ctx context.Context, id actor.ID) (statestore.Claim, error) {
	v.r.mu.Lock()
	version, owner := v.r.version, v.r.owner
	v.r.mu.Unlock()
	if owner != v.self {
		return statestore.Claim{}, fmt.Errorf("owned by silo %s at version %d: %w", owner, version, actor.ErrNotOwner)
	}
	c := v.claimAt(version)
	key := statestore.ShardFenceKey(id.Type, statestore.ShardOf(id.Type, id.ID))
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.claimed[key] != version {
		if err := statestore.ClaimShard(ctx, v.store, key, c, false); err != nil {
			return statestore.Claim{}, fmt.Errorf("%w: %w", actor.ErrNotOwner, err)
		}
		v.claimed[key] = version
	}
	return c, nil
}

func TestPlacementChangeMovesReminders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		defer store.Close()
		r := &ring{version: 1, owner: "A"}
		pa, pb := newPinger(), newPinger()
		a := startPlaced(t, store, pa, reminders.Config{}, newView(r, "A", store))
		defer a.stop()
		b := startPlaced(t, store, pb, reminders.Config{}, newView(r, "B", store))
		defer b.stop()
		t0 := time.Now()
		a.create("x", "tick", "1s", "1s", "")
		err := b.svc.Create(context.Background(), actor.ID{Type: "T", ID: "x"}, actor.ReminderSpec{Name: "other", DueTime: "1s"})
		if !errors.Is(err, actor.ErrNotOwner) {
			t.Fatalf("registration on a silo that does not own the actor: %v", err)
		}
		sleep(2500 * time.Millisecond) // A fires at 1s and 2s

		r.set(2, "B")
		a.svc.PlacementChanged()
		b.svc.PlacementChanged()
		synctest.Wait()
		if a.svc.Len() != 0 || b.svc.Len() != 1 {
			t.Fatalf("after the move A schedules %d and B %d reminders, want 0 and 1", a.svc.Len(), b.svc.Len())
		}
		sleep(3 * time.Second)
		ticks := map[time.Duration]string{}
		for silo, p := range map[string]*pinger{"A": pa, "B": pb} {
			for _, at := range p.firesOf("x", "tick") {
				d := at.Sub(t0)
				if other, dup := ticks[d]; dup {
					t.Fatalf("tick +%v fired on %s and %s", d, other, silo)
				}
				ticks[d] = silo
			}
		}
		if len(pa.firesOf("x", "tick")) != 2 || len(pb.firesOf("x", "tick")) < 2 {
			t.Fatalf("fires: A %v, B %v; want A to stop after 2 and B to go on", pa.firesOf("x", "tick"), pb.firesOf("x", "tick"))
		}
		// A's runtime still believes in its old activation; its writes are
		// refused now that B holds the shard's fence at a newer version.
		if c, active := a.rt.ActivationClaim(actor.ID{Type: "T", ID: "x"}); active && c.Silo != "A" {
			t.Fatalf("A's activation of x runs under %v", c)
		}
		err = a.store.Transact(context.Background(), statestore.Txn{
			Fence: &statestore.FenceCheck{
				Key:    statestore.ShardFenceKey("T", statestore.ShardOf("T", "x")),
				Record: statestore.Claim{Cluster: "ring", Version: 1, Silo: "A", Incarnation: "1"}.HeldRecord(),
			},
			Ops: []statestore.Op{{Kind: statestore.Put, Key: statestore.ReminderKey("T", "x", "tick"), Value: []byte("{}")}},
		})
		if !errors.Is(err, statestore.ErrFenced) {
			t.Fatalf("stale owner's write: %v, want ErrFenced", err)
		}
	})
}

func TestNativeActorManagesItsReminders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPinger()
		h := start(t, memstore.New(), p, reminders.Config{})
		defer h.stop()
		ctx := context.Background()
		id := actor.ID{Type: "T", ID: "n"}
		call := func(method string) {
			t.Helper()
			resp, err := h.rt.Invoke(ctx, id, &actor.Request{Method: method, Body: []byte(`"hi"`)})
			if err != nil {
				t.Fatalf("%s: %v", method, err)
			}
			resp.Release()
		}
		call("arm")
		sleep(2500 * time.Millisecond)
		fires := p.firesOf("n", "self")
		if len(fires) != 2 {
			t.Fatalf("reminder armed through Self fired %d times in 2.5s, want 2", len(fires))
		}
		p.mu.Lock()
		data := p.fires[0].data
		p.mu.Unlock()
		if data != `"hi"` {
			t.Fatalf("reminder data %q, want %q", data, `"hi"`)
		}
		call("disarm")
		sleep(3 * time.Second)
		if n := len(p.firesOf("n", "self")); n != 2 {
			t.Fatalf("disarmed reminder fired again: %d fires", n)
		}
		if _, ok := h.stored("n", "self"); ok {
			t.Fatal("disarmed reminder still stored")
		}
	})
}

// suspendable is a placement whose lease can lapse: while suspended, Claim
// answers as a cluster silo without a lease does, ErrNotOwner wrapping
// ErrSuspended.
type suspendable struct {
	actor.Placement
	suspended atomic.Bool
}

func (p *suspendable) Claim(ctx context.Context, id actor.ID) (statestore.Claim, error) {
	if p.suspended.Load() {
		return statestore.Claim{}, fmt.Errorf("%w: %w: no lease", actor.ErrNotOwner, actor.ErrSuspended)
	}
	return p.Placement.Claim(ctx, id)
}

// TestFireDuringASuspensionIsRetried: a fire that finds the silo suspended
// (its lease lapsed for a moment) must stay scheduled and fire once the
// silo may run turns again. It used to be dropped as if the actor had moved,
// because the suspension error also wraps ErrNotOwner: the reminder then
// never fired again on a silo that still owned it.
func TestFireDuringASuspensionIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		placement := &suspendable{Placement: singleSilo(t, store)}
		h := startPlaced(t, store, newPinger(), reminders.Config{}, placement)
		defer h.stop()
		h.create("a", "tick", "1s", "1s", "")
		sleep(1500 * time.Millisecond)
		if n := len(h.p.firesOf("a", "tick")); n != 1 {
			t.Fatalf("%d fires before the suspension, want 1", n)
		}
		placement.suspended.Store(true)
		sleep(time.Second) // the fire due at 2 s finds the silo suspended
		placement.suspended.Store(false)
		sleep(4 * time.Second)
		if n := len(h.p.firesOf("a", "tick")); n < 4 {
			t.Fatalf("%d fires by 6.5 s with a 1 s suspension, want at least 4: the reminder was dropped", n)
		}
	})
}
