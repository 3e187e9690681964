// Package runner runs one chaos run from start to verdict: it claims a
// Redis database, starts a cluster behind fault-injecting proxies, runs the
// workload and the nemesis for the run's length, heals everything, makes
// the final reads, gathers the histories (the harness's, every app's, the
// silos' leases and the store's committed writes), runs every checker and
// writes the report.
package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/granaryhq/granary/chaos/check"
	"github.com/granaryhq/granary/chaos/cluster"
	"github.com/granaryhq/granary/chaos/history"
	"github.com/granaryhq/granary/chaos/nemesis"
	"github.com/granaryhq/granary/chaos/report"
	"github.com/granaryhq/granary/chaos/workload"
	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/internal/redisdb"
)

// Options configures a run.
type Options struct {
	// Granary is the binary under test.
	Granary string
	// RunDir receives everything the run leaves; it must not exist yet or
	// be empty.
	RunDir   string
	Seed     uint64
	Duration time.Duration
	Nemeses  []string
	// Placement nodes, silos at the start, and slots (the most silos at
	// once, for scale-out).
	Placement, Silos, Slots int
	// StoreURL is the Redis database the cluster uses; it is flushed.
	StoreURL string
	// The workload's size.
	Clients, Registers, Counters, Tickers int
	ReminderPeriod                        time.Duration
	// SiloArgs and PlacementArgs go on every silo's and node's command line.
	SiloArgs, PlacementArgs []string
	// Out receives progress and the summary line.
	Out io.Writer
}

// RestartFault is the kind of the history record of a process that exited
// on its own and that the run restarted, as a service manager would.
const RestartFault = "restart"

// Defaults of Options.
const (
	DefaultDuration       = 5 * time.Minute
	DefaultStoreURL       = "redis://127.0.0.1:6379/13"
	DefaultReminderPeriod = time.Second
	progressEvery         = 15 * time.Second
	leasePollEvery        = 500 * time.Millisecond
	stableTimeout         = 90 * time.Second
	finalReadsTimeout     = 90 * time.Second
	// settle lets reminders fire after every fault healed, before the
	// reminder checker's end.
	settle = 5 * time.Second
)

