package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
	"github.com/granaryhq/granary/internal/redisdb"
	"github.com/granaryhq/granary/placement/ring"
)

// invokePath is the call every load and probe makes.
const invokePath = "/v1.0/actors/" + actorType + "/" + loadgen.ActorPlaceholder + "/method/echo"

const (
	// blockWarmup is the unmeasured start of each block of part 1, in
	// which its new connection carries its first calls.
	blockWarmup = 50 * time.Millisecond
	// maxRoundsFactor bounds the rounds of part 1 at this many times
	// --blocks, should the blocks keep coming out short.
	maxRoundsFactor = 3
	// failoverGiveUp is how long after the kill part 3 keeps calling.
	failoverGiveUp = 30 * time.Second
	// failoverRetryPause separates the failed calls of part 3.
	failoverRetryPause = 10 * time.Millisecond
)

// bench runs the three parts and stops everything it started.
func bench(ctx context.Context, o options, log io.Writer) (rep report, err error) {
	progress := func(format string, args ...any) { benchproc.Progress(log, format, args...) }
	rep = newReport(o)
	dir, err := os.MkdirTemp("", "clusterbench-")
	if err != nil {
		return rep, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	for _, db := range []struct {
		flag, url string
		redacted  *string
	}{{"--redis", o.redisURL, &rep.Redis}, {"--dev-redis", o.devRedisURL, &rep.DevRedis}} {
		target, err := redisdb.ParseTarget(db.url)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", db.flag, err)
		}
		prepared, err := redisdb.Prepare(ctx, target, "clusterbench", o.claimPatience, progress)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", db.flag, err)
		}
		defer func() {
			if cerr := prepared.Close(); cerr != nil {
				fmt.Fprintln(log, "clusterbench:", cerr)
			}
		}()
		*db.redacted = target.Redacted
		progress("redis database %d on %s (%s) claimed and flushed", target.DB, target.Options.Addr, db.flag)
	}

	client := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConns: 64, MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()

	c := &cluster{fleet: &fleet{dir: dir, progress: progress, log: log, grace: o.stopGrace}, o: o, client: client}
	defer func() {
		if err != nil && ctx.Err() == nil {
			c.quoteLogs()
		}
		progress("stopping the cluster")
		c.stop()
	}()
	if err = c.startPlacement(ctx); err != nil {
		return rep, err
	}
	for _, id := range []string{"s1", "s2"} {
		if _, err = c.addSilo(ctx, id); err != nil {
			return rep, err
		}
	}
	began := time.Now()
	v, err := c.waitSettled(ctx, c.silos)
	if err != nil {
		return rep, err
	}
	progress("s1 and s2 settled on table v%d after %v", v, time.Since(began).Round(time.Millisecond))

	if rep.Forwarding, err = measureForwarding(ctx, c, progress); err != nil {
		return rep, fmt.Errorf("(1) forwarding: %w", err)
	}

	if _, err = c.addSilo(ctx, "s3"); err != nil {
		return rep, err
	}
	began = time.Now()
	if v, err = c.waitSettled(ctx, c.silos); err != nil {
		return rep, err
	}
	progress("s1, s2 and s3 settled on table v%d after %v", v, time.Since(began).Round(time.Millisecond))

	if err = measureThroughput(ctx, c, &rep.Throughput, progress); err != nil {
		return rep, fmt.Errorf("(2) throughput: %w", err)
	}
	if rep.Failover, err = measureFailover(ctx, c, c.silos[len(c.silos)-1], progress); err != nil {
		return rep, fmt.Errorf("(3) failover: %w", err)
	}
	rep.evaluate()
	return rep, nil
}

