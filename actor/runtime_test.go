package actor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/memstore"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newRuntime(t *testing.T, store statestore.Store, turnWait time.Duration) *actor.Runtime {
	t.Helper()
	if store == nil {
		store = memstore.New()
	}
	rt, err := actor.New(actor.Config{Store: store, Logger: quietLogger(), TurnWait: turnWait})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

// recorder is a native actor type whose behaviour tests script per method.
type recorder struct {
	mu          sync.Mutex
	activations map[string]int
	deactivated []string
	events      []string
	inTurn      map[string]int
	maxInTurn   int
	handlers    map[string]func(ctx context.Context, self *actor.Self, body []byte) ([]byte, error)
}

func newRecorder() *recorder {
	return &recorder{activations: map[string]int{}, inTurn: map[string]int{}, handlers: map[string]func(context.Context, *actor.Self, []byte) ([]byte, error){}}
}

func (r *recorder) log(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

func (r *recorder) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) register(t *testing.T, rt *actor.Runtime, name string, cfg actor.TypeConfig) {
	t.Helper()
	err := rt.RegisterNative(name, func(self *actor.Self) actor.NativeActor {
		r.mu.Lock()
		r.activations[self.ID().ID]++
		r.mu.Unlock()
		return &recorded{r: r, self: self}
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
}

type recorded struct {
	r    *recorder
	self *actor.Self
}

func (a *recorded) Invoke(ctx context.Context, method string, body []byte) ([]byte, error) {
	r := a.r
	id := a.self.ID().ID
	r.mu.Lock()
	r.inTurn[id]++
	r.maxInTurn = max(r.maxInTurn, r.inTurn[id])
	h := r.handlers[method]
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inTurn[id]--
		r.mu.Unlock()
	}()
	if h == nil {
		return body, nil
	}
	return h(ctx, a.self, body)
}

func (a *recorded) Timer(_ context.Context, name, callback string, data []byte) error {
	a.r.log(fmt.Sprintf("timer %s %s %s %s", a.self.ID().ID, name, callback, data))
	return nil
}

func (a *recorded) Deactivate(context.Context) error {
	a.r.mu.Lock()
	a.r.deactivated = append(a.r.deactivated, a.self.ID().ID)
	a.r.mu.Unlock()
	return nil
}

func call(rt *actor.Runtime, ctx context.Context, typ, id, method, body string) (string, error) {
	resp, err := rt.Invoke(ctx, actor.ID{Type: typ, ID: id}, &actor.Request{Method: method, Body: []byte(body)})
	if err != nil {
		return "", err
	}
	defer resp.Release()
	return string(resp.Body), nil
}

func TestActivatesOnceUnderConcurrentFirstCalls(t *testing.T) {
	rt := newRuntime(t, nil, 0)
	rec := newRecorder()
	rec.register(t, rt, "T", actor.TypeConfig{})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := call(rt, context.Background(), "T", "a", "echo", strconv.Itoa(i)); err != nil || got != strconv.Itoa(i) {
				t.Errorf("call %d: %q, %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	if rec.activations["a"] != 1 {
		t.Fatalf("activated %d times, want 1", rec.activations["a"])
	}
	if rec.maxInTurn != 1 {
		t.Fatalf("%d turns ran at once, want 1", rec.maxInTurn)
	}
	if !rt.IsActive(actor.ID{Type: "T", ID: "a"}) {
		t.Fatal("actor not active after calls")
	}
	if st := rt.Stats(); len(st) != 1 || st[0].Active != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestTurnsRunOneAtATimeInArrivalOrder(t *testing.T) {
	rt := newRuntime(t, nil, 0)
	rec := newRecorder()
	release := make(chan struct{})
	entered := make(chan struct{})
	rec.handlers["block"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
		close(entered)
		<-release
		return nil, nil
	}
	rec.handlers["note"] = func(_ context.Context, _ *actor.Self, body []byte) ([]byte, error) {
		rec.log(string(body))
		return nil, nil
	}
	rec.register(t, rt, "T", actor.TypeConfig{})
	go call(rt, context.Background(), "T", "a", "block", "")
	<-entered
	// Queue calls one by one so their arrival order is known.
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call(rt, context.Background(), "T", "a", "note", strconv.Itoa(i))
		}()
		waitFor(t, func() bool { return rt.QueueLength(actor.ID{Type: "T", ID: "a"}) == i+1 })
	}
	close(release)
	wg.Wait()
	want := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	if got := rec.Events(); !slices.Equal(got, want) {
		t.Fatalf("turn order %v, want %v", got, want)
	}
	if rec.maxInTurn != 1 {
		t.Fatalf("%d turns at once", rec.maxInTurn)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReentrancyAlongOneChainWithDepthBound(t *testing.T) {
	rt := newRuntime(t, nil, 0)
	rec := newRecorder()
	// "down" calls itself n times through the runtime, on the same chain.
	rec.handlers["down"] = func(ctx context.Context, self *actor.Self, body []byte) ([]byte, error) {
		n, _ := strconv.Atoi(string(body))
		if n == 0 {
			return []byte("bottom"), nil
		}
		return self.Call(ctx, self.ID(), "down", []byte(strconv.Itoa(n-1)))
	}
	rec.register(t, rt, "R", actor.TypeConfig{Reentrancy: true, MaxStackDepth: 5})
	got, err := call(rt, context.Background(), "R", "a", "down", "4")
	if err != nil || got != "bottom" {
		t.Fatalf("depth 5: %q, %v", got, err)
	}
	_, err = call(rt, context.Background(), "R", "a", "down", "5")
	if !errors.Is(err, actor.ErrStackDepth) {
		t.Fatalf("depth 6: err = %v, want ErrStackDepth", err)
	}
	// The turn is free again afterwards.
	if got, err := call(rt, context.Background(), "R", "a", "down", "0"); err != nil || got != "bottom" {
		t.Fatalf("after depth error: %q, %v", got, err)
	}
}

func TestReentrantCallDoesNotJumpOtherChains(t *testing.T) {
	rt := newRuntime(t, nil, 0)
	rec := newRecorder()
	inside := make(chan struct{})
	proceed := make(chan struct{})
	rec.handlers["outer"] = func(ctx context.Context, self *actor.Self, _ []byte) ([]byte, error) {
		close(inside)
		<-proceed
		return self.Call(ctx, self.ID(), "note", []byte("nested"))
	}
	rec.handlers["note"] = func(_ context.Context, _ *actor.Self, body []byte) ([]byte, error) {
		rec.log(string(body))
		return nil, nil
	}
	rec.register(t, rt, "R", actor.TypeConfig{Reentrancy: true})
	done := make(chan error)
	go func() { _, err := call(rt, context.Background(), "R", "a", "outer", ""); done <- err }()
	<-inside
	other := make(chan error)
	go func() { _, err := call(rt, context.Background(), "R", "a", "note", "other chain"); other <- err }()
	waitFor(t, func() bool { return rt.QueueLength(actor.ID{Type: "R", ID: "a"}) == 1 })
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	if got := rec.Events(); !slices.Equal(got, []string{"nested", "other chain"}) {
		t.Fatalf("events %v: the nested call must enter before the queued call of another chain", got)
	}
}

func TestCycleThroughAnotherActorFailsFast(t *testing.T) {
	rt := newRuntime(t, nil, time.Minute)
	rec := newRecorder()
	// a.ping calls b.pong, which calls a.ping again: a cycle on one chain.
	rec.handlers["ping"] = func(ctx context.Context, self *actor.Self, _ []byte) ([]byte, error) {
		return self.Call(ctx, actor.ID{Type: "N", ID: "b"}, "pong", nil)
	}
	rec.handlers["pong"] = func(ctx context.Context, self *actor.Self, _ []byte) ([]byte, error) {
		return self.Call(ctx, actor.ID{Type: "N", ID: "a"}, "ping", nil)
	}
	rec.register(t, rt, "N", actor.TypeConfig{})
	start := time.Now()
	_, err := call(rt, context.Background(), "N", "a", "ping", "")
	if !errors.Is(err, actor.ErrDeadlock) {
		t.Fatalf("err = %v, want ErrDeadlock", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("cycle detected only after %v", time.Since(start))
	}
	// Both actors serve again.
	if _, err := call(rt, context.Background(), "N", "b", "echo", "x"); err != nil {
		t.Fatal(err)
	}
}

func TestTurnWaitIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, 2*time.Second)
		rec := newRecorder()
		release := make(chan struct{})
		rec.handlers["block"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
			<-release
			return nil, nil
		}
		rec.register(t, rt, "T", actor.TypeConfig{})
		go call(rt, context.Background(), "T", "a", "block", "")
		synctest.Wait()
		start := time.Now()
		_, err := call(rt, context.Background(), "T", "a", "echo", "x")
		if !errors.Is(err, actor.ErrTurnTimeout) {
			t.Fatalf("err = %v, want ErrTurnTimeout", err)
		}
		if waited := time.Since(start); waited != 2*time.Second {
			t.Fatalf("waited %v, want exactly the 2s bound", waited)
		}
		close(release)
		synctest.Wait()
		if got, err := call(rt, context.Background(), "T", "a", "echo", "y"); err != nil || got != "y" {
			t.Fatalf("after release: %q, %v", got, err)
		}
	})
}

func TestCancelledWaiterLeavesTheQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, time.Hour)
		rec := newRecorder()
		release := make(chan struct{})
		rec.handlers["block"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
			<-release
			return nil, nil
		}
		rec.register(t, rt, "T", actor.TypeConfig{})
		go call(rt, context.Background(), "T", "a", "block", "")
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error)
		go func() { _, err := call(rt, ctx, "T", "a", "echo", "x"); errc <- err }()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if n := rt.QueueLength(actor.ID{Type: "T", ID: "a"}); n != 0 {
			t.Fatalf("queue length %d after cancel", n)
		}
		close(release)
		synctest.Wait()
		if _, err := call(rt, context.Background(), "T", "a", "echo", "y"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestIdleDeactivation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, 0)
		rec := newRecorder()
		rec.register(t, rt, "Short", actor.TypeConfig{IdleTimeout: time.Minute})
		rec.register(t, rt, "Long", actor.TypeConfig{IdleTimeout: time.Hour})
		for _, typ := range []string{"Short", "Long"} {
			if _, err := call(rt, context.Background(), typ, "a", "echo", ""); err != nil {
				t.Fatal(err)
			}
		}
		// A call after 40s pushes Short's deadline to 100s.
		time.Sleep(40 * time.Second)
		call(rt, context.Background(), "Short", "a", "echo", "")
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if !rt.IsActive(actor.ID{Type: "Short", ID: "a"}) {
			t.Fatal("Short/a deactivated before its idle timeout since the last call")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if rt.IsActive(actor.ID{Type: "Short", ID: "a"}) {
			t.Fatal("Short/a still active after its idle timeout")
		}
		if !rt.IsActive(actor.ID{Type: "Long", ID: "a"}) {
			t.Fatal("Long/a deactivated with the other type's timeout")
		}
		if !slices.Equal(rec.deactivated, []string{"a"}) {
			t.Fatalf("deactivated %v", rec.deactivated)
		}
		// A new call activates it again.
		if _, err := call(rt, context.Background(), "Short", "a", "echo", ""); err != nil {
			t.Fatal(err)
		}
		if rec.activations["a"] != 3 { // Short twice, Long once
			t.Fatalf("activations %v", rec.activations)
		}
	})
}

