package workload

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/app"
	"github.com/granaryhq/granary/chaos/check"
	"github.com/granaryhq/granary/chaos/history"
)

// newTestWorkload returns a workload on gateways recording into a recorder.
func newTestWorkload(t *testing.T, cfg Config, gateways func() []string) (*Workload, *recorder) {
	t.Helper()
	rec := &recorder{t: t}
	cfg.Gateways = gateways
	cfg.Record = rec.record
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	w := New(cfg)
	t.Cleanup(w.Close)
	return w, rec
}

// runFor runs w for d and returns when the run was cut off.
func runFor(w *Workload, d time.Duration) (cancelledAt int64) {
	ctx, cancel := context.WithCancel(context.Background())
	var at atomic.Int64
	timer := time.AfterFunc(d, func() {
		at.Store(time.Now().UnixNano())
		cancel()
	})
	defer timer.Stop()
	w.Run(ctx)
	cancel()
	return at.Load()
}

func opString(op history.Op) string { return fmt.Sprintf("%+v", op) }

// checkWellFormed checks what holds of every recorded operation.
func checkWellFormed(t *testing.T, ops []history.Op) {
	t.Helper()
	for _, op := range ops {
		if _, err := op.Normalize(); err != nil {
			t.Errorf("%s: %v", opString(op), err)
		}
		if op.Invoke == 0 || op.Complete == 0 || op.Complete < op.Invoke {
			t.Errorf("%s: want 0 < Invoke <= Complete", opString(op))
		}
		if op.Outcome != history.OK && op.Result != nil {
			t.Errorf("%s: a %s operation with a result", opString(op), op.Outcome)
		}
		switch op.Kind {
		case history.KindRead, history.KindWrite, history.KindCAS:
			if !strings.HasPrefix(op.Key, "r") {
				t.Errorf("%s: a register operation on a non-register key", opString(op))
			}
			if op.Kind != history.KindRead && op.RequestID == "" {
				t.Errorf("%s: a write without a request ID", opString(op))
			}
		case history.KindIncr, history.KindGet:
			if !strings.HasPrefix(op.Key, "c") {
				t.Errorf("%s: a counter operation on a non-counter key", opString(op))
			}
			if op.Kind == history.KindIncr && (op.RequestID == "" || op.Value != 1) {
				t.Errorf("%s: an increment wants a request ID and Value 1", opString(op))
			}
		}
	}
}

// checkProcesses checks that each process runs one operation at a time and
// runs nothing after an operation of it ended Info.
func checkProcesses(t *testing.T, ops []history.Op) {
	t.Helper()
	byProcess := map[int][]history.Op{}
	for _, op := range ops {
		byProcess[op.Process] = append(byProcess[op.Process], op)
	}
	for p, ps := range byProcess {
		slices.SortFunc(ps, func(a, b history.Op) int { return cmp.Compare(a.Invoke, b.Invoke) })
		for i := 1; i < len(ps); i++ {
			if ps[i].Invoke < ps[i-1].Complete {
				t.Errorf("process %d: %s invoked before %s completed", p, opString(ps[i]), opString(ps[i-1]))
			}
		}
		for i, op := range ps {
			if op.Outcome == history.Info && i != len(ps)-1 {
				t.Errorf("process %d went on after the indeterminate %s with %s", p, opString(op), opString(ps[i+1]))
			}
		}
	}
}

