// Command storebench measures actor state through Granary's HTTP gateway with
// the embedded bbolt store and with Redis. For each store it starts
// `granary dev` in front of the echo app, activates every actor once and
// writes its state key, then drives keep-alive clients round-robin over the
// actors with state transactions and afterwards with state reads, each load
// measured by bench/loadgen. It prints one table for both stores with the
// Redis share of the embedded store's transaction throughput checked against
// the target, and stops every process it started, also on Ctrl-C or failure.
// `make bench-store` builds the binaries and runs it:
//
//	storebench --granary bin/granary --echoapp bin/echoapp [--redis redis://127.0.0.1:6379/13] [--duration 20s] [--json out.json]
//
// The Redis database is flushed before and after its run. On the machine's
// shared server (127.0.0.1:6379) the benchmark first claims the database the
// way the test helpers do (a lock key in database 0), so it never flushes a
// database a test process is using, and a test never flushes it mid-run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
	"github.com/granaryhq/granary/internal/redisdb"
)

// minRatio is the target: Redis transaction throughput as a share of the
// embedded store's, with the same clients and actors.
const minRatio = 0.70

// What the loads send.
const (
	actorType   = "Echo"
	actorPrefix = "actor-"
	stateKey    = "k"
	// txnTemplate is the body of every transaction: one upsert of stateKey
	// whose value carries the request's sequence number.
	txnTemplate = `[{"operation":"upsert","request":{"key":"` + stateKey + `","value":{"n":` + loadgen.SeqPlaceholder + `}}}]`
	txnPath     = "/v1.0/actors/" + actorType + "/" + loadgen.ActorPlaceholder + "/state"
	getPath     = "/v1.0/actors/" + actorType + "/" + loadgen.ActorPlaceholder + "/state/" + stateKey
	invokePath  = "/v1.0/actors/" + actorType + "/" + loadgen.ActorPlaceholder + "/method/x"
)

// The two stores, in the order they run.
const (
	storeBolt  = "bbolt"
	storeRedis = "redis"
)

type options struct {
	granary, echoapp string
	redisURL         string
	duration, warmup time.Duration
	clients, actors  int
	jsonPath         string
	strict           bool
	stopGrace        time.Duration
	claimPatience    time.Duration
}

