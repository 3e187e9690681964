//go:build unix

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
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// When fakeClusterEnv is set, the test binary plays a process of a cluster
// instead of running tests: `placement` or `silo` with the flags the launcher
// passes, or an app (any other first argument). Each serves its readiness
// endpoint until SIGTERM and then appends "<role> <name>" to the file named
// by fakeStopLogEnv.
const (
	fakeClusterEnv = "GRANARY_TEST_FAKE_CLUSTER_PROCESS"
	fakeStopLogEnv = "GRANARY_TEST_FAKE_STOP_LOG"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeClusterEnv) != "" {
		os.Exit(runFakeClusterProcess(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runFakeClusterProcess plays one cluster process and returns its exit status.
// A fake silo checks that its apps already answer and that each app was told
// this silo's port; given --fake-fail it exits 3 at once, given --fake-mute
// it never listens, and given --fake-stubborn it ignores SIGTERM.
func runFakeClusterProcess(args []string) int {
	role := "app"
	if len(args) > 0 && (args[0] == kindPlacement || args[0] == kindSilo) {
		role, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	id := fs.String("id", "", "")
	httpAddr := fs.String("http-addr", "", "")
	httpPort := fs.Int("http-port", 0, "")
	fail := fs.Bool("fake-fail", false, "")
	mute := fs.Bool("fake-mute", false, "")
	stubborn := fs.Bool("fake-stubborn", false, "")
	var apps clusterArgsFlag
	fs.Var(&apps, "app-url", "")
	for _, name := range []string{"raft-addr", "grpc-addr", "data-dir", "peers", "placement", "internal-addr", "state-store"} {
		fs.String(name, "", "")
	}
	if role != "app" {
		if err := fs.Parse(args); err != nil {
			return 2
		}
	}
	term := make(chan os.Signal, 1)
	if *stubborn {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}

	name, addr, path, body := *id, *httpAddr, "/status", `{"node":{}}`
	switch role {
	case kindSilo:
		if *fail {
			fmt.Println("fake silo failing on purpose")
			return 3
		}
		for _, app := range apps {
			resp, err := http.Get(app + "/fake-env")
			if err != nil {
				fmt.Printf("fake silo %s: app %s does not answer: %v\n", name, app, err)
				return 4
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != strconv.Itoa(*httpPort) {
				fmt.Printf("fake silo %s on port %d: app %s was given DAPR_HTTP_PORT %q\n", name, *httpPort, app, got)
				return 4
			}
		}
		addr, path, body = net.JoinHostPort("127.0.0.1", strconv.Itoa(*httpPort)), "/v1.0/healthz", ""
	case "app":
		name = os.Getenv("APP_PORT")
		addr, path, body = net.JoinHostPort(os.Getenv("APP_HOST"), os.Getenv("APP_PORT")), "/fake-env", os.Getenv("DAPR_HTTP_PORT")
	}
	if *mute {
		fmt.Printf("fake %s %s staying silent\n", role, name)
	} else {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				http.NotFound(w, r)
				return
			}
			fmt.Fprint(w, body)
		}))
		fmt.Printf("fake %s %s listening on %s\n", role, name, addr)
	}
	if *stubborn {
		select {}
	}
	<-term
	if f, err := os.OpenFile(os.Getenv(fakeStopLogEnv), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "%s %s\n", role, name)
		f.Close()
	}
	return 0
}

// flagPairs returns the values of every --name value pair of argv after the
// program and its subcommand.
func flagPairs(t *testing.T, argv []string) map[string][]string {
	t.Helper()
	vals := map[string][]string{}
	rest := argv[2:]
	for len(rest) > 0 {
		if !strings.HasPrefix(rest[0], "--") || len(rest) < 2 {
			t.Fatalf("argv %q: %q is not a --flag value pair", argv, rest)
		}
		vals[rest[0][2:]] = append(vals[rest[0][2:]], rest[1])
		rest = rest[2:]
	}
	return vals
}

func flagOnce(t *testing.T, vals map[string][]string, name string) string {
	t.Helper()
	if len(vals[name]) != 1 {
		t.Fatalf("--%s given %d times (%q), want once", name, len(vals[name]), vals[name])
	}
	return vals[name][0]
}

func loopbackPort(t *testing.T, addr string) int {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("address %q is not 127.0.0.1:port", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

func envToMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		m[name] = value
	}
	return m
}

