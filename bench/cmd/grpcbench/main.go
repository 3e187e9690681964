// Command grpcbench measures actor invocation over Dapr's gRPC API
// (InvokeActor of dapr.proto.runtime.v1.Dapr) against the same calls over the
// HTTP API (POST /v1.0/actors/{type}/{id}/method/{m}), in one run against
// one `granary dev` in front of the echo app: (a) one client calling one
// actor and (b) 64 concurrent clients over 1,000 actors. It starts the echo
// app and granary on free ports, activates the actors, checks that both
// protocols answer what the echo app answers, then runs the four loads in
// rounds, the protocols taking turns, so a drift of the machine's speed
// affects both alike. The HTTP loads are bench/loadgen's; the gRPC loads
// are a closed loop of google.golang.org/grpc calls over insecure
// connections: one for (a), a small pool shared round-robin for (b). It
// prints a table with the CPU time each process spent per call and the
// targets met or missed, and stops both processes, also on Ctrl-C or
// failure. `make bench-grpc` builds the binaries and runs it:
//
//	grpcbench --granary bin/granary --echoapp bin/echoapp [--duration 20s] [--rounds 4] [--json out.json] [--profile DIR]
package main

import (
	"bytes"
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
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

// What every load calls.
const (
	actorType   = "Echo"
	actorMethod = "echo"
	actorPrefix = "actor-" // the actors of load (b): actor-0 … actor-999
	singleActor = "a"      // the actor of load (a)
	body        = `{"n":1}`
	httpPath    = "/v1.0/actors/" + actorType + "/" + loadgen.ActorPlaceholder + "/method/" + actorMethod
)

// The protocols.
const (
	protoGRPC = "grpc"
	protoHTTP = "http"
)

type options struct {
	granary, echoapp string
	duration, warmup time.Duration
	rounds           int
	actors, clients  int
	grpcConns        int // connections of the gRPC pool of load (b)
	jsonPath         string
	strict           bool
	stopGrace        time.Duration
	profileDir       string // CPU profiles of the last round's (b) loads; none when empty
}

func main() { benchproc.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	rep, err := bench(ctx, o, stderr)
	if err != nil {
		return benchproc.Failed(ctx, "grpcbench", stderr, err)
	}
	return benchproc.Finish("grpcbench", stdout, stderr, rep, func(w io.Writer) { printReport(w, rep) },
		o.jsonPath, o.strict, rep.Pass)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("grpcbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.granary, "granary", "bin/granary", "path of the granary binary")
	fs.StringVar(&o.echoapp, "echoapp", "bin/echoapp", "path of the echoapp binary (bench/echoapp)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured time of each load, split into --rounds")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each round of each load")
	fs.IntVar(&o.rounds, "rounds", 4, "rounds the measured time of each load is split into; the loads take turns, so a drift of the machine's speed affects gRPC and HTTP alike")
	fs.IntVar(&o.actors, "actors", 1000, "actors called round-robin in load (b)")
	fs.IntVar(&o.clients, "clients", 64, "concurrent clients in load (b): HTTP connections, or goroutines sharing the gRPC pool")
	fs.IntVar(&o.grpcConns, "grpc-conns", 4, "gRPC connections (grpc.ClientConn) the clients of load (b) share round-robin; load (a) uses one")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results to this JSON file")
	fs.BoolVar(&o.strict, "strict", false, "exit with status 1 when a target is missed")
	fs.DurationVar(&o.stopGrace, "stop-timeout", 15*time.Second, "how long a process may take to exit after SIGTERM before it is killed")
	fs.StringVar(&o.profileDir, "profile", "", "write CPU profiles of granary and of this program's clients, taken while the last round's (b) loads are measured, to this directory (go tool pprof reads them); profiling costs a little of the machine it measures")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fail := func(err error) (options, error) {
		fmt.Fprintln(stderr, "grpcbench:", err)
		return o, err
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	for _, bin := range []string{o.granary, o.echoapp} {
		if !benchproc.Executable(bin) {
			return fail(fmt.Errorf("%s is not an executable file (build it first; `make bench-grpc` does)", bin))
		}
	}
	if o.duration <= 0 || o.warmup < 0 || o.rounds <= 0 || o.actors <= 0 || o.clients <= 0 || o.grpcConns <= 0 {
		return fail(errors.New("--duration, --rounds, --actors, --clients and --grpc-conns must be positive and --warmup not negative"))
	}
	if o.duration/time.Duration(o.rounds) < 100*time.Millisecond {
		return fail(fmt.Errorf("--duration %v in %d rounds leaves less than 100ms a round", o.duration, o.rounds))
	}
	if o.profileDir != "" {
		if o.duration/time.Duration(o.rounds) < time.Second {
			return fail(errors.New("--profile needs rounds of at least 1s (--duration / --rounds)"))
		}
		if st, err := os.Stat(o.profileDir); err != nil || !st.IsDir() {
			return fail(fmt.Errorf("--profile %s is not a directory", o.profileDir))
		}
	}
	if o.grpcConns > o.clients {
		return fail(fmt.Errorf("--grpc-conns %d is more than the %d clients that would share them", o.grpcConns, o.clients))
	}
	return o, nil
}

// scenario is one measured load.
type scenario struct {
	name    string // "(a) gRPC", …
	load    string // "a" or "b"
	proto   string // protoGRPC or protoHTTP
	clients int    // calls in flight
	conns   int    // TCP connections they use
	actors  []string
}

// scenarios returns the four loads in the order of the first round.
func scenarios(o options) []scenario {
	many := loadgen.ActorIDs(actorPrefix, o.actors)
	one := []string{singleActor}
	return []scenario{
		{name: "(a) gRPC", load: "a", proto: protoGRPC, clients: 1, conns: 1, actors: one},
		{name: "(a) HTTP", load: "a", proto: protoHTTP, clients: 1, conns: 1, actors: one},
		{name: "(b) gRPC", load: "b", proto: protoGRPC, clients: o.clients, conns: o.grpcConns, actors: many},
		{name: "(b) HTTP", load: "b", proto: protoHTTP, clients: o.clients, conns: o.clients, actors: many},
	}
}

// roundOrder returns the indexes of scs in the order round runs them: as
// given in even rounds; in odd ones the two protocols of each load swap
// places, so that neither always runs right after the other's load.
func roundOrder(scs []scenario, round int) []int {
	order := make([]int, len(scs))
	for i := range order {
		order[i] = i
	}
	if round%2 == 1 {
		for i := 0; i+1 < len(order); i += 2 {
			if scs[i].load == scs[i+1].load {
				order[i], order[i+1] = order[i+1], order[i]
			}
		}
	}
	return order
}

// runRounds runs every scenario in every round through runOne, and returns
// each scenario's results and CPU time folded over the rounds.
func runRounds(scs []scenario, rounds int, progress func(string, ...any),
	runOne func(sc scenario, round int) (loadgen.Result, cpuTimes, error)) ([]loadgen.Result, []cpuTimes, error) {
	results := make([]loadgen.Result, len(scs))
	cpu := make([]cpuTimes, len(scs))
	for round := range rounds {
		for _, i := range roundOrder(scs, round) {
			sc := scs[i]
			progress("[round %d/%d] %s: %d client(s) on %d connection(s), %d actor(s)", round+1, rounds, sc.name,
				sc.clients, sc.conns, len(sc.actors))
			res, c, err := runOne(sc, round)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", sc.name, err)
			}
			progress("      %v", res)
			results[i].Add(res)
			cpu[i] = cpu[i].add(c)
		}
	}
	return results, cpu, nil
}

// bench starts the processes, prepares the actors, runs the loads and stops
// everything. Progress and process logs go to log.
func bench(ctx context.Context, o options, log io.Writer) (rep report, err error) {
	progress := func(format string, args ...any) { benchproc.Progress(log, format, args...) }
	dir, err := os.MkdirTemp("", "grpcbench-")
	if err != nil {
		return rep, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	ports, err := benchproc.FreePorts(4)
	if err != nil {
		return rep, err
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		return rep, fmt.Errorf("data directory: %w", err)
	}
	appAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	gwAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
	grpcAddr := "127.0.0.1:" + strconv.Itoa(ports[2])
	debugAddr := "127.0.0.1:" + strconv.Itoa(ports[3])

	var procs []*benchproc.Process // stopped in reverse order: granary first, then the app it calls
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			if err != nil && ctx.Err() == nil {
				fmt.Fprintf(log, "--- last lines of %s's log ---\n%s\n", p.Name, p.Tail(30))
			}
			if stopErr := p.Stop(o.stopGrace); stopErr != nil {
				fmt.Fprintln(log, "grpcbench:", stopErr)
			}
		}
	}()
	startAndWait := func(name, addr, bin string, args []string, readyURL string, readyStatus int) (*benchproc.Process, error) {
		p, err := benchproc.Start(name, dir, bin, nil, args...)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		began := time.Now()
		if err := p.WaitForStatus(ctx, "GET", readyURL, readyStatus, 10*time.Second); err != nil {
			return nil, fmt.Errorf("%s not ready: %w", name, err)
		}
		progress("%s ready on %s (pid %d) after %v", name, addr, p.Pid(), time.Since(began).Round(time.Millisecond))
		return p, nil
	}
	app, err := startAndWait("echoapp", appAddr, o.echoapp, []string{"--port", strconv.Itoa(ports[0])},
		"http://"+appAddr+"/healthz", 200)
	if err != nil {
		return rep, err
	}
	granaryArgs := []string{"dev",
		"--http-port", strconv.Itoa(ports[1]), "--grpc-port", strconv.Itoa(ports[2]),
		"--app-url", "http://" + appAddr, "--data-dir", dataDir, "--log-level", "warn"}
	if o.profileDir != "" {
		granaryArgs = append(granaryArgs, "--debug-addr", debugAddr)
	}
	granary, err := startAndWait("granary", gwAddr, o.granary, granaryArgs, "http://"+gwAddr+"/v1.0/healthz", 204)
	if err != nil {
		return rep, err
	}

	pool, closePool, err := dialPool(grpcAddr, o.grpcConns)
	if err != nil {
		return rep, err
	}
	defer closePool()
	began := time.Now()
	if err = waitForGRPC(ctx, pool[0], granary, 10*time.Second); err != nil {
		return rep, err
	}
	progress("gRPC API serves InvokeActor on %s after %v; %d connection(s) dialled", grpcAddr,
		time.Since(began).Round(time.Millisecond), len(pool))

	began = time.Now()
	ids := loadgen.ActorIDs(actorPrefix, o.actors)
	if err = activate(ctx, pool, append([]string{singleActor}, ids...), 16); err != nil {
		return rep, err
	}
	if err = checkHTTP(ctx, "http://"+gwAddr, []string{singleActor, ids[0], ids[len(ids)-1]}); err != nil {
		return rep, err
	}
	progress("%d actors activated over gRPC, each answering its own body; HTTP answers the same (%v)",
		len(ids)+1, time.Since(began).Round(time.Millisecond))

	scs := scenarios(o)
	slice := o.duration / time.Duration(o.rounds)
	meter := &cpuMeter{granaryPid: granary.Pid(), appPid: app.Pid()}
	prof := profiler{dir: o.profileDir, debugAddr: debugAddr}
	runOne := func(sc scenario, round int) (loadgen.Result, cpuTimes, error) {
		var waitProfiles func() ([]string, error)
		if o.profileDir != "" && sc.load == "b" && round == o.rounds-1 {
			waitProfiles = prof.start(ctx, sc, o.warmup, int(slice/time.Second))
		}
		res, cpu, err := meter.during(o.warmup, func() (loadgen.Result, error) {
			if sc.proto == protoGRPC {
				return runGRPC(ctx, grpcLoad{
					Clients: pool[:sc.conns], Concurrency: sc.clients, Warmup: o.warmup, Duration: slice,
					ActorType: actorType, Method: actorMethod, Actors: sc.actors, Body: []byte(body),
				})
			}
			return loadgen.Run(ctx, loadgen.Config{
				Addr: gwAddr, Connections: sc.clients, Warmup: o.warmup, Duration: slice,
				Request: loadgen.Request{Method: "POST", Path: httpPath, Body: body, Actors: sc.actors},
			})
		})
		if err == nil && granary.Exited() {
			err = fmt.Errorf("granary exited during the load: %v", granary.Err())
		}
		if waitProfiles != nil {
			// A profile that could not be taken is reported, and the figures kept.
			if paths, perr := waitProfiles(); perr != nil {
				progress("      CPU profiles: %v", perr)
			} else {
				progress("      CPU profiles of the measured part written: %s", strings.Join(paths, ", "))
			}
		}
		return res, cpu, err
	}
	results, cpu, err := runRounds(scs, o.rounds, progress, runOne)
	if err != nil {
		return rep, err
	}
	rep = report{
		Duration: o.duration.String(), Warmup: o.warmup.String(), Rounds: o.rounds, Round: slice.String(),
		Body: body, Actors: o.actors, Clients: o.clients, GRPCConns: o.grpcConns,
	}
	if meter.err != nil {
		rep.CPUError = meter.err.Error()
	}
	for i, sc := range scs {
		rep.Scenarios = append(rep.Scenarios, scenarioReport{
			Name: sc.name, Load: sc.load, Protocol: sc.proto, Clients: sc.clients, Connections: sc.conns,
			Actors: len(sc.actors), Result: results[i], CPU: cpu[i],
		})
	}
	rep.evaluate()
	progress("stopping granary and echoapp")
	return rep, nil
}

// dialPool opens n gRPC connections to addr, each its own grpc.ClientConn
// (and so its own HTTP/2 connection), without TLS.
func dialPool(addr string, n int) ([]runtimev1.DaprClient, func(), error) {
	var conns []*grpc.ClientConn
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	clients := make([]runtimev1.DaprClient, n)
	for i := range clients {
		c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("gRPC client for %s: %w", addr, err)
		}
		c.Connect()
		conns = append(conns, c)
		clients[i] = runtimev1.NewDaprClient(c)
	}
	return clients, closeAll, nil
}

