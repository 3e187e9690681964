package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/granaryhq/granary/chaos/app"
	"github.com/granaryhq/granary/chaos/nemesis"
	"github.com/granaryhq/granary/chaos/runner"
	"github.com/granaryhq/granary/internal/clock"
)

// This file is `granary chaos`: `chaos run` runs the chaos suite against
// this binary (or another given with --granary), and `chaos app` is the
// suite's workload app, which the run starts beside each silo.
const chaosUsage = `Usage:
  granary chaos run [flags]   run a cluster under faults and check its histories
  granary chaos app           the workload app (started by chaos run; configured from its environment)

chaos run starts 3 placement nodes and 3 silos on 127.0.0.1, each link
through a fault-injecting proxy, drives a workload of registers, counters
and reminders through the gateways while the nemeses inject faults, then
heals everything, reads the final values and checks: linearizable
registers, no lost increment, every reminder tick delivered, and single
activation. It writes RUN/results.json and RUN/report.html, prints one
summary line, and exits non-zero on any violation.

Redis must be installed; a server on the store URL's address is started
when none answers, and the database is flushed.

Flags:
`

func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, chaosUsage)
		return errUsage
	}
	switch args[0] {
	case "run":
		return runChaosRun(ctx, args[1:], stdout, stderr)
	case "app":
		log := slog.New(slog.NewTextHandler(stderr, nil))
		return app.Serve(ctx, os.Getenv, log, nil)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, chaosUsage)
		return nil
	}
	fmt.Fprintf(stderr, "granary chaos: unknown subcommand %q (want run or app)\n\n%s", args[0], chaosUsage)
	return errUsage
}

func parseChaosRunFlags(args []string, stderr io.Writer) (runner.Options, error) {
	var o runner.Options
	var nemeses, siloArgs, placementArgs string
	fs := flag.NewFlagSet("granary chaos run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the schedule and the workload (default: from the clock, printed)")
	fs.DurationVar(&o.Duration, "duration", runner.DefaultDuration, "how long the workload and the nemeses run")
	fs.StringVar(&nemeses, "nemeses", "all", "comma-separated nemeses, or all: "+strings.Join(nemesis.All, ","))
	fs.StringVar(&o.RunDir, "run-dir", "", "directory of the run (default ./.granary-chaos/<timestamp>-<seed>)")
	fs.StringVar(&o.Granary, "granary", "", "the granary binary under test (default: this one)")
	fs.StringVar(&o.StoreURL, "store", runner.DefaultStoreURL, "Redis database of the cluster; it is flushed (database 0 is refused)")
	fs.IntVar(&o.Silos, "silos", 3, "silos at the start (one more may join)")
	fs.IntVar(&o.Clients, "clients", 16, "operations in flight at once")
	fs.StringVar(&siloArgs, "silo-args", "", "extra arguments for every silo, space-separated (e.g. your own settings)")
	fs.StringVar(&placementArgs, "placement-args", "", "extra arguments for every placement node, space-separated")
	fs.Usage = func() {
		fmt.Fprint(stderr, chaosUsage)
		fs.PrintDefaults()
	}
	if err := parseFlagSet(fs, args, stderr); err != nil {
		return o, err
	}
	if o.Duration <= 0 {
		return o, fmt.Errorf("--duration %v must be positive", o.Duration)
	}
	if o.Silos < 2 {
		return o, fmt.Errorf("--silos %d: a chaos run needs at least 2", o.Silos)
	}
	if o.Clients < 1 {
		return o, fmt.Errorf("--clients %d: want at least 1", o.Clients)
	}
	var err error
	if o.Nemeses, err = nemesis.Parse(nemeses); err != nil {
		return o, fmt.Errorf("--nemeses: %w", err)
	}
	o.SiloArgs, o.PlacementArgs = strings.Fields(siloArgs), strings.Fields(placementArgs)
	return o, nil
}

func runChaosRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseChaosRunFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.Seed == 0 {
		o.Seed = uint64(clock.Real.Now().UnixNano()) % 1_000_000
	}
	if o.Granary == "" {
		if o.Granary, err = os.Executable(); err != nil {
			return fmt.Errorf("finding the granary binary (give --granary): %w", err)
		}
	}
	if o.RunDir == "" {
		o.RunDir = filepath.Join(".granary-chaos", fmt.Sprintf("%s-%d", clock.Real.Now().Format("20060102-150405"), o.Seed))
	}
	if o.RunDir, err = filepath.Abs(o.RunDir); err != nil {
		return fmt.Errorf("--run-dir: %w", err)
	}
	o.Out = stdout
	began := clock.Real.Now()
	summary, err := runner.Run(ctx, o)
	if err != nil {
		return fmt.Errorf("%w (seed %d, run directory %s)", err, o.Seed, o.RunDir)
	}
	fmt.Fprintf(stdout, "chaos: took %v\n", clock.Real.Now().Sub(began).Round(time.Second))
	if !summary.Valid {
		return errors.New("chaos: violations found (seed " + fmt.Sprint(o.Seed) + "); see " + filepath.Join(o.RunDir, "report.html"))
	}
	return nil
}
