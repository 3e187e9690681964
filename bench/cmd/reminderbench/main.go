// Command reminderbench measures Granary's durable reminders against the
// targets of the reminder service:
//
//   - register: registration rate of 100,000 reminders (target ≥ 10,000/s);
//   - fire: fire throughput of 100,000 reminders due at one instant (target ≥ 50,000 fires/s);
//   - lateness: lateness (start of the fire minus its due time) at a steady
//     10,000 fires/s (target p99 ≤ 50 ms);
//   - memory: resident memory with 1,000,000 reminders registered (target ≤ 1 GiB);
//   - redis: the registration rate with the Redis store (no target);
//   - http: registration and fires through `granary dev` and the Go Counter
//     example app over HTTP (no target).
//
// All but http run in this process: the embedded store in a temporary
// directory (or Redis with --store), the actor runtime with a native Echo
// actor that counts reminder fires, and the reminder service, whose Observe
// hook reports every fire. Registrations come from --concurrency goroutines,
// because a registration is acknowledged only after its store commit and the
// store commits concurrent writes together. `make bench-reminders` builds the
// binaries and runs every scenario:
//
//	reminderbench [--scenario all|register,fire,lateness,memory,redis,http] [--json out.json]
//
// Sizes have flags for quick runs (see -help). The memory scenario runs first
// so that it measures a fresh process. A Redis database is flushed before and
// after use; on the machine's shared server (127.0.0.1:6379) it is first
// claimed the way the test helpers claim theirs, so a test never sees it
// flushed mid-run.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/internal/benchredis"
	"github.com/granaryhq/granary/bench/loadgen"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/boltstore"
	"github.com/granaryhq/granary/statestore/redisstore"
)

// The targets.
const (
	registerTarget    = 10_000                // registrations per second
	fireTarget        = 50_000                // fires per second
	latenessTarget    = 50 * time.Millisecond // p99 at the steady rate
	latenessRate      = 10_000                // fires per second the lateness target is stated at
	memoryTarget      = 1 << 30               // bytes of resident memory
	memoryTargetCount = 1_000_000             // reminders the memory target is stated for
)

// The scenarios, in the order they run.
var scenarioOrder = []string{"memory", "register", "fire", "lateness", "redis", "http"}

const echoType = "Echo"

// claimPatience bounds the wait for a Redis database while a test process
// holds it.
const claimPatience = time.Minute

type options struct {
	scenarios   []string
	store       string // "" for the embedded store, else a Redis URL, for the in-process scenarios
	redisURL    string // the redis scenario's database
	dataDir     string // parent of the temporary store directories
	granary     string
	app         string
	jsonPath    string
	cpuProfile  string
	strict      bool
	concurrency int
	every       time.Duration // progress interval
	waitLimit   time.Duration // longest wait for fires

	registerN, registerActors int
	fireActors, firePerActor  int
	fireLead                  time.Duration
	latenessN, latenessActors int
	latenessPeriod            time.Duration
	latenessWarmup            time.Duration
	latenessDuration          time.Duration
	memoryN, memoryActors     int
	redisN, redisActors       int
	httpActors, httpPerActor  int
	httpClients               int
	httpLead                  time.Duration
}