// measureThroughput runs part 2: `granary dev` in front of an echo app of
// its own, on its own database, is started beside the cluster, and the load
// is sent to it and to the cluster in turns, round by round (ABBA), into t.
// granary dev is stopped at the end.
func measureThroughput(ctx context.Context, c *cluster, t *throughputReport, progress func(string, ...any)) (err error) {
	o := c.o
	f := &fleet{dir: c.dir, progress: progress, log: c.log, grace: o.stopGrace}
	defer func() {
		if err != nil && ctx.Err() == nil {
			f.quoteLogs()
		}
		progress("stopping granary dev")
		f.stop()
	}()
	ports, err := benchproc.FreePorts(2)
	if err != nil {
		return err
	}
	appAddr, devAddr := localAddr(ports[0]), localAddr(ports[1])
	if _, err = f.start(ctx, layerApps, "echoapp-dev", o.echoapp, []string{"--port", strconv.Itoa(ports[0])},
		"GET", "http://"+appAddr+"/healthz", http.StatusOK, 10*time.Second); err != nil {
		return err
	}
	dataDir := filepath.Join(c.dir, "dev")
	if err = os.Mkdir(dataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	dev, err := f.start(ctx, layerSilos, "granary-dev", o.granary, []string{"dev",
		"--http-port", strconv.Itoa(ports[1]), "--app-url", "http://" + appAddr,
		"--state-store", o.devRedisURL, "--data-dir", dataDir, "--log-level", "warn"},
		"GET", "http://"+devAddr+"/v1.0/healthz", http.StatusNoContent, 15*time.Second)
	if err != nil {
		return err
	}

	ids := loadgen.ActorIDs("actor-", o.actors)
	actors, conns := splitRoundRobin(ids, o.conns, len(c.silos))
	for i, s := range c.silos {
		t.Gateways = append(t.Gateways, s.id)
		t.GatewayActors = append(t.GatewayActors, len(actors[i]))
	}
	t.PerGateway = make([]loadgen.Result, len(c.silos))
	slice := o.duration / time.Duration(o.rounds)
	runDev := func(round int) error {
		progress("(2) [round %d/%d] granary dev: POST %s, %d actors, %d connections, %v warm-up + %v",
			round+1, o.rounds, invokePath, len(ids), o.conns, o.warmup, slice)
		res, err := loadgen.Run(ctx, loadgen.Config{Addr: devAddr, Connections: o.conns, Warmup: o.warmup, Duration: slice,
			Request: loadgen.Request{Method: "POST", Path: invokePath, Actors: ids}})
		if err != nil {
			return err
		}
		progress("      %v", res)
		if dev.Exited() {
			return fmt.Errorf("granary dev exited during the load: %v", dev.Err())
		}
		t.Dev.Add(res)
		return nil
	}
	runCluster := func(round int) error {
		progress("(2) [round %d/%d] cluster: POST %s, %d actors, %d connections over %d gateways, %v warm-up + %v",
			round+1, o.rounds, invokePath, len(ids), o.conns, len(c.silos), o.warmup, slice)
		results := make([]loadgen.Result, len(c.silos))
		errs := make([]error, len(c.silos))
		var wg sync.WaitGroup
		for i, s := range c.silos {
			wg.Go(func() {
				results[i], errs[i] = loadgen.Run(ctx, loadgen.Config{Addr: s.httpAddr, Connections: conns[i],
					Warmup: o.warmup, Duration: slice,
					Request: loadgen.Request{Method: "POST", Path: invokePath, Actors: actors[i]}})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				return fmt.Errorf("load through %s: %w", c.silos[i].id, err)
			}
		}
		for i, s := range c.silos {
			progress("      through %s (%d connections, %d actors): %v", s.id, conns[i], len(actors[i]), results[i])
			if s.proc.Exited() {
				return fmt.Errorf("%s exited during the load: %v", s.id, s.proc.Err())
			}
			t.PerGateway[i].Add(results[i])
		}
		merged := mergeConcurrent(results)
		progress("      all gateways: %v", merged)
		t.Cluster.Add(merged)
		return nil
	}
	for round := range o.rounds {
		loads := []func(int) error{runDev, runCluster}
		if round%2 == 1 {
			loads[0], loads[1] = loads[1], loads[0] // ABBA: a linear drift weighs on both alike
		}
		for _, load := range loads {
			if err := load(round); err != nil {
				return err
			}
		}
	}
	return nil
}

// blockDuration is how long a block of calls at rate calls per second lasts,
// within 20 ms and 10 s; 1 s when the rate is unknown.
func blockDuration(calls int, rate float64) time.Duration {
	if rate <= 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		return time.Second
	}
	d := time.Duration(float64(calls) / rate * float64(time.Second))
	return min(max(d, 20*time.Millisecond), 10*time.Second)
}

// measureForwarding runs part 1 on the two-silo cluster: one connection to
// s1 calling actors s1 owns, and actors s2 owns, in alternating blocks until
// each kind has --calls measured calls. It then checks that the actors are
// active where the ring put them.
func measureForwarding(ctx context.Context, c *cluster, progress func(string, ...any)) (forwardingReport, error) {
	o := c.o
	s1, s2 := c.silos[0], c.silos[1]
	r := ring.New(siloIDs(c.silos), 0)
	fr := forwardingReport{Via: s1.id, Owner: s2.id, Blocks: o.blocks}
	var err error
	if fr.LocalActors, err = actorsOwnedBy(r, actorType, s1.id, "local-", o.forwardingActors); err != nil {
		return fr, err
	}
	if fr.ForwardedActors, err = actorsOwnedBy(r, actorType, s2.id, "forwarded-", o.forwardingActors); err != nil {
		return fr, err
	}
	kinds := []struct {
		name   string
		actors []string
		res    *loadgen.Result
		rate   float64 // calls per second, last measured
	}{
		{name: "local", actors: fr.LocalActors, res: &fr.Local},
		{name: "forwarded", actors: fr.ForwardedActors, res: &fr.Forwarded},
	}
	load := func(actors []string, warmup, d time.Duration) (loadgen.Result, error) {
		return loadgen.Run(ctx, loadgen.Config{Addr: s1.httpAddr, Connections: 1, Warmup: warmup, Duration: d,
			Request: loadgen.Request{Method: "POST", Path: invokePath, Actors: actors}})
	}
	for i := range kinds {
		k := &kinds[i]
		d := max(o.warmup, 200*time.Millisecond)
		progress("(1) warm-up, %s: %d actors through %s, 1 connection, %v", k.name, len(k.actors), s1.id, d)
		res, err := load(k.actors, 0, d)
		if err != nil {
			return fr, err
		}
		if res.Requests == 0 {
			return fr, fmt.Errorf("warm-up of the %s calls: no call succeeded: %v", k.name, res)
		}
		progress("      %v", res)
		k.rate = res.RPS
	}
	perBlock := (o.calls + o.blocks - 1) / o.blocks
	for round := 0; fr.Local.Requests < int64(o.calls) || fr.Forwarded.Requests < int64(o.calls); round++ {
		if round == maxRoundsFactor*o.blocks {
			progress("      stopping after %d rounds with %d local and %d forwarded calls", round, fr.Local.Requests, fr.Forwarded.Requests)
			break
		}
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0} // ABBA: a linear drift weighs on both alike
		}
		for _, i := range order {
			k := &kinds[i]
			res, err := load(k.actors, blockWarmup, blockDuration(perBlock, k.rate))
			if err != nil {
				return fr, err
			}
			if res.RPS > 0 {
				k.rate = res.RPS
			}
			k.res.Add(res)
		}
		fr.Rounds = round + 1
		progress("(1) round %d: local %d calls, p50 %s; forwarded %d calls, p50 %s", round+1,
			fr.Local.Requests, loadgen.FormatDuration(fr.Local.P50), fr.Forwarded.Requests, loadgen.FormatDuration(fr.Forwarded.P50))
	}
	// Nothing else has called Echo actors on this cluster: each silo's active
	// ones are those the ring gave it.
	for _, s := range []struct {
		silo *siloProc
		dst  *int
	}{{s1, &fr.ActiveOnVia}, {s2, &fr.ActiveOnOwner}} {
		md, err := c.metadata(ctx, s.silo)
		if err != nil {
			return fr, err
		}
		*s.dst = md.active(actorType)
	}
	progress("(1) active %s actors: %d on %s, %d on %s", actorType, fr.ActiveOnVia, s1.id, fr.ActiveOnOwner, s2.id)
	return fr, nil
}

