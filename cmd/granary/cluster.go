package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/internal/launch"
	"github.com/granaryhq/granary/internal/mtls"
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
	tls          bool
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
	fs.BoolVar(&f.tls, "tls", false, "mutual TLS on every internal link: a CA and a certificate per process are made in RUN/tls (kept for the next start in the same --run-dir)")
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

// portsNeeded counts the ports of the cluster: raft, gRPC, status and
// metrics per placement node; gateway, internal, gRPC API and metrics per
// silo; one per app started.
func (f *clusterFlags) portsNeeded() int {
	n := 4*f.placement + 4*f.silos
	if f.appCmd != "" {
		n += f.silos
	}
	return n
}

// clusterProcSpec is one process of a cluster, before it starts: what
// launch.Start needs, and what the launcher shows and checks.
type clusterProcSpec struct {
	launch.Spec
	kind      string // kindPlacement, kindApp or kindSilo
	ports     []int  // every port it listens on
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
// out in order: placement raft, gRPC, status and metrics ports, then silo
// gateway, internal, gRPC API and metrics ports, then app ports. With
// f.tls, every placement node and silo is given the CA and its certificate
// under RUN/tls (see clusterTLSFiles).
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

	raft, grpcPorts, status, pmetrics := take(f.placement), take(f.placement), take(f.placement), take(f.placement)
	gateway, internal, api, smetrics := take(f.silos), take(f.silos), take(f.silos), take(f.silos)
	tlsArgs := func(name string) []string {
		if !f.tls {
			return nil
		}
		ca, cert, key := clusterTLSFiles(runDir, name)
		return []string{"--tls-ca", ca, "--tls-cert", cert, "--tls-key", key}
	}
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
			Spec: launch.Spec{Name: name, DataDir: dataDir, LogPath: logPath(name),
				Argv: append([]string{granary, "placement", "--id", name,
					"--raft-addr", addr(raft[i]), "--grpc-addr", grpcAddrs[i], "--http-addr", addr(status[i]),
					"--metrics-port", strconv.Itoa(pmetrics[i]),
					"--data-dir", dataDir, "--peers", strings.Join(peers, ",")}, tlsArgs(name)...),
				ReadyURL: statusURL},
			kind:      kindPlacement,
			ports:     []int{raft[i], grpcPorts[i], status[i], pmetrics[i]},
			addresses: fmt.Sprintf("raft %s  grpc %s  status %s  metrics %s", addr(raft[i]), grpcAddrs[i], statusURL, addr(pmetrics[i])),
		})
	}
	for i := range f.silos {
		name := fmt.Sprintf("s%d", i+1)
		gatewayURL := "http://" + addr(gateway[i])
		argv := []string{granary, "silo", "--id", name, "--placement", strings.Join(grpcAddrs, ","),
			"--http-port", strconv.Itoa(gateway[i]), "--internal-addr", addr(internal[i]),
			"--grpc-port", strconv.Itoa(api[i]), "--metrics-port", strconv.Itoa(smetrics[i]),
			"--state-store", f.stateStore}
		argv = append(argv, tlsArgs(name)...)
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
				Spec: launch.Spec{Name: appName, LogPath: logPath(appName),
					Argv: launch.ShellArgv(f.appCmd),
					Env: []string{"APP_HOST=127.0.0.1", "APP_PORT=" + strconv.Itoa(appPorts[i]),
						"DAPR_HTTP_PORT=" + strconv.Itoa(gateway[i]), "GRANARY_URL=" + gatewayURL},
					ReadyAddr: appAddr},
				kind:      kindApp,
				ports:     []int{appPorts[i]},
				addresses: fmt.Sprintf("app %s  for %s", appAddr, name),
			})
		}
		argv = append(argv, f.siloArgs...)
		plan.silos = append(plan.silos, clusterProcSpec{
			Spec:      launch.Spec{Name: name, LogPath: logPath(name), Argv: argv, ReadyURL: gatewayURL + "/v1.0/healthz"},
			kind:      kindSilo,
			ports:     []int{gateway[i], internal[i], api[i], smetrics[i]},
			addresses: fmt.Sprintf("gateway %s  internal %s  grpc %s  metrics %s", gatewayURL, addr(internal[i]), addr(api[i]), addr(smetrics[i])),
		})
	}
	return plan, nil
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
	if !launch.Supported {
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
		ports = launch.ConsecutivePorts(f.basePort, f.portsNeeded())
	} else if ports, err = launch.FreePorts(f.portsNeeded()); err != nil {
		return err
	}
	plan, err := buildClusterPlan(f, granary, runDir, ports)
	if err != nil {
		return err
	}
	if f.tls {
		if err := makeClusterCerts(runDir, plan, stdout); err != nil {
			return err
		}
	}
	l := &clusterLauncher{plan: plan, out: stdout, clock: clock.Real,
		client: &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}}
	defer l.client.CloseIdleConnections()
	return l.run(ctx)
}

// clusterTLSFiles are the CA certificate and the certificate and key of the
// process name, under runDir/tls.
func clusterTLSFiles(runDir, name string) (ca, cert, key string) {
	dir := filepath.Join(runDir, "tls")
	return filepath.Join(dir, "ca.crt"), filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

// makeClusterCerts makes the cluster's CA in runDir/tls, unless one is
// there from an earlier start, and issues a certificate to every placement
// node and silo of plan.
func makeClusterCerts(runDir string, plan *clusterPlan, out io.Writer) error {
	dir := filepath.Join(runDir, "tls")
	now := clock.Real.Now()
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); errors.Is(err, os.ErrNotExist) {
		if err := mtls.InitCA(dir, now, mtls.DefaultCAValidity); err != nil {
			return fmt.Errorf("--tls: %w", err)
		}
	}
	for _, p := range append(append([]clusterProcSpec{}, plan.placement...), plan.silos...) {
		if _, _, err := mtls.Issue(dir, p.Name, dir, nil, now, mtls.DefaultCertValidity); err != nil {
			return fmt.Errorf("--tls: certificate of %s: %w", p.Name, err)
		}
	}
	fmt.Fprintf(out, "mutual TLS: CA and certificates in %s\n", dir)
	return nil
}