func TestClusterPlan(t *testing.T) {
	const granary, runDir = "/opt/bin/granary", "/runs/r1"
	cases := []struct {
		name                string
		args                []string
		placement, silos    int
		appCmd, appShell    string // --app-cmd and what the shell is given
		appURLs, siloArgs   []string
		basePort            int
		store, storeVisible string
	}{
		{name: "one of each", args: []string{"--placement", "1", "--silos", "1", "--state-store", "redis://127.0.0.1:6379/0"},
			placement: 1, silos: 1, store: "redis://127.0.0.1:6379/0", storeVisible: "redis://127.0.0.1:6379/0"},
		{name: "defaults with one app per silo, consecutive ports",
			args:      []string{"--state-store", "redis://u:secret@127.0.0.1:6379/1", "--app-cmd", "go run ./examples/counter-go", "--base-port", "7000"},
			placement: 3, silos: 3, appCmd: "go run ./examples/counter-go", appShell: "exec go run ./examples/counter-go", basePort: 7000,
			store: "redis://u:secret@127.0.0.1:6379/1", storeVisible: "redis://u:xxxxx@127.0.0.1:6379/1"},
		{name: "five nodes, shared apps, silo arguments",
			args: []string{"--placement", "5", "--silos", "2", "--state-store", "rediss://cache:6380/0",
				"--app-url", "http://127.0.0.1:3000", "--app-url", "shop=http://127.0.0.1:3001/base",
				"--silo-arg", "--api-token", "--silo-arg", "s3cret"},
			placement: 5, silos: 2, appURLs: []string{"http://127.0.0.1:3000", "shop=http://127.0.0.1:3001/base"},
			siloArgs: []string{"--api-token", "s3cret"}, store: "rediss://cache:6380/0", storeVisible: "rediss://cache:6380/0"},
		{name: "an app command with shell syntax",
			args:      []string{"--silos", "2", "--state-store", "redis://127.0.0.1:6379/0", "--app-cmd", "cd examples/counter-go && PORT=$APP_PORT go run ."},
			placement: 3, silos: 2, appCmd: "cd examples/counter-go && PORT=$APP_PORT go run .", appShell: "cd examples/counter-go && PORT=$APP_PORT go run .",
			store: "redis://127.0.0.1:6379/0", storeVisible: "redis://127.0.0.1:6379/0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := parseClusterUpFlags(c.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if f.stopTimeout != defaultClusterStopTimeout || f.readyTimeout != defaultClusterReadyTimeout {
				t.Errorf("timeouts %v/%v, want the defaults", f.stopTimeout, f.readyTimeout)
			}
			base := c.basePort
			if base == 0 {
				base = 20000
			}
			plan, err := buildClusterPlan(f, granary, runDir, consecutivePorts(base, f.portsNeeded()))
			if err != nil {
				t.Fatal(err)
			}
			apps := 0
			if c.appCmd != "" {
				apps = c.silos
			}
			if len(plan.placement) != c.placement || len(plan.silos) != c.silos || len(plan.apps) != apps {
				t.Fatalf("plan has %d placement nodes, %d silos, %d apps; want %d, %d, %d",
					len(plan.placement), len(plan.silos), len(plan.apps), c.placement, c.silos, apps)
			}
			if plan.stateStore != c.storeVisible {
				t.Errorf("state store shown as %q, want %q", plan.stateStore, c.storeVisible)
			}

			// Every port is used once, by the process that lists it, and
			// the ports are those handed to the plan.
			owner := map[int]string{}
			claim := func(p clusterProcSpec, used []int) {
				t.Helper()
				if !slices.Equal(used, p.ports) {
					t.Errorf("%s listens on %v by its arguments but lists %v", p.name, used, p.ports)
				}
				for _, port := range used {
					if o, dup := owner[port]; dup {
						t.Errorf("port %d used by %s and %s", port, o, p.name)
					}
					owner[port] = p.name
				}
			}

			wantPeers := make([]string, c.placement)
			var grpcAddrs []string
			for i, p := range plan.placement {
				name := fmt.Sprintf("p%d", i+1)
				if p.name != name || p.kind != kindPlacement || p.argv[0] != granary || p.argv[1] != "placement" {
					t.Fatalf("placement node %d: %s %s %q", i, p.name, p.kind, p.argv[:2])
				}
				v := flagPairs(t, p.argv)
				raft, grpcAddr, httpAddr := flagOnce(t, v, "raft-addr"), flagOnce(t, v, "grpc-addr"), flagOnce(t, v, "http-addr")
				claim(p, []int{loopbackPort(t, raft), loopbackPort(t, grpcAddr), loopbackPort(t, httpAddr)})
				wantPeers[i] = name + "=" + raft
				grpcAddrs = append(grpcAddrs, grpcAddr)
				if flagOnce(t, v, "id") != name || flagOnce(t, v, "data-dir") != filepath.Join(runDir, name) || p.dataDir != flagOnce(t, v, "data-dir") {
					t.Errorf("%s: --id %q, --data-dir %q, data dir %q", name, v["id"], v["data-dir"], p.dataDir)
				}
				if p.logPath != filepath.Join(runDir, "logs", name+".log") {
					t.Errorf("%s logs to %s", name, p.logPath)
				}
				if p.readyURL != "http://"+httpAddr+"/status" {
					t.Errorf("%s is awaited at %q", name, p.readyURL)
				}
			}
			for _, p := range plan.placement {
				if got := flagOnce(t, flagPairs(t, p.argv), "peers"); got != strings.Join(wantPeers, ",") {
					t.Errorf("%s: --peers %q, want %q", p.name, got, strings.Join(wantPeers, ","))
				}
			}

			for i, s := range plan.silos {
				name := fmt.Sprintf("s%d", i+1)
				if s.name != name || s.kind != kindSilo || s.argv[0] != granary || s.argv[1] != "silo" {
					t.Fatalf("silo %d: %s %s %q", i, s.name, s.kind, s.argv[:2])
				}
				if len(c.siloArgs) > 0 && !slices.Equal(s.argv[len(s.argv)-len(c.siloArgs):], c.siloArgs) {
					t.Errorf("%s: argv %q does not end with the silo arguments %q", name, s.argv, c.siloArgs)
				}
				v := flagPairs(t, s.argv)
				if flagOnce(t, v, "id") != name || flagOnce(t, v, "state-store") != c.store {
					t.Errorf("%s: --id %q, --state-store %q", name, v["id"], v["state-store"])
				}
				if got := flagOnce(t, v, "placement"); got != strings.Join(grpcAddrs, ",") {
					t.Errorf("%s: --placement %q, want every node's gRPC address %q", name, got, strings.Join(grpcAddrs, ","))
				}
				httpPort, err := strconv.Atoi(flagOnce(t, v, "http-port"))
				if err != nil {
					t.Fatal(err)
				}
				internal := flagOnce(t, v, "internal-addr")
				claim(s, []int{httpPort, loopbackPort(t, internal)})
				gateway := "http://127.0.0.1:" + strconv.Itoa(httpPort)
				if s.readyURL != gateway+"/v1.0/healthz" {
					t.Errorf("%s is awaited at %q", name, s.readyURL)
				}
				if i == 0 && plan.gatewayURL != gateway {
					t.Errorf("curl is pointed at %s, want the first silo's %s", plan.gatewayURL, gateway)
				}

				wantApps := c.appURLs
				if c.appCmd != "" {
					a := plan.apps[i]
					if a.name != fmt.Sprintf("app%d", i+1) || a.kind != kindApp || !slices.Equal(a.argv, []string{"/bin/sh", "-c", c.appShell}) {
						t.Fatalf("app of %s: %s %s %q", name, a.name, a.kind, a.argv)
					}
					env := envToMap(a.env)
					appPort, err := strconv.Atoi(env["APP_PORT"])
					if err != nil {
						t.Fatalf("%s: APP_PORT %q", a.name, env["APP_PORT"])
					}
					claim(a, []int{appPort})
					want := map[string]string{"APP_HOST": "127.0.0.1", "APP_PORT": env["APP_PORT"],
						"DAPR_HTTP_PORT": strconv.Itoa(httpPort), "GRANARY_URL": gateway}
					if len(env) != len(want) {
						t.Errorf("%s: env %q, want %v", a.name, a.env, want)
					}
					for k, val := range want {
						if env[k] != val {
							t.Errorf("%s: %s=%q, want %q", a.name, k, env[k], val)
						}
					}
					if a.readyAddr != "127.0.0.1:"+env["APP_PORT"] || a.readyURL != "" {
						t.Errorf("%s is awaited at %q / %q", a.name, a.readyURL, a.readyAddr)
					}
					wantApps = []string{"http://127.0.0.1:" + env["APP_PORT"]}
				}
				if !slices.Equal(v["app-url"], wantApps) {
					t.Errorf("%s: --app-url %q, want %q", name, v["app-url"], wantApps)
				}
			}

			if len(owner) != f.portsNeeded() {
				t.Errorf("the processes use %d ports, want %d", len(owner), f.portsNeeded())
			}
			for port := base; port < base+f.portsNeeded(); port++ {
				if _, ok := owner[port]; !ok {
					t.Errorf("port %d of the range handed out is unused", port)
				}
			}
		})
	}
}