func main() { benchproc.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "reminderbench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "reminderbench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	b := &bench{o: o, out: stdout,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	rep := b.runAll(ctx)
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "reminderbench: interrupted")
		return 130
	}
	return benchproc.Finish("reminderbench", stdout, stderr, rep, func(w io.Writer) { printReport(w, rep) },
		o.jsonPath, o.strict, rep.Pass)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("reminderbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenarios := fs.String("scenario", "all", "all, or a comma-separated list of "+strings.Join(scenarioOrder, ", "))
	fs.StringVar(&o.store, "store", "", "store of the in-process scenarios: empty for the embedded store, or a redis:// URL (flushed; not database 0)")
	fs.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/12", "database of the redis scenario (flushed before and after; not database 0)")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for the temporary embedded stores (default: the system's temporary directory)")
	fs.StringVar(&o.granary, "granary", "bin/granary", "granary binary, for the http scenario")
	fs.StringVar(&o.app, "app", "bin/counter-go", "the Go Counter example app binary, for the http scenario")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results to this JSON file")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.BoolVar(&o.strict, "strict", false, "exit with status 1 when a target is missed or a scenario fails")
	fs.IntVar(&o.concurrency, "concurrency", 256, "goroutines registering reminders (and activating actors) at once")
	fs.DurationVar(&o.every, "progress", 2*time.Second, "how often long phases print progress")
	fs.DurationVar(&o.waitLimit, "wait-timeout", 5*time.Minute, "longest wait for the reminders of a scenario to fire")
	fs.IntVar(&o.registerN, "register-n", 100_000, "register: reminders to register")
	fs.IntVar(&o.registerActors, "register-actors", 1000, "register: actors they belong to")
	fs.IntVar(&o.fireActors, "fire-actors", 1000, "fire: actors, activated before registering")
	fs.IntVar(&o.firePerActor, "fire-per-actor", 100, "fire: reminders per actor, all due at one instant")
	fs.DurationVar(&o.fireLead, "fire-lead", 0, "fire: how far ahead of the start of registration the reminders are due (0: from the expected registration time)")
	fs.IntVar(&o.latenessN, "lateness-n", 100_000, "lateness: reminders, due times spread evenly over one period")
	fs.IntVar(&o.latenessActors, "lateness-actors", 1000, "lateness: actors, activated before registering")
	fs.DurationVar(&o.latenessPeriod, "lateness-period", 10*time.Second, "lateness: period of every reminder (the rate is n/period)")
	fs.DurationVar(&o.latenessWarmup, "lateness-warmup", 3*time.Second, "lateness: unmeasured time after registration ends")
	fs.DurationVar(&o.latenessDuration, "lateness-duration", 30*time.Second, "lateness: measured time")
	fs.IntVar(&o.memoryN, "memory-n", memoryTargetCount, "memory: reminders to register")
	fs.IntVar(&o.memoryActors, "memory-actors", 10_000, "memory: actors they belong to")
	fs.IntVar(&o.redisN, "redis-n", 100_000, "redis: reminders to register")
	fs.IntVar(&o.redisActors, "redis-actors", 1000, "redis: actors they belong to")
	fs.IntVar(&o.httpActors, "http-actors", 500, "http: Counter actors, activated before registering")
	fs.IntVar(&o.httpPerActor, "http-per-actor", 40, "http: reminders per actor, all due at one instant")
	fs.IntVar(&o.httpClients, "http-clients", 128, "http: concurrent keep-alive clients registering")
	fs.DurationVar(&o.httpLead, "http-lead", 0, "http: how far ahead of the start of registration the reminders are due (0: from the expected registration time)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fail := func(err error) (options, error) {
		fmt.Fprintln(stderr, "reminderbench:", err)
		return o, err
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	var err error
	if o.scenarios, err = parseScenarios(*scenarios); err != nil {
		return fail(fmt.Errorf("--scenario: %w", err))
	}
	positive := map[string]int{
		"concurrency": o.concurrency, "register-n": o.registerN, "register-actors": o.registerActors,
		"fire-actors": o.fireActors, "fire-per-actor": o.firePerActor, "lateness-n": o.latenessN,
		"lateness-actors": o.latenessActors, "memory-n": o.memoryN, "memory-actors": o.memoryActors,
		"redis-n": o.redisN, "redis-actors": o.redisActors, "http-actors": o.httpActors,
		"http-per-actor": o.httpPerActor, "http-clients": o.httpClients,
	}
	for _, name := range slices.Sorted(maps.Keys(positive)) {
		if positive[name] <= 0 {
			return fail(fmt.Errorf("--%s must be positive", name))
		}
	}
	if o.every <= 0 || o.waitLimit <= 0 || o.latenessPeriod <= 0 || o.latenessDuration <= 0 ||
		o.latenessWarmup < 0 || o.fireLead < 0 || o.httpLead < 0 {
		return fail(errors.New("--progress, --wait-timeout, --lateness-period and --lateness-duration must be positive, " +
			"--lateness-warmup, --fire-lead and --http-lead not negative"))
	}
	if o.store != "" {
		if _, err := benchredis.ParseTarget(o.store); err != nil {
			return fail(fmt.Errorf("--store: %w", err))
		}
	}
	if slices.Contains(o.scenarios, "redis") {
		if _, err := benchredis.ParseTarget(o.redisURL); err != nil {
			return fail(fmt.Errorf("--redis: %w", err))
		}
	}
	return o, nil
}

// parseScenarios turns the --scenario value into scenario names in run order.
func parseScenarios(s string) ([]string, error) {
	want := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "all":
			for _, name := range scenarioOrder {
				want[name] = true
			}
		case slices.Contains(scenarioOrder, part):
			want[part] = true
		default:
			return nil, fmt.Errorf("unknown scenario %q (want all or %s)", part, strings.Join(scenarioOrder, ", "))
		}
	}
	var out []string
	for _, name := range scenarioOrder {
		if want[name] {
			out = append(out, name)
		}
	}
	return out, nil
}

// ---- results ----

// metric is one measured figure, with its target when it has one.
type metric struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Shown   string  `json:"shown"`
	Target  string  `json:"target,omitempty"`
	Verdict string  `json:"verdict,omitempty"` // PASS or FAIL; empty without a target
}

func rateMetric(name string, perSecond float64) metric {
	return metric{Name: name, Value: perSecond, Unit: "/s", Shown: fmt.Sprintf("%.0f/s", perSecond)}
}

func durationMetric(name string, d time.Duration) metric {
	return metric{Name: name, Value: float64(d) / float64(time.Millisecond), Unit: "ms", Shown: loadgen.FormatDuration(d)}
}