func TestRunHealthy(t *testing.T) {
	g := newFakeGateway(t)
	g.addServer()
	w, rec := newTestWorkload(t, Config{Registers: 3, Counters: 2, Clients: 4, Seed: 7}, g.gateways)

	cancelledAt := runFor(w, 300*time.Millisecond)
	runOps := rec.all()
	if len(runOps) < 50 {
		t.Fatalf("%d operations in 300ms, want at least 50", len(runOps))
	}
	if got := w.Ops(); got != int64(len(runOps)) {
		t.Errorf("Ops() = %d, recorded %d", got, len(runOps))
	}

	kinds := map[history.Kind]int{}
	casFailed := 0
	processes := map[int]bool{}
	for _, op := range runOps {
		kinds[op.Kind]++
		processes[op.Process] = true
		switch {
		case op.Outcome == history.OK:
		case op.Outcome == history.Fail && op.Kind == history.KindCAS:
			casFailed++
			if op.Error != "" {
				t.Errorf("%s: a compare-and-set whose expectation failed has an error", opString(op))
			}
		case op.Outcome == history.Info && op.Complete >= cancelledAt:
			// In flight when the run ended.
		default:
			t.Errorf("%s: unexpected outcome against a healthy gateway", opString(op))
		}
	}
	for _, k := range []history.Kind{history.KindRead, history.KindWrite, history.KindCAS, history.KindIncr, history.KindGet} {
		if kinds[k] == 0 {
			t.Errorf("no %s operation in %d", k, len(runOps))
		}
	}
	if casFailed == 0 {
		t.Errorf("no compare-and-set failed in %d operations", len(runOps))
	}
	if len(processes) < 4 {
		t.Errorf("%d processes, want one per client at least", len(processes))
	}

	// Every operation is what the fake served, and read what it held.
	served := map[string][]fakeCall{}
	for _, c := range g.callLog() {
		if c.Status != http.StatusOK {
			t.Errorf("the fake answered %d to %+v", c.Status, c)
		}
		if c.Req != "" {
			served[c.Req] = append(served[c.Req], c)
		}
	}
	for _, op := range runOps {
		if op.Kind == history.KindGet || op.Outcome == history.Info {
			continue
		}
		calls := served[op.RequestID]
		if len(calls) != 1 {
			t.Errorf("%s: the fake served its request %d times, want once", opString(op), len(calls))
			continue
		}
		c := calls[0]
		if c.Method != string(op.Kind) || c.ID != op.Key || c.Value != op.Value {
			t.Errorf("%s: the fake served %+v", opString(op), c)
		}
		switch op.Kind {
		case history.KindRead, history.KindIncr:
			if !equalPtr(op.Result, c.Held) {
				t.Errorf("%s: result %s, the fake answered %s", opString(op), ptrString(op.Result), ptrString(c.Held))
			}
		case history.KindCAS:
			if c.Expect != op.Expect {
				t.Errorf("%s: the fake was asked to expect %d", opString(op), c.Expect)
			}
			if c.CASOK != (op.Outcome == history.OK) {
				t.Errorf("%s: the fake's compare-and-set wrote: %v", opString(op), c.CASOK)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	finals, err := w.FinalReads(ctx)
	if err != nil {
		t.Fatalf("FinalReads: %v", err)
	}
	if len(finals) != 2 {
		t.Errorf("finals %v, want both counters", finals)
	}
	for key, v := range finals {
		if want := g.counter(key); v != want {
			t.Errorf("final %s = %d, the fake holds %d", key, v, want)
		}
	}

	ops := rec.all()
	finalRegs := 0
	for _, op := range ops[len(runOps):] {
		if op.Kind == history.KindRead {
			finalRegs++
			if op.Outcome != history.OK {
				t.Errorf("final %s not OK", opString(op))
			}
		}
	}
	if want := len(w.currentRegisters()); finalRegs != want {
		t.Errorf("%d final register reads, want %d", finalRegs, want)
	}
	checkWellFormed(t, ops)
	checkProcesses(t, ops)
	if res := check.Register(ops); !res.Valid || res.Counts["ok"] == 0 {
		t.Errorf("register check:\n%s", res)
	}
	if res := check.Counters(ops, finals); !res.Valid || res.Counts["incr_ok"] == 0 {
		t.Errorf("counter check:\n%s", res)
	}
}

func equalPtr(a, b *int64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func ptrString(p *int64) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// A compare-and-set is OK when the register holds its expectation, and a
// Fail with no error or result when it does not.
func TestCASOutcome(t *testing.T) {
	g := newFakeGateway(t)
	w, rec := newTestWorkload(t, Config{Registers: 1, Clients: 1, Seed: 3}, g.gateways)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(1, 2))
	var ok, failed int
	for range 300 {
		// A value the next compare-and-set may expect, or not.
		held := w.value.Load() + 1 - 3
		g.set(func(g *fakeGateway) {
			// Every key the operations may pick: the generations move on.
			for i := range 5 {
				g.registers[RegisterKey(i)] = held
			}
		})
		before := len(rec.all())
		w.randomOp(ctx, rnd, 1)
		ops := rec.all()
		if len(ops) != before+1 {
			t.Fatalf("randomOp recorded %d operations, want 1", len(ops)-before)
		}
		op := ops[before]
		if op.Kind != history.KindCAS {
			continue
		}
		switch {
		case op.Expect == held && op.Outcome == history.OK && op.Error == "":
			ok++
		case op.Expect != held && op.Outcome == history.Fail && op.Error == "" && op.Result == nil:
			failed++
		default:
			t.Errorf("%s: the register held %d", opString(op), held)
		}
	}
	if ok == 0 || failed == 0 {
		t.Errorf("%d compare-and-sets OK and %d failed, want some of each", ok, failed)
	}
}

// An increment answered 500 is retried with the same request ID, three
// attempts in all, each Info, each after an Info under a new process.
func TestIncrRetries(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.failMethod = "incr" })
	w, rec := newTestWorkload(t, Config{Counters: 1, Clients: 1}, g.gateways)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(1, 1))

	p := int(w.process.Add(1))
	if !w.incr(ctx, rnd, p, "c0") {
		t.Error("incr failing every attempt: want it reported indeterminate")
	}
	ops := rec.all()
	if len(ops) != 3 {
		t.Fatalf("%d attempts recorded, want 3: %v", len(ops), ops)
	}
	seen := map[int]bool{}
	for i, op := range ops {
		if op.Kind != history.KindIncr || op.Key != "c0" || op.Outcome != history.Info || !strings.HasPrefix(op.Error, "500") {
			t.Errorf("attempt %d: %s, want an Info incr of c0 with error 500", i, opString(op))
		}
		if op.RequestID != ops[0].RequestID || op.RequestID == "" {
			t.Errorf("attempt %d: request ID %q, first %q", i, op.RequestID, ops[0].RequestID)
		}
		if seen[op.Process] {
			t.Errorf("attempt %d: process %d reused after an Info", i, op.Process)
		}
		seen[op.Process] = true
		if i > 0 && op.Invoke < ops[i-1].Complete {
			t.Errorf("attempt %d invoked before attempt %d completed", i, i-1)
		}
	}
	if ops[0].Process != p {
		t.Errorf("first attempt under process %d, want %d", ops[0].Process, p)
	}
	calls := g.callLog()
	if len(calls) != 3 {
		t.Fatalf("the fake served %d calls, want 3", len(calls))
	}
	for _, c := range calls {
		if c.Req != ops[0].RequestID || c.Method != "incr" || c.ID != "c0" {
			t.Errorf("the fake served %+v, want incr of c0 with request %q", c, ops[0].RequestID)
		}
	}
	if next := int(w.process.Add(1)); seen[next] {
		t.Errorf("next process %d was used by an attempt", next)
	}

	// An attempt applied whose answer was lost: the retry gets the same
	// value and the counter moves once.
	rec.reset()
	g.set(func(g *fakeGateway) { g.failMethod, g.failNext, g.failApplied = "", 1, true })
	p = int(w.process.Add(1))
	if !w.incr(ctx, rnd, p, "c0") {
		t.Error("incr with an Info attempt under the caller's process: want it reported, so the process does not go on")
	}
	ops = rec.all()
	if len(ops) != 2 {
		t.Fatalf("%d attempts recorded, want 2: %v", len(ops), ops)
	}
	if ops[0].Outcome != history.Info || ops[1].Outcome != history.OK || ops[0].RequestID != ops[1].RequestID {
		t.Errorf("attempts %v, want Info then OK with one request ID", ops)
	}
	if ops[0].Process == ops[1].Process {
		t.Errorf("retry under the process %d of the Info attempt", ops[1].Process)
	}
	if ops[1].Result == nil || *ops[1].Result != 1 {
		t.Errorf("retry result %s, want 1", ptrString(ops[1].Result))
	}
	if got := g.counter("c0"); got != 1 {
		t.Errorf("counter %d after one applied increment, want 1", got)
	}
	if res := check.Counters(ops, map[string]int64{"c0": 1}); !res.Valid {
		t.Errorf("counter check:\n%s", res)
	}
}

