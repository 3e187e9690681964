package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchtest"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

func fakeExecutable(t *testing.T) (dir, exe string) { return benchtest.FakeExecutable(t) }

func TestParseFlags(t *testing.T) {
	dir, exe := fakeExecutable(t)
	o, err := parseFlags([]string{"--granary", exe, "--echoapp", exe}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != 20*time.Second || o.warmup != 2*time.Second || o.rounds != 4 || o.actors != 1000 ||
		o.clients != 64 || o.grpcConns != 4 || o.jsonPath != "" || o.strict || o.profileDir != "" {
		t.Errorf("defaults %+v", o)
	}
	o, err = parseFlags([]string{"--granary", exe, "--echoapp", exe, "--duration", "4s", "--warmup", "0s", "--rounds", "2",
		"--actors", "10", "--clients", "8", "--grpc-conns", "8", "--json", "out.json", "--strict", "--profile", dir}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != 4*time.Second || o.warmup != 0 || o.rounds != 2 || o.actors != 10 || o.clients != 8 ||
		o.grpcConns != 8 || o.jsonPath != "out.json" || !o.strict || o.profileDir != dir {
		t.Errorf("parsed %+v", o)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	dir, exe := fakeExecutable(t)
	tests := [][]string{
		{"--granary", filepath.Join(dir, "missing"), "--echoapp", exe},
		{"--granary", exe, "--echoapp", dir},
		{"--granary", exe, "--echoapp", exe, "--duration", "0s"},
		{"--granary", exe, "--echoapp", exe, "--warmup", "-1s"},
		{"--granary", exe, "--echoapp", exe, "--rounds", "0"},
		{"--granary", exe, "--echoapp", exe, "--duration", "1s", "--rounds", "20"},
		{"--granary", exe, "--echoapp", exe, "--actors", "0"},
		{"--granary", exe, "--echoapp", exe, "--clients", "0"},
		{"--granary", exe, "--echoapp", exe, "--grpc-conns", "0"},
		{"--granary", exe, "--echoapp", exe, "--clients", "4", "--grpc-conns", "8"},
		{"--granary", exe, "--echoapp", exe, "--profile", filepath.Join(dir, "missing")},
		{"--granary", exe, "--echoapp", exe, "--profile", dir, "--duration", "2s", "--rounds", "4"},
		{"--granary", exe, "--echoapp", exe, "extra"},
		{"--no-such-flag"},
	}
	for _, args := range tests {
		var stderr strings.Builder
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 {
			t.Errorf("run %v = %d, want 2", args, code)
		}
		if stderr.Len() == 0 {
			t.Errorf("run %v said nothing", args)
		}
	}
}

func TestScenarios(t *testing.T) {
	scs := scenarios(options{actors: 5, clients: 16, grpcConns: 4})
	want := []struct {
		name, load, proto      string
		clients, conns, actors int
	}{
		{"(a) gRPC", "a", protoGRPC, 1, 1, 1},
		{"(a) HTTP", "a", protoHTTP, 1, 1, 1},
		{"(b) gRPC", "b", protoGRPC, 16, 4, 5},
		{"(b) HTTP", "b", protoHTTP, 16, 16, 5},
	}
	if len(scs) != len(want) {
		t.Fatalf("%d scenarios", len(scs))
	}
	for i, w := range want {
		s := scs[i]
		if s.name != w.name || s.load != w.load || s.proto != w.proto || s.clients != w.clients || s.conns != w.conns || len(s.actors) != w.actors {
			t.Errorf("scenario %d: %+v, want %+v", i, s, w)
		}
	}
	if scs[0].actors[0] != singleActor || scs[2].actors[4] != "actor-4" {
		t.Errorf("actors %v %v", scs[0].actors, scs[2].actors)
	}
	// The two protocols of a load call the same actors.
	if strings.Join(scs[0].actors, ",") != strings.Join(scs[1].actors, ",") || strings.Join(scs[2].actors, ",") != strings.Join(scs[3].actors, ",") {
		t.Error("the protocols of a load call different actors")
	}
}

func TestRunRoundsTakesTurns(t *testing.T) {
	scs := scenarios(options{actors: 3, clients: 4, grpcConns: 2})
	var order []string
	runOne := func(sc scenario, round int) (loadgen.Result, cpuTimes, error) {
		order = append(order, sc.name)
		h := &loadgen.Histogram{}
		for range 10 {
			h.Record(time.Millisecond)
		}
		return loadgen.Result{Duration: time.Second, Latency: h, Requests: 10}, cpuTimes{Granary: time.Millisecond, App: 2, Client: 3}, nil
	}
	var lines []string
	progress := func(f string, a ...any) { lines = append(lines, f) }
	results, cpu, err := runRounds(scs, 3, progress, runOne)
	if err != nil {
		t.Fatal(err)
	}
	want := "(a) gRPC,(a) HTTP,(b) gRPC,(b) HTTP," + // round 1
		"(a) HTTP,(a) gRPC,(b) HTTP,(b) gRPC," + // round 2: the protocols swap places
		"(a) gRPC,(a) HTTP,(b) gRPC,(b) HTTP," // round 3
	if got := strings.Join(order, ",") + ","; got != want {
		t.Errorf("order\n%s\nwant\n%s", got, want)
	}
	for i, res := range results {
		if res.Requests != 30 || res.Duration != 3*time.Second || res.RPS != 10 || res.P50 < 990*time.Microsecond {
			t.Errorf("scenario %d folded to %+v", i, res)
		}
		if cpu[i] != (cpuTimes{Granary: 3 * time.Millisecond, App: 6, Client: 9}) {
			t.Errorf("scenario %d CPU %+v", i, cpu[i])
		}
	}
	if len(lines) != 24 {
		t.Errorf("%d progress lines, want 2 a load a round", len(lines))
	}

	boom := errors.New("boom")
	calls := 0
	_, _, err = runRounds(scs, 3, progress, func(sc scenario, round int) (loadgen.Result, cpuTimes, error) {
		calls++
		if sc.name == "(b) gRPC" {
			return loadgen.Result{}, cpuTimes{}, boom
		}
		return loadgen.Result{}, cpuTimes{}, nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "(b) gRPC") || calls != 3 {
		t.Errorf("a failing load: %v after %d calls", err, calls)
	}
}

func scenarioResult(load, proto string, rps float64, p99 time.Duration, failed int64) scenarioReport {
	name := "(" + load + ") HTTP"
	if proto == protoGRPC {
		name = "(" + load + ") gRPC"
	}
	return scenarioReport{Name: name, Load: load, Protocol: proto, Clients: 64, Connections: 4, Actors: 1000, Result: loadgen.Result{
		Duration: 20 * time.Second, Requests: int64(rps) * 20, RPS: rps, P50: p99 / 3, P99: p99, Errors: loadgen.Errors{IO: failed},
	}, CPU: cpuTimes{Granary: 10 * time.Second, App: 5 * time.Second, Client: 5 * time.Second}}
}

func goodReport() report {
	return report{Duration: "20s", Warmup: "2s", Rounds: 4, Round: "5s", Body: body, Actors: 1000, Clients: 64, GRPCConns: 4,
		Scenarios: []scenarioReport{
			scenarioResult("a", protoGRPC, 3000, time.Millisecond, 0),
			scenarioResult("a", protoHTTP, 4000, time.Millisecond, 0),
			scenarioResult("b", protoGRPC, 16000, 8*time.Millisecond, 0),
			scenarioResult("b", protoHTTP, 15000, 9*time.Millisecond, 0),
		}}
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*report)
		failed []string // the targets expected to fail, by prefix
	}{
		{"all met", func(*report) {}, nil},
		{"gRPC slower", func(r *report) { r.Scenarios[2].Result.RPS = 14999 }, []string{"(b) gRPC rps"}},
		{"gRPC exactly as fast", func(r *report) { r.Scenarios[2].Result.RPS = 15000 }, nil},
		{"gRPC tail", func(r *report) { r.Scenarios[2].Result.P99 = 10*time.Millisecond + 1 }, []string{"(b) gRPC p99"}},
		{"gRPC tail at the bound", func(r *report) { r.Scenarios[2].Result.P99 = 10 * time.Millisecond }, nil},
		{"gRPC answered nothing", func(r *report) { r.Scenarios[2].Result = loadgen.Result{} }, []string{"(b) gRPC rps", "(b) gRPC p99"}},
		{"HTTP answered nothing", func(r *report) { r.Scenarios[3].Result = loadgen.Result{} }, []string{"(b) gRPC rps"}},
		{"a failed HTTP call", func(r *report) { r.Scenarios[1].Result.Errors.Status = 1 }, []string{"no failed calls"}},
		{"a failed gRPC call in a warm-up", func(r *report) { r.Scenarios[0].Result.WarmupErrors = 2 }, []string{"no failed calls"}},
		{"a wrong gRPC answer", func(r *report) { r.Scenarios[2].Result.Errors.Protocol = 1 }, []string{"no failed calls"}},
	}
	for _, tt := range tests {
		r := goodReport()
		tt.change(&r)
		r.evaluate()
		var failed []string
		for _, tg := range r.Targets {
			if !tg.Pass {
				failed = append(failed, tg.Name)
			}
		}
		ok := len(failed) == len(tt.failed) && r.Pass == (len(tt.failed) == 0) && len(r.Targets) == 3
		for i := range failed {
			ok = ok && strings.HasPrefix(failed[i], tt.failed[i])
		}
		if !ok {
			t.Errorf("%s: failed %v (pass %v), want %q", tt.name, failed, r.Pass, tt.failed)
		}
	}
	r := goodReport()
	r.Scenarios[0].Result.WarmupErrors, r.Scenarios[3].Result.Errors.IO = 1, 2
	r.evaluate()
	if r.RatioA != 0.75 || r.RatioB != 16000.0/15000 || r.Failed != 3 {
		t.Errorf("ratios %v %v, failed %d", r.RatioA, r.RatioB, r.Failed)
	}
}

func TestPrintReport(t *testing.T) {
	r := goodReport()
	r.evaluate()
	var out strings.Builder
	printReport(&out, r)
	for _, want := range []string{
		"InvokeActor vs POST /v1.0/actors/Echo/{actor}/method/echo, body {\"n\":1}",
		"20s per load in 4 rounds of 5s, each after 2s warm-up",
		"(b) 64 goroutines sharing 4 grpc.ClientConn round-robin",
		"(a) gRPC", "(b) HTTP", "16000", "8.00ms",
		"167µs", // granary CPU per call of (a) gRPC: 10 s over 60000 calls
		"1.00",  // cores busy: 20 s of CPU in 20 s
		"gRPC/HTTP rps: (a) 75%  (b) 107%",
		"PASS  (b) gRPC rps ≥ (b) HTTP rps    16000 vs 15000 (107%)",
		"PASS  (b) gRPC p99 ≤ 10.0ms", "PASS  no failed calls                0", "overall: PASS",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	r = goodReport()
	r.CPUError = "reading CPU time: no /proc"
	r.Scenarios[2].Result.Errors = loadgen.Errors{Status: 2, IO: 1, Protocol: 1}
	r.Scenarios[2].Result.StatusCodes = map[int]int64{int(codes.NotFound): 2, int(codes.Unavailable): 1, int(codes.OK): 1}
	r.Scenarios[2].Result.FirstError = "call 7: rpc error"
	r.Scenarios[3].Result.Errors.Status = 1
	r.Scenarios[3].Result.StatusCodes = map[int]int64{500: 1}
	r.evaluate()
	out.Reset()
	printReport(&out, r)
	for _, want := range []string{
		"CPU time per call: unknown (reading CPU time: no /proc)",
		"(b) gRPC failed calls: status 2, io 1, protocol 1, in warm-ups 0; OK with a wrong answer ×1, NotFound ×2, Unavailable ×1; first: call 7: rpc error",
		"(b) HTTP failed calls: status 1, io 0, protocol 0, in warm-ups 0; 500 ×1",
		"FAIL  no failed calls                5", "overall: FAIL",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// fakeDapr implements InvokeActor as Granary's gRPC API in front of the
// echo app answers it, with a few actor IDs that misbehave.
type fakeDapr struct {
	runtimev1.UnimplementedDaprServer
	mu        sync.Mutex
	calls     map[string]int  // by actor ID
	peers     map[string]bool // client addresses
	deadlines int             // calls that came with a deadline
}

func (f *fakeDapr) InvokeActor(ctx context.Context, in *runtimev1.InvokeActorRequest) (*runtimev1.InvokeActorResponse, error) {
	f.mu.Lock()
	f.calls[in.GetActorId()]++
	if p, ok := peer.FromContext(ctx); ok {
		f.peers[p.Addr.String()] = true
	}
	if _, ok := ctx.Deadline(); ok {
		f.deadlines++
	}
	f.mu.Unlock()
	if in.GetActorType() != actorType || in.GetMethod() != actorMethod {
		return nil, status.Errorf(codes.Unimplemented, "no method %s on actor type %s", in.GetMethod(), in.GetActorType())
	}
	switch in.GetActorId() {
	case "missing":
		return nil, status.Error(codes.NotFound, "no such actor")
	case "wrong":
		return &runtimev1.InvokeActorResponse{Data: []byte(`{"ok":true}`)}, nil
	case "hang":
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &runtimev1.InvokeActorResponse{Data: in.GetData()}, nil
}

func (f *fakeDapr) snapshot() (calls map[string]int, peers, deadlines int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	calls = map[string]int{}
	for k, v := range f.calls {
		calls[k] = v
	}
	return calls, len(f.peers), f.deadlines
}

// startFake serves a fakeDapr on a free port and returns a pool of n
// clients dialled to it.
func startFake(t *testing.T, n int) (*fakeDapr, []runtimev1.DaprClient) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDapr{calls: map[string]int{}, peers: map[string]bool{}}
	srv := grpc.NewServer()
	runtimev1.RegisterDaprServer(srv, f)
	go srv.Serve(ln)
	pool, closePool, err := dialPool(ln.Addr().String(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closePool(); srv.Stop() })
	return f, pool
}

func TestGRPCLoad(t *testing.T) {
	f, pool := startFake(t, 2)
	actors := loadgen.ActorIDs(actorPrefix, 10)
	began := time.Now()
	res, err := runGRPC(context.Background(), grpcLoad{
		Clients: pool, Concurrency: 4, Warmup: 100 * time.Millisecond, Duration: 300 * time.Millisecond,
		ActorType: actorType, Method: actorMethod, Actors: actors, Body: []byte(body),
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 400*time.Millisecond || took > 2*time.Second {
		t.Errorf("the run took %v, want about 400ms", took)
	}
	if res.Requests < 10 || res.Errors.Total() != 0 || res.WarmupErrors != 0 || res.FirstError != "" || res.StatusCodes != nil {
		t.Fatalf("result %v (%+v)", res, res)
	}
	if res.Connections != 2 || res.Duration != 300*time.Millisecond || res.RPS != float64(res.Requests)/0.3 ||
		res.Latency.Count() != uint64(res.Requests) || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
		t.Errorf("result %+v", res)
	}
	calls, peers, deadlines := f.snapshot()
	total := 0
	for _, id := range actors {
		total += calls[id]
		if calls[id] == 0 {
			t.Errorf("actor %s never called: %v", id, calls)
		}
	}
	// Round-robin: every actor gets its share, give or take the calls the
	// end cut short before they reached the server (at most one a goroutine).
	for _, id := range actors {
		if c := calls[id]; c < total/len(actors)-4 || c > total/len(actors)+5 {
			t.Errorf("actor %s called %d times of %d: not round-robin (%v)", id, c, total, calls)
		}
	}
	if total < int(res.Requests) {
		t.Errorf("the server saw %d calls, the load counted %d answered", total, res.Requests)
	}
	if peers != 2 {
		t.Errorf("the calls came over %d connections, want the pool's 2", peers)
	}
	if deadlines != 0 {
		t.Errorf("%d calls carried a deadline (grpc-timeout)", deadlines)
	}
}

func TestGRPCLoadCountsFailures(t *testing.T) {
	_, pool := startFake(t, 1)
	res, err := runGRPC(context.Background(), grpcLoad{
		Clients: pool, Concurrency: 2, Duration: 200 * time.Millisecond,
		ActorType: actorType, Method: actorMethod, Actors: []string{"actor-0", "missing", "wrong"}, Body: []byte(body),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := res.Errors
	if res.Requests == 0 || e.Status == 0 || e.Protocol == 0 || e.IO != 0 {
		t.Fatalf("result %v", res)
	}
	if res.StatusCodes[int(codes.NotFound)] != e.Status || res.StatusCodes[int(codes.OK)] != e.Protocol || len(res.StatusCodes) != 2 {
		t.Errorf("codes %v for errors %+v", res.StatusCodes, e)
	}
	if !strings.Contains(res.FirstError, "NotFound") && !strings.Contains(res.FirstError, "want the request body") {
		t.Errorf("first error %q", res.FirstError)
	}

	// Failures in the warm-up are counted apart.
	res, err = runGRPC(context.Background(), grpcLoad{
		Clients: pool, Concurrency: 1, Warmup: 150 * time.Millisecond, Duration: 50 * time.Millisecond,
		ActorType: actorType, Method: "other", Actors: []string{"actor-0"}, Body: []byte(body),
	})
	if err != nil || res.WarmupErrors == 0 || res.Errors.Status == 0 || res.Requests != 0 ||
		res.StatusCodes[int(codes.Unimplemented)] != res.Errors.Status {
		t.Errorf("a method the server lacks: %v (%+v), %v", res, res, err)
	}
}

func TestGRPCLoadWithoutServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	pool, closePool, err := dialPool(addr, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer closePool()
	res, err := runGRPC(context.Background(), grpcLoad{
		Clients: pool, Concurrency: 2, Duration: 200 * time.Millisecond,
		ActorType: actorType, Method: actorMethod, Actors: []string{"a"}, Body: []byte(body),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Unavailable counts as an I/O failure, and the goroutines pause after
	// each (20ms), so there are about 2 × 200ms / 20ms of them.
	if res.Requests != 0 || res.Errors.IO == 0 || res.Errors.IO > 40 || res.Errors.Status != 0 ||
		res.StatusCodes[int(codes.Unavailable)] != res.Errors.IO {
		t.Errorf("against no server: %v (%+v)", res, res)
	}
}

func TestGRPCLoadStuckCall(t *testing.T) {
	f, pool := startFake(t, 1)
	began := time.Now()
	res, err := runGRPC(context.Background(), grpcLoad{
		Clients: pool, Concurrency: 1, Duration: 200 * time.Millisecond, StuckAfter: 50 * time.Millisecond,
		ActorType: actorType, Method: actorMethod, Actors: []string{"hang"}, Body: []byte(body),
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("a call that never returns held the run for %v", took)
	}
	if res.Errors.IO != 1 || res.Requests != 0 || res.StatusCodes[int(codes.DeadlineExceeded)] != 1 ||
		!strings.Contains(res.FirstError, "no answer after") {
		t.Errorf("a stuck call: %v (%+v)", res, res)
	}
	if _, _, deadlines := f.snapshot(); deadlines != 0 {
		t.Errorf("the call carried a deadline")
	}

	// A call the end cuts short before StuckAfter is dropped, as loadgen
	// drops a request the end cuts short.
	res, err = runGRPC(context.Background(), grpcLoad{
		Clients: pool, Concurrency: 1, Duration: 100 * time.Millisecond, StuckAfter: time.Second,
		ActorType: actorType, Method: actorMethod, Actors: []string{"hang"}, Body: []byte(body),
	})
	if err != nil || res.Errors.Total() != 0 || res.Requests != 0 {
		t.Errorf("a call cut short: %v, %v", res, err)
	}
}

func TestGRPCLoadInterruptedAndInvalid(t *testing.T) {
	_, pool := startFake(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	ok := grpcLoad{Clients: pool, Concurrency: 1, Duration: 5 * time.Second, ActorType: actorType, Method: actorMethod,
		Actors: []string{"a"}, Body: []byte(body)}
	began := time.Now()
	if _, err := runGRPC(ctx, ok); !errors.Is(err, context.Canceled) || time.Since(began) > 2*time.Second {
		t.Errorf("interrupted run: %v after %v", err, time.Since(began))
	}
	for name, change := range map[string]func(*grpcLoad){
		"no clients":     func(l *grpcLoad) { l.Clients = nil },
		"no concurrency": func(l *grpcLoad) { l.Concurrency = 0 },
		"no duration":    func(l *grpcLoad) { l.Duration = 0 },
		"negative warm":  func(l *grpcLoad) { l.Warmup = -time.Second },
		"no actors":      func(l *grpcLoad) { l.Actors = nil },
		"no method":      func(l *grpcLoad) { l.Method = "" },
	} {
		l := ok
		change(&l)
		if _, err := runGRPC(context.Background(), l); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestActivateAndWait(t *testing.T) {
	f, pool := startFake(t, 2)
	ids := loadgen.ActorIDs(actorPrefix, 50)
	if err := activate(context.Background(), pool, ids, 4); err != nil {
		t.Fatal(err)
	}
	calls, peers, _ := f.snapshot()
	for _, id := range ids {
		if calls[id] != 1 {
			t.Fatalf("actor %s called %d times: %v", id, calls[id], calls)
		}
	}
	if peers != 2 {
		t.Errorf("activation used %d connections, want 2", peers)
	}
	err := activate(context.Background(), pool, []string{"actor-1", "wrong"}, 1)
	if err == nil || !strings.Contains(err.Error(), "activating actor wrong") || !strings.Contains(err.Error(), `answered "{\"ok\":true}", want the request body "{\"n\":1}"`) {
		t.Errorf("a wrong answer: %v", err)
	}
	if err := activate(context.Background(), pool, []string{"missing"}, 1); status.Code(err) != codes.NotFound {
		t.Errorf("an error status: %v", err)
	}

	// waitForGRPC watches granary; a process that runs will do.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("SKIPPED: no sleep command on PATH to stand in for granary:", err)
	}
	p, err := benchproc.Start("sleeper", t.TempDir(), sleep, nil, "30")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	if err := waitForGRPC(context.Background(), pool[0], p, time.Second); err != nil {
		t.Errorf("waiting for a serving fake: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	none, closeNone, _ := dialPool(addr, 1)
	defer closeNone()
	if err := waitForGRPC(context.Background(), none[0], p, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not serve actor type Echo within 200ms") {
		t.Errorf("waiting for nothing: %v", err)
	}
}

func TestCheckHTTP(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(r.URL.Path, "/wrong/") {
			b = []byte(`{"ok":true}`)
		}
		w.Write(b)
	}))
	defer echo.Close()
	if err := checkHTTP(context.Background(), echo.URL, []string{"a", "actor-0"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(paths, ",") != "POST /v1.0/actors/Echo/a/method/echo,POST /v1.0/actors/Echo/actor-0/method/echo" {
		t.Errorf("requests %v", paths)
	}
	if err := checkHTTP(context.Background(), echo.URL, []string{"wrong"}); err == nil || !strings.Contains(err.Error(), "want the request body") {
		t.Errorf("a wrong answer: %v", err)
	}
}

// spin burns d of this process's CPU time, however long that takes on a
// loaded machine (a spin for d of wall time gets less CPU than d there).
func spin(d time.Duration) {
	var ru syscall.Rusage
	cpu := func() time.Duration {
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for end := cpu() + d; cpu() < end; {
	}
}

func TestCPUMeter(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("NO /proc ON THIS SYSTEM: CPU time cannot be read here")
	}
	m := &cpuMeter{granaryPid: os.Getpid(), appPid: os.Getpid()}
	res, cpu, err := m.during(20*time.Millisecond, func() (loadgen.Result, error) {
		spin(20 * time.Millisecond) // the warm-up: not counted
		spin(100 * time.Millisecond)
		return loadgen.Result{Requests: 7}, nil
	})
	if err != nil || m.err != nil || res.Requests != 7 {
		t.Fatalf("during: %v, %v, %v", res, err, m.err)
	}
	// All three pids are this process, which spun about 100ms after the
	// warm-up. The three are read one after another, so a clock tick of the
	// kernel's accounting (10ms) may fall between two reads.
	near := func(a, b time.Duration) bool { return a-b <= 20*time.Millisecond && b-a <= 20*time.Millisecond }
	if cpu.Client < 50*time.Millisecond || cpu.Client > 300*time.Millisecond || !near(cpu.Granary, cpu.Client) || !near(cpu.App, cpu.Client) {
		t.Errorf("CPU %+v", cpu)
	}
	boom := errors.New("boom")
	if _, _, err := m.during(0, func() (loadgen.Result, error) { return loadgen.Result{}, boom }); !errors.Is(err, boom) {
		t.Errorf("a failing load: %v", err)
	}
	if _, cpu, err := m.during(time.Second, func() (loadgen.Result, error) { return loadgen.Result{}, nil }); err != nil ||
		cpu != (cpuTimes{}) || m.err == nil || !strings.Contains(m.err.Error(), "before its warm-up") {
		t.Errorf("a load shorter than its warm-up: %v, %+v, %v", err, cpu, m.err)
	}
	bad := &cpuMeter{granaryPid: -1, appPid: os.Getpid()}
	if _, _, err := bad.during(0, func() (loadgen.Result, error) { time.Sleep(20 * time.Millisecond); return loadgen.Result{}, nil }); err != nil ||
		bad.err == nil || !strings.Contains(bad.err.Error(), "granary") {
		t.Errorf("an unreadable process: %v, %v", err, bad.err)
	}
}

func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	debug := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/pprof/profile" || r.URL.Query().Get("seconds") != "1" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "profile bytes")
	}))
	defer debug.Close()
	p := profiler{dir: dir, debugAddr: strings.TrimPrefix(debug.URL, "http://")}
	sc := scenario{load: "b", proto: protoGRPC}
	paths, err := p.start(context.Background(), sc, 10*time.Millisecond, 1)()
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || filepath.Base(paths[0]) != "granary-b-grpc.pprof" || filepath.Base(paths[1]) != "client-b-grpc.pprof" {
		t.Fatalf("paths %v", paths)
	}
	if b, err := os.ReadFile(paths[0]); err != nil || string(b) != "profile bytes" {
		t.Errorf("granary profile %q, %v", b, err)
	}
	if st, err := os.Stat(paths[1]); err != nil || st.Size() == 0 {
		t.Errorf("client profile: %v", err)
	}
	if err := p.fetch(context.Background(), filepath.Join(dir, "x"), 2); err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("a refused profile: %v", err)
	}
}