func countMetric(name string, n int64) metric {
	return metric{Name: name, Value: float64(n), Unit: "count", Shown: strconv.FormatInt(n, 10)}
}

func mibMetric(name string, bytes uint64) metric {
	v := float64(bytes) / (1 << 20)
	return metric{Name: name, Value: v, Unit: "MiB", Shown: fmt.Sprintf("%.1f MiB", v)}
}

func bytesMetric(name string, bytes float64) metric {
	return metric{Name: name, Value: bytes, Unit: "B", Shown: fmt.Sprintf("%.0f B", bytes)}
}

// atLeast sets the target value ≥ bound (bound in the metric's unit).
func (m metric) atLeast(bound float64, shown string) metric {
	m.Target = "≥ " + shown
	m.Verdict = benchproc.Verdict(m.Value >= bound)
	return m
}

// atMost sets the target value ≤ bound (bound in the metric's unit).
func (m metric) atMost(bound float64, shown string) metric {
	m.Target = "≤ " + shown
	m.Verdict = benchproc.Verdict(m.Value <= bound)
	return m
}

// result is what one scenario found.
type result struct {
	Scenario string   `json:"scenario"`
	Title    string   `json:"title"`
	Setup    string   `json:"setup"`
	Metrics  []metric `json:"metrics"`
	Notes    []string `json:"notes,omitempty"`
	Error    string   `json:"error,omitempty"`
	Pass     bool     `json:"pass"`
}

func (r *result) add(m ...metric) { r.Metrics = append(r.Metrics, m...) }
func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// fail records an error; a scenario may record several.
func (r *result) fail(err error) {
	if r.Error != "" {
		r.Error += "; "
	}
	r.Error += err.Error()
}
func (r *result) failf(format string, args ...any) { r.fail(fmt.Errorf(format, args...)) }

// evaluate sets Pass: no error and no missed target.
func (r *result) evaluate() {
	r.Pass = r.Error == ""
	for _, m := range r.Metrics {
		if m.Verdict == "FAIL" {
			r.Pass = false
		}
	}
}

// report is a whole run; it is also the JSON written by --json.
type report struct {
	Started   string   `json:"started"`
	GoVersion string   `json:"go_version"`
	Platform  string   `json:"platform"`
	CPUs      int      `json:"cpus"`
	LoadAvg   string   `json:"load_average,omitempty"` // of the machine when the run started
	Results   []result `json:"results"`
	Pass      bool     `json:"pass"`
}

func printReport(w io.Writer, rep report) {
	fmt.Fprintf(w, "\nreminderbench %s, %s, %d CPUs, load average at start %s\n", rep.Started, rep.Platform, rep.CPUs, rep.LoadAvg)
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\n== %s: %s ==\n%s\n", r.Scenario, r.Title, r.Setup)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  figure\tvalue\ttarget\t")
		for _, m := range r.Metrics {
			target := m.Target
			if target == "" {
				target = "—"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.Name, m.Shown, target, m.Verdict)
		}
		tw.Flush()
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  ERROR: %s\n", r.Error)
		}
		fmt.Fprintf(w, "  scenario: %s\n", benchproc.Verdict(r.Pass))
	}
	fmt.Fprintf(w, "\noverall: %s\n", benchproc.Verdict(rep.Pass))
}

// ---- the run ----

type bench struct {
	o       options
	out     io.Writer
	log     *slog.Logger
	regRate float64 // the last in-process registration rate measured, per second
}

func (b *bench) progress(format string, args ...any) { benchproc.Progress(b.out, format, args...) }

func (b *bench) runAll(ctx context.Context) report {
	rep := report{
		Started:   time.Now().Format(time.RFC3339),
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
		CPUs:      runtime.NumCPU(),
		LoadAvg:   loadAverage(),
		Pass:      true,
	}
	scenarios := map[string]func(context.Context) result{
		"memory": b.memory, "register": b.register, "fire": b.fire,
		"lateness": b.lateness, "redis": b.redis, "http": b.http,
	}
	for _, name := range b.o.scenarios {
		if ctx.Err() != nil {
			break
		}
		b.progress("--- scenario %s ---", name)
		r := scenarios[name](ctx)
		r.Scenario = name
		r.evaluate()
		rep.Results = append(rep.Results, r)
		rep.Pass = rep.Pass && r.Pass
		// What one scenario left behind must not weigh on the next.
		debug.FreeOSMemory()
	}
	return rep
}

// loadAverage returns the first three fields of /proc/loadavg, or "n/a".
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

// storeLabel names a store for the setup lines.
func storeLabel(storeURL string) string {
	if storeURL == "" {
		return "embedded bbolt store"
	}
	if t, err := benchredis.ParseTarget(storeURL); err == nil {
		return "redis " + t.Redacted
	}
	return storeURL
}

