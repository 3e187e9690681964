package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders"
)

func TestParseScenarios(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"all", scenarioOrder},
		{"fire", []string{"fire"}},
		{"http, register,fire", []string{"register", "fire", "http"}},
		{"lateness,all", scenarioOrder},
		{"memory,memory", []string{"memory"}},
	}
	for _, tt := range tests {
		got, err := parseScenarios(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("parseScenarios(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "fires", "register,", "ALL"} {
		if got, err := parseScenarios(bad); err == nil {
			t.Errorf("parseScenarios(%q) = %v; want an error", bad, got)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.scenarios, scenarioOrder) || o.registerN != 100_000 || o.fireActors*o.firePerActor != 100_000 ||
		o.latenessN != 100_000 || o.latenessPeriod != 10*time.Second || o.latenessDuration != 30*time.Second ||
		o.memoryN != 1_000_000 || o.redisURL != "redis://127.0.0.1:6379/12" || o.store != "" || o.concurrency != 256 ||
		o.httpClient != httpClientRaw {
		t.Errorf("defaults: %+v", o)
	}
	o, err = parseFlags([]string{"--scenario", "fire", "--fire-actors", "10", "--fire-per-actor", "3",
		"--fire-lead", "2s", "--store", "redis://127.0.0.1:6379/7", "--http-client", "nethttp"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.scenarios, []string{"fire"}) || o.fireActors != 10 || o.firePerActor != 3 ||
		o.fireLead != 2*time.Second || o.store != "redis://127.0.0.1:6379/7" || o.httpClient != httpClientNetHTTP {
		t.Errorf("parsed: %+v", o)
	}
	for _, args := range [][]string{
		{"--scenario", "nope"},
		{"--register-n", "0"},
		{"--concurrency", "-1"},
		{"--lateness-period", "0s"},
		{"--fire-lead", "-1s"},
		{"--http-client", "curl"},
		{"--store", "redis://127.0.0.1:6379/0"},
		{"--store", "bolt"},
		{"--redis", "redis://127.0.0.1:6379"}, // database 0
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	// The redis URL matters only when the redis scenario runs.
	if _, err := parseFlags([]string{"--scenario", "fire", "--redis", "redis://127.0.0.1:6379/0"}, io.Discard); err != nil {
		t.Errorf("--redis checked without the redis scenario: %v", err)
	}
}

func TestMetricTargets(t *testing.T) {
	tests := []struct {
		m    metric
		want string
	}{
		{rateMetric("r", 10_000).atLeast(10_000, "10000/s"), "PASS"},
		{rateMetric("r", 9_999.9).atLeast(10_000, "10000/s"), "FAIL"},
		{durationMetric("d", 50*time.Millisecond).atMost(50, "50ms"), "PASS"},
		{durationMetric("d", 50*time.Millisecond+time.Microsecond).atMost(50, "50ms"), "FAIL"},
		{mibMetric("m", 1<<30).atMost(1024, "1 GiB"), "PASS"},
		{mibMetric("m", 1<<30+1<<20).atMost(1024, "1 GiB"), "FAIL"},
	}
	for _, tt := range tests {
		if tt.m.Verdict != tt.want {
			t.Errorf("%+v: verdict %s, want %s", tt.m, tt.m.Verdict, tt.want)
		}
	}
	if m := durationMetric("d", 1500*time.Microsecond); m.Value != 1.5 || m.Unit != "ms" || m.Shown != "1.50ms" || m.Verdict != "" {
		t.Errorf("duration metric %+v", m)
	}

	var r result
	r.add(rateMetric("a", 1), countMetric("b", 2).atLeast(2, "2"))
	r.evaluate()
	if !r.Pass {
		t.Error("a result without failures failed")
	}
	r.add(countMetric("c", 1).atLeast(2, "2"))
	r.evaluate()
	if r.Pass {
		t.Error("a result with a missed target passed")
	}
	var e result
	e.fail(errors.New("first"))
	e.failf("second %d", 2)
	e.evaluate()
	if e.Pass || e.Error != "first; second 2" {
		t.Errorf("result with errors: pass %v, error %q", e.Pass, e.Error)
	}

	var out bytes.Buffer
	printReport(&out, report{Results: []result{r, e}})
	for _, want := range []string{"PASS", "FAIL", "ERROR: first; second 2", "overall: FAIL"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestFireLog(t *testing.T) {
	log := strings.Join([]string{
		`time=2030-01-02T03:04:05.100Z level=INFO msg="counter-go listening" addr=127.0.0.1:3000`,
		`time=2030-01-02T03:04:06.250Z level=INFO msg="reminder fired" actor=c-1 name=r0 data=null`,
		`time=2030-01-02T03:04:06.200Z level=INFO msg="reminder fired" actor=c-2 name=r0 data=null`,
		`time=2030-01-02T03:04:07.000Z level=INFO msg="timer fired" actor=c-1 name=t data=null`,
		`time=2030-01-02T03:04:06.900+01:00 level=INFO msg="reminder fired" actor=c-3 name=r1 data=null`,
		`garbage msg="reminder fired"`,
		`time=2030-01-02T03:04:08.000Z level=INFO msg="reminder fired" actor=c-4 name=r1 data=null`, // unfinished
	}, "\n")
	// Fed in pieces that cut lines anywhere, the log counts the same.
	for _, size := range []int{1, 7, 64, len(log)} {
		var l fireLog
		for rest := log; rest != ""; {
			n := min(size, len(rest))
			l.feed([]byte(rest[:n]))
			rest = rest[n:]
		}
		want := time.Date(2030, 1, 2, 3, 4, 6, 250e6, time.UTC)
		if l.count != 4 || !l.last.Equal(want) {
			t.Errorf("pieces of %d: count %d, last %v; want 4, %v", size, l.count, l.last, want)
		}
		l.feed([]byte("\n"))
		if l.count != 5 || !l.last.Equal(want.Add(1750*time.Millisecond)) {
			t.Errorf("pieces of %d, finished: count %d, last %v", size, l.count, l.last)
		}
	}
	var l fireLog
	if _, err := l.readFrom(strings.NewReader(log + "\n")); err != nil || l.count != 5 {
		t.Errorf("readFrom: count %d, %v", l.count, err)
	}
}

func TestExpectedFires(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(s float64) time.Time { return base.Add(time.Duration(s * float64(time.Second))) }
	// Four reminders of period 10s, first due at 0, 2.5, 5 and 7.5 s.
	tests := []struct {
		from, to float64
		want     int64
	}{
		{5, 25, 8},    // 10,20 · 12.5,22.5 · 5,15 · 7.5,17.5 (25 is out)
		{0, 5, 2},     // 0 · 2.5
		{-10, 0.5, 1}, // 0
		{-10, 0, 0},
		{7.5, 7.5, 0},
		{30, 40, 4},
	}
	for _, tt := range tests {
		if got := expectedFires(base, 10*time.Second, 4, at(tt.from), at(tt.to)); got != tt.want {
			t.Errorf("window [%v, %v): %d fires, want %d", tt.from, tt.to, got, tt.want)
		}
	}
	// Against counting every fire one by one.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		n := 1 + rng.IntN(40)
		period := time.Duration(1+rng.IntN(5000)) * time.Millisecond
		from := base.Add(time.Duration(rng.IntN(20000)-5000) * time.Millisecond)
		to := from.Add(time.Duration(rng.IntN(20000)) * time.Millisecond)
		var want int64
		for i := range n {
			for due := phase(base, period, n, i); due.Before(to); due = due.Add(period) {
				if !due.Before(from) {
					want++
				}
			}
		}
		if got := expectedFires(base, period, n, from, to); got != want {
			t.Errorf("n %d period %v window [%v, %v): %d, want %d", n, period, from.Sub(base), to.Sub(base), got, want)
		}
	}
}

func TestAutoLead(t *testing.T) {
	if got := autoLead(10_000, 5000); got != 7*time.Second {
		t.Errorf("autoLead(10000, 5000/s) = %v, want 7s", got)
	}
	b := &bench{}
	if got := b.lead(0, 10_000, 5000); got != 7*time.Second {
		t.Errorf("lead without a measured rate = %v", got)
	}
	b.regRate = 20_000
	if got := b.lead(0, 10_000, 5000); got != 4*time.Second {
		t.Errorf("lead with a measured rate of 20000/s = %v, want 4s", got)
	}
	if got := b.lead(time.Second, 10_000, 5000); got != time.Second {
		t.Errorf("given lead = %v", got)
	}
}

func TestCollector(t *testing.T) {
	base := time.Unix(5000, 0)
	fire := func(dueMs, lateMs int, err error) reminders.Fire {
		due := base.Add(time.Duration(dueMs) * time.Millisecond)
		started := due.Add(time.Duration(lateMs) * time.Millisecond)
		return reminders.Fire{Due: due, Started: started, Finished: started.Add(time.Millisecond), Err: err}
	}

	c := newCollector(3)
	c.observe(fire(0, 5, nil))
	c.observe(fire(0, 1, errors.New("boom")))
	c.observe(fire(10, 20, nil))
	select {
	case <-c.done:
		t.Fatal("done after 2 of 3 fires")
	default:
	}
	c.observe(fire(5, 1, nil))
	select {
	case <-c.done:
	default:
		t.Fatal("not done after 3 of 3 fires")
	}
	if c.fired.Load() != 3 || c.failed.Load() != 1 || !strings.Contains(c.firstError(), "boom") {
		t.Errorf("fired %d failed %d first %q", c.fired.Load(), c.failed.Load(), c.firstError())
	}
	if want := base.Add(31 * time.Millisecond).UnixNano(); c.lastFinished.Load() != want {
		t.Errorf("last finished %v", time.Unix(0, c.lastFinished.Load()).Sub(base))
	}
	if h := c.lateness.merged(); h.Count() != 3 || h.Max() != 20*time.Millisecond || h.Min() != time.Millisecond {
		t.Errorf("lateness: count %d min %v max %v", h.Count(), h.Min(), h.Max())
	}

	// A window: only fires due in [100ms, 200ms) count; past closes at the
	// first fire due at 200ms or later.
	w := newCollector(0)
	w.setWindow(base.Add(100*time.Millisecond), base.Add(200*time.Millisecond))
	w.observe(fire(99, 50, nil))
	w.observe(fire(100, 3, nil))
	w.observe(fire(199, 4, nil))
	select {
	case <-w.past:
		t.Fatal("past closed before a fire due after the window")
	default:
	}
	w.observe(fire(200, 1, nil))
	w.observe(fire(250, 1, nil)) // a second close must not panic
	select {
	case <-w.past:
	default:
		t.Fatal("past not closed")
	}
	if h := w.lateness.merged(); w.inWindow.Load() != 2 || h.Count() != 2 || h.Max() != 4*time.Millisecond {
		t.Errorf("window: in %d, count %d, max %v", w.inWindow.Load(), h.Count(), h.Max())
	}
}

func TestCollectorConcurrent(t *testing.T) {
	const workers, each = 8, 500
	c := newCollector(workers * each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				due := time.Unix(0, int64(w*each+i)*int64(time.Millisecond))
				c.observe(reminders.Fire{Due: due, Started: due.Add(time.Millisecond), Finished: due.Add(2 * time.Millisecond)})
			}
		})
	}
	wg.Wait()
	<-c.done
	if h := c.lateness.merged(); h.Count() != workers*each {
		t.Errorf("recorded %d of %d", h.Count(), workers*each)
	}
	if want := int64((workers*each-1)*int(time.Millisecond) + 2*int(time.Millisecond)); c.lastFinished.Load() != want {
		t.Errorf("last finished %d, want %d", c.lastFinished.Load(), want)
	}
}

func TestRunParallel(t *testing.T) {
	const n = 1000
	var seen [n]atomic.Int32
	took, hist, err := runParallel(context.Background(), n, 16, time.Hour, func(int, time.Duration) {},
		func(_ context.Context, i int) error {
			seen[i].Add(1)
			return nil
		})
	if err != nil || took <= 0 || hist.Count() != n {
		t.Fatalf("took %v, %d latencies, err %v", took, hist.Count(), err)
	}
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("call %d made %d times", i, c)
		}
	}

	var calls atomic.Int32
	boom := errors.New("boom")
	_, _, err = runParallel(context.Background(), n, 4, time.Hour, func(int, time.Duration) {},
		func(ctx context.Context, i int) error {
			calls.Add(1)
			switch {
			case i == 10:
				return boom
			case i > 10:
				// Later calls last until the error cancels them, so the
				// count below does not depend on goroutine timing.
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want boom", err)
	}
	if c := calls.Load(); c > 11+4 {
		t.Errorf("%d calls; want the run to stop after call 10 and the calls in flight", c)
	}

	// Progress is reported while the calls run: here they wait for it.
	var reports atomic.Int32
	var once sync.Once
	release := make(chan struct{})
	_, _, err = runParallel(context.Background(), 2, 2, time.Millisecond,
		func(int, time.Duration) { reports.Add(1); once.Do(func() { close(release) }) },
		func(ctx context.Context, i int) error {
			<-release
			return nil
		})
	if err != nil || reports.Load() == 0 {
		t.Errorf("reports %d, err %v", reports.Load(), err)
	}
}

func TestReminderOf(t *testing.T) {
	ids := actorIDs("a-", 3)
	var got []string
	for i := range 7 {
		id, name := reminderOf(ids, i)
		got = append(got, id.ID+"/"+name)
	}
	want := []string{"a-0/r0", "a-1/r0", "a-2/r0", "a-0/r1", "a-1/r1", "a-2/r1", "a-0/r2"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if ids[0].Type != echoType {
		t.Errorf("type %q", ids[0].Type)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testBench is a bench with tiny sizes and an embedded store under the test's directory.
func testBench(t *testing.T, scenario string) *bench {
	t.Helper()
	o, err := parseFlags([]string{"--scenario", scenario, "--data-dir", t.TempDir(), "--concurrency", "16",
		"--register-n", "1000", "--register-actors", "10",
		"--fire-actors", "10", "--fire-per-actor", "20", "--fire-lead", "1500ms",
		"--lateness-n", "200", "--lateness-actors", "10", "--lateness-period", "500ms",
		"--lateness-warmup", "200ms", "--lateness-duration", "1s",
		"--memory-n", "2000", "--memory-actors", "20", "--wait-timeout", "30s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return &bench{o: o, out: io.Discard, log: discardLogger()}
}

func figure(t *testing.T, r result, name string) metric {
	t.Helper()
	i := slices.IndexFunc(r.Metrics, func(m metric) bool { return m.Name == name })
	if i < 0 {
		t.Fatalf("no figure %q in %+v", name, r.Metrics)
	}
	return r.Metrics[i]
}

func TestRegisterAndFireInProcess(t *testing.T) {
	b := testBench(t, "register,fire")
	rep := b.runAll(context.Background())
	if len(rep.Results) != 2 {
		t.Fatalf("%d results", len(rep.Results))
	}
	reg, fire := rep.Results[0], rep.Results[1]
	if reg.Error != "" || figure(t, reg, "registrations/s").Value <= 0 {
		t.Errorf("register: %+v", reg)
	}
	if fire.Error != "" || len(fire.Notes) != 0 {
		t.Fatalf("fire: error %q, notes %q", fire.Error, fire.Notes)
	}
	if m := figure(t, fire, "failed fire attempts"); m.Value != 0 {
		t.Errorf("failed fires: %v", m.Value)
	}
	if m := figure(t, fire, "fires/s"); m.Value <= 0 || m.Verdict == "" {
		t.Errorf("fires/s: %+v", m)
	}
	if b.regRate <= 0 {
		t.Error("registration rate not kept for the due times")
	}
}

func TestLatenessInProcess(t *testing.T) {
	b := testBench(t, "lateness")
	r := b.lateness(context.Background())
	r.evaluate()
	if r.Error != "" {
		t.Fatal(r.Error)
	}
	// Every fire due in the window was seen, and none failed.
	all := figure(t, r, "fires due in the window")
	if all.Verdict != "PASS" || all.Value != 200*2 {
		t.Errorf("fires in the window: %+v", all)
	}
	if m := figure(t, r, "failed fire attempts"); m.Value != 0 {
		t.Errorf("failed fires: %v", m.Value)
	}
	if p50, p99 := figure(t, r, "lateness p50"), figure(t, r, "lateness max"); p50.Value <= 0 || p99.Value < p50.Value {
		t.Errorf("lateness p50 %v max %v", p50.Value, p99.Value)
	}
}

func TestMemoryInProcess(t *testing.T) {
	b := testBench(t, "memory")
	r := b.memory(context.Background())
	if r.Error != "" {
		t.Fatal(r.Error)
	}
	rss, heap := figure(t, r, "RSS"), figure(t, r, "Go heap in use")
	if rss.Value <= 0 || heap.Value <= 0 || rss.Value < heap.Value {
		t.Errorf("RSS %v MiB, heap %v MiB", rss.Value, heap.Value)
	}
	if m := figure(t, r, "store file size"); m.Value <= 0 {
		t.Errorf("store file size %v", m.Value)
	}
	if m := figure(t, r, "RSS projected to 1000000 reminders"); m.Verdict == "" {
		t.Errorf("a small run has no projected verdict: %+v", m)
	}
}

func TestHTTPScenarioNeedsBinaries(t *testing.T) {
	b := testBench(t, "http")
	b.o.granary = t.TempDir() + "/missing"
	for name, scenario := range map[string]func(context.Context) result{"http": b.http, "http-lateness": b.httpLateness} {
		if r := scenario(context.Background()); !strings.Contains(r.Error, "not an executable file") {
			t.Errorf("%s: error %q", name, r.Error)
		}
	}
}

// Holding the due time is the caller's business: registering past it is
// reported as an error, not measured as throughput.
func TestFireReportsOverrun(t *testing.T) {
	b := testBench(t, "fire")
	b.o.fireLead = time.Nanosecond
	r := b.fire(context.Background())
	if !strings.Contains(r.Error, "after the due time") {
		t.Errorf("error %q", r.Error)
	}
}

func TestEchoActorCountsReminders(t *testing.T) {
	h := &harness{}
	a := echoActor{h}
	var _ actor.ReminderReceiver = a
	if out, err := a.Invoke(context.Background(), "x", []byte(`{"a":1}`)); err != nil || string(out) != `{"a":1}` {
		t.Errorf("Invoke = %s, %v", out, err)
	}
	for range 3 {
		if cancel, err := a.Remind(context.Background(), "r", nil); cancel || err != nil {
			t.Errorf("Remind = %v, %v", cancel, err)
		}
	}
	if h.delivered.Load() != 3 {
		t.Errorf("delivered %d", h.delivered.Load())
	}
}
