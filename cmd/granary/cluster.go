package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/granaryhq/granary/internal/clock"
)

// This file is `granary cluster up`: a local cluster of real processes on
// 127.0.0.1 (placement nodes, silos and optionally one app per silo), each
// logging to a file of its own, stopped in order on Ctrl-C.

const clusterUsage = `Usage: granary cluster up [flags]

Starts a local Granary cluster on 127.0.0.1 as separate processes: the
placement nodes, the silos and, with --app-cmd, one app per silo. Each
process writes its output to RUN/logs/<name>.log. Ctrl-C (or SIGTERM) stops
them all: silos first, then apps, then placement nodes.

Every silo of a cluster must reach the same state store, so --state-store is
required, e.g. --state-store redis://127.0.0.1:6379/0.

Placement nodes bootstrap in RUN/p<N>; a second start in the same --run-dir
continues from that data, which needs the same ports: give --base-port.
A process that exits or does not answer while the cluster starts stops the
whole cluster; one that exits later is reported and the rest keep running.

Examples:
  granary cluster up --state-store redis://127.0.0.1:6379/0 \
    --app-cmd 'go run ./examples/counter-go'
  granary cluster up --placement 1 --silos 2 --state-store redis://127.0.0.1:6379/0 \
    --app-url http://127.0.0.1:3000 --base-port 7000

Flags:
`

// Defaults of granary cluster up.
const (
	defaultClusterReadyTimeout = 90 * time.Second
	defaultClusterStopTimeout  = 10 * time.Second
	clusterPollInterval        = 100 * time.Millisecond
	clusterProgressInterval    = 5 * time.Second
	clusterLogTailLines        = 20
)

// The kinds of process a cluster runs, in the order they start.
const (
	kindPlacement = "placement"
	kindApp       = "app"
	kindSilo      = "silo"
)

// clusterArgsFlag collects the values of a repeatable string flag.
type clusterArgsFlag []string

func (a *clusterArgsFlag) String() string { return strings.Join(*a, " ") }

func (a *clusterArgsFlag) Set(v string) error {
	*a = append(*a, v)
	return nil
}

type clusterFlags struct {
	placement    int
	silos        int
	stateStore   string
	apps         appFlag
	appCmd       string
	runDir       string
	basePort     int
	granary      string
	siloArgs     clusterArgsFlag
	readyTimeout time.Duration
	stopTimeout  time.Duration
}