// echoBody is the body sent to actor number i in the checks: a different
// one for each, so that an answer that merely looks right cannot pass.
func echoBody(i int) []byte { return []byte(`{"n":` + strconv.Itoa(i) + `}`) }

// invokeEcho calls the echo method of an actor over gRPC and checks that
// the answer is the request body, as the echo app answers.
func invokeEcho(ctx context.Context, client runtimev1.DaprClient, id string, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := client.InvokeActor(ctx, &runtimev1.InvokeActorRequest{ActorType: actorType, ActorId: id, Method: actorMethod, Data: data})
	if err != nil {
		return fmt.Errorf("InvokeActor %s/%s.%s: %w", actorType, id, actorMethod, err)
	}
	if !bytes.Equal(resp.GetData(), data) {
		return fmt.Errorf("InvokeActor %s/%s.%s answered %q, want the request body %q", actorType, id, actorMethod,
			truncate(resp.GetData(), 200), data)
	}
	return nil
}

// waitForGRPC calls InvokeActor until it answers right, granary exits, or
// timeout passes.
func waitForGRPC(ctx context.Context, client runtimev1.DaprClient, granary *benchproc.Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := invokeEcho(ctx, client, "warm", echoBody(0))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if granary.Exited() {
			return fmt.Errorf("granary exited (%v) while waiting for its gRPC API", granary.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the gRPC API did not serve actor type %s within %v: %w", actorType, timeout, err)
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

// activate calls every actor once over gRPC, workers at a time through the
// pool, each with its own body that must come back; it stops at the first
// failure.
func activate(ctx context.Context, pool []runtimev1.DaprClient, ids []string, workers int) error {
	return benchproc.Parallel(ctx, len(ids), workers, func(ctx context.Context, i int) error {
		if err := invokeEcho(ctx, pool[i%len(pool)], ids[i], echoBody(i)); err != nil {
			return fmt.Errorf("activating actor %s: %w", ids[i], err)
		}
		return nil
	})
}

// checkHTTP calls the actors over the HTTP route with the body of the loads
// and checks the answer is that body.
func checkHTTP(ctx context.Context, base string, ids []string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for _, id := range ids {
		url := base + "/v1.0/actors/" + actorType + "/" + id + "/method/" + actorMethod
		got, err := benchproc.Call(ctx, client, "POST", url, body, http.StatusOK)
		if err != nil {
			return fmt.Errorf("checking the HTTP route: %w", err)
		}
		if string(got) != body {
			return fmt.Errorf("checking the HTTP route: POST %s answered %q, want the request body %q", url, truncate(got, 200), body)
		}
	}
	return nil
}