func (o *Options) fill() {
	o.Duration = cmp.Or(o.Duration, DefaultDuration)
	o.Placement = cmp.Or(o.Placement, 3)
	o.Silos = cmp.Or(o.Silos, 3)
	o.Slots = max(o.Slots, o.Silos+1)
	o.StoreURL = cmp.Or(o.StoreURL, DefaultStoreURL)
	o.Clients = cmp.Or(o.Clients, 16)
	o.Registers = cmp.Or(o.Registers, 24)
	o.Counters = cmp.Or(o.Counters, 12)
	o.Tickers = cmp.Or(o.Tickers, 12)
	o.ReminderPeriod = cmp.Or(o.ReminderPeriod, DefaultReminderPeriod)
	if len(o.Nemeses) == 0 {
		o.Nemeses = nemesis.All
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

// recorder writes the harness's records to its history file.
type recorder struct {
	w    *history.Writer
	mu   sync.Mutex
	errs []error
}

func (r *recorder) Record(rec history.Record) {
	if err := r.w.Write(rec); err != nil {
		r.mu.Lock()
		if len(r.errs) < 10 {
			r.errs = append(r.errs, err)
		}
		r.mu.Unlock()
	}
}

// Run runs the chaos run of opts and returns its summary. The error is
// non-nil when the run could not be made or judged; a run that was judged
// and found invalid returns its summary with Valid false and a nil error.
func Run(ctx context.Context, opts Options) (report.Summary, error) {
	opts.fill()
	out := opts.Out
	started := time.Now()
	if err := prepareDir(opts.RunDir); err != nil {
		return report.Summary{}, err
	}
	logFile, err := os.Create(filepath.Join(opts.RunDir, "logs", "harness.log"))
	if err != nil {
		return report.Summary{}, fmt.Errorf("chaos: harness log: %w", err)
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	fmt.Fprintf(out, "chaos: seed %d, %v, nemeses %s\nrun directory %s\n", opts.Seed, opts.Duration, strings.Join(opts.Nemeses, ","), opts.RunDir)

	target, err := redisdb.ParseTarget(opts.StoreURL)
	if err != nil {
		return report.Summary{}, fmt.Errorf("chaos: --store: %w", err)
	}
	db, err := redisdb.Prepare(ctx, target, "granary chaos", 2*time.Minute, func(format string, args ...any) {
		fmt.Fprintf(out, format+"\n", args...)
	})
	if err != nil {
		return report.Summary{}, fmt.Errorf("chaos: store: %w", err)
	}
	defer db.Close()

	harnessFile, err := os.Create(filepath.Join(opts.RunDir, "history", "harness.jsonl"))
	if err != nil {
		return report.Summary{}, fmt.Errorf("chaos: history: %w", err)
	}
	defer harnessFile.Close()
	rec := &recorder{w: history.NewWriter(harnessFile)}

	c, err := cluster.New(cluster.Config{Granary: opts.Granary, RunDir: opts.RunDir, Placement: opts.Placement,
		Silos: opts.Silos, Slots: opts.Slots, StoreAddr: target.Options.Addr, StoreDB: target.DB,
		SiloArgs: opts.SiloArgs, PlacementArgs: opts.PlacementArgs, Log: log, Progress: prefixed{out, "  "}})
	if err != nil {
		return report.Summary{}, err
	}
	closed := false
	closeCluster := func() {
		if !closed {
			closed = true
			fmt.Fprintln(out, "chaos: stopping the cluster")
			c.Close()
		}
	}
	defer closeCluster()
	fmt.Fprintf(out, "chaos: starting %d placement nodes and %d silos\n", opts.Placement, opts.Silos)
	if err := c.Start(ctx); err != nil {
		return report.Summary{}, fmt.Errorf("chaos: starting the cluster: %w", err)
	}
	if err := c.AwaitStable(ctx, stableTimeout); err != nil {
		return report.Summary{}, fmt.Errorf("chaos: %w", err)
	}
	fmt.Fprintf(out, "chaos: cluster ready in %.1fs\n", time.Since(started).Seconds())

	leases := cluster.NewLeaseLog()
	pollCtx, stopPolling := context.WithCancel(ctx)
	var pollers sync.WaitGroup
	pollers.Add(2)
	go func() {
		defer pollers.Done()
		for clock.Sleep(pollCtx, leasePollEvery) {
			leases.Poll(pollCtx, c)
		}
	}()
	var restarts countingFaults
	go func() {
		defer pollers.Done()
		c.Supervise(pollCtx, func(name, status string) {
			restarts.add()
			now := time.Now().UnixNano()
			fmt.Fprintf(out, "chaos: %s exited on its own (%s); restarted it\n", name, status)
			rec.Record(history.Fault{Kind: RestartFault, Target: name, Start: now, End: now, Detail: "exited on its own (" + status + "); restarted"})
		})
	}()
	defer func() { stopPolling(); pollers.Wait() }()

	gateways := func() []string {
		var gws []string
		for _, s := range c.Silos() {
			if s.Running() {
				gws = append(gws, s.GatewayURL())
			}
		}
		return gws
	}
	wl := workload.New(workload.Config{Gateways: gateways, Registers: opts.Registers, Counters: opts.Counters,
		Clients: opts.Clients, Tickers: opts.Tickers, ReminderPeriod: opts.ReminderPeriod, Seed: opts.Seed, Record: rec.Record})
	defer wl.Close()
	schedule, err := wl.RegisterReminders(ctx)
	if err != nil {
		return report.Summary{}, fmt.Errorf("chaos: %w", err)
	}

	var faults countingFaults
	nem := nemesis.New(c, nemesis.Config{Kinds: opts.Nemeses, Seed: opts.Seed, Log: log,
		Record: func(f history.Fault) { faults.add(); rec.Record(f) }})
	runCtx, endRun := context.WithTimeout(ctx, opts.Duration)
	defer endRun()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); wl.Run(runCtx) }()
	go func() { defer wg.Done(); nem.Run(runCtx) }()
	go func() { defer wg.Done(); progress(runCtx, out, started, wl, &faults) }()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return report.Summary{}, fmt.Errorf("chaos: interrupted: %w", err)
	}

	fmt.Fprintf(out, "chaos: workload done (%d ops, %d faults, %d processes restarted after exiting on their own); healing and waiting for the cluster to settle\n", wl.Ops(), faults.n(), restarts.n())
	c.HealAll()
	if err := c.AwaitStable(ctx, stableTimeout); err != nil {
		fmt.Fprintf(out, "chaos: %v; making the final reads anyway\n", err)
	}
	finalCtx, cancelFinal := context.WithTimeout(ctx, finalReadsTimeout)
	finals, finalErr := wl.FinalReads(finalCtx)
	cancelFinal()
	if finalErr != nil {
		fmt.Fprintf(out, "chaos: %v\n", finalErr)
	}
	clock.Sleep(ctx, settle)
	end := time.Now().UnixNano()
	// The lease records speak up to the last reading: a turn that starts
	// later (the cluster runs on until it is stopped) is not judged
	// against them.
	leaseHorizon := time.Now().UnixNano()
	leases.Poll(ctx, c)
	stopPolling()
	pollers.Wait()
	closeCluster()
	for _, l := range leases.Leases() {
		rec.Record(l)
	}
	writes, err := committedWrites(ctx, db.Client())
	if err != nil {
		return report.Summary{}, fmt.Errorf("chaos: %w", err)
	}
	for _, w := range writes {
		rec.Record(w)
	}
	if len(rec.errs) > 0 {
		return report.Summary{}, fmt.Errorf("chaos: writing the history: %w", errors.Join(rec.errs...))
	}

	run, err := readHistories(filepath.Join(opts.RunDir, "history"))
	if err != nil {
		return report.Summary{}, err
	}
	fmt.Fprintf(out, "chaos: checking %d ops, %d turns, %d ticks, %d store writes\n", len(run.Ops), len(run.Turns), len(run.Ticks), len(run.Writes))
	results := judge(run, finals, finalErr, schedule, end, leaseHorizon)
	visualizations := visualize(opts.RunDir, run, results, out)

	meta := report.Meta{Seed: int64(opts.Seed), Duration: opts.Duration, Nemeses: opts.Nemeses, Placement: opts.Placement,
		Silos: opts.Silos, Started: started, Ended: time.Now(), Build: opts.Granary}
	summary := report.Summarize(meta, run, results)
	if err := report.Write(opts.RunDir, summary, run, results, visualizations); err != nil {
		return summary, err
	}
	for _, r := range results {
		if !r.Valid {
			fmt.Fprint(out, r.String())
		}
	}
	fmt.Fprintln(out, summary.Line(opts.RunDir))
	return summary, nil
}