func TestClusterUpFlagsRefused(t *testing.T) {
	store := []string{"--state-store", "redis://127.0.0.1:6379/0"}
	cases := []struct {
		args []string
		want string // a substring of the error; "" means a usage error
	}{
		{[]string{"--placement", "2"}, "want 1, 3 or 5"},
		{[]string{"--placement", "0"}, "want 1, 3 or 5"},
		{[]string{"--placement", "7"}, "want 1, 3 or 5"},
		{[]string{"--silos", "0"}, "at least 1"},
		{[]string{"--base-port", "70000"}, "not a port"},
		{[]string{"--base-port", "65530"}, "past 65535"},
		{[]string{"--stop-timeout", "0s"}, "must be positive"},
		{[]string{"--app-url", "http://127.0.0.1:3000", "--app-cmd", "./app"}, "exclude each other"},
		{[]string{"--app-url", "ftp://x"}, ""},
		{[]string{"--no-such-flag"}, ""},
		{[]string{"stray"}, ""},
	}
	for _, c := range cases {
		args := append(slices.Clone(store), c.args...)
		_, err := parseClusterUpFlags(args, io.Discard)
		switch {
		case err == nil:
			t.Errorf("%q accepted", args)
		case c.want == "" && !errors.Is(err, errUsage):
			t.Errorf("%q: %v, want a usage error", args, err)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%q: %v, want it to mention %q", args, err, c.want)
		}
	}
	for _, args := range [][]string{nil, {"--state-store", ""}, {"--state-store", "bbolt"}, {"--state-store", "embedded"}} {
		_, err := parseClusterUpFlags(args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "share one store") || !strings.Contains(err.Error(), "redis://") {
			t.Errorf("%q: %v, want a refusal saying the silos share one store, with an example", args, err)
		}
	}
	if _, err := parseClusterUpFlags(append(slices.Clone(store), "--base-port", "65000"), io.Discard); err != nil {
		t.Errorf("a base port with room for the cluster refused: %v", err)
	}
}