func TestBusyActorIsNotCollected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, 0)
		rec := newRecorder()
		release := make(chan struct{})
		rec.handlers["block"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
			<-release
			return nil, nil
		}
		rec.register(t, rt, "T", actor.TypeConfig{IdleTimeout: time.Second})
		go call(rt, context.Background(), "T", "a", "block", "")
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if !rt.IsActive(actor.ID{Type: "T", ID: "a"}) {
			t.Fatal("actor collected while a turn was running")
		}
		close(release)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if rt.IsActive(actor.ID{Type: "T", ID: "a"}) {
			t.Fatal("actor not collected after its turn ended and the timeout passed")
		}
	})
}

func TestTimersFireAsTurnsAndDieWithTheActivation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, 0)
		rec := newRecorder()
		rec.register(t, rt, "T", actor.TypeConfig{IdleTimeout: time.Hour})
		id := actor.ID{Type: "T", ID: "a"}
		start := time.Now()
		err := rt.CreateTimer(context.Background(), id, actor.TimerSpec{
			Name: "tick", Callback: "cb", Data: []byte(`{"n":1}`),
			First: start.Add(time.Second),
			Next: func(completed time.Time, fires int) (time.Time, bool) {
				return completed.Add(10 * time.Second), fires < 3
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour / 2)
		synctest.Wait()
		want := []string{`timer a tick cb {"n":1}`, `timer a tick cb {"n":1}`, `timer a tick cb {"n":1}`}
		if got := rec.Events(); !slices.Equal(got, want) {
			t.Fatalf("fires %v, want 3", got)
		}
		// A periodic timer stops when the actor is deactivated.
		rt.CreateTimer(context.Background(), id, actor.TimerSpec{
			Name: "forever", First: time.Now().Add(time.Minute),
			Next: func(c time.Time, _ int) (time.Time, bool) { return c.Add(time.Minute), true },
		})
		rt.Unregister(context.Background(), "T")
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := len(rec.Events()); got != 3 {
			t.Fatalf("%d fires after deactivation", got-3)
		}
	})
}

func TestDeleteTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, nil, 0)
		rec := newRecorder()
		rec.register(t, rt, "T", actor.TypeConfig{})
		id := actor.ID{Type: "T", ID: "a"}
		rt.CreateTimer(context.Background(), id, actor.TimerSpec{
			Name: "t", First: time.Now().Add(time.Second),
			Next: func(c time.Time, _ int) (time.Time, bool) { return c.Add(time.Second), true },
		})
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		rt.DeleteTimer(id, "t")
		rt.DeleteTimer(id, "absent")
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := len(rec.Events()); got != 1 {
			t.Fatalf("%d fires, want 1 before delete", got)
		}
	})
}

func TestDrainFinishesTurnsThenDeactivates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		rt, err := actor.New(actor.Config{Store: store, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		rec.handlers["slow"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
			time.Sleep(5 * time.Second)
			rec.log("slow done")
			return []byte("ok"), nil
		}
		rec.register(t, rt, "T", actor.TypeConfig{DrainTimeout: 30 * time.Second})
		call(rt, context.Background(), "T", "idle", "echo", "")
		result := make(chan error)
		go func() { _, err := call(rt, context.Background(), "T", "busy", "slow", ""); result <- err }()
		synctest.Wait()
		closed := make(chan struct{})
		go func() { rt.Close(context.Background()); close(closed) }()
		synctest.Wait()
		if _, err := call(rt, context.Background(), "T", "new", "echo", ""); !errors.Is(err, actor.ErrClosed) {
			t.Fatalf("call during drain: err = %v, want ErrClosed", err)
		}
		if err := <-result; err != nil {
			t.Fatalf("in-flight turn failed during drain: %v", err)
		}
		<-closed
		slices.Sort(rec.deactivated)
		if !slices.Equal(rec.deactivated, []string{"busy", "idle"}) {
			t.Fatalf("deactivated %v", rec.deactivated)
		}
		if got := rec.Events(); !slices.Equal(got, []string{"slow done"}) {
			t.Fatalf("events %v", got)
		}
	})
}

func TestDrainTimeoutBoundsShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt, _ := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger()})
		rec := newRecorder()
		stuck := make(chan struct{})
		rec.handlers["stuck"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
			<-stuck
			return nil, nil
		}
		rec.register(t, rt, "T", actor.TypeConfig{DrainTimeout: 3 * time.Second})
		go call(rt, context.Background(), "T", "a", "stuck", "")
		synctest.Wait()
		start := time.Now()
		rt.Close(context.Background())
		// The drain timeout, then a moment (100ms) for aborted turns to
		// return; this one ignores its cancelled context and is not waited for.
		if took := time.Since(start); took != 3*time.Second+100*time.Millisecond {
			close(stuck)
			t.Fatalf("Close took %v, want the 3s drain timeout and the 100ms abort grace", took)
		}
		close(stuck)
		synctest.Wait()
	})
}

