// Command blocksbench measures Granary's building-block APIs through the
// HTTP gateway: state, service invocation and pub/sub.
//
//  1. State: with the embedded store and then with Redis, `granary dev` in
//     front of the echo app; the benchmark saves keys k0…k{keys-1} in batches
//     of up to 100, then drives keep-alive clients round-robin over the keys
//     with saves (POST /v1.0/state/statestore) and then with reads
//     (GET /v1.0/state/statestore/{key}), and, with the same clients, actor
//     method calls through the echo app (the invocation rate of gatewaybench
//     and storebench) as the reference the reads are held against.
//  2. Service invocation: on the embedded store's granary, the same request
//     through the gateway (PUT /v1.0/invoke/echo/method/…) and straight to
//     the echo app.
//  3. Pub/sub: `granary dev` (embedded store) with one subscriber app, an
//     HTTP server this program runs itself; publishes carry their send time
//     and a sequence number, and the subscriber records each delivery's
//     latency and counts duplicates. First as many publishes as the clients
//     can send (throughput, counted until the last acknowledged message is
//     delivered), then a fixed publish rate (delivery latency).
//
// Every load is measured by bench/loadgen, the publishes by this program's
// own clients (a load generator cannot put the send time in the body). It
// prints the figures with their targets, PASS or FAIL, and stops every
// process it started, also on Ctrl-C or failure. `make bench-blocks` builds
// the binaries and runs it:
//
//	blocksbench --granary bin/granary --echoapp bin/echoapp [--redis redis://127.0.0.1:6379/11] [--duration 15s] [--json out.json]
//
// The Redis database is flushed before and after its run; on the machine's
// shared server (127.0.0.1:6379) it is first claimed as the test helpers do
// (internal/redisdb). Progress goes to stderr, the results to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/internal/redisdb"
)

// The parts of the benchmark, in the order they run.
const (
	partState  = "state"
	partInvoke = "invoke"
	partPubSub = "pubsub"
)

var allParts = []string{partState, partInvoke, partPubSub}

type options struct {
	granary, echoapp string
	redisURL         string
	duration, warmup time.Duration
	clients          int
	keys, actors     int
	pubRate          int
	drainTimeout     time.Duration
	parts            []string
	jsonPath         string
	strict           bool
	stopGrace        time.Duration
	claimPatience    time.Duration
}

func (o options) has(part string) bool { return slices.Contains(o.parts, part) }

func main() { benchproc.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	rep, err := bench(ctx, o, stderr)
	if err != nil {
		return benchproc.Failed(ctx, "blocksbench", stderr, err)
	}
	code := benchproc.Finish("blocksbench", stdout, stderr, rep, func(w io.Writer) { printReport(w, rep) },
		o.jsonPath, o.strict, rep.Pass)
	if code == 0 && len(rep.errors()) > 0 {
		fmt.Fprintln(stderr, "blocksbench: a part could not be measured (see its error above)")
		return 1
	}
	return code
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("blocksbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.granary, "granary", "bin/granary", "path of the granary binary")
	fs.StringVar(&o.echoapp, "echoapp", "bin/echoapp", "path of the echoapp binary (bench/echoapp)")
	fs.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/11", "Redis database for the Redis state run; flushed before and after it (database 0 is refused)")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "measured time of each load")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured warm-up before each load")
	fs.IntVar(&o.clients, "clients", 64, "concurrent keep-alive clients of every load")
	fs.IntVar(&o.keys, "keys", 10000, "state keys the state loads go round-robin over")
	fs.IntVar(&o.actors, "actors", 1000, "actors the invocation-rate load goes round-robin over")
	fs.IntVar(&o.pubRate, "pub-rate", 5000, "publishes per second of the pub/sub latency run")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long to wait, after publishing stops, for every acknowledged message to be delivered")
	parts := fs.String("parts", strings.Join(allParts, ","), "parts to run, comma-separated: state, invoke, pubsub")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results to this JSON file")
	fs.BoolVar(&o.strict, "strict", false, "exit with status 1 when a target is missed")
	fs.DurationVar(&o.stopGrace, "stop-timeout", 15*time.Second, "how long a process may take to exit after SIGTERM before it is killed")
	fs.DurationVar(&o.claimPatience, "claim-timeout", time.Minute, "how long to wait for the Redis database while a test process holds it")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fail := func(err error) (options, error) {
		fmt.Fprintln(stderr, "blocksbench:", err)
		return o, err
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	for _, p := range strings.Split(*parts, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
		case !slices.Contains(allParts, p):
			return fail(fmt.Errorf("--parts: unknown part %q (want %s)", p, strings.Join(allParts, ", ")))
		case !slices.Contains(o.parts, p):
			o.parts = append(o.parts, p)
		}
	}
	if len(o.parts) == 0 {
		return fail(errors.New("--parts names no part"))
	}
	for _, bin := range []string{o.granary, o.echoapp} {
		if !benchproc.Executable(bin) {
			return fail(fmt.Errorf("%s is not an executable file (build it first; `make bench-blocks` does)", bin))
		}
	}
	if o.duration <= 0 || o.warmup < 0 || o.clients <= 0 || o.keys <= 0 || o.actors <= 0 || o.pubRate <= 0 ||
		o.drainTimeout <= 0 || o.claimPatience < 0 {
		return fail(errors.New("--duration, --clients, --keys, --actors, --pub-rate and --drain-timeout must be positive and --warmup and --claim-timeout not negative"))
	}
	if _, err := redisdb.ParseTarget(o.redisURL); err != nil {
		return fail(fmt.Errorf("--redis: %w", err))
	}
	return o, nil
}