func parseClusterUpFlags(args []string, stderr io.Writer) (*clusterFlags, error) {
	f := &clusterFlags{}
	fs := flag.NewFlagSet("granary cluster up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&f.placement, "placement", 3, "number of placement nodes: 1, 3 or 5")
	fs.IntVar(&f.silos, "silos", 3, "number of silos")
	fs.StringVar(&f.stateStore, "state-store", "", "state store URL every silo shares (required), e.g. redis://127.0.0.1:6379/0")
	fs.Var(&f.apps, "app-url", "base URL of an app every silo calls, as [id=]http://host:port (repeatable; excludes --app-cmd)")
	fs.StringVar(&f.appCmd, "app-cmd", "", "shell command starting one app per silo, run by /bin/sh with APP_HOST, APP_PORT, DAPR_HTTP_PORT and GRANARY_URL set (excludes --app-url)")
	fs.StringVar(&f.runDir, "run-dir", "", "directory of the logs and data directories (default ./.granary-cluster/<timestamp>)")
	fs.IntVar(&f.basePort, "base-port", 0, "use consecutive ports from this one (default: free ports chosen at start)")
	fs.StringVar(&f.granary, "granary", "", "the granary binary to run (default: this one)")
	fs.Var(&f.siloArgs, "silo-arg", "an argument appended to every silo's command line (repeatable)")
	fs.DurationVar(&f.readyTimeout, "ready-timeout", defaultClusterReadyTimeout, "longest wait for one process to answer")
	fs.DurationVar(&f.stopTimeout, "stop-timeout", defaultClusterStopTimeout, "how long each process may take to exit after SIGTERM before it is killed")
	fs.Usage = func() {
		fmt.Fprint(stderr, clusterUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "granary cluster up: unexpected argument %q\n", fs.Arg(0))
		return nil, errUsage
	}
	switch f.placement {
	case 1, 3, 5:
	default:
		return nil, fmt.Errorf("--placement %d: want 1, 3 or 5 nodes (an even number adds no fault tolerance)", f.placement)
	}
	if f.silos < 1 {
		return nil, fmt.Errorf("--silos %d: want at least 1", f.silos)
	}
	switch f.stateStore {
	case "", "bbolt", "embedded":
		return nil, errors.New("--state-store is required and must be a shared store: all silos of a cluster share one store, " +
			"and the embedded one is a file of one process (e.g. --state-store redis://127.0.0.1:6379/0)")
	}
	if len(f.apps) > 0 && f.appCmd != "" {
		return nil, errors.New("--app-url and --app-cmd exclude each other: give the URL of apps already running, or a command that starts one app per silo")
	}
	if f.basePort < 0 || f.basePort > 65535 {
		return nil, fmt.Errorf("--base-port %d is not a port", f.basePort)
	}
	if n := f.portsNeeded(); f.basePort > 0 && f.basePort+n-1 > 65535 {
		return nil, fmt.Errorf("--base-port %d: the cluster needs %d ports, past 65535", f.basePort, n)
	}
	if f.readyTimeout <= 0 || f.stopTimeout <= 0 {
		return nil, errors.New("--ready-timeout and --stop-timeout must be positive")
	}
	return f, nil
}

// portsNeeded counts the ports of the cluster: raft, gRPC and status per
// placement node; gateway and internal per silo; one per app started.
func (f *clusterFlags) portsNeeded() int {
	n := 3*f.placement + 2*f.silos
	if f.appCmd != "" {
		n += f.silos
	}
	return n
}

// clusterProcSpec is one process of a cluster, before it starts.
type clusterProcSpec struct {
	name    string   // p1, s1, app1
	kind    string   // kindPlacement, kindApp or kindSilo
	argv    []string // the program and its arguments
	env     []string // NAME=value set on top of the launcher's environment
	dataDir string   // created before the start; "" for none
	logPath string   // receives stdout and stderr
	ports   []int    // every port it listens on
	// The process is ready once GET readyURL answers 2xx or, when readyURL
	// is empty, once readyAddr accepts a TCP connection.
	readyURL  string
	readyAddr string
	addresses string // where it listens, for the table
}

// clusterPlan is every process of a cluster, in start order within each
// kind: placement nodes, then apps, then silos (the app of silo i is apps[i]).
type clusterPlan struct {
	runDir       string
	placement    []clusterProcSpec
	apps         []clusterProcSpec
	silos        []clusterProcSpec
	stateStore   string // redacted, for display
	gatewayURL   string // the first silo's gateway
	stopTimeout  time.Duration
	readyTimeout time.Duration
}

// buildClusterPlan lays out the cluster of f: granary is the binary run for
// placement nodes and silos, and ports (f.portsNeeded() of them) are handed
// out in order: placement raft, gRPC and status ports, then silo gateway
// and internal ports, then app ports.
func buildClusterPlan(f *clusterFlags, granary, runDir string, ports []int) (*clusterPlan, error) {
	if len(ports) != f.portsNeeded() {
		return nil, fmt.Errorf("cluster plan: %d ports for %d needed", len(ports), f.portsNeeded())
	}
	next := 0
	take := func(n int) []int {
		p := ports[next : next+n]
		next += n
		return p
	}
	addr := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	logPath := func(name string) string { return filepath.Join(runDir, "logs", name+".log") }

	raft, grpcPorts, status := take(f.placement), take(f.placement), take(f.placement)
	gateway, internal := take(f.silos), take(f.silos)
	var appPorts []int
	if f.appCmd != "" {
		appPorts = take(f.silos)
	}

	plan := &clusterPlan{runDir: runDir, stateStore: redactURL(f.stateStore),
		gatewayURL: "http://" + addr(gateway[0]), stopTimeout: f.stopTimeout, readyTimeout: f.readyTimeout}

	peers := make([]string, f.placement)
	grpcAddrs := make([]string, f.placement)
	for i := range f.placement {
		peers[i] = fmt.Sprintf("p%d=%s", i+1, addr(raft[i]))
		grpcAddrs[i] = addr(grpcPorts[i])
	}
	for i := range f.placement {
		name := fmt.Sprintf("p%d", i+1)
		dataDir := filepath.Join(runDir, name)
		statusURL := "http://" + addr(status[i]) + "/status"
		plan.placement = append(plan.placement, clusterProcSpec{
			name: name, kind: kindPlacement, dataDir: dataDir, logPath: logPath(name),
			argv: []string{granary, "placement", "--id", name,
				"--raft-addr", addr(raft[i]), "--grpc-addr", grpcAddrs[i], "--http-addr", addr(status[i]),
				"--data-dir", dataDir, "--peers", strings.Join(peers, ",")},
			ports:     []int{raft[i], grpcPorts[i], status[i]},
			readyURL:  statusURL,
			addresses: fmt.Sprintf("raft %s  grpc %s  status %s", addr(raft[i]), grpcAddrs[i], statusURL),
		})
	}
	for i := range f.silos {
		name := fmt.Sprintf("s%d", i+1)
		gatewayURL := "http://" + addr(gateway[i])
		argv := []string{granary, "silo", "--id", name, "--placement", strings.Join(grpcAddrs, ","),
			"--http-port", strconv.Itoa(gateway[i]), "--internal-addr", addr(internal[i]),
			"--state-store", f.stateStore}
		for _, a := range f.apps {
			v := a.url
			if a.id != "" {
				v = a.id + "=" + a.url
			}
			argv = append(argv, "--app-url", v)
		}
		if f.appCmd != "" {
			appName := fmt.Sprintf("app%d", i+1)
			appAddr := addr(appPorts[i])
			argv = append(argv, "--app-url", "http://"+appAddr)
			plan.apps = append(plan.apps, clusterProcSpec{
				name: appName, kind: kindApp, logPath: logPath(appName),
				argv: appArgv(f.appCmd),
				env: []string{"APP_HOST=127.0.0.1", "APP_PORT=" + strconv.Itoa(appPorts[i]),
					"DAPR_HTTP_PORT=" + strconv.Itoa(gateway[i]), "GRANARY_URL=" + gatewayURL},
				ports:     []int{appPorts[i]},
				readyAddr: appAddr,
				addresses: fmt.Sprintf("app %s  for %s", appAddr, name),
			})
		}
		argv = append(argv, f.siloArgs...)
		plan.silos = append(plan.silos, clusterProcSpec{
			name: name, kind: kindSilo, logPath: logPath(name), argv: argv,
			ports:     []int{gateway[i], internal[i]},
			readyURL:  gatewayURL + "/v1.0/healthz",
			addresses: fmt.Sprintf("gateway %s  internal %s", gatewayURL, addr(internal[i])),
		})
	}
	return plan, nil
}

// appArgv runs cmd with /bin/sh. A simple command (words only, no shell
// syntax) is exec'd by the shell, so the process the launcher starts, signals
// and lists is the app itself rather than a shell around it.
func appArgv(cmd string) []string {
	if strings.ContainsAny(cmd, ";&|<>()$`\\\"'*?[]#~=%{}!\n") {
		return []string{"/bin/sh", "-c", cmd}
	}
	return []string{"/bin/sh", "-c", "exec " + cmd}
}

// all returns every process in start order.
func (p *clusterPlan) all() []clusterProcSpec {
	all := append([]clusterProcSpec{}, p.placement...)
	all = append(all, p.apps...)
	return append(all, p.silos...)
}

func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}