func TestTypeErrors(t *testing.T) {
	rt := newRuntime(t, nil, 0)
	rec := newRecorder()
	rec.register(t, rt, "T", actor.TypeConfig{})
	if _, err := call(rt, context.Background(), "Nope", "a", "m", ""); !errors.Is(err, actor.ErrTypeNotHosted) {
		t.Fatalf("unknown type: %v", err)
	}
	rt.SetAvailable("T", "app x is unhealthy")
	_, err := call(rt, context.Background(), "T", "a", "m", "")
	if !errors.Is(err, actor.ErrTypeUnavailable) || !contains(err.Error(), "app x is unhealthy") {
		t.Fatalf("unavailable type: %v", err)
	}
	rt.SetAvailable("T", "")
	if _, err := call(rt, context.Background(), "T", "a", "m", ""); err != nil {
		t.Fatalf("available again: %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestStateTransactRequiresActivationAndIsFenced(t *testing.T) {
	store := memstore.New()
	rt := newRuntime(t, store, 0)
	rec := newRecorder()
	rec.register(t, rt, "T", actor.TypeConfig{})
	id := actor.ID{Type: "T", ID: "a"}
	put := func() error {
		return rt.Transact(context.Background(), id, []statestore.Op{{Kind: statestore.Put, Key: "k", Value: []byte(`1`)}})
	}
	if err := put(); !errors.Is(err, actor.ErrNotActive) {
		t.Fatalf("transact on inactive actor: %v", err)
	}
	call(rt, context.Background(), "T", "a", "echo", "")
	if err := put(); err != nil {
		t.Fatal(err)
	}
	item, err := rt.GetState(context.Background(), id, "k")
	if err != nil || string(item.Value) != "1" {
		t.Fatalf("get: %q, %v", item.Value, err)
	}
	// Another silo claims the actor's shard: this activation can no longer
	// commit, and deactivates itself.
	takeShard(t, store, id)
	if err := put(); !errors.Is(err, actor.ErrFenced) {
		t.Fatalf("stale activation committed: %v", err)
	}
	waitFor(t, func() bool { return !rt.IsActive(id) })
	if got := string(mustState(t, rt, id, "k")); got != "1" {
		t.Fatalf("state after the refused write = %q, want the earlier 1", got)
	}
	// An activation made again under the silo's old claim cannot commit either.
	call(rt, context.Background(), "T", "a", "echo", "")
	if err := put(); !errors.Is(err, actor.ErrFenced) {
		t.Fatalf("activation under the lost claim committed: %v", err)
	}
}

// takeShard has another silo process of the default placement's cluster
// claim id's shard at a newer version.
func takeShard(t testing.TB, store statestore.Store, id actor.ID) {
	t.Helper()
	key := statestore.ShardFenceKey(id.Type, statestore.ShardOf(id.Type, id.ID))
	other := statestore.Claim{Cluster: "local", Version: 99, Silo: "other", Incarnation: "x"}
	if err := statestore.ClaimShard(context.Background(), store, key, other, false); err != nil {
		t.Fatal(err)
	}
}

func mustState(t testing.TB, rt *actor.Runtime, id actor.ID, key string) []byte {
	t.Helper()
	item, err := rt.GetState(context.Background(), id, key)
	if err != nil {
		t.Fatalf("GetState(%s, %q): %v", id, key, err)
	}
	return item.Value
}

func TestUnregisterDeactivates(t *testing.T) {
	rt := newRuntime(t, nil, 0)
	rec := newRecorder()
	rec.register(t, rt, "T", actor.TypeConfig{})
	for i := range 5 {
		call(rt, context.Background(), "T", strconv.Itoa(i), "echo", "")
	}
	rt.Unregister(context.Background(), "T")
	if len(rec.deactivated) != 5 {
		t.Fatalf("deactivated %v", rec.deactivated)
	}
	if rt.Hosts("T") {
		t.Fatal("type still hosted")
	}
}

func TestManyActorsConcurrently(t *testing.T) {
	rt := newRuntime(t, nil, 0)
	rec := newRecorder()
	var total atomic.Int64
	rec.handlers["add"] = func(context.Context, *actor.Self, []byte) ([]byte, error) {
		total.Add(1)
		return nil, nil
	}
	rec.register(t, rt, "T", actor.TypeConfig{})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if _, err := call(rt, context.Background(), "T", strconv.Itoa((g*7+i)%100), "add", ""); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if total.Load() != 16*500 {
		t.Fatalf("total %d", total.Load())
	}
	if rec.maxInTurn != 1 {
		t.Fatalf("%d concurrent turns on one actor", rec.maxInTurn)
	}
}

// movablePlacement owns every actor, under the claim it is given (by default
// claimOne), until moved away. It claims nothing in the store: tests that
// write claim the shards themselves.
type movablePlacement struct {
	away      atomic.Bool
	suspended atomic.Bool // the lease lapsed: the actor stays ours, turns wait
	claim     atomic.Pointer[statestore.Claim]
	asked     atomic.Int64 // Claim calls
}

var claimOne = statestore.Claim{Cluster: "test", Version: 1, Silo: "s1", Incarnation: "i1"}

func (p *movablePlacement) Claim(context.Context, actor.ID) (statestore.Claim, error) {
	p.asked.Add(1)
	if p.away.Load() {
		return statestore.Claim{}, fmt.Errorf("moved to another silo: %w", actor.ErrNotOwner)
	}
	if p.suspended.Load() {
		return statestore.Claim{}, fmt.Errorf("%w: %w: no lease", actor.ErrNotOwner, actor.ErrSuspended)
	}
	if c := p.claim.Load(); c != nil {
		return *c, nil
	}
	return claimOne, nil
}

func TestOwnershipIsCheckedOnEveryTurn(t *testing.T) {
	p := &movablePlacement{}
	rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: quietLogger(), Placement: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	rec := newRecorder()
	rec.register(t, rt, "T", actor.TypeConfig{})
	if _, err := call(rt, context.Background(), "T", "a", "echo", ""); err != nil {
		t.Fatal(err)
	}
	p.away.Store(true)
	if _, err := call(rt, context.Background(), "T", "a", "echo", ""); !errors.Is(err, actor.ErrNotOwner) {
		t.Fatalf("call on an activation whose actor moved away: %v, want ErrNotOwner", err)
	}
	if _, err := call(rt, context.Background(), "T", "b", "echo", ""); !errors.Is(err, actor.ErrNotOwner) {
		t.Fatalf("activation of an actor owned elsewhere: %v, want ErrNotOwner", err)
	}
	rec.mu.Lock()
	created := rec.activations["b"]
	rec.mu.Unlock()
	if created != 0 {
		t.Fatalf("an actor owned elsewhere was activated %d times: its instance exists before its claim", created)
	}
	p.away.Store(false)
	if _, err := call(rt, context.Background(), "T", "a", "echo", ""); err != nil {
		t.Fatalf("call after the actor came back: %v", err)
	}
}

func TestAppTimeoutRecyclesTheActivation(t *testing.T) {
	rt := newRuntime(t, nil, time.Second)
	r := newRecorder()
	release := make(chan struct{})
	var calls atomic.Int32
	r.handlers["slow"] = func(ctx context.Context, _ *actor.Self, _ []byte) ([]byte, error) {
		if calls.Add(1) == 1 {
			return nil, fmt.Errorf("calling the app: %w", actor.ErrAppTimeout)
		}
		return []byte("ok"), nil
	}
	defer close(release)
	r.register(t, rt, "T", actor.DefaultTypeConfig())
	if _, err := call(rt, context.Background(), "T", "a", "slow", ""); !errors.Is(err, actor.ErrAppTimeout) {
		t.Fatalf("first call: %v", err)
	}
	if got, err := call(rt, context.Background(), "T", "a", "slow", ""); err != nil || got != "ok" {
		t.Fatalf("second call: %q %v", got, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.activations["a"] != 2 {
		t.Fatalf("%d activations; a timed-out app call must recycle the activation", r.activations["a"])
	}
	if len(r.deactivated) != 1 {
		t.Fatalf("deactivations %v: the first activation was not told before the second started", r.deactivated)
	}
}