// runner is what the parts share.
type runner struct {
	o        options
	dir      string // temporary directory: logs and the embedded stores
	appAddr  string // the echo app
	progress func(format string, args ...any)
	log      io.Writer // progress and the logs of processes that failed
}

// bench starts the echo app, runs the parts and stops everything. An error
// of one part is kept in its report and the other parts still run; only an
// interruption or a failure to start the echo app ends the run early.
func bench(ctx context.Context, o options, log io.Writer) (report, error) {
	rep := report{
		Duration: o.duration.String(), Warmup: o.warmup.String(), Clients: o.clients,
		Keys: o.keys, Actors: o.actors, PubRate: o.pubRate, Parts: o.parts,
	}
	r := &runner{o: o, log: log, progress: func(format string, args ...any) { benchproc.Progress(log, format, args...) }}
	dir, err := os.MkdirTemp("", "blocksbench-")
	if err != nil {
		return rep, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	r.dir = dir

	if o.has(partState) || o.has(partInvoke) {
		app, err := r.startEchoApp(ctx)
		if err != nil {
			return rep, err
		}
		defer func() {
			if err := app.Stop(o.stopGrace); err != nil {
				fmt.Fprintln(log, "blocksbench:", err)
			}
		}()
		// The embedded store's granary serves the state loads and then
		// service invocation; the Redis one the state loads only.
		bolt := storeReport{Store: storeBolt, Where: r.dir + "/data-state"}
		var inv invokeReport
		err = r.withGranary(ctx, "granary-"+storeBolt, r.boltArgs("data-state"), true, func(g *benchproc.Process, gw string) error {
			if o.has(partState) {
				if err := r.statePart(ctx, g, gw, &bolt); err != nil {
					bolt.Error = err.Error()
					if ctx.Err() != nil {
						return err
					}
					r.progress("%s state: %v", storeBolt, err)
					r.showLog(g)
				}
			}
			if o.has(partInvoke) {
				if err := r.invokePart(ctx, g, gw, &inv); err != nil {
					inv.Error = err.Error()
					if ctx.Err() != nil {
						return err
					}
					r.progress("service invocation: %v", err)
					r.showLog(g)
				}
			}
			return nil
		})
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		if err != nil { // granary did not start
			bolt.Error = firstNonEmpty(bolt.Error, err.Error())
			inv.Error = firstNonEmpty(inv.Error, err.Error())
		}
		if o.has(partState) {
			rep.Stores = append(rep.Stores, bolt)
			rds := storeReport{Store: storeRedis}
			if err := r.redisState(ctx, &rds); err != nil {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				rds.Error = firstNonEmpty(rds.Error, err.Error())
				r.progress("%s state: %v", storeRedis, err)
			}
			rep.Stores = append(rep.Stores, rds)
		}
		if o.has(partInvoke) {
			rep.Invoke = &inv
		}
	}
	if o.has(partPubSub) {
		ps := pubsubReport{Clients: o.clients, Rate: o.pubRate}
		if err := r.pubsubPart(ctx, &ps); err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			ps.Error = err.Error()
			r.progress("pub/sub: %v", err)
		}
		rep.PubSub = &ps
	}
	rep.evaluate()
	return rep, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// startEchoApp starts bench/echoapp on a free port and waits until it answers.
func (r *runner) startEchoApp(ctx context.Context) (*benchproc.Process, error) {
	ports, err := benchproc.FreePorts(1)
	if err != nil {
		return nil, err
	}
	r.appAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	app, err := benchproc.Start("echoapp", r.dir, r.o.echoapp, nil, "--port", strconv.Itoa(ports[0]))
	if err != nil {
		return nil, err
	}
	began := time.Now()
	if err := app.WaitForStatus(ctx, "GET", "http://"+r.appAddr+"/healthz", 200, 10*time.Second); err != nil {
		fmt.Fprintf(r.log, "--- last lines of echoapp's log ---\n%s\n", app.Tail(30))
		_ = app.Stop(r.o.stopGrace)
		return nil, fmt.Errorf("echoapp not ready: %w", err)
	}
	r.progress("echoapp ready on %s (pid %d) after %v", r.appAddr, app.Pid(), time.Since(began).Round(time.Millisecond))
	return app, nil
}

// showLog writes the end of a process's log.
func (r *runner) showLog(p *benchproc.Process) {
	fmt.Fprintf(r.log, "--- last lines of %s's log ---\n%s\n", p.Name, p.Tail(30))
}

// boltArgs are granary's flags for a fresh embedded store in dir/sub.
func (r *runner) boltArgs(sub string) []string {
	return []string{"--data-dir", r.dir + "/" + sub}
}

// withGranary starts `granary dev` with args (and the echo app as app
// "echo" when echo is set), waits until it serves, runs fn, and stops it;
// the end of its log is shown when fn fails.
func (r *runner) withGranary(ctx context.Context, name string, args []string, echo bool,
	fn func(g *benchproc.Process, gwAddr string) error) (err error) {
	ports, err := benchproc.FreePorts(1)
	if err != nil {
		return err
	}
	gwAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	all := []string{"dev", "--http-port", strconv.Itoa(ports[0]), "--log-level", "warn"}
	if echo {
		all = append(all, "--app-url", "echo=http://"+r.appAddr)
	}
	all = append(all, args...)
	g, err := benchproc.Start(name, r.dir, r.o.granary, nil, all...)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && ctx.Err() == nil {
			r.showLog(g)
		}
		r.progress("stopping %s", g.Name)
		if stopErr := g.Stop(r.o.stopGrace); stopErr != nil {
			fmt.Fprintln(r.log, "blocksbench:", stopErr)
		}
	}()
	began := time.Now()
	if err := g.WaitForStatus(ctx, "GET", "http://"+gwAddr+"/v1.0/healthz", 204, 20*time.Second); err != nil {
		return fmt.Errorf("%s not ready: %w", name, err)
	}
	if echo {
		if err := g.WaitForStatus(ctx, "POST", "http://"+gwAddr+"/v1.0/actors/Echo/warm/method/x", 200, 10*time.Second); err != nil {
			return fmt.Errorf("%s does not serve actor type Echo: %w", name, err)
		}
	}
	r.progress("%s ready on %s (pid %d) after %v: granary %s", name, gwAddr, g.Pid(),
		time.Since(began).Round(time.Millisecond), strings.Join(all, " "))
	return fn(g, gwAddr)
}
