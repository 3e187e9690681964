package main

// The in-process harness shared by the scenarios: store, runtime and reminder
// service, the echo actor, registration in parallel, and fire collection.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/bench/loadgen"
	"github.com/granaryhq/granary/internal/redisdb"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/boltstore"
	"github.com/granaryhq/granary/statestore/redisstore"
)

// harness is a one-silo runtime with the Echo actor type and the reminder service.
type harness struct {
	store   statestore.Store
	rt      *actor.Runtime
	svc     *reminders.Service
	where   string
	dbPath  string // the embedded store's file
	cleanup func() error

	delivered atomic.Int64 // Remind calls the Echo actors received
	observe   atomic.Pointer[func(reminders.Fire)]
	stopOnce  sync.Once
	stopTook  time.Duration
}

// echoActor answers every call with its body and counts reminders.
type echoActor struct{ h *harness }

func (a echoActor) Invoke(_ context.Context, _ string, body []byte) ([]byte, error) { return body, nil }

func (a echoActor) Remind(context.Context, string, []byte) (bool, error) {
	a.h.delivered.Add(1)
	return false, nil
}

func (b *bench) openHarness(ctx context.Context, storeURL string) (h *harness, err error) {
	h = &harness{}
	var cleanups []func() error
	h.cleanup = func() error {
		var errs []error
		for i := len(cleanups) - 1; i >= 0; i-- {
			errs = append(errs, cleanups[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			_ = h.cleanup()
		}
	}()
	if storeURL == "" {
		dir, err := os.MkdirTemp(b.o.dataDir, "reminderbench-")
		if err != nil {
			return nil, fmt.Errorf("temporary store directory: %w", err)
		}
		cleanups = append(cleanups, func() error { return os.RemoveAll(dir) })
		path := filepath.Join(dir, "state.db")
		st, err := boltstore.Open(path, boltstore.Options{Logger: b.log})
		if err != nil {
			return nil, err
		}
		h.store, h.where, h.dbPath = st, "bbolt "+path, path
	} else {
		t, err := redisdb.ParseTarget(storeURL)
		if err != nil {
			return nil, err
		}
		db, err := redisdb.Prepare(ctx, t, "reminderbench", claimPatience, b.progress)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, db.Close)
		b.progress("redis database %d on %s claimed and flushed", t.DB, t.Options.Addr)
		st, err := redisstore.Open(ctx, storeURL, redisstore.Options{Logger: b.log})
		if err != nil {
			return nil, err
		}
		h.store, h.where = st, "redis "+t.Redacted
	}
	cleanups = append(cleanups, h.store.Close)
	if h.rt, err = actor.New(actor.Config{Store: h.store, Logger: b.log}); err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() error {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return h.rt.Close(cctx)
	})
	err = h.rt.RegisterNative(echoType, func(*actor.Self) actor.NativeActor { return echoActor{h} }, actor.TypeConfig{})
	if err != nil {
		return nil, err
	}
	h.svc, err = reminders.New(reminders.Config{Store: h.store, Actors: h.rt, Logger: b.log, Observe: func(f reminders.Fire) {
		if fn := h.observe.Load(); fn != nil {
			(*fn)(f)
		}
	}})
	if err != nil {
		return nil, err
	}
	h.rt.SetReminders(h.svc)
	return h, nil
}

// stop stops the reminder service, which writes the pending next due
// times, and returns how long that took; later calls return the same.
func (h *harness) stop() time.Duration {
	h.stopOnce.Do(func() {
		began := time.Now()
		h.svc.Stop()
		h.stopTook = time.Since(began)
	})
	return h.stopTook
}

// close stops the service and everything else, and returns how long the
// service took to stop.
func (h *harness) close() (time.Duration, error) {
	took := h.stop()
	return took, h.cleanup()
}

// closeInto closes h and records how it went in r.
func (h *harness) closeInto(r *result) {
	took, err := h.close()
	r.add(durationMetric("service stop (final flush)", took))
	if err != nil && r.Error == "" {
		r.failf("closing: %v", err)
	}
}

// actorIDs returns n actor IDs prefix0 … prefix(n-1).
func actorIDs(prefix string, n int) []actor.ID {
	ids := make([]actor.ID, n)
	for i := range ids {
		ids[i] = actor.ID{Type: echoType, ID: prefix + strconv.Itoa(i)}
	}
	return ids
}

// reminderOf places registration i: actor i mod len(ids), reminder name
// r<i div len(ids)>, so that concurrent registrations go to different actors.
func reminderOf(ids []actor.ID, i int) (actor.ID, string) {
	return ids[i%len(ids)], "r" + strconv.Itoa(i/len(ids))
}

// activate makes every actor active with one call, so that later fires do
// not pay for activation (which writes the actor's fence record).
func (b *bench) activate(ctx context.Context, h *harness, ids []actor.ID) (time.Duration, error) {
	took, _, err := runParallel(ctx, len(ids), b.o.concurrency, b.o.every,
		func(done int, elapsed time.Duration) { b.progress("  activated %d/%d actors", done, len(ids)) },
		func(ctx context.Context, i int) error {
			resp, err := h.rt.Invoke(ctx, ids[i], &actor.Request{Method: "ping"})
			if err != nil {
				return fmt.Errorf("activating %s: %w", ids[i], err)
			}
			resp.Release()
			return nil
		})
	return took, err
}

// registration is a finished registration phase.
type registration struct {
	n       int
	elapsed time.Duration
	latency loadgen.Histogram
}

