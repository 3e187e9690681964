package main

// Running a cluster plan: starting its processes group by group, waiting
// until each answers, printing the table, and stopping them in order.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/internal/launch"
)

// clusterProc is a started process of the cluster.
type clusterProc struct {
	spec  clusterProcSpec
	proc  *launch.Proc
	start time.Time // by the launcher's clock
}

// clusterLauncher starts a planned cluster and stops it.
type clusterLauncher struct {
	plan   *clusterPlan
	out    io.Writer
	clock  clock.Clock
	client *http.Client

	placement, apps, silos []*clusterProc
	exited                 chan *clusterProc // every started process, once it has exited
}

// run starts the cluster, waits until every process answers, and then until
// ctx ends, when it stops everything. A process that exits or does not
// answer during the start stops the whole cluster with an error; one that
// exits later is reported and the rest keep running.
func (l *clusterLauncher) run(ctx context.Context) error {
	plan := l.plan
	l.exited = make(chan *clusterProc, len(plan.all()))
	if err := os.MkdirAll(filepath.Join(plan.runDir, "logs"), 0o755); err != nil {
		return fmt.Errorf("--run-dir: %w", err)
	}
	began := l.clock.Now()
	fmt.Fprintf(l.out, "granary cluster: %s, %s, state store %s\nrun directory %s\n",
		countOf(len(plan.placement), "placement node"), countOf(len(plan.silos), "silo"), plan.stateStore, plan.runDir)

	err := l.startAll(ctx)
	if err != nil || ctx.Err() != nil {
		l.stopAll()
		if err != nil && ctx.Err() == nil {
			return err
		}
		fmt.Fprintln(l.out, "interrupted while starting; everything is stopped")
		return nil
	}
	l.printTable(l.clock.Now().Sub(began))

	running := len(plan.all())
	for {
		select {
		case <-ctx.Done():
			l.stopAll()
			return nil
		case p := <-l.exited:
			running--
			fmt.Fprintf(l.out, "%s (pid %d) exited: %s\n%s", p.spec.Name, p.proc.Pid(), p.proc.ExitStatus(), launch.LogTail(p.spec.LogPath, clusterLogTailLines))
			if running == 0 {
				l.stopAll() // whatever they started
				return errors.New("every process of the cluster has exited")
			}
		}
	}
}

// startAll starts the placement nodes and waits for their status pages,
// then the apps and waits for their ports, then the silos and waits for
// their health checks.
func (l *clusterLauncher) startAll(ctx context.Context) error {
	var err error
	if l.placement, err = l.startGroup(l.plan.placement); err != nil {
		return err
	}
	if err := l.awaitGroup(ctx, l.placement); err != nil {
		return err
	}
	if l.apps, err = l.startGroup(l.plan.apps); err != nil {
		return err
	}
	if err := l.awaitGroup(ctx, l.apps); err != nil {
		return err
	}
	if l.silos, err = l.startGroup(l.plan.silos); err != nil {
		return err
	}
	return l.awaitGroup(ctx, l.silos)
}

func (l *clusterLauncher) startGroup(specs []clusterProcSpec) ([]*clusterProc, error) {
	var procs []*clusterProc
	for _, spec := range specs {
		p, err := l.start(spec)
		if err != nil {
			return procs, err
		}
		procs = append(procs, p)
		fmt.Fprintf(l.out, "started %s (pid %d), log %s\n", spec.Name, p.proc.Pid(), spec.LogPath)
	}
	return procs, nil
}

// start starts the process of spec; once it exits, it is sent on l.exited.
func (l *clusterLauncher) start(spec clusterProcSpec) (*clusterProc, error) {
	proc, err := launch.Start(spec.Spec)
	if err != nil {
		return nil, err
	}
	p := &clusterProc{spec: spec, proc: proc, start: l.clock.Now()}
	go func() {
		<-proc.Done()
		l.exited <- p
	}()
	return p, nil
}

// awaitGroup waits until every process of procs is ready, reporting
// progress. It fails when one of the cluster's processes exits meanwhile or
// one is not ready within the ready timeout; it returns nil when ctx ends.
func (l *clusterLauncher) awaitGroup(ctx context.Context, procs []*clusterProc) error {
	for _, p := range procs {
		if err := l.await(ctx, p); err != nil || ctx.Err() != nil {
			return err
		}
	}
	return nil
}