func TestClusterSubcommands(t *testing.T) {
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	if err := runCluster(ctx, nil, &stdout, &stderr); !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), "granary cluster up") {
		t.Errorf("no subcommand: %v, stderr %q", err, stderr.String())
	}
	stderr.Reset()
	if err := runCluster(ctx, []string{"down"}, &stdout, &stderr); !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), `unknown subcommand "down"`) {
		t.Errorf("unknown subcommand: %v, stderr %q", err, stderr.String())
	}
	stderr.Reset()
	if err := runCluster(ctx, []string{"up", "--help"}, &stdout, &stderr); !errors.Is(err, errUsage) ||
		!strings.Contains(stderr.String(), "Usage: granary cluster up") || !strings.Contains(stderr.String(), "-stop-timeout") {
		t.Errorf("up --help: %v, stderr %q", err, stderr.String())
	}
	stdout.Reset()
	if err := runCluster(ctx, []string{"help"}, &stdout, io.Discard); err != nil || !strings.Contains(stdout.String(), "Usage: granary cluster up") {
		t.Errorf("help: %v, stdout %q", err, stdout.String())
	}
	if code := run(ctx, []string{"cluster", "up", "--placement", "2", "--state-store", "redis://127.0.0.1:6379/0"}, io.Discard, io.Discard); code != 1 {
		t.Errorf("granary cluster up --placement 2 exited %d, want 1", code)
	}
}