// judge runs every checker.
func judge(run *history.Run, finals map[string]int64, finalErr error, schedule map[check.ReminderKey]check.Spec, end, leaseHorizon int64) []check.Result {
	counters := check.Counters(run.Ops, finals)
	if finalErr != nil {
		counters.Valid = false
		counters.Violations = append(counters.Violations, check.Violation{What: "final reads incomplete", Detail: finalErr.Error()})
	}
	return []check.Result{
		check.Register(run.Ops),
		counters,
		check.Reminders(run.Ticks, schedule, end),
		check.SingleActivation(run.Turns, run.Leases, run.Writes, check.LeaseHorizon(leaseHorizon), check.Freezes(freezes(run.Faults, end))),
	}
}

// freezes are the spans over which the nemesis held a silo process
// stopped: SIGSTOP of a silo, and the old process of a same-ID restart. A
// fault still open at the end ran until end.
func freezes(faults []history.Fault, end int64) []check.Freeze {
	var out []check.Freeze
	for _, f := range faults {
		if f.Kind != nemesis.PauseSilo && f.Kind != nemesis.SameIDRestart {
			continue
		}
		until := f.End
		if until == 0 {
			until = end
		}
		out = append(out, check.Freeze{Silo: f.Target, From: f.Start, Until: until})
	}
	return out
}

// visualize writes porcupine's visualization of every register key the
// linearizability checker flagged.
func visualize(dir string, run *history.Run, results []check.Result, out io.Writer) map[string]string {
	files := map[string]string{}
	for _, r := range results {
		if r.Name != "register" {
			continue
		}
		for _, v := range r.Violations {
			if _, done := files[v.Key]; done || v.Key == "" {
				continue
			}
			name := "linearizability-" + v.Key + ".html"
			if err := check.RegisterVisualize(run.Ops, v.Key, filepath.Join(dir, name)); err != nil {
				fmt.Fprintf(out, "chaos: %v\n", err)
				continue
			}
			files[v.Key] = name
		}
	}
	return files
}

// readHistories reads every history file of dir into one run.
func readHistories(dir string) (*history.Run, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	all := &history.Run{}
	for _, p := range paths {
		r, err := history.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		all.Ops = append(all.Ops, r.Ops...)
		all.Turns = append(all.Turns, r.Turns...)
		all.Ticks = append(all.Ticks, r.Ticks...)
		all.Faults = append(all.Faults, r.Faults...)
		all.Leases = append(all.Leases, r.Leases...)
		all.Writes = append(all.Writes, r.Writes...)
	}
	return all, nil
}

func prepareDir(dir string) error {
	if dir == "" {
		return errors.New("chaos: no run directory")
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("chaos: run directory %s is not empty", dir)
	}
	for _, sub := range []string{"logs", "history"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("chaos: run directory: %w", err)
		}
	}
	return nil
}

type countingFaults struct {
	mu    sync.Mutex
	count int
}

func (f *countingFaults) add() { f.mu.Lock(); f.count++; f.mu.Unlock() }
func (f *countingFaults) n() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

func progress(ctx context.Context, out io.Writer, started time.Time, wl *workload.Workload, faults *countingFaults) {
	for clock.Sleep(ctx, progressEvery) {
		fmt.Fprintf(out, "chaos: %3.0fs  %d ops  %d faults\n", time.Since(started).Seconds(), wl.Ops(), faults.n())
	}
}

// prefixed writes each write with a prefix (the cluster's progress lines).
type prefixed struct {
	w      io.Writer
	prefix string
}

func (p prefixed) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix); err != nil {
		return 0, err
	}
	return p.w.Write(b)
}
