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
//     example app over HTTP (registration target ≥ 10,000/s at 64 clients);
//   - http-lateness: lateness over HTTP of 10,000 reminders due together,
//     one after another at 10,000/s (absolute due times, so the rate does
//     not depend on how fast they were registered), measured by a net/http
//     actor app inside the bench (target p99 ≤ 20 ms).
//
// All but the http scenarios run in this process: the embedded store in a temporary
// directory (or Redis with --store), the actor runtime with a native Echo
// actor that counts reminder fires, and the reminder service, whose Observe
// hook reports every fire. Registrations come from --concurrency goroutines,
// because a registration is acknowledged only after its store commit and the
// store commits concurrent writes together. `make bench-reminders` builds the
// binaries and runs every scenario:
//
//	reminderbench [--scenario all|register,fire,lateness,memory,redis,http,http-lateness] [--json out.json]
//
// Sizes have flags for quick runs (see -help). The memory scenario runs first
// so that it measures a fresh process. A Redis database is flushed before and
// after use; on the machine's shared server (127.0.0.1:6379) it is first
// claimed the way the test helpers claim theirs, so a test never sees it
// flushed mid-run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/internal/redisdb"
)

// The targets.
const (
	registerTarget      = 10_000                // registrations per second
	fireTarget          = 50_000                // fires per second
	latenessTarget      = 50 * time.Millisecond // p99 at the steady rate
	latenessRate        = 10_000                // fires per second the lateness target is stated at
	memoryTarget        = 1 << 30               // bytes of resident memory
	memoryTargetCount   = 1_000_000             // reminders the memory target is stated for
	httpLatenessTarget  = 20 * time.Millisecond // p99 over HTTP of reminders due together
	httpRegisterClients = 64                    // HTTP clients the registration target is stated for
)

// The scenarios, in the order they run.
var scenarioOrder = []string{"memory", "register", "fire", "lateness", "redis", "http", "http-lateness"}

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
	httpLatenessN             int
	httpLatenessDue           time.Duration
	httpLatenessRate          int
	httpDebugAddr             string
	httpClient                string
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
	fs.IntVar(&o.httpLatenessN, "http-lateness-n", 10_000, "http-lateness: reminders to register (on the --http-actors actors)")
	fs.DurationVar(&o.httpLatenessDue, "http-lateness-due", 3*time.Second, "http-lateness: when the first reminder is due, counted from the start of registration")
	fs.IntVar(&o.httpLatenessRate, "http-lateness-rate", 10_000, "http-lateness: reminders due per second, one after another from the first due time")
	fs.StringVar(&o.httpClient, "http-client", httpClientRaw, "http scenarios: how the clients register, "+httpClientRaw+" (keep-alive connections on which the bench writes requests and parses answers itself, as bench/loadgen does) or "+httpClientNetHTTP+" (net/http's client, which costs the shared cores several times more per request)")
	fs.StringVar(&o.httpDebugAddr, "http-debug-addr", "", "http scenarios: granary's --debug-addr, to profile it while a scenario runs (off when empty)")
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
		"http-per-actor": o.httpPerActor, "http-clients": o.httpClients, "http-lateness-n": o.httpLatenessN,
		"http-lateness-rate": o.httpLatenessRate,
	}
	for _, name := range slices.Sorted(maps.Keys(positive)) {
		if positive[name] <= 0 {
			return fail(fmt.Errorf("--%s must be positive", name))
		}
	}
	if o.every <= 0 || o.waitLimit <= 0 || o.latenessPeriod <= 0 || o.latenessDuration <= 0 ||
		o.latenessWarmup < 0 || o.fireLead < 0 || o.httpLead < 0 || o.httpLatenessDue <= 0 {
		return fail(errors.New("--progress, --wait-timeout, --lateness-period, --lateness-duration and --http-lateness-due must be positive, " +
			"--lateness-warmup, --fire-lead and --http-lead not negative"))
	}
	if o.httpClient != httpClientRaw && o.httpClient != httpClientNetHTTP {
		return fail(fmt.Errorf("--http-client %q: want %s or %s", o.httpClient, httpClientRaw, httpClientNetHTTP))
	}
	if o.store != "" {
		if _, err := redisdb.ParseTarget(o.store); err != nil {
			return fail(fmt.Errorf("--store: %w", err))
		}
	}
	if slices.Contains(o.scenarios, "redis") {
		if _, err := redisdb.ParseTarget(o.redisURL); err != nil {
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
		"http-lateness": b.httpLateness,
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
	if t, err := redisdb.ParseTarget(storeURL); err == nil {
		return "redis " + t.Redacted
	}
	return storeURL
}