func (r registration) rate() float64 { return perSecond(r.n, r.elapsed) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// registerAll registers reminders from to to (registration numbers, see
// reminderOf) from --concurrency goroutines, and notes the rate for the
// due times of later scenarios.
func (b *bench) registerAll(ctx context.Context, h *harness, ids []actor.ID, from, to int, spec func(i int) actor.ReminderSpec) (registration, error) {
	n := to - from
	took, hist, err := runParallel(ctx, n, b.o.concurrency, b.o.every,
		func(done int, elapsed time.Duration) {
			b.progress("  registered %d/%d (%.0f/s)", from+done, to, perSecond(done, elapsed))
		},
		func(ctx context.Context, i int) error {
			id, name := reminderOf(ids, from+i)
			s := spec(from + i)
			s.Name = name
			if err := h.svc.Create(ctx, id, s); err != nil {
				return fmt.Errorf("registering %s of %s: %w", name, id, err)
			}
			return nil
		})
	if err != nil {
		return registration{}, err
	}
	if got := h.svc.Len(); got < to {
		return registration{}, fmt.Errorf("registered %d reminders but the service schedules %d", to, got)
	}
	reg := registration{n: n, elapsed: took, latency: hist}
	if n >= 1000 {
		b.regRate = reg.rate()
	}
	return reg, nil
}

// lead is how far ahead n reminders registered in process are made due:
// given, or twice the time the last registration rate takes, plus 3 s.
func (b *bench) lead(given time.Duration, n int, rate float64) time.Duration {
	if given > 0 {
		return given
	}
	if b.regRate > 0 {
		rate = b.regRate
	}
	return autoLead(n, rate)
}

// runParallel calls fn(i) once for every i in [0, n) from workers goroutines,
// calling report every interval, and returns the elapsed time and the
// latencies of the calls. It stops at the first error and returns it.
func runParallel(ctx context.Context, n, workers int, every time.Duration,
	report func(done int, elapsed time.Duration), fn func(ctx context.Context, i int) error,
) (time.Duration, loadgen.Histogram, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	workers = max(1, min(workers, n))
	hists := make([]loadgen.Histogram, workers)
	start := time.Now()
	stopReports := make(chan struct{})
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stopReports:
				return
			case <-t.C:
				report(int(done.Load()), time.Since(start))
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		h := &hists[w]
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				began := time.Now()
				if err := fn(ctx, int(i)); err != nil {
					cancel(err)
					return
				}
				h.Record(time.Since(began))
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopReports)
	<-reported
	var all loadgen.Histogram
	for i := range hists {
		all.Merge(&hists[i])
	}
	if err := context.Cause(ctx); err != nil {
		return elapsed, all, err
	}
	return elapsed, all, nil
}

// ---- fire observation ----

// shards of the lateness histogram: Observe runs on every fire worker at once.
const histShards = 16

type shardedHistogram struct {
	next   atomic.Uint32
	shards [histShards]struct {
		mu sync.Mutex
		h  loadgen.Histogram
	}
}

func (s *shardedHistogram) record(d time.Duration) {
	sh := &s.shards[s.next.Add(1)%histShards]
	sh.mu.Lock()
	sh.h.Record(d)
	sh.mu.Unlock()
}

func (s *shardedHistogram) merged() loadgen.Histogram {
	var all loadgen.Histogram
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		all.Merge(&sh.h)
		sh.mu.Unlock()
	}
	return all
}

// collector counts the fires the reminder service reports. It records the
// lateness (Started − Due) of the successful fires due within the window
// [from, to). done is closed when the successful fires reach target (if
// positive); past is closed at the first fire due at or after to.
type collector struct {
	lateness     shardedHistogram
	from, to     atomic.Int64 // Unix nanoseconds
	target       int64
	fired        atomic.Int64 // successful fires
	inWindow     atomic.Int64
	failed       atomic.Int64
	firstErr     atomic.Pointer[string]
	lastFinished atomic.Int64 // Unix nanoseconds
	done, past   chan struct{}
	pastOnce     sync.Once
}

func newCollector(target int64) *collector {
	c := &collector{target: target, done: make(chan struct{}), past: make(chan struct{})}
	c.from.Store(math.MinInt64)
	c.to.Store(math.MaxInt64)
	return c
}

func (c *collector) setWindow(from, to time.Time) {
	c.from.Store(from.UnixNano())
	c.to.Store(to.UnixNano())
}

func (c *collector) observe(f reminders.Fire) {
	if f.Err != nil {
		c.failed.Add(1)
		msg := fmt.Sprintf("%s %s: %v", f.ID, f.Name, f.Err)
		c.firstErr.CompareAndSwap(nil, &msg)
		return
	}
	due := f.Due.UnixNano()
	if due >= c.from.Load() && due < c.to.Load() {
		c.lateness.record(f.Started.Sub(f.Due))
		c.inWindow.Add(1)
	}
	if to := c.to.Load(); to != math.MaxInt64 && due >= to {
		c.pastOnce.Do(func() { close(c.past) })
	}
	fin := f.Finished.UnixNano()
	for {
		last := c.lastFinished.Load()
		if fin <= last || c.lastFinished.CompareAndSwap(last, fin) {
			break
		}
	}
	if c.fired.Add(1) == c.target {
		close(c.done)
	}
}

func (c *collector) firstError() string {
	if p := c.firstErr.Load(); p != nil {
		return *p
	}
	return ""
}

// waitFires waits until ch is closed, printing what count says every interval.
func (b *bench) waitFires(ctx context.Context, ch <-chan struct{}, what string, count func() string) error {
	t := time.NewTicker(b.o.every)
	defer t.Stop()
	limit := time.NewTimer(b.o.waitLimit)
	defer limit.Stop()
	for {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-limit.C:
			return fmt.Errorf("%s: still waiting after --wait-timeout %v (%s)", what, b.o.waitLimit, count())
		case <-t.C:
			b.progress("  %s: %s", what, count())
		}
	}
}