func main() { benchproc.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	rep, err := bench(ctx, o, stdout)
	if err != nil {
		return benchproc.Failed(ctx, "storebench", stderr, err)
	}
	return benchproc.Finish("storebench", stdout, stderr, rep, func(w io.Writer) { printReport(w, rep) },
		o.jsonPath, o.strict, rep.Pass)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("storebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.granary, "granary", "bin/granary", "path of the granary binary")
	fs.StringVar(&o.echoapp, "echoapp", "bin/echoapp", "path of the echoapp binary (bench/echoapp)")
	fs.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/13", "Redis database for the Redis run; flushed before and after it (database 0 is refused)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured time of each load")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured warm-up before each load")
	fs.IntVar(&o.clients, "clients", 64, "concurrent keep-alive clients")
	fs.IntVar(&o.actors, "actors", 1000, "actors the clients go round-robin over")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results to this JSON file")
	fs.BoolVar(&o.strict, "strict", false, "exit with status 1 when a target is missed")
	fs.DurationVar(&o.stopGrace, "stop-timeout", 15*time.Second, "how long a process may take to exit after SIGTERM before it is killed")
	fs.DurationVar(&o.claimPatience, "claim-timeout", time.Minute, "how long to wait for the Redis database while a test process holds it")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fail := func(err error) (options, error) {
		fmt.Fprintln(stderr, "storebench:", err)
		return o, err
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	for _, bin := range []string{o.granary, o.echoapp} {
		if !benchproc.Executable(bin) {
			return fail(fmt.Errorf("%s is not an executable file (build it first; `make bench-store` does)", bin))
		}
	}
	if o.duration <= 0 || o.warmup < 0 || o.clients <= 0 || o.actors <= 0 || o.claimPatience < 0 {
		return fail(errors.New("--duration, --clients and --actors must be positive and --warmup and --claim-timeout not negative"))
	}
	if _, err := redisdb.ParseTarget(o.redisURL); err != nil {
		return fail(fmt.Errorf("--redis: %w", err))
	}
	return o, nil
}

// bench starts the echo app, measures both stores in turn and stops everything.
func bench(ctx context.Context, o options, out io.Writer) (report, error) {
	rep := report{
		Duration: o.duration.String(), Warmup: o.warmup.String(),
		Clients: o.clients, Actors: o.actors,
	}
	progress := func(format string, args ...any) { benchproc.Progress(out, format, args...) }
	dir, err := os.MkdirTemp("", "storebench-")
	if err != nil {
		return rep, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	ports, err := benchproc.FreePorts(1)
	if err != nil {
		return rep, err
	}
	appAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	app, err := benchproc.Start("echoapp", dir, o.echoapp, nil, "--port", strconv.Itoa(ports[0]))
	if err != nil {
		return rep, err
	}
	defer func() {
		if err := app.Stop(o.stopGrace); err != nil {
			fmt.Fprintln(out, "storebench:", err)
		}
	}()
	began := time.Now()
	if err := app.WaitForStatus(ctx, "GET", "http://"+appAddr+"/healthz", 200, 10*time.Second); err != nil {
		fmt.Fprintf(out, "--- last lines of echoapp's log ---\n%s\n", app.Tail(30))
		return rep, fmt.Errorf("echoapp not ready: %w", err)
	}
	progress("echoapp ready on %s (pid %d) after %v", appAddr, app.Pid(), time.Since(began).Round(time.Millisecond))

	b := &storeBench{o: o, dir: dir, appAddr: appAddr, ids: loadgen.ActorIDs(actorPrefix, o.actors), progress: progress, out: out}
	for _, store := range []string{storeBolt, storeRedis} {
		sr, err := b.measure(ctx, store)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", store, err)
		}
		rep.Stores = append(rep.Stores, sr)
	}
	rep.evaluate()
	return rep, nil
}

// storeBench is what the runs of both stores share.
type storeBench struct {
	o        options
	dir      string // temporary directory for logs and the embedded store
	appAddr  string
	ids      []string
	progress func(format string, args ...any)
	out      io.Writer
}

// measure runs granary with one store, activates and seeds the actors, and
// runs the transaction load and then the read load.
func (b *storeBench) measure(ctx context.Context, store string) (sr storeReport, err error) {
	sr.Store = store
	var storeArgs []string
	switch store {
	case storeBolt:
		dataDir := filepath.Join(b.dir, "data")
		if err := os.Mkdir(dataDir, 0o755); err != nil {
			return sr, fmt.Errorf("data directory: %w", err)
		}
		storeArgs = []string{"--data-dir", dataDir}
		sr.Where = dataDir
	case storeRedis:
		target, err := redisdb.ParseTarget(b.o.redisURL)
		if err != nil {
			return sr, err
		}
		db, err := redisdb.Prepare(ctx, target, "storebench", b.o.claimPatience, b.progress)
		if err != nil {
			return sr, err
		}
		defer func() {
			if cerr := db.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
		b.progress("redis database %d on %s flushed", target.DB, target.Options.Addr)
		storeArgs = []string{"--state-store", b.o.redisURL}
		sr.Where = target.Redacted
	default:
		return sr, fmt.Errorf("unknown store %q", store)
	}

	ports, err := benchproc.FreePorts(1)
	if err != nil {
		return sr, err
	}
	gwAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	args := append([]string{"dev", "--http-port", strconv.Itoa(ports[0]), "--app-url", "http://" + b.appAddr,
		"--log-level", "warn"}, storeArgs...)
	granary, err := benchproc.Start("granary-"+store, b.dir, b.o.granary, nil, args...)
	if err != nil {
		return sr, err
	}
	defer func() {
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(b.out, "--- last lines of %s's log ---\n%s\n", granary.Name, granary.Tail(30))
		}
		if stopErr := granary.Stop(b.o.stopGrace); stopErr != nil {
			fmt.Fprintln(b.out, "storebench:", stopErr)
		}
	}()
	began := time.Now()
	if err := granary.WaitForStatus(ctx, "GET", "http://"+gwAddr+"/v1.0/healthz", 204, 15*time.Second); err != nil {
		return sr, fmt.Errorf("granary not ready: %w", err)
	}
	b.progress("granary (%s store, %s) ready on %s (pid %d) after %v", store, sr.Where, gwAddr, granary.Pid(),
		time.Since(began).Round(time.Millisecond))

	began = time.Now()
	client := newHTTPClient(b.o.clients)
	defer client.CloseIdleConnections()
	if err := prime(ctx, client, "http://"+gwAddr, b.ids, min(b.o.clients, 16)); err != nil {
		return sr, err
	}
	if err := checkRead(ctx, client, "http://"+gwAddr, b.ids); err != nil {
		return sr, err
	}
	b.progress("      %d actors activated and their state written in %v", len(b.ids), time.Since(began).Round(time.Millisecond))

	loads := []struct {
		name   string
		method string
		path   string
		body   string
		dst    *loadgen.Result
		detail *string
	}{
		{"transact", "POST", txnPath, txnTemplate, &sr.Transact, &sr.TransactError},
		{"get", "GET", getPath, "", &sr.Get, &sr.GetError},
	}
	for _, l := range loads {
		b.progress("%s %s: %s %s, %d actors, %d clients, %v warm-up + %v",
			store, l.name, l.method, l.path, len(b.ids), b.o.clients, b.o.warmup, b.o.duration)
		res, err := loadgen.Run(ctx, loadgen.Config{
			Addr: gwAddr, Connections: b.o.clients, Warmup: b.o.warmup, Duration: b.o.duration,
			Request: loadgen.Request{Method: l.method, Path: l.path, Body: l.body, Actors: b.ids},
		})
		if err != nil {
			return sr, err
		}
		b.progress("      %v", res)
		if granary.Exited() {
			return sr, fmt.Errorf("granary exited during the %s load: %v", l.name, granary.Err())
		}
		*l.dst = res
		if res.Errors.Total() > 0 {
			*l.detail = errorDetail(ctx, client, "http://"+gwAddr, l.method, l.path, l.body, b.ids, res)
		}
	}
	b.progress("stopping granary (%s store)", store)
	return sr, nil
}

// newHTTPClient is the client for everything but the measured loads.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxIdleConns: conns},
	}
}