// splitRoundRobin deals the actors to n gateways, actor k to gateway k mod
// n, and the connections as evenly as possible.
func splitRoundRobin(ids []string, conns, n int) (actors [][]string, connections []int) {
	actors = make([][]string, n)
	connections = make([]int, n)
	for k, id := range ids {
		actors[k%n] = append(actors[k%n], id)
	}
	for i := range connections {
		connections[i] = conns / n
		if i < conns%n {
			connections[i]++
		}
	}
	return actors, connections
}

// mergeConcurrent folds the results of loads that ran at the same time for
// the same duration into one: the latencies merged, the counts summed, the
// rate the sum of the rates.
func mergeConcurrent(results []loadgen.Result) loadgen.Result {
	m := loadgen.Result{Latency: &loadgen.Histogram{}}
	for _, r := range results {
		if r.Latency != nil {
			m.Latency.Merge(r.Latency)
		}
		m.Connections += r.Connections
		m.Duration = max(m.Duration, r.Duration)
		m.Errors.Status += r.Errors.Status
		m.Errors.IO += r.Errors.IO
		m.Errors.Protocol += r.Errors.Protocol
		m.WarmupErrors += r.WarmupErrors
		m.Reconnects += r.Reconnects
		for code, n := range r.StatusCodes {
			if m.StatusCodes == nil {
				m.StatusCodes = map[int]int64{}
			}
			m.StatusCodes[code] += n
		}
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
	}
	h := m.Latency
	m.Requests = int64(h.Count())
	if m.Duration > 0 {
		m.RPS = float64(m.Requests) / m.Duration.Seconds()
	}
	m.Mean, m.Max = h.Mean(), h.Max()
	m.P50, m.P90, m.P99, m.P999 = h.Quantile(0.50), h.Quantile(0.90), h.Quantile(0.99), h.Quantile(0.999)
	return m
}