// consecutivePorts returns n ports from base on.
func consecutivePorts(base, n int) []int {
	ports := make([]int, n)
	for i := range ports {
		ports[i] = base + i
	}
	return ports
}

// pickFreePorts returns n distinct TCP ports on 127.0.0.1 that nothing
// listened on a moment ago: it holds n listeners open at once, so the kernel
// cannot hand out the same port twice, then closes them. Another process may
// still take one before the cluster binds it.
func pickFreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, clusterUsage)
		return errUsage
	}
	switch args[0] {
	case "up":
		return runClusterUp(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, clusterUsage)
		return nil
	}
	fmt.Fprintf(stderr, "granary cluster: unknown subcommand %q (want up)\n\n%s", args[0], clusterUsage)
	return errUsage
}

func runClusterUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseClusterUpFlags(args, stderr)
	if err != nil {
		return err
	}
	if !processGroupsSupported {
		return errors.New("granary cluster runs on Linux and macOS only")
	}
	granary := f.granary
	if granary == "" {
		if granary, err = os.Executable(); err != nil {
			return fmt.Errorf("finding the granary binary (give --granary): %w", err)
		}
	}
	runDir := f.runDir
	if runDir == "" {
		runDir = filepath.Join(".granary-cluster", clock.Real.Now().Format("20060102-150405"))
	}
	if runDir, err = filepath.Abs(runDir); err != nil {
		return fmt.Errorf("--run-dir: %w", err)
	}
	var ports []int
	if f.basePort > 0 {
		ports = consecutivePorts(f.basePort, f.portsNeeded())
	} else if ports, err = pickFreePorts(f.portsNeeded()); err != nil {
		return err
	}
	plan, err := buildClusterPlan(f, granary, runDir, ports)
	if err != nil {
		return err
	}
	l := &clusterLauncher{plan: plan, out: stdout, clock: clock.Real,
		client: &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}}
	defer l.client.CloseIdleConnections()
	return l.run(ctx)
}