// fill returns a path or body template with {actor} and {n} filled in.
func fill(template, actor string, n int) string {
	s := strings.ReplaceAll(template, loadgen.ActorPlaceholder, actor)
	return strings.ReplaceAll(s, loadgen.SeqPlaceholder, strconv.Itoa(n))
}

// checkRead reads back the state prime wrote for the first actor, so that a
// read load answered by 204 (no such key) cannot pass for a working one.
func checkRead(ctx context.Context, client *http.Client, base string, ids []string) error {
	got, err := benchproc.Call(ctx, client, "GET", base+fill(getPath, ids[0], 0), "", http.StatusOK)
	if err != nil {
		return fmt.Errorf("reading back actor %s's state: %w", ids[0], err)
	}
	if want := `{"n":0}`; string(got) != want {
		return fmt.Errorf("reading back actor %s's state: got %q, want %q", ids[0], got, want)
	}
	return nil
}

// prime makes every actor active on the silo (state transactions need an
// active actor) by calling a method on it, and writes its state key so that
// the read load finds it. It stops at the first failure and returns it.
func prime(ctx context.Context, client *http.Client, base string, ids []string, workers int) error {
	return benchproc.Parallel(ctx, len(ids), workers, func(ctx context.Context, i int) error {
		id := ids[i]
		_, err := benchproc.Call(ctx, client, "POST", base+fill(invokePath, id, i), "", http.StatusOK)
		if err == nil {
			_, err = benchproc.Call(ctx, client, "POST", base+fill(txnPath, id, i), fill(txnTemplate, id, i), http.StatusNoContent)
		}
		if err != nil {
			return fmt.Errorf("preparing actor %s: %w", id, err)
		}
		return nil
	})
}

// probeTries bounds the requests errorDetail sends.
const probeTries = 100

// errorDetail describes the failures of a load: loadgen's first error, and,
// because loadgen does not keep response bodies, the body of the first
// failure among up to probeTries requests of the same kind sent afterwards.
func errorDetail(ctx context.Context, client *http.Client, base, method, path, body string, ids []string, res loadgen.Result) string {
	detail := res.FirstError
	if res.Errors.Status == 0 {
		return detail
	}
	tries := min(probeTries, len(ids))
	for i := range tries {
		want := http.StatusOK
		if method == "POST" {
			want = http.StatusNoContent
		}
		_, err := benchproc.Call(ctx, client, method, base+fill(path, ids[i], i), fill(body, ids[i], i), want)
		if err != nil {
			return detail + "; then " + err.Error()
		}
	}
	return fmt.Sprintf("%s; the next %d requests of this kind all succeeded", detail, tries)
}