// ---- the in-process silo ----

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
		t, err := benchredis.ParseTarget(storeURL)
		if err != nil {
			return nil, err
		}
		db, err := benchredis.Prepare(ctx, t, "reminderbench", claimPatience, b.progress)
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

// ---- scenarios ----

func (b *bench) register(ctx context.Context) result {
	return b.registerScenario(ctx, b.o.store, b.o.registerN, b.o.registerActors, true)
}

func (b *bench) redis(ctx context.Context) result {
	return b.registerScenario(ctx, b.o.redisURL, b.o.redisN, b.o.redisActors, false)
}

// registerScenario measures how fast reminders are registered (due in an
// hour, so none fires meanwhile), with the target when withTarget.
func (b *bench) registerScenario(ctx context.Context, storeURL string, n, actors int, withTarget bool) (r result) {
	r.Title = "registration rate"
	r.Setup = fmt.Sprintf("%s; %d reminders (dueTime 1h, period 1h) on %d inactive Echo actors, %d registering goroutines",
		storeLabel(storeURL), n, actors, b.o.concurrency)
	h, err := b.openHarness(ctx, storeURL)
	if err != nil {
		r.fail(err)
		return r
	}
	defer h.closeInto(&r)
	ids := actorIDs("reg-", actors)
	b.progress("registering %d reminders (%s)", n, h.where)
	reg, err := b.registerAll(ctx, h, ids, 0, n, func(int) actor.ReminderSpec {
		return actor.ReminderSpec{DueTime: "1h", Period: "1h"}
	})
	if err != nil {
		r.fail(err)
		return r
	}
	rate := rateMetric("registrations/s", reg.rate())
	if withTarget {
		rate = rate.atLeast(registerTarget, fmt.Sprintf("%d/s", registerTarget))
	}
	r.add(rate,
		durationMetric("time for all", reg.elapsed),
		durationMetric("Create latency p50", reg.latency.Quantile(0.50)),
		durationMetric("Create latency p99", reg.latency.Quantile(0.99)),
		durationMetric("Create latency max", reg.latency.Max()))
	return r
}

// autoLead is how far ahead reminders are made due when no lead is given:
// time to register n at rate, doubled, plus a margin.
func autoLead(n int, rate float64) time.Duration {
	return 3*time.Second + time.Duration(2*float64(n)/rate*float64(time.Second))
}

func (b *bench) fire(ctx context.Context) (r result) {
	n := b.o.fireActors * b.o.firePerActor
	r.Title = "fire throughput"
	r.Setup = fmt.Sprintf("%s; %d active Echo actors × %d reminders = %d, all due at one instant (RFC 3339 dueTime, period 1h)",
		storeLabel(b.o.store), b.o.fireActors, b.o.firePerActor, n)
	h, err := b.openHarness(ctx, b.o.store)
	if err != nil {
		r.fail(err)
		return r
	}
	defer h.closeInto(&r)
	ids := actorIDs("fire-", b.o.fireActors)
	b.progress("activating %d actors", len(ids))
	if _, err := b.activate(ctx, h, ids); err != nil {
		r.fail(err)
		return r
	}
	c := newCollector(int64(n))
	obs := c.observe
	h.observe.Store(&obs)

	lead := b.lead(b.o.fireLead, n, 5000)
	due := time.Now().Add(lead).UTC().Truncate(time.Millisecond)
	dueTime := due.Format(time.RFC3339Nano)
	b.progress("registering %d reminders due at %s (in %v)", n, dueTime, lead.Round(time.Millisecond))
	reg, err := b.registerAll(ctx, h, ids, 0, n, func(int) actor.ReminderSpec {
		return actor.ReminderSpec{DueTime: dueTime, Period: "1h"}
	})
	if err != nil {
		r.fail(err)
		return r
	}
	if late := time.Since(due); late > 0 {
		r.failf("registration ended %v after the due time, so fires overlapped registration; raise --fire-lead", late.Round(time.Millisecond))
	} else {
		b.progress("registered in %v (%.0f/s); waiting %v for the due time", reg.elapsed.Round(time.Millisecond), reg.rate(), -late.Round(time.Millisecond))
	}
	err = b.waitFires(ctx, c.done, "fired", func() string {
		return fmt.Sprintf("%d/%d", c.fired.Load(), n)
	})
	if err != nil {
		r.fail(err)
		return r
	}
	span := time.Unix(0, c.lastFinished.Load()).Sub(due)
	// The next due times are written behind the fires; stopping the
	// service writes what is still pending.
	stored := span + h.stop()
	rate := rateMetric("fires/s", perSecond(n, span)).atLeast(fireTarget, fmt.Sprintf("%d/s", fireTarget))
	lat := c.lateness.merged()
	r.add(rate,
		durationMetric("due time to last fire done", span),
		rateMetric("fires/s including the store writes after them", perSecond(n, stored)),
		durationMetric("lateness p50", lat.Quantile(0.50)),
		durationMetric("lateness p99", lat.Quantile(0.99)),
		durationMetric("lateness max", lat.Max()),
		rateMetric("registrations/s (all due at once)", reg.rate()),
		countMetric("failed fire attempts", c.failed.Load()))
	if c.failed.Load() > 0 {
		r.note("first failed fire: %s", c.firstError())
	}
	if got := h.delivered.Load(); got != int64(n) {
		r.note("the actors received %d reminder calls for %d reminders", got, n)
	}
	return r
}