// A run against gateways that fail some calls, some after applying them:
// increments are retried with their request ID at most three times, no
// process goes on after an Info, and the history checks out.
func TestRunFlaky(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.failEvery = 4 })
	w, rec := newTestWorkload(t, Config{Registers: 4, Counters: 2, Clients: 3, Seed: 11}, g.gateways)
	cancelledAt := runFor(w, 300*time.Millisecond)
	runOps := rec.all()

	infos := 0
	attempts := map[string][]history.Op{}
	for _, op := range runOps {
		if op.Outcome == history.Info {
			infos++
		}
		if op.Kind == history.KindIncr {
			attempts[op.RequestID] = append(attempts[op.RequestID], op)
		}
	}
	if infos == 0 {
		t.Fatalf("no Info operation in %d against a gateway failing one call in 4", len(runOps))
	}
	retried := 0
	for id, as := range attempts {
		if len(as) > 3 {
			t.Errorf("request %s: %d attempts, want at most 3", id, len(as))
		}
		if len(as) > 1 {
			retried++
		}
		for i, op := range as {
			last := i == len(as)-1
			if !last && op.Outcome == history.OK {
				t.Errorf("request %s: attempt %d OK but retried", id, i)
			}
			if last && len(as) < 3 && op.Outcome != history.OK && op.Complete < cancelledAt {
				t.Errorf("request %s: gave up after %d attempts", id, len(as))
			}
			if op.Key != as[0].Key {
				t.Errorf("request %s: attempts on %s and %s", id, as[0].Key, op.Key)
			}
		}
	}
	if retried == 0 {
		t.Error("no increment retried")
	}

	g.set(func(g *fakeGateway) { g.failEvery = 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	finals, err := w.FinalReads(ctx)
	if err != nil {
		t.Fatalf("FinalReads: %v", err)
	}
	ops := rec.all()
	checkWellFormed(t, ops)
	checkProcesses(t, ops)
	if res := check.Register(ops, check.KeyTimeout(2*time.Second)); !res.Valid || res.Counts["info"] == 0 {
		t.Errorf("register check:\n%s", res)
	}
	if res := check.Counters(ops, finals); !res.Valid || res.Counts["retries"] == 0 {
		t.Errorf("counter check:\n%s", res)
	}
}

func TestRegisterKeysRetire(t *testing.T) {
	const registers = 3
	w := New(Config{Registers: registers})
	rnd := rand.New(rand.NewPCG(1, 1))
	if got, want := w.currentRegisters(), []string{"r0", "r1", "r2"}; !slices.Equal(got, want) {
		t.Fatalf("currentRegisters before any operation = %v, want %v", got, want)
	}
	ops := map[string]int{}
	for range 10 * opsPerRegister * registers {
		key := w.registerKey(rnd)
		ops[key]++
		if !slices.Contains(w.currentRegisters(), key) {
			t.Fatalf("key %s handed out is not among the current ones %v", key, w.currentRegisters())
		}
	}
	for key, n := range ops {
		if n > opsPerRegister {
			t.Errorf("key %s had %d operations, over %d", key, n, opsPerRegister)
		}
	}
	if len(ops) < 10*registers {
		t.Errorf("%d keys used for %d operations; want a fresh one every %d", len(ops), 10*opsPerRegister*registers, opsPerRegister)
	}

	// Indeterminate writes retire a key early.
	w = New(Config{Registers: 1})
	first := w.registerKey(rnd)
	for range uncertainPerRegister {
		w.registerUncertain(first)
	}
	if next := w.registerKey(rnd); next == first {
		t.Fatalf("key %s still handed out after %d indeterminate writes", first, uncertainPerRegister)
	}
	if got := w.currentRegisters(); len(got) != 1 || got[0] == first {
		t.Fatalf("currentRegisters = %v after %s retired", got, first)
	}
}

func TestRegisterReminders(t *testing.T) {
	g := newFakeGateway(t)
	g.addServer()
	const period = 3 * time.Second
	w, _ := newTestWorkload(t, Config{Tickers: 3, ReminderPeriod: period}, g.gateways)
	before := time.Now().UnixNano()
	schedule, err := w.RegisterReminders(context.Background())
	after := time.Now().UnixNano()
	if err != nil {
		t.Fatalf("RegisterReminders: %v", err)
	}
	if len(schedule) != 3 {
		t.Errorf("schedule %v, want 3 reminders", schedule)
	}
	for i := range 3 {
		key := check.ReminderKey{Actor: TickerKey(i), Reminder: ReminderName}
		sp, ok := schedule[key]
		if !ok {
			t.Errorf("no schedule for %v", key)
			continue
		}
		if sp.Period != int64(period) || sp.Until != 0 {
			t.Errorf("%v: %+v, want period %v and no end", key, sp, period)
		}
		if sp.First < before+int64(period) || sp.First > after+int64(period) {
			t.Errorf("%v: first due %d, want within [%d, %d]", key, sp.First, before+int64(period), after+int64(period))
		}
	}
	g.mu.Lock()
	for i := range 3 {
		body, ok := g.reminders[TickerKey(i)+"/"+ReminderName]
		if !ok || body.DueTime != period.String() || body.Period != period.String() {
			t.Errorf("the fake holds %+v for %s, want due time and period %v", body, TickerKey(i), period)
		}
	}
	g.mu.Unlock()
}

// Registration answered 500 a few times, then accepted: the schedule is the
// accepted registration's.
func TestRegisterRemindersRetries(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.failNext = 2 })
	const period = time.Second
	w, _ := newTestWorkload(t, Config{Tickers: 1, ReminderPeriod: period}, g.gateways)
	before := time.Now().UnixNano()
	schedule, err := w.RegisterReminders(context.Background())
	if err != nil {
		t.Fatalf("RegisterReminders: %v", err)
	}
	sp := schedule[check.ReminderKey{Actor: TickerKey(0), Reminder: ReminderName}]
	// Two refusals, each followed by a pause, before the accepted attempt.
	if sp.First < before+int64(period)+int64(2*250*time.Millisecond) {
		t.Errorf("first due %v after the start, want the accepted attempt's invocation plus %v", time.Duration(sp.First-before), period)
	}
	if n := len(g.callLog()); n != 3 {
		t.Errorf("the fake served %d registrations, want 3", n)
	}
}

