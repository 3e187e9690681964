// Package workload is the chaos suite's client side: concurrent clients
// reading, writing and compare-and-setting registers and incrementing
// counters through any silo's gateway, reminders registered on ticker
// actors, and the final reads once every fault is healed. Every operation
// is recorded as a history.Op with its invocation, completion and outcome.
package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/granaryhq/granary/chaos/app"
	"github.com/granaryhq/granary/chaos/check"
	"github.com/granaryhq/granary/chaos/history"
	"github.com/granaryhq/granary/internal/clock"
)

// Config configures the workload.
type Config struct {
	// Gateways returns the gateway URLs of the silos running now.
	Gateways func() []string
	// Registers and Counters are how many actors of each there are;
	// Clients how many operations run at once.
	Registers, Counters, Clients int
	// Tickers get one reminder each, due after ReminderPeriod and every
	// ReminderPeriod after.
	Tickers        int
	ReminderPeriod time.Duration
	// Timeout bounds one operation; an operation without an answer by then
	// is indeterminate.
	Timeout time.Duration
	Seed    uint64
	// Record receives every operation once it completed.
	Record func(history.Record)
}

// Workload runs the operations of one chaos run.
type Workload struct {
	cfg       Config
	client    *http.Client
	process   atomic.Int64 // the next process number
	value     atomic.Int64 // the next value a write or compare-and-set writes
	request   atomic.Int64 // the next request ID
	ops       atomic.Int64
	registers registers

	mu       sync.Mutex
	avoiding map[string]time.Time // gateway → until when clients avoid it
}

// avoidFor is how long clients avoid a gateway that did not answer (a
// frozen or cut-off silo), as a load balancer's outlier detection would:
// otherwise every client soon waits on it and the run observes nothing else.
const avoidFor = 3 * time.Second

// suspect makes clients avoid gw for a while.
func (w *Workload) suspect(gw string) {
	w.mu.Lock()
	w.avoiding[gw] = time.Now().Add(avoidFor)
	w.mu.Unlock()
}

// pickGateway picks one of gws at random, passing over those avoided now
// unless every one is.
func (w *Workload) pickGateway(rnd *rand.Rand, gws []string) string {
	w.mu.Lock()
	now := time.Now()
	ok := make([]string, 0, len(gws))
	for _, gw := range gws {
		if until, avoid := w.avoiding[gw]; !avoid || now.After(until) {
			ok = append(ok, gw)
		}
	}
	w.mu.Unlock()
	if len(ok) == 0 {
		ok = gws
	}
	return ok[rnd.IntN(len(ok))]
}

// A register key retires, and a fresh key takes its place, after
// opsPerRegister operations or uncertainPerRegister indeterminate writes:
// the linearizability search grows fast with a key's history, and faster
// with each write that may or may not have happened (it stays pending to
// the end), so keys are kept short, as Jepsen's independent keys are.
const (
	opsPerRegister       = 150
	uncertainPerRegister = 5
)

// registerSlot is one of the Registers keys in use.
type registerSlot struct {
	key            string
	ops, uncertain int
}

// registers are the register keys in use.
type registers struct {
	mu    sync.Mutex
	slots []registerSlot
	next  int // the number of the next fresh key
}

// registerKey picks the key of the next register operation, first
// retiring the slot's key when it has had its share.
func (w *Workload) registerKey(rnd *rand.Rand) string {
	r := &w.registers
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.slots[rnd.IntN(len(r.slots))]
	if s.ops >= opsPerRegister || s.uncertain >= uncertainPerRegister {
		*s = registerSlot{key: RegisterKey(r.next)}
		r.next++
	}
	s.ops++
	return s.key
}

// registerUncertain counts an indeterminate write on key.
func (w *Workload) registerUncertain(key string) {
	r := &w.registers
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.slots {
		if r.slots[i].key == key {
			r.slots[i].uncertain++
		}
	}
}

// currentRegisters are the register keys in use.
func (w *Workload) currentRegisters() []string {
	r := &w.registers
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, len(r.slots))
	for i, s := range r.slots {
		keys[i] = s.key
	}
	return keys
}

// DefaultTimeout is the default Config.Timeout: a little over the
// gateway's routing window (5 s), so that a call waiting out a hand-over is
// not cut off, and short enough that a client stuck on a frozen silo soon
// moves on.
const DefaultTimeout = 6 * time.Second

// New returns a workload.
func New(cfg Config) *Workload {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: cfg.Clients + 4}
	w := &Workload{cfg: cfg, client: &http.Client{Timeout: cfg.Timeout, Transport: tr}, avoiding: map[string]time.Time{}}
	for i := range max(cfg.Registers, 0) {
		w.registers.slots = append(w.registers.slots, registerSlot{key: RegisterKey(i)})
	}
	w.registers.next = len(w.registers.slots)
	return w
}

// Ops returns how many operations have completed.
func (w *Workload) Ops() int64 { return w.ops.Load() }

