package workload

// How the workload records what failed: refused connections, missing
// gateways, timeouts, aborted turns, gateways that stop answering, and the
// final reads through failures.

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/check"
	"github.com/granaryhq/granary/chaos/history"
)

// A gateway whose port refuses connections: the operations certainly did
// not happen.
func TestConnectionRefused(t *testing.T) {
	dead := deadURL(t)
	w, rec := newTestWorkload(t, Config{Registers: 2, Counters: 2, Clients: 1}, func() []string { return []string{dead} })
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(5, 5))
	for range 30 {
		if w.randomOp(ctx, rnd, 1) {
			op := rec.all()[len(rec.all())-1]
			if op.Kind != history.KindIncr {
				t.Errorf("%s reported Info", opString(op))
			}
		}
	}
	ops := rec.all()
	kinds := map[history.Kind]bool{}
	for _, op := range ops {
		kinds[op.Kind] = true
		if op.Outcome != history.Fail || op.Error != "connection refused" {
			t.Errorf("%s: want Fail with error %q", opString(op), "connection refused")
		}
	}
	if len(kinds) < 3 {
		t.Errorf("only %v in 30 operations", kinds)
	}
	checkWellFormed(t, ops)
	if res := check.Register(ops); !res.Valid || res.Counts["ok"] != 0 || res.Counts["fail_dropped"] == 0 {
		t.Errorf("register check:\n%s", res)
	}
}

// No gateway at all: a Fail, not a panic.
func TestNoGateway(t *testing.T) {
	w, rec := newTestWorkload(t, Config{Registers: 1, Counters: 1, Tickers: 1, ReminderPeriod: time.Second}, func() []string { return nil })
	ctx := context.Background()
	op := w.get(ctx, rand.New(rand.NewPCG(1, 1)), 1, "c0")
	if op.Outcome != history.Fail || op.Error != "no silo running" {
		t.Errorf("%s: want Fail %q", opString(op), "no silo running")
	}
	if len(rec.all()) != 1 {
		t.Errorf("%d ops recorded, want 1", len(rec.all()))
	}
	if _, err := w.RegisterReminders(ctx); err == nil || !strings.Contains(err.Error(), "no silo running") {
		t.Errorf("RegisterReminders with no silo: %v", err)
	}
}

// An operation that outlasts Config.Timeout is indeterminate, completed at
// the timeout.
func TestTimeoutIsInfo(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.hang = true })
	const timeout = 100 * time.Millisecond
	w, rec := newTestWorkload(t, Config{Registers: 1, Counters: 1, Clients: 1, Timeout: timeout}, g.gateways)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(9, 9))

	start := time.Now()
	if !w.randomOp(ctx, rnd, 1) {
		t.Error("randomOp on a hanging gateway did not report Info")
	}
	op := w.get(ctx, rnd, 2, "c0")
	if op.Outcome != history.Info {
		t.Errorf("get: %s, want Info", opString(op))
	}
	if elapsed := time.Since(start); elapsed > 20*timeout {
		t.Errorf("two hanging operations took %v with a timeout of %v", elapsed, timeout)
	}
	ops := rec.all()
	if len(ops) < 2 {
		t.Fatalf("%d ops recorded, want at least 2", len(ops))
	}
	for _, op := range ops {
		if op.Outcome != history.Info || op.Error == "" || op.Result != nil {
			t.Errorf("%s: want Info with an error and no result", opString(op))
		}
		if op.Complete == 0 || op.Complete-op.Invoke < int64(timeout) {
			t.Errorf("%s: completed %v after its invocation, want at least the timeout %v", opString(op), time.Duration(op.Complete-op.Invoke), timeout)
		}
	}
	checkWellFormed(t, ops)

	// Healed, the next operation is OK.
	g.set(func(g *fakeGateway) { g.hang = false })
	if op := w.get(ctx, rnd, 3, "c0"); op.Outcome != history.OK || op.Result == nil || *op.Result != 0 {
		t.Errorf("get after healing: %s", opString(op))
	}
}