// measureFailover runs part 3: it activates actors the victim owns, kills
// the victim with SIGKILL, and calls each of them through a survivor until
// the call succeeds, all at once, timing each from the kill.
func measureFailover(ctx context.Context, c *cluster, victim *siloProc, progress func(string, ...any)) (failoverReport, error) {
	fr := failoverReport{Victim: victim.id, Limit: failoverLimit}
	var survivors []*siloProc
	for _, s := range c.silos {
		if s != victim {
			survivors = append(survivors, s)
		}
	}
	ids, err := actorsOwnedBy(ring.New(siloIDs(c.silos), 0), actorType, victim.id, "failover-", c.o.failoverActors)
	if err != nil {
		return fr, err
	}
	urls := make([]string, len(ids))
	for i, id := range ids {
		via := survivors[i%len(survivors)]
		urls[i] = via.base() + "/v1.0/actors/" + actorType + "/" + id + "/method/echo"
		fr.Actors = append(fr.Actors, failoverActor{ID: id, Shard: int(ring.ShardOf(actorType, id)), Via: via.id})
		if _, err := benchproc.Call(ctx, c.client, "POST", urls[i], "", http.StatusOK); err != nil {
			return fr, fmt.Errorf("activating %s on %s before the kill: %w", id, victim.id, err)
		}
	}
	proc, err := os.FindProcess(victim.proc.Pid())
	if err != nil {
		return fr, fmt.Errorf("finding %s's process: %w", victim.id, err)
	}
	progress("(3) %d actors of %s active (shards %v); sending SIGKILL to %s (pid %d)", len(ids), victim.id, shardsOf(fr.Actors), victim.id, victim.proc.Pid())
	killed := time.Now()
	if err := proc.Kill(); err != nil {
		return fr, fmt.Errorf("killing %s: %w", victim.id, err)
	}
	var wg sync.WaitGroup
	for i := range fr.Actors {
		a := &fr.Actors[i]
		wg.Go(func() {
			for ctx.Err() == nil {
				a.Attempts++
				_, err := benchproc.Call(ctx, c.client, "POST", urls[i], "", http.StatusOK)
				if err == nil {
					a.Took, a.Served = time.Since(killed), true
					progress("(3) %s (shard %d) served through %s %v after the kill, at attempt %d", a.ID, a.Shard, a.Via,
						a.Took.Round(time.Millisecond), a.Attempts)
					return
				}
				a.LastError = err.Error()
				if time.Since(killed) > failoverGiveUp {
					progress("(3) %s still fails %v after the kill: %v", a.ID, failoverGiveUp, err)
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(failoverRetryPause):
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return fr, ctx.Err()
	}
	if !victim.proc.Exited() {
		return fr, fmt.Errorf("%s (pid %d) still runs after SIGKILL", victim.id, victim.proc.Pid())
	}
	return fr, nil
}

func shardsOf(actors []failoverActor) []int {
	s := make([]int, len(actors))
	for i, a := range actors {
		s[i] = a.Shard
	}
	return s
}
