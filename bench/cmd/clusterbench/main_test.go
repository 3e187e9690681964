package main

import (
	"context"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchtest"

	"github.com/granaryhq/granary/bench/loadgen"
	"github.com/granaryhq/granary/internal/redisdb"
	"github.com/granaryhq/granary/placement/ring"
)

func fakeExecutable(t *testing.T) (dir, exe string) { return benchtest.FakeExecutable(t) }

func TestParseFlags(t *testing.T) {
	_, exe := fakeExecutable(t)
	o, err := parseFlags([]string{"--granary", exe, "--echoapp", exe}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.redisURL != "redis://127.0.0.1:6379/15" || o.devRedisURL != "redis://127.0.0.1:6379/14" || o.rounds != 2 || o.calls != 5000 || o.blocks != 10 || o.duration != 10*time.Second ||
		o.conns != 64 || o.actors != 1000 || o.failoverActors != 3 || o.jsonPath != "" || o.strict {
		t.Errorf("defaults %+v", o)
	}
	o, err = parseFlags([]string{"--granary", exe, "--echoapp", exe, "--redis", "redis://127.0.0.1:6379/4",
		"--calls", "100", "--duration", "2s", "--connections", "3", "--actors", "3", "--json", "out.json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.redisURL != "redis://127.0.0.1:6379/4" || o.calls != 100 || o.duration != 2*time.Second ||
		o.conns != 3 || o.actors != 3 || o.jsonPath != "out.json" {
		t.Errorf("parsed %+v", o)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	dir, exe := fakeExecutable(t)
	ok := []string{"--granary", exe, "--echoapp", exe}
	tests := [][]string{
		{"--granary", filepath.Join(dir, "missing"), "--echoapp", exe},
		{"--granary", exe, "--echoapp", dir},
		append(ok, "--calls", "0"),
		append(ok, "--blocks", "0"),
		append(ok, "--duration", "0s"),
		append(ok, "--warmup", "-1s"),
		append(ok, "--connections", "2"),
		append(ok, "--actors", "2"),
		append(ok, "--failover-actors", "0"),
		append(ok, "--redis", "redis://127.0.0.1:6379/0"),
		append(ok, "--redis", "http://127.0.0.1:6379/3"),
		append(ok, "--dev-redis", "redis://127.0.0.1:6379/0"),
		append(ok, "--dev-redis", "redis://127.0.0.1:6379/15"),
		append(ok, "--redis", "redis://localhost:6379/3", "--dev-redis", "redis://127.0.0.1:6379/3"),
		append(ok, "--rounds", "0"),
		append(ok, "extra"),
		{"--no-such-flag"},
	}
	for _, args := range tests {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != 2 {
			t.Errorf("run %v = %d, want 2", args, code)
		}
	}
}

func TestHelpSaysTheDatabaseIsFlushed(t *testing.T) {
	var help strings.Builder
	if code := run(context.Background(), []string{"--help"}, io.Discard, &help); code != 2 {
		t.Errorf("--help exits %d", code)
	}
	for _, want := range []string{"FLUSHED", "-redis", "redis://127.0.0.1:6379/15", "-dev-redis", "redis://127.0.0.1:6379/14", "-granary", "-echoapp"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, help.String())
		}
	}
}

func TestSameDatabase(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15", true},
		{"redis://localhost:6379/15", "redis://127.0.0.1:6379/15", true},
		{"redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/14", false},
		{"redis://127.0.0.1:6379/15", "redis://127.0.0.1:6380/15", false},
	}
	for _, tt := range tests {
		a, err := redisdb.ParseTarget(tt.a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := redisdb.ParseTarget(tt.b)
		if err != nil {
			t.Fatal(err)
		}
		if got := sameDatabase(a, b); got != tt.same {
			t.Errorf("sameDatabase(%s, %s) = %v", tt.a, tt.b, got)
		}
	}
}

func TestCheckSettled(t *testing.T) {
	yes, no := true, false
	view := func(version uint64, held int, members ...string) placementView {
		return placementView{TableVersion: version, Members: members, Lease: &yes,
			Shards: map[string]map[string]int{actorType: {"held": held}}}
	}
	members := []string{"s1", "s2"}
	tests := []struct {
		name   string
		views  map[string]placementView
		errSub string // empty: settled
	}{
		{"settled", map[string]placementView{"s1": view(3, 2000, "s1", "s2"), "s2": view(3, 2096, "s2", "s1")}, ""},
		{"one silo missing", map[string]placementView{"s1": view(3, 4096, "s1", "s2")}, "1 silos answered"},
		{"another silo instead", map[string]placementView{"s1": view(3, 2000, "s1", "s2"), "s3": view(3, 2096, "s1", "s2")}, "no view of s2"},
		{"no table", map[string]placementView{"s1": view(0, 0), "s2": view(3, 2096, "s1", "s2")}, "s1 has no table"},
		{"versions differ", map[string]placementView{"s1": view(3, 2000, "s1", "s2"), "s2": view(4, 2096, "s1", "s2")}, "s2 has table v4"},
		{"members short", map[string]placementView{"s1": view(2, 4096, "s1"), "s2": view(2, 0, "s1")}, "lists members [s1]"},
		{"no lease", map[string]placementView{"s1": view(3, 2000, "s1", "s2"),
			"s2": {TableVersion: 3, Members: members, Lease: &no}}, "s2 holds no lease"},
		{"lease unknown", map[string]placementView{"s1": view(3, 2000, "s1", "s2"),
			"s2": {TableVersion: 3, Members: members}}, "s2 holds no lease"},
		{"shards still moving", map[string]placementView{"s1": view(3, 2000, "s1", "s2"), "s2": view(3, 1000, "s1", "s2")}, "hold 3000 of the 4096"},
		{"other type only", map[string]placementView{"s1": {TableVersion: 3, Members: members, Lease: &yes,
			Shards: map[string]map[string]int{"Other": {"held": 4096}}}, "s2": view(3, 0, "s1", "s2")}, "hold 0 of the 4096"},
	}
	for _, tt := range tests {
		err := checkSettled(tt.views, members, actorType)
		switch {
		case tt.errSub == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.errSub != "" && (err == nil || !strings.Contains(err.Error(), tt.errSub)):
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.errSub)
		}
	}
}

func TestActorsOwnedBy(t *testing.T) {
	r := ring.New([]string{"s1", "s2", "s3"}, 0)
	for _, owner := range []string{"s1", "s3"} {
		ids, err := actorsOwnedBy(r, actorType, owner, "x-", 20)
		if err != nil || len(ids) != 20 {
			t.Fatalf("%s: %d ids, %v", owner, len(ids), err)
		}
		shards := map[ring.Shard]bool{}
		for _, id := range ids {
			if !strings.HasPrefix(id, "x-") {
				t.Errorf("id %q lacks the prefix", id)
			}
			if o, _ := r.OwnerOf(actorType, id); o != owner {
				t.Errorf("%s is owned by %s, want %s", id, o, owner)
			}
			s := ring.ShardOf(actorType, id)
			if shards[s] {
				t.Errorf("%s shares shard %d with another", id, s)
			}
			shards[s] = true
		}
		again, _ := actorsOwnedBy(r, actorType, owner, "x-", 20)
		if !slices.Equal(ids, again) {
			t.Errorf("%s: a second pick differs: %v vs %v", owner, ids, again)
		}
	}
	if ids, err := actorsOwnedBy(r, actorType, "s9", "x-", 1); err == nil || len(ids) != 0 {
		t.Errorf("a silo not on the ring: %v, %v", ids, err)
	}
}

func TestSplitRoundRobin(t *testing.T) {
	ids := loadgen.ActorIDs("a", 10)
	actors, conns := splitRoundRobin(ids, 64, 3)
	if !slices.Equal(conns, []int{22, 21, 21}) {
		t.Errorf("connections %v", conns)
	}
	want := [][]string{{"a0", "a3", "a6", "a9"}, {"a1", "a4", "a7"}, {"a2", "a5", "a8"}}
	for i := range want {
		if !slices.Equal(actors[i], want[i]) {
			t.Errorf("gateway %d: actors %v, want %v", i, actors[i], want[i])
		}
	}
	if _, conns := splitRoundRobin(ids, 3, 3); !slices.Equal(conns, []int{1, 1, 1}) {
		t.Errorf("3 connections: %v", conns)
	}
}

func resultOf(conns int, d time.Duration, latencies ...time.Duration) loadgen.Result {
	h := &loadgen.Histogram{}
	for _, l := range latencies {
		h.Record(l)
	}
	var r loadgen.Result
	r.Add(loadgen.Result{Latency: h, Duration: d, Connections: conns}) // fills the counts and quantiles
	return r
}

func TestMergeConcurrent(t *testing.T) {
	var fast, slow []time.Duration
	for range 900 {
		fast = append(fast, time.Millisecond)
	}
	for range 100 {
		slow = append(slow, 10*time.Millisecond)
	}
	a := resultOf(2, time.Second, fast...)
	a.Errors.IO, a.StatusCodes, a.FirstError = 1, map[int]int64{503: 2}, "first"
	b := resultOf(1, time.Second, slow...)
	b.Errors.Status, b.StatusCodes, b.FirstError = 2, map[int]int64{503: 1, 500: 1}, "second"
	m := mergeConcurrent([]loadgen.Result{a, b})
	if m.Requests != 1000 || m.RPS != 1000 || m.Connections != 3 || m.Duration != time.Second {
		t.Errorf("merged %d requests at %v rps over %d connections in %v; want 1000, 1000, 3, 1s", m.Requests, m.RPS, m.Connections, m.Duration)
	}
	near := func(got, want time.Duration) bool { return got > want*99/100 && got < want*101/100 }
	if !near(m.P50, time.Millisecond) || !near(m.P99, 10*time.Millisecond) || m.Max != 10*time.Millisecond {
		t.Errorf("p50 %v p99 %v max %v", m.P50, m.P99, m.Max)
	}
	if m.Errors.Total() != 3 || m.StatusCodes[503] != 3 || m.StatusCodes[500] != 1 || m.FirstError != "first" {
		t.Errorf("errors %+v codes %v first %q", m.Errors, m.StatusCodes, m.FirstError)
	}
	if e := mergeConcurrent(nil); e.Requests != 0 || e.RPS != 0 || e.P50 != 0 {
		t.Errorf("nothing merged: %+v", e)
	}
}

func TestBlockDuration(t *testing.T) {
	tests := []struct {
		calls int
		rate  float64
		want  time.Duration
	}{
		{500, 5000, 100 * time.Millisecond},
		{500, 2500, 200 * time.Millisecond},
		{1, 5000, 20 * time.Millisecond}, // at least 20 ms
		{500, 10, 10 * time.Second},      // at most 10 s
		{500, 0, time.Second},            // rate unknown
		{500, -3, time.Second},
	}
	for _, tt := range tests {
		if got := blockDuration(tt.calls, tt.rate); got != tt.want {
			t.Errorf("blockDuration(%d, %v) = %v, want %v", tt.calls, tt.rate, got, tt.want)
		}
	}
}

func TestSignedDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		80 * time.Microsecond: "80.0µs", -80 * time.Microsecond: "-80.0µs", 0: "0ns", 3500 * time.Millisecond: "3.50s",
	} {
		if got := signedDuration(d); got != want {
			t.Errorf("signedDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func goodReport() report {
	r := newReport(options{calls: 5000, warmup: 2 * time.Second, duration: 10 * time.Second, rounds: 2, conns: 64, actors: 1000})
	r.Redis, r.DevRedis, r.Took = "redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/14", "61s"
	r.Forwarding = forwardingReport{Via: "s1", Owner: "s2", Rounds: 10,
		LocalActors: []string{"local-1", "local-5"}, ForwardedActors: []string{"forwarded-0", "forwarded-2"},
		Local:       loadgen.Result{Connections: 1, Requests: 5000, RPS: 4000, P50: 200 * time.Microsecond, P99: 800 * time.Microsecond},
		Forwarded:   loadgen.Result{Connections: 1, Requests: 5000, RPS: 2500, P50: 280 * time.Microsecond, P99: time.Millisecond},
		ActiveOnVia: 2, ActiveOnOwner: 2}
	r.Throughput = throughputReport{
		Dev:           loadgen.Result{Connections: 64, Requests: 200000, RPS: 20000, P50: 3 * time.Millisecond},
		Cluster:       loadgen.Result{Connections: 64, Requests: 120000, RPS: 12000, P50: 5 * time.Millisecond},
		PerGateway:    []loadgen.Result{{Connections: 22, RPS: 4000}, {Connections: 21, RPS: 4000}, {Connections: 21, RPS: 4000}},
		Gateways:      []string{"s1", "s2", "s3"},
		GatewayActors: []int{334, 333, 333},
	}
	r.Failover = failoverReport{Victim: "s3", Limit: failoverLimit, Actors: []failoverActor{
		{ID: "failover-1", Shard: 17, Via: "s1", Served: true, Took: 3400 * time.Millisecond, Attempts: 1},
		{ID: "failover-4", Shard: 900, Via: "s2", Served: true, Took: 3600 * time.Millisecond, Attempts: 2},
		{ID: "failover-9", Shard: 3000, Via: "s1", Served: true, Took: 3500 * time.Millisecond, Attempts: 1},
	}}
	return r
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*report)
		failed []string // the targets expected to fail, by prefix; none when empty
	}{
		{"all met", func(*report) {}, nil},
		{"forwarding adds exactly the bound", func(r *report) { r.Forwarding.Forwarded.P50 = 300 * time.Microsecond }, nil},
		{"forwarding adds too much", func(r *report) { r.Forwarding.Forwarded.P50 = 301 * time.Microsecond }, []string{"(1) forwarding adds"}},
		{"forwarding faster than local", func(r *report) { r.Forwarding.Forwarded.P50 = 150 * time.Microsecond }, nil},
		{"no forwarded call answered", func(r *report) { r.Forwarding.Forwarded = loadgen.Result{} }, []string{"(1) forwarding adds"}},
		{"an actor active elsewhere", func(r *report) { r.Forwarding.ActiveOnOwner = 1 }, []string{"(1) actors active"}},
		{"failover at exactly the limit", func(r *report) { r.Failover.Actors[1].Took = failoverLimit }, nil},
		{"failover too slow", func(r *report) { r.Failover.Actors[2].Took = failoverLimit + time.Millisecond }, []string{"(3) killed silo's actors"}},
		{"an actor never served", func(r *report) {
			r.Failover.Actors[0].Served, r.Failover.Actors[0].Took = false, 0
		}, []string{"(3) killed silo's actors"}},
		{"failover not measured", func(r *report) { r.Failover.Actors = nil }, []string{"(3) killed silo's actors"}},
		{"errors in the cluster load", func(r *report) { r.Throughput.Cluster.Errors.IO = 3 }, []string{"no failed requests"}},
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
		ok := len(failed) == len(tt.failed) && r.Pass == (len(tt.failed) == 0)
		for i := range failed {
			ok = ok && strings.HasPrefix(failed[i], tt.failed[i])
		}
		if !ok {
			t.Errorf("%s: failed %v (pass %v), want %q", tt.name, failed, r.Pass, tt.failed)
		}
	}

	r := goodReport()
	r.evaluate()
	if r.Forwarding.AddedP50 != 80*time.Microsecond || r.Forwarding.AddedP99 != 200*time.Microsecond ||
		r.Throughput.Ratio != 0.6 || r.Failover.Max != 3600*time.Millisecond {
		t.Errorf("added %v %v, ratio %v, max %v", r.Forwarding.AddedP50, r.Forwarding.AddedP99, r.Throughput.Ratio, r.Failover.Max)
	}
	var out strings.Builder
	printReport(&out, r)
	for _, want := range []string{
		"(1) local s1→s1", "(1) forwarded s1→s2", "(2) granary dev", "(2) cluster, 3 gateways", "(2)   through s3",
		"1 placement node, silos on redis://127.0.0.1:6379/15, granary dev on redis://127.0.0.1:6379/14", "the run took 61s",
		"10s per load in 2 rounds, each after 2s warm-up", "added by forwarding at c=1: p50 80.0µs, p99 200µs", "cluster/dev rps: 60%",
		"failover-4", "3.60s", "max: 3.60s (faulty-host timeout 3.00s + 1s = 4.00s)",
		"PASS  (1) forwarding adds ≤ 100µs at p50", "PASS  (3) killed silo's actors served again ≤ 4.00s", "overall: PASS",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	r = goodReport()
	r.Failover.Actors[0].Served, r.Failover.Actors[0].LastError = false, "status 503"
	r.evaluate()
	out.Reset()
	printReport(&out, r)
	for _, want := range []string{"never", "failover-1: status 503", "1 of 3 actors not served again", "overall: FAIL"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report of a failed failover lacks %q:\n%s", want, out.String())
		}
	}
}