// Close releases idle connections.
func (w *Workload) Close() { w.client.CloseIdleConnections() }

// RegisterKey, CounterKey and TickerKey name the workload's actors.
func RegisterKey(i int) string { return "r" + strconv.Itoa(i) }
func CounterKey(i int) string  { return "c" + strconv.Itoa(i) }
func TickerKey(i int) string   { return "t" + strconv.Itoa(i) }

// ReminderName is the name of each ticker's reminder.
const ReminderName = "tick"

// answer is what an actor method answers.
type answer struct {
	OK    *bool  `json:"ok"`
	Value *int64 `json:"value"`
	// Aborted, when set, says the turn failed before it sent any write:
	// the operation did not happen.
	Aborted string `json:"aborted"`
}

// errRefused is the error of an operation whose connection was refused: it
// never reached a silo.
const errRefused = "connection refused"

// call invokes method on an actor through a gateway chosen at random and
// classifies the outcome: OK with the answer; Fail when the request
// certainly never reached a silo (refused connection); Info otherwise.
func (w *Workload) call(ctx context.Context, rnd *rand.Rand, actorType, id, method string, body any) (answer, history.Outcome, string) {
	gws := w.cfg.Gateways()
	if len(gws) == 0 {
		return answer{}, history.Fail, "no silo running"
	}
	gw := w.pickGateway(rnd, gws)
	payload, err := json.Marshal(body)
	if err != nil {
		return answer{}, history.Fail, err.Error()
	}
	url := gw + "/v1.0/actors/" + actorType + "/" + id + "/method/" + method
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return answer{}, history.Fail, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return answer{}, history.Fail, errRefused
		}
		w.suspect(gw)
		return answer{}, history.Info, err.Error()
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return answer{}, history.Info, "reading the answer: " + err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		return answer{}, history.Info, fmt.Sprintf("%d %s", resp.StatusCode, truncate(data, 200))
	}
	var a answer
	if err := json.Unmarshal(data, &a); err != nil {
		return answer{}, history.Info, fmt.Sprintf("answer %q: %v", truncate(data, 200), err)
	}
	if a.Aborted != "" {
		return answer{}, history.Fail, "aborted before writing: " + truncate([]byte(a.Aborted), 200)
	}
	return a, history.OK, ""
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// Run runs Clients clients until ctx ends.
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range w.cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(w.cfg.Seed, uint64(i)+1))
			process := int(w.process.Add(1))
			for ctx.Err() == nil {
				if info := w.randomOp(ctx, rnd, process); info {
					// A process whose operation is indeterminate may
					// still have it in flight: go on as a new one.
					process = int(w.process.Add(1))
				}
			}
		}()
	}
	wg.Wait()
}

// randomOp runs one operation and reports whether it ended Info.
func (w *Workload) randomOp(ctx context.Context, rnd *rand.Rand, process int) bool {
	if w.cfg.Counters > 0 && (w.cfg.Registers == 0 || rnd.IntN(3) == 0) {
		key := CounterKey(rnd.IntN(w.cfg.Counters))
		if rnd.IntN(5) == 0 {
			return w.get(ctx, rnd, process, key).Outcome == history.Info
		}
		return w.incr(ctx, rnd, process, key)
	}
	key := w.registerKey(rnd)
	op := history.Op{Process: process, Key: key}
	var body map[string]any
	switch r := rnd.IntN(10); {
	case r < 4:
		op.Kind = history.KindRead
	case r < 7:
		op.Kind, op.Value = history.KindWrite, w.value.Add(1)
	default:
		op.Kind, op.Value, op.Expect = history.KindCAS, w.value.Add(1), max(1, w.value.Load()-int64(rnd.IntN(8)))
	}
	op.RequestID = w.requestID()
	body = map[string]any{"req": op.RequestID, "value": op.Value, "expect": op.Expect}
	op.Invoke = time.Now().UnixNano()
	a, outcome, errText := w.call(ctx, rnd, app.TypeRegister, key, string(op.Kind), body)
	op.Complete, op.Outcome, op.Error = time.Now().UnixNano(), outcome, errText
	if outcome == history.OK {
		switch op.Kind {
		case history.KindRead:
			op.Result = a.Value
		case history.KindCAS:
			if a.OK == nil || !*a.OK {
				// An answer, not an error: the value differed, so the
				// compare-and-set did not happen.
				op.Outcome = history.Fail
			}
		}
	}
	if ctx.Err() != nil && outcome == history.Info {
		op.Error = "cut off by the end of the run"
	}
	if op.Outcome == history.Info && op.Kind != history.KindRead {
		w.registerUncertain(key)
	}
	w.record(op)
	return op.Outcome == history.Info
}

func (w *Workload) requestID() string { return "q" + strconv.FormatInt(w.request.Add(1), 10) }