func TestRegisterRemindersGivesUp(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.failMethod = ReminderName })
	w, _ := newTestWorkload(t, Config{Tickers: 2, ReminderPeriod: time.Second}, g.gateways)
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	start := time.Now()
	schedule, err := w.RegisterReminders(ctx)
	if err == nil {
		t.Fatalf("RegisterReminders on a failing gateway: %v, no error", schedule)
	}
	if !strings.Contains(err.Error(), TickerKey(0)) || !strings.Contains(err.Error(), "500") {
		t.Errorf("error %q, want the ticker and the status", err)
	}
	if schedule != nil {
		t.Errorf("schedule %v with an error", schedule)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("gave up after %v with a deadline of 900ms", elapsed)
	}
	calls := g.callLog()
	if len(calls) < 3 || len(calls) > 5 {
		t.Errorf("%d attempts in 900ms, want about one per 250ms", len(calls))
	}
	for _, c := range calls {
		if c.Type != app.TypeTicker || c.ID != TickerKey(0) || c.Status != http.StatusInternalServerError {
			t.Errorf("the fake served %+v", c)
		}
	}
}

func ptr(v int64) *int64 { return &v }

// A workload of counters only: no register operation, and the final reads
// read the counters.
func TestCountersOnly(t *testing.T) {
	g := newFakeGateway(t)
	w, rec := newTestWorkload(t, Config{Counters: 2, Clients: 2, Seed: 1}, g.gateways)
	runFor(w, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	finals, err := w.FinalReads(ctx)
	if err != nil {
		t.Fatalf("FinalReads: %v", err)
	}
	ops := rec.all()
	if len(ops) == 0 {
		t.Fatal("no operations")
	}
	for _, op := range ops {
		if op.Kind != history.KindIncr && op.Kind != history.KindGet {
			t.Errorf("%s in a counters-only workload", opString(op))
		}
	}
	if len(finals) != 2 {
		t.Errorf("finals %v, want both counters", finals)
	}
	if res := check.Counters(ops, finals); !res.Valid {
		t.Errorf("counter check:\n%s", res)
	}
}