func (b *bench) lateness(ctx context.Context) (r result) {
	n, period := b.o.latenessN, b.o.latenessPeriod
	offered := perSecond(n, period)
	r.Title = "lateness at a steady rate"
	r.Setup = fmt.Sprintf("%s; %d reminders of period %v on %d active Echo actors, due times spread evenly over one period "+
		"(%.0f fires/s); measured for %v after %v warm-up", storeLabel(b.o.store), n, period, b.o.latenessActors,
		offered, b.o.latenessDuration, b.o.latenessWarmup)
	h, err := b.openHarness(ctx, b.o.store)
	if err != nil {
		r.fail(err)
		return r
	}
	defer h.closeInto(&r)
	ids := actorIDs("late-", b.o.latenessActors)
	b.progress("activating %d actors", len(ids))
	if _, err := b.activate(ctx, h, ids); err != nil {
		r.fail(err)
		return r
	}
	c := newCollector(0)
	// Nothing is measured until the window is set after registration: the
	// fires due while registration runs share the CPU with it.
	c.from.Store(math.MaxInt64)
	obs := c.observe
	h.observe.Store(&obs)

	// Reminder i is first due at base + i·period/n. Those whose first due
	// time passes while registration runs fire at once when registered and
	// then keep to the same grid, so once registration is over the fires
	// come at the offered rate.
	base := time.Now().Add(2 * time.Second).UTC()
	b.progress("registering %d reminders of period %v (%.0f fires/s once all are registered)", n, period, offered)
	reg, err := b.registerAll(ctx, h, ids, 0, n, func(i int) actor.ReminderSpec {
		return actor.ReminderSpec{DueTime: phase(base, period, n, i).Format(time.RFC3339Nano), Period: period.String()}
	})
	if err != nil {
		r.fail(err)
		return r
	}
	// The steady rate starts once every reminder is registered and the
	// first due times have begun.
	from := time.Now()
	if from.Before(base) {
		from = base
	}
	from = from.Add(b.o.latenessWarmup)
	to := from.Add(b.o.latenessDuration)
	c.setWindow(from, to)
	expected := expectedFires(base, period, n, from, to)
	b.progress("registered in %v (%.0f/s); measuring fires due from %s to %s (%d expected)",
		reg.elapsed.Round(time.Millisecond), reg.rate(), from.Format("15:04:05.000"), to.Format("15:04:05.000"), expected)
	err = b.waitFires(ctx, c.past, "measuring", func() string {
		lat := c.lateness.merged()
		return fmt.Sprintf("%d fires in the window so far, p50 %s p99 %s max %s, %d failed", c.inWindow.Load(),
			loadgen.FormatDuration(lat.Quantile(0.5)), loadgen.FormatDuration(lat.Quantile(0.99)),
			loadgen.FormatDuration(lat.Max()), c.failed.Load())
	})
	if err != nil {
		r.fail(err)
		return r
	}
	// The scheduler hands fires out in due order, so every fire due in the
	// window has started by now; give their reports a moment to arrive.
	pause := time.NewTimer(200 * time.Millisecond)
	select {
	case <-pause.C:
	case <-ctx.Done():
		pause.Stop()
		r.fail(ctx.Err())
		return r
	}
	got := c.inWindow.Load()
	lat := c.lateness.merged()
	r.add(
		durationMetric("lateness p50", lat.Quantile(0.50)),
		durationMetric("lateness p90", lat.Quantile(0.90)),
		durationMetric("lateness p99", lat.Quantile(0.99)).atMost(float64(latenessTarget)/float64(time.Millisecond), loadgen.FormatDuration(latenessTarget)),
		durationMetric("lateness max", lat.Max()),
		rateMetric("fires/s measured", perSecond(int(got), b.o.latenessDuration)),
		countMetric("fires due in the window", got).atLeast(float64(expected), strconv.FormatInt(expected, 10)+" (all)"),
		countMetric("failed fire attempts", c.failed.Load()),
		rateMetric("registrations/s (while firing)", reg.rate()))
	if offered < latenessRate {
		r.note("offered rate %.0f fires/s is below the %d/s the target is stated for", offered, latenessRate)
	}
	if c.failed.Load() > 0 {
		r.note("first failed fire: %s", c.firstError())
	}
	return r
}

// phase is the first due time of reminder i of n spread evenly over period from base.
func phase(base time.Time, period time.Duration, n, i int) time.Time {
	return base.Add(time.Duration(int64(period) * int64(i) / int64(n)))
}