// incr increments a counter, retrying an attempt that did not succeed with
// the same request ID up to three times; it reports whether the request is
// left indeterminate or an attempt of it ended Info under the caller's
// process, which then must not go on.
func (w *Workload) incr(ctx context.Context, rnd *rand.Rand, process int, key string) bool {
	id := w.requestID()
	first := process
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		op := history.Op{Process: process, Kind: history.KindIncr, Key: key, Value: 1, RequestID: id, Invoke: time.Now().UnixNano()}
		a, outcome, errText := w.call(ctx, rnd, app.TypeCounter, key, "incr", map[string]any{"req": id, "delta": 1})
		op.Complete, op.Outcome, op.Error = time.Now().UnixNano(), outcome, errText
		if outcome == history.OK {
			op.Result = a.Value
		}
		w.record(op)
		if outcome == history.OK {
			return process != first
		}
		if outcome == history.Info {
			process = int(w.process.Add(1))
		}
	}
	return true
}

func (w *Workload) get(ctx context.Context, rnd *rand.Rand, process int, key string) history.Op {
	op := history.Op{Process: process, Kind: history.KindGet, Key: key, Invoke: time.Now().UnixNano()}
	a, outcome, errText := w.call(ctx, rnd, app.TypeCounter, key, "get", map[string]any{})
	op.Complete, op.Outcome, op.Error = time.Now().UnixNano(), outcome, errText
	if outcome == history.OK {
		v := int64(0)
		if a.Value != nil {
			v = *a.Value
		}
		op.Result = &v
	}
	w.record(op)
	return op
}

// refusedBackoff is how long a client waits after a gateway refused its
// connection (a silo that is leaving or starting), as a real client backs
// off, rather than failing thousands of operations a second.
const refusedBackoff = 50 * time.Millisecond

func (w *Workload) record(op history.Op) {
	w.ops.Add(1)
	w.cfg.Record(op)
	if op.Error == errRefused {
		time.Sleep(refusedBackoff)
	}
}

// FinalReads reads every counter and register once more, retrying each
// until it answers or ctx ends, and returns the counters' values. It is
// called with every fault healed.
func (w *Workload) FinalReads(ctx context.Context) (map[string]int64, error) {
	rnd := rand.New(rand.NewPCG(w.cfg.Seed, 0))
	finals := map[string]int64{}
	process := int(w.process.Add(1))
	for i := range w.cfg.Counters {
		key := CounterKey(i)
		for {
			op := w.get(ctx, rnd, process, key)
			if op.Outcome == history.OK {
				finals[key] = *op.Result
				break
			}
			if op.Outcome == history.Info {
				process = int(w.process.Add(1))
			}
			if !clock.Sleep(ctx, 200*time.Millisecond) {
				return finals, fmt.Errorf("final read of %s: %s", key, op.Error)
			}
		}
	}
	for _, key := range w.currentRegisters() {
		for {
			op := history.Op{Process: process, Kind: history.KindRead, Key: key, Invoke: time.Now().UnixNano()}
			a, outcome, errText := w.call(ctx, rnd, app.TypeRegister, key, "read", map[string]any{})
			op.Complete, op.Outcome, op.Error = time.Now().UnixNano(), outcome, errText
			if outcome == history.OK {
				op.Result = a.Value
			}
			w.record(op)
			if outcome == history.OK {
				break
			}
			if outcome == history.Info {
				process = int(w.process.Add(1))
			}
			if !clock.Sleep(ctx, 200*time.Millisecond) {
				return finals, fmt.Errorf("final read of %s: %s", key, errText)
			}
		}
	}
	return finals, nil
}

// RegisterReminders registers each ticker's reminder, retrying until the
// gateway accepts it, and returns each one's schedule for the reminder
// checker: first due no earlier than the registration's invocation plus the
// period.
func (w *Workload) RegisterReminders(ctx context.Context) (map[check.ReminderKey]check.Spec, error) {
	schedule := map[check.ReminderKey]check.Spec{}
	period := w.cfg.ReminderPeriod
	body, _ := json.Marshal(map[string]string{"dueTime": period.String(), "period": period.String()})
	for i := range w.cfg.Tickers {
		id := TickerKey(i)
		for attempt := 0; ; attempt++ {
			gws := w.cfg.Gateways()
			if len(gws) == 0 {
				return nil, errors.New("registering reminders: no silo running")
			}
			invoke := time.Now().UnixNano()
			url := gws[attempt%len(gws)] + "/v1.0/actors/" + app.TypeTicker + "/" + id + "/reminders/" + ReminderName
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := w.client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					key := check.ReminderKey{Actor: id, Reminder: ReminderName}
					schedule[key] = check.Spec{First: invoke + int64(period), Period: int64(period)}
					break
				}
				err = fmt.Errorf("status %s", resp.Status)
			}
			if attempt == 20 || !clock.Sleep(ctx, 250*time.Millisecond) {
				return nil, fmt.Errorf("registering the reminder of %s: %w", id, err)
			}
		}
	}
	return schedule, nil
}