func TestClusterFreePortsAndHelpers(t *testing.T) {
	ports, err := pickFreePorts(30)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, port := range ports {
		if seen[port] {
			t.Fatalf("port %d picked twice", port)
		}
		seen[port] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("picked port %d cannot be bound: %v", port, err)
		}
		ln.Close()
	}

	env := envToMap(envWith([]string{"A=1", "APP_PORT=9", "B=x=y"}, []string{"APP_PORT=3000", "C="}))
	if len(env) != 4 || env["A"] != "1" || env["APP_PORT"] != "3000" || env["B"] != "x=y" || env["C"] != "" {
		t.Errorf("envWith: %v", env)
	}

	path := filepath.Join(t.TempDir(), "x.log")
	var b strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tail := logTail(path)
	if !strings.Contains(tail, path) || !strings.Contains(tail, "line 30\n") || !strings.Contains(tail, "line 11\n") || strings.Contains(tail, "line 10\n") {
		t.Errorf("tail of 30 lines is not the last %d:\n%s", clusterLogTailLines, tail)
	}
}

// clusterOutput is a bytes.Buffer safe for one writer and concurrent readers.
type clusterOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *clusterOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *clusterOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startFakeCluster runs granary cluster up with the test binary as every
// process, in the background, and returns its output and its result.
func startFakeCluster(t *testing.T, ctx context.Context, args ...string) (*clusterOutput, <-chan error, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	t.Setenv(fakeClusterEnv, "1")
	t.Setenv(fakeStopLogEnv, filepath.Join(runDir, "stops"))
	t.Setenv("GORACE", "atexit_sleep_ms=0") // a race-enabled child would pause 1s on exit
	out := &clusterOutput{}
	errc := make(chan error, 1)
	args = append([]string{"up", "--granary", exe, "--run-dir", runDir, "--state-store", "redis://127.0.0.1:1/0"}, args...)
	go func() { errc <- runCluster(ctx, args, out, out) }()
	return out, errc, runDir
}

var clusterStartedLine = regexp.MustCompile(`(?m)^started (\S+) \(pid (\d+)\), log (\S+)$`)

// clusterStartedPids returns the pid of every process the output says was started.
func clusterStartedPids(t *testing.T, out string) map[string]int {
	t.Helper()
	pids := map[string]int{}
	for _, m := range clusterStartedLine.FindAllStringSubmatch(out, -1) {
		pid, _ := strconv.Atoi(m[2])
		pids[m[1]] = pid
	}
	return pids
}

// requireProcessGone fails unless pid and its process group have ended.
func requireProcessGone(t *testing.T, name string, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("%s (pid %d) still exists after the launcher returned (kill 0: %v)", name, pid, err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the process group of %s (%d) still exists after the launcher returned (kill 0: %v)", name, pid, err)
	}
}

