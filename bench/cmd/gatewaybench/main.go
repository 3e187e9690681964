// Command gatewaybench measures actor calls through Granary's HTTP gateway
// against the same load sent straight to the app. It starts the echo app and
// `granary dev` in front of it on free ports, runs each load with
// bench/loadgen, reads the silo's memory after the heaviest load, prints a
// table with the targets met or missed, and stops both processes, also on
// Ctrl-C or failure. `make bench-gateway` builds the binaries and runs it:
//
//	gatewaybench --granary bin/granary --echoapp bin/echoapp [--duration 20s] [--json out.json]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

type options struct {
	granary, echoapp string
	duration, warmup time.Duration
	actors, conns    int
	rounds           int
	jsonPath         string
	strict           bool
	netHTTP          bool // also run load (a) with a net/http client
	stopGrace        time.Duration
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == proxyFlag {
		if err := runProxy(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "gatewaybench proxy:", err)
			os.Exit(1)
		}
		return
	}
	benchproc.Main(run)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	rep, err := bench(ctx, o, stdout)
	if err != nil {
		return benchproc.Failed(ctx, "gatewaybench", stderr, err)
	}
	return benchproc.Finish("gatewaybench", stdout, stderr, rep, func(w io.Writer) { printReport(w, rep) },
		o.jsonPath, o.strict, rep.Pass)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("gatewaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.granary, "granary", "bin/granary", "path of the granary binary")
	fs.StringVar(&o.echoapp, "echoapp", "bin/echoapp", "path of the echoapp binary (bench/echoapp)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured time of each load")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each load")
	fs.IntVar(&o.actors, "actors", 1000, "actors called round-robin in load (b)")
	fs.IntVar(&o.conns, "connections", 64, "connections in load (b)")
	fs.IntVar(&o.rounds, "rounds", 4, "rounds the measured time of each load is split into; the loads take turns, so a drift of the machine's speed affects gateway and direct alike")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results to this JSON file")
	fs.BoolVar(&o.netHTTP, "nethttp", true, "also run load (a) with a net/http client, beside the raw-connection one")
	fs.BoolVar(&o.strict, "strict", false, "exit with status 1 when a target is missed")
	fs.DurationVar(&o.stopGrace, "stop-timeout", 15*time.Second, "how long a process may take to exit after SIGTERM before it is killed")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q", fs.Arg(0))
		fmt.Fprintln(stderr, "gatewaybench:", err)
		return o, err
	}
	for _, bin := range []string{o.granary, o.echoapp} {
		if !benchproc.Executable(bin) {
			err := fmt.Errorf("%s is not an executable file (build it first; `make bench-gateway` does)", bin)
			fmt.Fprintln(stderr, "gatewaybench:", err)
			return o, err
		}
	}
	if o.duration <= 0 || o.warmup < 0 || o.actors <= 0 || o.conns <= 0 || o.rounds <= 0 {
		err := errors.New("--duration, --actors, --connections and --rounds must be positive and --warmup not negative")
		fmt.Fprintln(stderr, "gatewaybench:", err)
		return o, err
	}
	return o, nil
}

// scenario is one measured load.
type scenario struct {
	name   string // "(a) gateway", …
	load   string // "a" or "b"
	via    string // "gateway" or "direct"
	addr   string
	conns  int
	actors []string
	method string
	path   string
	client string // loadgen.ClientRaw or loadgen.ClientNetHTTP
}