// expectedFires counts the fires due in [from, to) of n reminders of the
// given period, reminder i due first at phase(base, period, n, i).
func expectedFires(base time.Time, period time.Duration, n int, from, to time.Time) int64 {
	var total int64
	for i := range n {
		first := phase(base, period, n, i)
		// Fires are due at first + k·period for k ≥ 0.
		total += firesBefore(first, period, to) - firesBefore(first, period, from)
	}
	return total
}

// firesBefore counts the k ≥ 0 with first + k·period < t.
func firesBefore(first time.Time, period time.Duration, t time.Time) int64 {
	if !first.Before(t) {
		return 0
	}
	d := t.Sub(first)
	return int64((d-1)/period) + 1
}

func (b *bench) memory(ctx context.Context) (r result) {
	n := b.o.memoryN
	r.Title = "memory"
	r.Setup = fmt.Sprintf("%s; %d reminders (dueTime 1h, period 1h) on %d inactive Echo actors; resident memory of this process after runtime.GC",
		storeLabel(b.o.store), n, b.o.memoryActors)
	runtime.GC()
	debug.FreeOSMemory()
	start := readMemory()
	if start.err != nil {
		r.failf("reading resident memory: %v", start.err)
		return r
	}
	h, err := b.openHarness(ctx, b.o.store)
	if err != nil {
		r.fail(err)
		return r
	}
	defer h.closeInto(&r)
	ids := actorIDs("mem-", b.o.memoryActors)
	spec := func(int) actor.ReminderSpec { return actor.ReminderSpec{DueTime: "1h", Period: "1h"} }
	// Memory is read at half the reminders too: the growth from there to
	// all of them is the cost of a reminder without the fixed costs.
	half := n / 2
	b.progress("registering %d reminders", n)
	first, err := b.registerAll(ctx, h, ids, 0, half, spec)
	if err != nil {
		r.fail(err)
		return r
	}
	runtime.GC()
	mid := readMemory()
	second, err := b.registerAll(ctx, h, ids, half, n, spec)
	if err != nil {
		r.fail(err)
		return r
	}
	runtime.GC()
	end := readMemory()
	debug.FreeOSMemory()
	returned := readMemory()

	rss := mibMetric("RSS", end.rss)
	marginal := float64(sub(end.rss, mid.rss)) / float64(n-half)
	projected := mibMetric(fmt.Sprintf("RSS projected to %d reminders", memoryTargetCount),
		end.rss+uint64(marginal*float64(max(0, memoryTargetCount-n))))
	gib := float64(memoryTarget) / (1 << 20)
	if n >= memoryTargetCount {
		rss = rss.atMost(gib, "1 GiB")
	} else {
		projected = projected.atMost(gib, "1 GiB")
	}
	r.add(rss,
		mibMetric("RSS anonymous", end.rssAnon),
		mibMetric("RSS file-backed (binary, store mmap)", end.rssFile),
		mibMetric("Go heap in use", end.heapInuse),
		mibMetric("RSS at the start", start.rss),
		bytesMetric("RSS per reminder (from the start)", float64(sub(end.rss, start.rss))/float64(n)),
		bytesMetric("RSS per reminder (second half)", marginal),
		bytesMetric("Go heap per reminder (from the start)", float64(sub(end.heapInuse, start.heapInuse))/float64(n)),
		mibMetric("RSS after debug.FreeOSMemory", returned.rss))
	if h.dbPath != "" {
		if st, err := os.Stat(h.dbPath); err == nil {
			r.add(mibMetric("store file size", uint64(st.Size())))
		}
	}
	r.add(rateMetric("registrations/s", perSecond(n, first.elapsed+second.elapsed)))
	if n < memoryTargetCount {
		r.add(projected)
		r.note("with fewer than %d reminders the target applies to the RSS projected from the growth over the second half", memoryTargetCount)
	}
	return r
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// memory is a snapshot of the process's memory; sizes in bytes.
type memory struct {
	rss, rssAnon, rssFile uint64
	heapInuse             uint64
	err                   error // reading /proc/self/status
}

func readMemory() memory {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := memory{heapInuse: ms.HeapInuse}
	st, err := benchproc.Status(os.Getpid())
	if err != nil {
		m.err = err
		return m
	}
	m.rss, m.rssAnon, m.rssFile = st["VmRSS"], st["RssAnon"], st["RssFile"]
	return m
}

// ---- http: granary dev and the Go Counter app ----

const counterType = "Counter"

func (b *bench) http(ctx context.Context) (r result) {
	n := b.o.httpActors * b.o.httpPerActor
	r.Title = "registration and fires over HTTP (granary dev + examples/counter-go)"
	r.Setup = fmt.Sprintf("embedded bbolt store; %d Counter actors × %d reminders = %d, all due at one instant (period 1h); "+
		"%d keep-alive clients register; every fire is an HTTP callback that increments the actor's count in actor state",
		b.o.httpActors, b.o.httpPerActor, n, b.o.httpClients)
	for _, bin := range []string{b.o.granary, b.o.app} {
		if !benchproc.Executable(bin) {
			r.failf("%s is not an executable file (`make build` builds bin/granary and bin/counter-go)", bin)
			return r
		}
	}
	dir, err := os.MkdirTemp(b.o.dataDir, "reminderbench-http-")
	if err != nil {
		r.fail(err)
		return r
	}
	defer os.RemoveAll(dir)
	ports, err := benchproc.FreePorts(2)
	if err != nil {
		r.fail(err)
		return r
	}
	gwPort, appPort := strconv.Itoa(ports[0]), strconv.Itoa(ports[1])
	gwURL := "http://127.0.0.1:" + gwPort

	app, err := benchproc.Start("counter-go", dir, b.o.app, []string{"APP_HOST=127.0.0.1", "APP_PORT=" + appPort, "DAPR_HTTP_PORT=" + gwPort})
	if err != nil {
		r.fail(err)
		return r
	}
	defer stopInto(app, &r)
	if err := app.WaitForStatus(ctx, "GET", "http://127.0.0.1:"+appPort+"/healthz", http.StatusOK, 15*time.Second); err != nil {
		r.failf("counter-go not ready: %v; its log ends:\n%s", err, app.Tail(20))
		return r
	}
	granary, err := benchproc.Start("granary", dir, b.o.granary, nil, "dev", "--http-port", gwPort,
		"--app-url", "http://127.0.0.1:"+appPort, "--data-dir", filepath.Join(dir, "data"), "--log-level", "warn")
	if err != nil {
		r.fail(err)
		return r
	}
	defer stopInto(granary, &r)
	if err := granary.WaitForStatus(ctx, "GET", gwURL+"/v1.0/healthz", http.StatusNoContent, 15*time.Second); err != nil {
		r.failf("granary not ready: %v; its log ends:\n%s", err, granary.Tail(20))
		return r
	}
	b.progress("granary dev (pid %d) on %s, counter-go (pid %d) on port %s", granary.Pid(), gwURL, app.Pid(), appPort)

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: b.o.httpClients, MaxIdleConnsPerHost: b.o.httpClients, MaxConnsPerHost: b.o.httpClients,
	}}
	defer client.CloseIdleConnections()
	ids := make([]string, b.o.httpActors)
	for i := range ids {
		ids[i] = "c-" + strconv.Itoa(i)
	}
	methodURL := func(id, method string) string {
		return gwURL + "/v1.0/actors/" + counterType + "/" + url.PathEscape(id) + "/method/" + method
	}
	// The app may still be registering its type right after the gateway
	// answers; the first call waits for it.
	if err := granary.WaitForStatus(ctx, "POST", methodURL(ids[0], "get"), http.StatusOK, 15*time.Second); err != nil {
		r.failf("the Counter type is not served: %v", err)
		return r
	}
	b.progress("activating %d Counter actors", len(ids))
	_, _, err = runParallel(ctx, len(ids), b.o.httpClients, b.o.every,
		func(done int, _ time.Duration) { b.progress("  activated %d/%d actors", done, len(ids)) },
		func(ctx context.Context, i int) error {
			_, err := call(ctx, client, "POST", methodURL(ids[i], "get"), "", http.StatusOK)
			return err
		})
	if err != nil {
		r.fail(err)
		return r
	}

	fires := &fireLog{}
	appLog, err := os.Open(app.LogPath)
	if err != nil {
		r.fail(err)
		return r
	}
	defer appLog.Close()
	if _, err := fires.readFrom(appLog); err != nil { // skip what the app logged so far
		r.fail(err)
		return r
	}
	fires.count = 0

	lead := b.o.httpLead
	if lead == 0 {
		lead = autoLead(n, 2000)
	}
	due := time.Now().Add(lead).UTC().Truncate(time.Millisecond)
	body := `{"dueTime":"` + due.Format(time.RFC3339Nano) + `","period":"1h"}`
	b.progress("registering %d reminders due at %s (in %v)", n, due.Format(time.RFC3339Nano), lead.Round(time.Millisecond))
	took, hist, err := runParallel(ctx, n, b.o.httpClients, b.o.every,
		func(done int, elapsed time.Duration) {
			b.progress("  registered %d/%d (%.0f/s)", done, n, perSecond(done, elapsed))
		},
		func(ctx context.Context, i int) error {
			id, name := ids[i%len(ids)], "r"+strconv.Itoa(i/len(ids))
			u := gwURL + "/v1.0/actors/" + counterType + "/" + url.PathEscape(id) + "/reminders/" + name
			_, err := call(ctx, client, "POST", u, body, http.StatusNoContent)
			return err
		})
	if err != nil {
		r.fail(err)
		return r
	}
	r.add(rateMetric("registrations/s", perSecond(n, took)),
		durationMetric("registration latency p50", hist.Quantile(0.50)),
		durationMetric("registration latency p99", hist.Quantile(0.99)))
	if late := time.Since(due); late > 0 {
		r.failf("registration ended %v after the due time, so fires overlapped registration; raise --http-lead", late.Round(time.Millisecond))
	} else {
		b.progress("registered in %v (%.0f/s); waiting %v for the due time", took.Round(time.Millisecond), perSecond(n, took), -late.Round(time.Millisecond))
	}

	// The app logs a line per reminder callback; count them as they come.
	allFired := make(chan struct{})
	var (
		logMu   sync.Mutex
		readErr error
	)
	stopTail := make(chan struct{})
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			logMu.Lock()
			_, err := fires.readFrom(appLog)
			done := fires.count >= int64(n)
			if err != nil {
				readErr = err
			}
			logMu.Unlock()
			if done || err != nil {
				close(allFired)
				return
			}
			select {
			case <-stopTail:
				return
			case <-t.C:
			}
		}
	}()
	err = b.waitFires(ctx, allFired, "fired", func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return fmt.Sprintf("%d/%d callbacks logged by the app", fires.count, n)
	})
	close(stopTail)
	<-tailDone
	if err == nil && readErr != nil {
		err = fmt.Errorf("reading the app's log: %w", readErr)
	}
	if err != nil {
		r.fail(err)
		return r
	}
	span := fires.last.Sub(due)
	r.add(rateMetric("fires/s", perSecond(n, span)), durationMetric("due time to last callback", span))

	// Every reminder fired once, so the counts add up to n.
	var total atomic.Int64
	_, _, err = runParallel(ctx, len(ids), b.o.httpClients, b.o.every,
		func(done int, _ time.Duration) { b.progress("  read %d/%d counts", done, len(ids)) },
		func(ctx context.Context, i int) error {
			data, err := call(ctx, client, "POST", methodURL(ids[i], "get"), "", http.StatusOK)
			if err != nil {
				return err
			}
			var v struct {
				Count *int64 `json:"count"`
			}
			if err := json.Unmarshal(data, &v); err != nil || v.Count == nil {
				return fmt.Errorf("count of %s: unexpected answer %q", ids[i], data)
			}
			total.Add(*v.Count)
			return nil
		})
	if err != nil {
		r.fail(err)
		return r
	}
	r.add(countMetric("sum of the counts", total.Load()).atLeast(float64(n), strconv.Itoa(n)+" (one per reminder)"))
	if failed := linesWith(granary, "reminder fire failed"); len(failed) > 0 {
		r.note("granary logged %d failed fire attempts (see its log); first: %s", len(failed), failed[0])
	}
	return r
}