func TestClusterUpRunsAndStopsRealProcesses(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	appCmd := "'" + strings.ReplaceAll(exe, "'", `'\''`) + "' app"
	out, errc, runDir := startFakeCluster(t, ctx, "--placement", "3", "--silos", "2", "--app-cmd", appCmd, "--stop-timeout", "5s", "--ready-timeout", "8s")

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		select {
		case err := <-errc:
			t.Fatalf("the launcher returned %v before the cluster was ready; output:\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster was not ready within 10s; output:\n%s", out.String())
		}
	}
	text := out.String()

	// The table names every process with its pid, addresses and log.
	rows := map[string][]string{}
	header := strings.Index(text, "\nNAME ")
	if header < 0 {
		t.Fatalf("no table in the output:\n%s", text)
	}
	for line := range strings.Lines(text[header:]) {
		if f := strings.Fields(line); len(f) > 2 && regexp.MustCompile(`^(p|s|app)\d$`).MatchString(f[0]) {
			rows[f[0]] = f
		}
	}
	started := clusterStartedPids(t, text)
	names := []string{"p1", "p2", "p3", "app1", "app2", "s1", "s2"}
	if len(rows) != len(names) || len(started) != len(names) {
		t.Fatalf("table rows %v and started lines %v, want %v; output:\n%s", rows, started, names, text)
	}
	for _, name := range names {
		row := rows[name]
		if row == nil {
			t.Fatalf("no table row for %s:\n%s", name, text)
		}
		pid, err := strconv.Atoi(row[1])
		if err != nil || pid != started[name] {
			t.Fatalf("%s: pid %q in the table, %d when started", name, row[1], started[name])
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("%s (pid %d) is not running: %v", name, pid, err)
		}
		logPath := filepath.Join(runDir, "logs", name+".log")
		if row[len(row)-1] != logPath {
			t.Errorf("%s: log %q in the table, want %q", name, row[len(row)-1], logPath)
		}
		logged, err := os.ReadFile(logPath)
		if err != nil || !strings.Contains(string(logged), "listening on 127.0.0.1:") {
			t.Errorf("%s: log %s: %v, %q", name, logPath, err, logged)
		}
	}
	s1 := strings.Join(rows["s1"], " ")
	gateway := regexp.MustCompile(`gateway (http://127\.0\.0\.1:\d+)`).FindStringSubmatch(s1)
	if gateway == nil {
		t.Fatalf("s1's row %q has no gateway URL", s1)
	}
	if want := "curl -X POST " + gateway[1] + "/v1.0/actors/Counter/c1/method/increment"; !strings.Contains(text, want) {
		t.Errorf("the output lacks %q:\n%s", want, text)
	}
	for _, name := range []string{"p1", "p2", "p3"} {
		if st, err := os.Stat(filepath.Join(runDir, name)); err != nil || !st.IsDir() {
			t.Errorf("no data directory for %s: %v", name, err)
		}
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("the launcher stopped with %v; output:\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the launcher did not stop within 10s of the cancel; output:\n%s", out.String())
	}
	for _, name := range names {
		requireProcessGone(t, name, started[name])
		// The apps run under a shell (the command is quoted), which SIGTERM ends.
		want := fmt.Sprintf("stopped %s (pid %d): exit status 0", name, started[name])
		if strings.HasPrefix(name, "app") {
			want = fmt.Sprintf("stopped %s (pid %d): signal: terminated", name, started[name])
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output lacks %q:\n%s", want, out.String())
		}
	}

	// Silos stop first, then apps, then placement nodes.
	stops, err := os.ReadFile(filepath.Join(runDir, "stops"))
	if err != nil {
		t.Fatal(err)
	}
	rank := map[string]int{kindSilo: 0, kindApp: 1, kindPlacement: 2}
	var roles []string
	for line := range strings.Lines(string(stops)) {
		roles = append(roles, strings.Fields(line)[0])
	}
	if len(roles) != len(names) || !slices.IsSortedFunc(roles, func(a, b string) int { return rank[a] - rank[b] }) {
		t.Errorf("stop order %q, want every silo, then every app, then every placement node", roles)
	}
}

func TestClusterUpStopsEverythingWhenAStartFails(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		want     []string // substrings of the error
		wantOut  string   // substring of the output
		maxTaken time.Duration
	}{
		{name: "a silo exits", args: []string{"--silo-arg", "--fake-fail=true"},
			want:    []string{"s1 (pid ", "exited while the cluster was starting", "exit status 3", "fake silo failing on purpose", "s1.log"},
			wantOut: "stopped p1", maxTaken: 5 * time.Second},
		{name: "a silo never answers and ignores SIGTERM", args: []string{"--silo-arg", "--fake-mute=true", "--silo-arg", "--fake-stubborn=true", "--ready-timeout", "1s", "--stop-timeout", "300ms"},
			want:    []string{"s1 (pid ", "did not answer GET http://127.0.0.1:", "/v1.0/healthz within 1s", "fake silo s1 staying silent"},
			wantOut: "killed s1", maxTaken: 6 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			began := time.Now()
			out, errc, _ := startFakeCluster(t, context.Background(), append([]string{"--placement", "1", "--silos", "1"}, c.args...)...)
			var err error
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatalf("the launcher still runs after 10s; output:\n%s", out.String())
			}
			if took := time.Since(began); took > c.maxTaken {
				t.Errorf("the launcher took %v to give up", took)
			}
			if err == nil {
				t.Fatalf("the launcher returned nil; output:\n%s", out.String())
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.Contains(out.String(), c.wantOut) {
				t.Errorf("output lacks %q:\n%s", c.wantOut, out.String())
			}
			started := clusterStartedPids(t, out.String())
			if len(started) != 2 {
				t.Fatalf("started %v, want p1 and s1", started)
			}
			for name, pid := range started {
				requireProcessGone(t, name, pid)
			}
		})
	}
}