func (l *clusterLauncher) await(ctx context.Context, p *clusterProc) error {
	what := p.spec.Readiness()
	began := l.clock.Now()
	nextProgress := began.Add(clusterProgressInterval)
	timer := l.clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case q := <-l.exited:
			return fmt.Errorf("%s (pid %d) exited while the cluster was starting: %s\n%s",
				q.spec.Name, q.proc.Pid(), q.proc.ExitStatus(), launch.LogTail(q.spec.LogPath, clusterLogTailLines))
		case <-timer.C():
		}
		err := launch.Probe(ctx, l.client, p.spec.Spec)
		now := l.clock.Now()
		if err == nil {
			fmt.Fprintf(l.out, "%s answers %s (%.1fs after its start)\n", p.spec.Name, what, now.Sub(p.start).Seconds())
			return nil
		}
		if now.Sub(began) >= l.plan.readyTimeout {
			return fmt.Errorf("%s (pid %d) did not answer %s within %v (last: %v)\n%s",
				p.spec.Name, p.proc.Pid(), what, l.plan.readyTimeout, err, launch.LogTail(p.spec.LogPath, clusterLogTailLines))
		}
		if !now.Before(nextProgress) {
			fmt.Fprintf(l.out, "still waiting for %s to answer %s (%.0fs; last: %v)\n", p.spec.Name, what, now.Sub(began).Seconds(), err)
			nextProgress = now.Add(clusterProgressInterval)
		}
		timer.Reset(clusterPollInterval)
	}
}

func (l *clusterLauncher) printTable(took time.Duration) {
	fmt.Fprintf(l.out, "\nGranary cluster is ready (%.1fs).\n\n", took.Seconds())
	tw := tabwriter.NewWriter(l.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPID\tLISTENS ON\tLOG")
	for _, group := range [][]*clusterProc{l.placement, l.silos, l.apps} {
		for _, p := range group {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", p.spec.Name, p.proc.Pid(), p.spec.addresses, p.spec.LogPath)
		}
	}
	tw.Flush()
	fmt.Fprintf(l.out, "\nPoint curl at %s (every silo's gateway reaches every actor), e.g.\n"+
		"  curl -X POST %s/v1.0/actors/Counter/c1/method/increment\n"+
		"Ctrl-C stops everything.\n", l.plan.gatewayURL, l.plan.gatewayURL)
}

// stopAll stops the silos, then the apps, then the placement nodes.
func (l *clusterLauncher) stopAll() {
	fmt.Fprintln(l.out, "stopping: silos, then apps, then placement nodes")
	for _, group := range [][]*clusterProc{l.silos, l.apps, l.placement} {
		l.stopGroup(group)
	}
}

// stopGroup sends SIGTERM to the process group of every process of procs
// that has one left, waits up to the stop timeout for each process and
// everything it started to exit, and kills what is left then.
func (l *clusterLauncher) stopGroup(procs []*clusterProc) {
	var stopping []*clusterProc
	for _, p := range procs {
		if p.proc.Exited() && !p.proc.GroupAlive() {
			continue
		}
		stopping = append(stopping, p)
		_ = p.proc.Signal(syscall.SIGTERM)
	}
	deadline := l.clock.Now().Add(l.plan.stopTimeout)
	for _, p := range stopping {
		if l.awaitGone(p, deadline) {
			fmt.Fprintf(l.out, "stopped %s (pid %d): %s\n", p.spec.Name, p.proc.Pid(), p.proc.ExitStatus())
			continue
		}
		p.proc.Kill()
		fmt.Fprintf(l.out, "killed %s (pid %d): it did not exit within %v of SIGTERM\n", p.spec.Name, p.proc.Pid(), l.plan.stopTimeout)
	}
}

// awaitGone waits until p has exited and nothing is left in its process
// group (a shell's child, say), or until deadline; it reports which came first.
func (l *clusterLauncher) awaitGone(p *clusterProc, deadline time.Time) bool {
	timer := l.clock.NewTimer(0)
	defer timer.Stop()
	for {
		left := deadline.Sub(l.clock.Now())
		if p.proc.Exited() && !p.proc.GroupAlive() {
			return true
		}
		if left <= 0 {
			return false
		}
		timer.Reset(min(left, 20*time.Millisecond))
		done := p.proc.Done()
		if p.proc.Exited() {
			done = nil // only the group is awaited now
		}
		select {
		case <-done:
		case <-timer.C():
		}
	}
}

// countOf writes n things, as "1 silo" or "3 silos".
func countOf(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