// bench starts the processes, runs the four loads and stops everything.
func bench(ctx context.Context, o options, out io.Writer) (rep report, err error) {
	progress := func(format string, args ...any) { benchproc.Progress(out, format, args...) }
	dir, err := os.MkdirTemp("", "gatewaybench-")
	if err != nil {
		return rep, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	ports, err := benchproc.FreePorts(3)
	if err != nil {
		return rep, err
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		return rep, fmt.Errorf("data directory: %w", err)
	}
	appAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	gwAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
	proxyAddr := "127.0.0.1:" + strconv.Itoa(ports[2])

	var procs []*benchproc.Process // stopped in reverse order: granary first, then the app it calls
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			if err != nil && ctx.Err() == nil {
				fmt.Fprintf(out, "--- last lines of %s's log ---\n%s\n", p.Name, p.Tail(30))
			}
			if stopErr := p.Stop(o.stopGrace); stopErr != nil {
				fmt.Fprintln(out, "gatewaybench:", stopErr)
			}
		}
	}()
	startAndWait := func(name, addr, bin string, args []string, readyMethod, readyURL string, readyStatus int) (*benchproc.Process, error) {
		p, err := benchproc.Start(name, dir, bin, nil, args...)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		began := time.Now()
		if err := p.WaitForStatus(ctx, readyMethod, readyURL, readyStatus, 10*time.Second); err != nil {
			return nil, fmt.Errorf("%s not ready: %w", name, err)
		}
		progress("%s ready on %s (pid %d) after %v", name, addr, p.Pid(), time.Since(began).Round(time.Millisecond))
		return p, nil
	}
	if _, err = startAndWait("echoapp", appAddr, o.echoapp, []string{"--port", strconv.Itoa(ports[0])},
		"GET", "http://"+appAddr+"/healthz", 200); err != nil {
		return rep, err
	}
	granary, err := startAndWait("granary", gwAddr, o.granary, []string{"dev",
		"--http-port", strconv.Itoa(ports[1]), "--app-url", "http://" + appAddr,
		"--data-dir", dataDir, "--log-level", "warn"},
		"GET", "http://"+gwAddr+"/v1.0/healthz", 204)
	if err != nil {
		return rep, err
	}
	if err = granary.WaitForStatus(ctx, "POST", "http://"+gwAddr+"/v1.0/actors/Echo/warm/method/echo", 200, 10*time.Second); err != nil {
		return rep, fmt.Errorf("the gateway does not serve actor type Echo: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return rep, fmt.Errorf("finding this program for the reference proxy: %w", err)
	}
	if _, err = startAndWait("proxy", proxyAddr, self, []string{proxyFlag, proxyAddr + "=" + appAddr},
		"GET", "http://"+proxyAddr+"/healthz", 200); err != nil {
		return rep, err
	}

	many := loadgen.ActorIDs("actor-", o.actors)
	// Loads (a) and (b), each through the gateway and then direct; the
	// rounds repeat this order.
	scenarios := []scenario{
		{name: "(a) gateway", load: "a", via: "gateway", addr: gwAddr, conns: 1, actors: []string{"a"},
			method: "POST", path: "/v1.0/actors/Echo/{actor}/method/echo"},
		{name: "(a) direct", load: "a", via: "direct", addr: appAddr, conns: 1, actors: []string{"a"},
			method: "PUT", path: "/actors/Echo/{actor}/method/echo"},
		{name: "(a) bare proxy", load: "a", via: "proxy", addr: proxyAddr, conns: 1, actors: []string{"a"},
			method: "PUT", path: "/actors/Echo/{actor}/method/echo"},
	}
	if o.netHTTP {
		scenarios = append(scenarios,
			scenario{name: "(a) gateway, net/http client", load: "a-nethttp", via: "gateway", addr: gwAddr, conns: 1, actors: []string{"a"},
				method: "POST", path: "/v1.0/actors/Echo/{actor}/method/echo", client: loadgen.ClientNetHTTP},
			scenario{name: "(a) direct, net/http client", load: "a-nethttp", via: "direct", addr: appAddr, conns: 1, actors: []string{"a"},
				method: "PUT", path: "/actors/Echo/{actor}/method/echo", client: loadgen.ClientNetHTTP})
	}
	scenarios = append(scenarios, []scenario{
		{name: "(b) gateway", load: "b", via: "gateway", addr: gwAddr, conns: o.conns, actors: many,
			method: "POST", path: "/v1.0/actors/Echo/{actor}/method/echo"},
		{name: "(b) direct", load: "b", via: "direct", addr: appAddr, conns: o.conns, actors: many,
			method: "PUT", path: "/actors/Echo/{actor}/method/echo"},
		{name: "(b) bare proxy", load: "b", via: "proxy", addr: proxyAddr, conns: o.conns, actors: many,
			method: "PUT", path: "/actors/Echo/{actor}/method/echo"},
	}...)
	rep = report{Duration: o.duration.String(), Warmup: o.warmup.String(), Rounds: o.rounds, SiloRSSBytes: -1, SiloPeakRSSBytes: -1}
	results := make([]loadgen.Result, len(scenarios))
	slice := o.duration / time.Duration(o.rounds)
	for round := range o.rounds {
		for i, sc := range scenarios {
			progress("[round %d/%d] %s: %s %s, %d actor(s), %d connection(s), %v warm-up + %v",
				round+1, o.rounds, sc.name, sc.method, sc.path, len(sc.actors), sc.conns, o.warmup, slice)
			res, err := loadgen.Run(ctx, loadgen.Config{
				Addr: sc.addr, Connections: sc.conns, Warmup: o.warmup, Duration: slice,
				Request: loadgen.Request{Method: sc.method, Path: sc.path, Actors: sc.actors},
				Client:  sc.client,
			})
			if err != nil {
				return rep, err
			}
			progress("      %v", res)
			results[i].Add(res)
			if sc.name == "(b) gateway" && round == o.rounds-1 {
				if granary.Exited() {
					return rep, fmt.Errorf("granary exited during load (b): %v", granary.Err())
				}
				cur, peak, err := benchproc.RSS(granary.Pid())
				if err != nil {
					rep.RSSError = err.Error()
					progress("      silo memory: %v", err)
				} else {
					rep.SiloRSSBytes, rep.SiloPeakRSSBytes = cur, peak
					progress("      silo RSS %s (peak %s)", benchproc.MiB(cur), benchproc.MiB(peak))
				}
			}
		}
	}
	for i, sc := range scenarios {
		rep.Scenarios = append(rep.Scenarios, scenarioReport{
			Name: sc.name, Load: sc.load, Via: sc.via, Method: sc.method, Path: sc.path, Client: sc.client,
			Connections: sc.conns, Actors: len(sc.actors), Result: results[i],
		})
	}
	rep.evaluate()
	progress("stopping granary and echoapp")
	return rep, nil
}