// ---- report ----

// storeReport is what one store measured.
type storeReport struct {
	Store         string         `json:"store"` // "bbolt" or "redis"
	Where         string         `json:"where"` // data directory or Redis URL (no password)
	Transact      loadgen.Result `json:"transact"`
	Get           loadgen.Result `json:"get"`
	TransactError string         `json:"transact_error,omitempty"` // first failure and its response body
	GetError      string         `json:"get_error,omitempty"`
}

// report is everything a run found; it is also the JSON written by --json.
type report struct {
	Duration         string             `json:"duration"`
	Warmup           string             `json:"warmup"`
	Clients          int                `json:"clients"`
	Actors           int                `json:"actors"`
	Stores           []storeReport      `json:"stores"`
	TransactRatio    float64            `json:"transact_ratio"`     // redis rps / bbolt rps
	TransactP99Ratio float64            `json:"transact_p99_ratio"` // redis p99 / bbolt p99
	GetRatio         float64            `json:"get_ratio"`          // redis rps / bbolt rps
	Targets          []benchproc.Target `json:"targets"`
	Pass             bool               `json:"pass"`
}

func (r *report) store(name string) storeReport {
	for _, s := range r.Stores {
		if s.Store == name {
			return s
		}
	}
	return storeReport{Store: name}
}

// evaluate computes the ratios and checks the targets.
func (r *report) evaluate() {
	bolt, rds := r.store(storeBolt), r.store(storeRedis)
	r.TransactRatio = benchproc.Ratio(rds.Transact.RPS, bolt.Transact.RPS)
	r.TransactP99Ratio = benchproc.Ratio(float64(rds.Transact.P99), float64(bolt.Transact.P99))
	r.GetRatio = benchproc.Ratio(rds.Get.RPS, bolt.Get.RPS)
	var failed int64
	for _, s := range r.Stores {
		failed += s.Transact.Errors.Total() + s.Get.Errors.Total()
	}
	measured := bolt.Transact.Requests > 0 && rds.Transact.Requests > 0
	r.Targets = []benchproc.Target{
		{Name: fmt.Sprintf("redis transaction rps ≥ %.0f%% of bbolt", 100*minRatio),
			Value: fmt.Sprintf("%.0f%%", 100*r.TransactRatio), Pass: measured && r.TransactRatio >= minRatio},
		{Name: "no failed requests", Value: strconv.FormatInt(failed, 10), Pass: failed == 0},
	}
	r.Pass = benchproc.AllPass(r.Targets)
}

func printReport(w io.Writer, r report) {
	fmt.Fprintf(w, "\nActor state through the gateway: %d clients over %d actors, %s per load after %s warm-up\n\n",
		r.Clients, r.Actors, r.Duration, r.Warmup)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-5s\t%-8s\trps\tp50\tp90\tp99\terrors\t\n", "store", "load")
	for _, s := range r.Stores {
		for _, l := range []struct {
			name string
			res  loadgen.Result
		}{{"transact", s.Transact}, {"get", s.Get}} {
			fmt.Fprintf(tw, "%-5s\t%-8s\t%.0f\t%s\t%s\t%s\t%d\t\n", s.Store, l.name, l.res.RPS,
				loadgen.FormatDuration(l.res.P50), loadgen.FormatDuration(l.res.P90),
				loadgen.FormatDuration(l.res.P99), l.res.Errors.Total())
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nredis/bbolt: transactions %.0f%% of the rps at %.2f× the p99; reads %.0f%% of the rps\n",
		100*r.TransactRatio, r.TransactP99Ratio, 100*r.GetRatio)
	for _, s := range r.Stores {
		for _, l := range []struct {
			name, detail string
			res          loadgen.Result
		}{{"transact", s.TransactError, s.Transact}, {"get", s.GetError, s.Get}} {
			if l.res.Errors.Total() == 0 {
				continue
			}
			fmt.Fprintf(w, "%s %s errors: status %d %v, io %d, protocol %d; first: %s\n", s.Store, l.name,
				l.res.Errors.Status, l.res.StatusCodes, l.res.Errors.IO, l.res.Errors.Protocol, l.detail)
		}
	}
	benchproc.PrintTargets(w, r.Targets, 38, r.Pass)
}