// FinalReads retries each read until the healed gateway answers.
func TestFinalReadsRetries(t *testing.T) {
	g := newFakeGateway(t)
	w, rec := newTestWorkload(t, Config{Registers: 2, Counters: 3, Clients: 1}, g.gateways)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rnd := rand.New(rand.NewPCG(2, 2))
	for i := range 12 {
		key := "c0"
		if i >= 5 {
			key = "c2"
		}
		if w.incr(ctx, rnd, int(w.process.Add(1)), key) {
			t.Fatalf("increment %d against a healthy gateway indeterminate", i)
		}
	}
	g.set(func(g *fakeGateway) {
		g.registers["r0"] = 3
		g.failNext = 3
	})
	finals, err := w.FinalReads(ctx)
	if err != nil {
		t.Fatalf("FinalReads: %v", err)
	}
	if want := map[string]int64{"c0": 5, "c1": 0, "c2": 7}; len(finals) != len(want) || finals["c0"] != 5 || finals["c1"] != 0 || finals["c2"] != 7 {
		t.Errorf("finals %v, want %v", finals, want)
	}
	ops := rec.all()
	var infos int
	reads := map[string]*int64{}
	for _, op := range ops[12:] {
		switch op.Outcome {
		case history.Info:
			infos++
			if op.Kind != history.KindGet || op.Key != "c0" {
				t.Errorf("%s: want only c0's first gets to fail", opString(op))
			}
		case history.OK:
			if op.Kind == history.KindRead {
				reads[op.Key] = op.Result
			}
		default:
			t.Errorf("%s: unexpected outcome", opString(op))
		}
	}
	if infos != 3 {
		t.Errorf("%d Info gets, want 3", infos)
	}
	if len(reads) != 2 || !equalPtr(reads["r0"], ptr(3)) || reads["r1"] != nil {
		t.Errorf("final register reads %v, want r0=3 and r1 empty", reads)
	}
	checkWellFormed(t, ops)
	checkProcesses(t, ops)
	if res := check.Counters(ops, finals); !res.Valid {
		t.Errorf("counter check:\n%s", res)
	}
}

// FinalReads gives up when its context ends.
func TestFinalReadsGivesUp(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.failMethod = "*" })
	w, _ := newTestWorkload(t, Config{Registers: 1, Counters: 1}, g.gateways)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := w.FinalReads(ctx)
	if err == nil || !strings.Contains(err.Error(), "final read of c0") {
		t.Errorf("FinalReads on a failing gateway: %v", err)
	}
}

func TestAbortedTurnIsAFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"ok":false,"aborted":"reading state: gateway answered 500"}`))
	}))
	defer srv.Close()
	var ops []history.Op
	var mu sync.Mutex
	w := New(Config{Gateways: func() []string { return []string{srv.URL} }, Registers: 1, Counters: 1,
		Record: func(r history.Record) { mu.Lock(); ops = append(ops, r.(history.Op)); mu.Unlock() }})
	defer w.Close()
	rnd := rand.New(rand.NewPCG(3, 3))
	for range 20 {
		w.randomOp(context.Background(), rnd, 1)
	}
	for _, op := range ops {
		if op.Outcome != history.Fail || !strings.Contains(op.Error, "aborted before writing") {
			t.Fatalf("%+v: want a Fail saying the turn aborted before writing", op)
		}
	}
}

func TestGatewayThatDoesNotAnswerIsAvoided(t *testing.T) {
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer silent.Close()
	var served atomic.Int64
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Write([]byte(`{"value":1}`))
	}))
	defer healthy.Close()
	var mu sync.Mutex
	var ops []history.Op
	w := New(Config{Gateways: func() []string { return []string{silent.URL, healthy.URL} }, Counters: 1, Timeout: 100 * time.Millisecond,
		Record: func(r history.Record) { mu.Lock(); ops = append(ops, r.(history.Op)); mu.Unlock() }})
	defer w.Close()
	rnd := rand.New(rand.NewPCG(9, 9))
	for range 40 {
		w.get(context.Background(), rnd, 1, "c0")
	}
	info := 0
	for _, op := range ops {
		if op.Outcome == history.Info {
			info++
		}
	}
	if info != 1 || served.Load() != 39 {
		t.Fatalf("%d indeterminate operations and %d served by the healthy gateway; want the silent one tried once, then avoided", info, served.Load())
	}
}