// fireLog counts the reminder callbacks in the Go Counter app's log (one
// slog text line `time=… level=INFO msg="reminder fired" …` per callback)
// and keeps the time of the last one.
type fireLog struct {
	count   int64
	last    time.Time
	partial []byte // an unfinished last line
	buf     []byte
}

var fireMarker = []byte(`msg="reminder fired"`)

// readFrom reads what r has beyond what was read before and counts it.
func (l *fireLog) readFrom(r io.Reader) (int64, error) {
	if l.buf == nil {
		l.buf = make([]byte, 256<<10)
	}
	var total int64
	for {
		n, err := r.Read(l.buf)
		if n > 0 {
			total += int64(n)
			l.feed(l.buf[:n])
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil
		}
	}
}

// feed counts the complete lines in data, keeping an unfinished last line for later.
func (l *fireLog) feed(data []byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			l.partial = append(l.partial, data...)
			return
		}
		line := data[:i]
		if len(l.partial) > 0 {
			line = append(l.partial, line...)
			l.partial = l.partial[:0]
		}
		l.line(line)
		data = data[i+1:]
	}
}

func (l *fireLog) line(line []byte) {
	if !bytes.Contains(line, fireMarker) {
		return
	}
	l.count++
	if ts, ok := bytes.CutPrefix(line, []byte("time=")); ok {
		if end := bytes.IndexByte(ts, ' '); end > 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(ts[:end])); err == nil && t.After(l.last) {
				l.last = t
			}
		}
	}
}

// call sends one request and checks its status; it returns the body.
func call(ctx context.Context, client *http.Client, method, u, body string, want int) ([]byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != want {
		return data, fmt.Errorf("%s %s: status %d (want %d): %s", method, u, resp.StatusCode, want, strings.TrimSpace(string(data)))
	}
	if err != nil {
		return data, fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	return data, nil
}

// stopInto stops p and notes in r when it had to be killed.
func stopInto(p *benchproc.Process, r *result) {
	if err := p.Stop(60 * time.Second); err != nil {
		r.note("%v", err)
	}
}

// linesWith returns the lines of p's log that contain substr.
func linesWith(p *benchproc.Process, substr string) []string {
	var out []string
	for _, l := range p.Lines() {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
