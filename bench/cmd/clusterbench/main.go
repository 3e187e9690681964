// Command clusterbench measures a Granary cluster of real processes: one
// placement node and silos on one Redis database, each silo with its own
// echo app. In one run it measures
//
//  1. what forwarding costs: one connection calls actors through silo s1 of a
//     two-silo cluster, those s1 owns (local) and those s2 owns (forwarded),
//     in alternating blocks so that a drift of the machine's speed affects
//     both alike;
//  2. throughput: 64 connections over 1000 actors spread over the three
//     gateways of a three-silo cluster (s3 joins the cluster of part 1),
//     against `granary dev` on a Redis database of its own, the two loads
//     taking turns;
//  3. failover: SIGKILL of one silo, and the time from the kill until calls
//     through the survivors to actors the killed silo owned succeed.
//
// It prints a table with the targets met or missed and stops every process
// it started, also on Ctrl-C or failure. It builds nothing:
//
//	clusterbench --granary bin/granary --echoapp bin/echoapp [--redis redis://127.0.0.1:6379/15] [--json out.json]
//
// Both Redis databases (--redis and --dev-redis) are flushed before and after
// the run. On the machine's shared server (127.0.0.1:6379) each is first
// claimed the way the test helpers claim theirs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/internal/redisdb"
)

type options struct {
	granary, echoapp string
	redisURL         string        // the cluster's
	devRedisURL      string        // granary dev's
	calls, blocks    int           // part 1: calls of each kind, and the blocks they are split into
	forwardingActors int           // part 1: actors of each kind
	warmup           time.Duration // before each load
	duration         time.Duration // part 2: measured time of each load
	rounds           int           // part 2: the loads take turns this many times
	conns, actors    int           // part 2
	failoverActors   int           // part 3
	jsonPath         string
	strict           bool
	stopGrace        time.Duration
	claimPatience    time.Duration
	settleTimeout    time.Duration
}

func main() { benchproc.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	began := time.Now()
	rep, err := bench(ctx, o, stderr)
	if err != nil {
		return benchproc.Failed(ctx, "clusterbench", stderr, err)
	}
	rep.Took = time.Since(began).Round(time.Millisecond).String()
	return benchproc.Finish("clusterbench", stdout, stderr, rep, func(w io.Writer) { printReport(w, rep) },
		o.jsonPath, o.strict, rep.Pass)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("clusterbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.granary, "granary", "bin/granary", "path of the granary binary")
	fs.StringVar(&o.echoapp, "echoapp", "bin/echoapp", "path of the echoapp binary (bench/echoapp)")
	fs.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/15",
		"Redis database of the cluster; FLUSHED before and after the run (database 0 is refused)")
	fs.StringVar(&o.devRedisURL, "dev-redis", "redis://127.0.0.1:6379/14",
		"Redis database of granary dev in (2), another than --redis; FLUSHED before and after the run (database 0 is refused)")
	fs.IntVar(&o.calls, "calls", 5000, "(1) measured calls of each kind, local and forwarded, at one connection, after the warm-up")
	fs.IntVar(&o.blocks, "blocks", 10, "(1) blocks the calls of each kind are split into; local and forwarded blocks alternate")
	fs.IntVar(&o.forwardingActors, "forwarding-actors", 8, "(1) actors of each kind (each in a shard of its own), called round-robin")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each load")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "(2) measured time of the granary dev load and of the cluster load")
	fs.IntVar(&o.rounds, "rounds", 2, "(2) rounds the measured time of each load is split into; granary dev and the cluster take turns, so a drift of the machine's speed affects both alike")
	fs.IntVar(&o.conns, "connections", 64, "(2) connections; on the cluster spread over its three gateways")
	fs.IntVar(&o.actors, "actors", 1000, "(2) actors called round-robin; on the cluster actor k is called through gateway k mod 3")
	fs.IntVar(&o.failoverActors, "failover-actors", 3, "(3) actors of the killed silo (each in a shard of its own) whose calls are timed concurrently")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results to this JSON file")
	fs.BoolVar(&o.strict, "strict", false, "exit with status 1 when a target is missed")
	fs.DurationVar(&o.stopGrace, "stop-timeout", 15*time.Second, "how long a process may take to exit after SIGTERM before it is killed")
	fs.DurationVar(&o.claimPatience, "claim-timeout", time.Minute, "how long to wait for the Redis database while a test process holds it")
	fs.DurationVar(&o.settleTimeout, "settle-timeout", 30*time.Second, "how long the silos may take to agree on a table holding every shard")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: clusterbench --granary PATH --echoapp PATH [flags]\n\n"+
			"Starts a placement node and silos with an echo app each on the Redis database --redis, and\n"+
			"granary dev on --dev-redis; both databases are FLUSHED first. Measures forwarding at c=1,\n"+
			"throughput at c=64 against granary dev, and the time a killed silo's actors take to be served again.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fail := func(err error) (options, error) {
		fmt.Fprintln(stderr, "clusterbench:", err)
		return o, err
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	for _, bin := range []string{o.granary, o.echoapp} {
		if !benchproc.Executable(bin) {
			return fail(fmt.Errorf("%s is not an executable file (build it first: go build -o bin/granary ./cmd/granary && go build -o bin/echoapp ./bench/echoapp)", bin))
		}
	}
	switch {
	case o.calls <= 0 || o.blocks <= 0 || o.forwardingActors <= 0 || o.failoverActors <= 0 || o.rounds <= 0:
		return fail(errors.New("--calls, --blocks, --forwarding-actors, --failover-actors and --rounds must be positive"))
	case o.duration <= 0 || o.warmup < 0:
		return fail(errors.New("--duration must be positive and --warmup not negative"))
	case o.conns < clusterSilos || o.actors < clusterSilos:
		return fail(fmt.Errorf("--connections and --actors must be at least %d (one per gateway)", clusterSilos))
	case o.stopGrace <= 0 || o.claimPatience < 0 || o.settleTimeout <= 0:
		return fail(errors.New("--stop-timeout and --settle-timeout must be positive and --claim-timeout not negative"))
	}
	cluster, err := redisdb.ParseTarget(o.redisURL)
	if err != nil {
		return fail(fmt.Errorf("--redis: %w", err))
	}
	dev, err := redisdb.ParseTarget(o.devRedisURL)
	if err != nil {
		return fail(fmt.Errorf("--dev-redis: %w", err))
	}
	if sameDatabase(cluster, dev) {
		return fail(fmt.Errorf("--redis and --dev-redis name one database (%s): granary dev's shard claims would refuse the cluster's", cluster.Redacted))
	}
	return o, nil
}

// sameDatabase reports whether two targets name one database of one server
// (localhost and 127.0.0.1 taken as one).
func sameDatabase(a, b redisdb.Target) bool {
	host := func(t redisdb.Target) string {
		return strings.ToLower(strings.Replace(t.Options.Addr, "localhost:", "127.0.0.1:", 1))
	}
	return a.DB == b.DB && host(a) == host(b)
}