// clusterProc is a started process of the cluster.
type clusterProc struct {
	spec    clusterProcSpec
	cmd     *exec.Cmd
	start   time.Time
	done    chan struct{} // closed once the process has been waited for
	waitErr error         // valid once done is closed
}

func (p *clusterProc) pid() int { return p.cmd.Process.Pid }

func (p *clusterProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitStatus describes how the exited process ended.
func (p *clusterProc) exitStatus() string {
	if p.waitErr == nil {
		return "exit status 0"
	}
	return p.waitErr.Error()
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
			fmt.Fprintf(l.out, "%s (pid %d) exited: %s\n%s", p.spec.name, p.pid(), p.exitStatus(), logTail(p.spec.logPath))
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
		fmt.Fprintf(l.out, "started %s (pid %d), log %s\n", spec.name, p.pid(), spec.logPath)
	}
	return procs, nil
}

func (l *clusterLauncher) start(spec clusterProcSpec) (*clusterProc, error) {
	if spec.dataDir != "" {
		if err := os.MkdirAll(spec.dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: data directory: %w", spec.name, err)
		}
	}
	logFile, err := os.OpenFile(spec.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", spec.name, err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(spec.argv[0], spec.argv[1:]...)
	cmd.Env = envWith(os.Environ(), spec.env)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setOwnProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", spec.name, spec.argv[0], err)
	}
	p := &clusterProc{spec: spec, cmd: cmd, start: l.clock.Now(), done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
		l.exited <- p
	}()
	return p, nil
}

// envWith returns base with each NAME=value of set replacing any value NAME has.
func envWith(base, set []string) []string {
	replaced := map[string]bool{}
	for _, kv := range set {
		name, _, _ := strings.Cut(kv, "=")
		replaced[name] = true
	}
	env := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		if name, _, _ := strings.Cut(kv, "="); !replaced[name] {
			env = append(env, kv)
		}
	}
	return append(env, set...)
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
	what := "GET " + p.spec.readyURL
	if p.spec.readyURL == "" {
		what = "TCP connections on " + p.spec.readyAddr
	}
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
				q.spec.name, q.pid(), q.exitStatus(), logTail(q.spec.logPath))
		case <-timer.C():
		}
		err := l.probe(ctx, p.spec)
		now := l.clock.Now()
		if err == nil {
			fmt.Fprintf(l.out, "%s answers %s (%.1fs after its start)\n", p.spec.name, what, now.Sub(p.start).Seconds())
			return nil
		}
		if now.Sub(began) >= l.plan.readyTimeout {
			return fmt.Errorf("%s (pid %d) did not answer %s within %v (last: %v)\n%s",
				p.spec.name, p.pid(), what, l.plan.readyTimeout, err, logTail(p.spec.logPath))
		}
		if !now.Before(nextProgress) {
			fmt.Fprintf(l.out, "still waiting for %s to answer %s (%.0fs; last: %v)\n", p.spec.name, what, now.Sub(began).Seconds(), err)
			nextProgress = now.Add(clusterProgressInterval)
		}
		timer.Reset(clusterPollInterval)
	}
}

// probe checks once whether the process of spec is ready.
func (l *clusterLauncher) probe(ctx context.Context, spec clusterProcSpec) error {
	if spec.readyURL == "" {
		d := net.Dialer{Timeout: time.Second}
		conn, err := d.DialContext(ctx, "tcp", spec.readyAddr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, spec.readyURL, nil)
	if err != nil {
		return err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func (l *clusterLauncher) printTable(took time.Duration) {
	fmt.Fprintf(l.out, "\nGranary cluster is ready (%.1fs).\n\n", took.Seconds())
	tw := tabwriter.NewWriter(l.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPID\tLISTENS ON\tLOG")
	for _, group := range [][]*clusterProc{l.placement, l.silos, l.apps} {
		for _, p := range group {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", p.spec.name, p.pid(), p.spec.addresses, p.spec.logPath)
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
		if p.exited() && !processGroupAlive(p.pid()) {
			continue
		}
		stopping = append(stopping, p)
		_ = signalProcessGroup(p.pid(), syscall.SIGTERM)
	}
	deadline := l.clock.Now().Add(l.plan.stopTimeout)
	for _, p := range stopping {
		if l.awaitGone(p, deadline) {
			fmt.Fprintf(l.out, "stopped %s (pid %d): %s\n", p.spec.name, p.pid(), p.exitStatus())
			continue
		}
		_ = signalProcessGroup(p.pid(), syscall.SIGKILL)
		<-p.done
		fmt.Fprintf(l.out, "killed %s (pid %d): it did not exit within %v of SIGTERM\n", p.spec.name, p.pid(), l.plan.stopTimeout)
	}
}

// awaitGone waits until p has exited and nothing is left in its process
// group (a shell's child, say), or until deadline; it reports which came first.
func (l *clusterLauncher) awaitGone(p *clusterProc, deadline time.Time) bool {
	timer := l.clock.NewTimer(0)
	defer timer.Stop()
	for {
		left := deadline.Sub(l.clock.Now())
		if p.exited() && !processGroupAlive(p.pid()) {
			return true
		}
		if left <= 0 {
			return false
		}
		timer.Reset(min(left, 20*time.Millisecond))
		done := p.done
		if p.exited() {
			done = nil // only the group is awaited now
		}
		select {
		case <-done:
		case <-timer.C():
		}
	}
}

// processGroupAlive reports whether any process is left in the group pid leads.
func processGroupAlive(pid int) bool {
	return !errors.Is(signalProcessGroup(pid, 0), syscall.ESRCH)
}

// countOf writes n things, as "1 silo" or "3 silos".
func countOf(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// logTail returns the last lines of the log at path, indented, with a
// heading naming the file.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("  (log %s: %v)\n", path, err)
	}
	defer f.Close()
	const maxRead = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		_, _ = f.Seek(st.Size()-maxRead, io.SeekStart)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("  (log %s: %v)\n", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(data) == 0 {
		return fmt.Sprintf("  (log %s is empty)\n", path)
	}
	if len(lines) > clusterLogTailLines {
		lines = lines[len(lines)-clusterLogTailLines:]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "  last lines of %s:\n", path)
	for _, line := range lines {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	return b.String()
}
