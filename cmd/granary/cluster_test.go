//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/launch"
	"github.com/granaryhq/granary/internal/mtls"
)

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
		tls                 bool
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
				"--silo-arg", "--api-token", "--silo-arg", "s3cret", "--tls"}, tls: true,
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
			plan, err := buildClusterPlan(f, granary, runDir, launch.ConsecutivePorts(base, f.portsNeeded()))
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
					t.Errorf("%s listens on %v by its arguments but lists %v", p.Name, used, p.ports)
				}
				for _, port := range used {
					if o, dup := owner[port]; dup {
						t.Errorf("port %d used by %s and %s", port, o, p.Name)
					}
					owner[port] = p.Name
				}
			}

			wantPeers := make([]string, c.placement)
			var grpcAddrs []string
			for i, p := range plan.placement {
				name := fmt.Sprintf("p%d", i+1)
				if p.Name != name || p.kind != kindPlacement || p.Argv[0] != granary || p.Argv[1] != "placement" {
					t.Fatalf("placement node %d: %s %s %q", i, p.Name, p.kind, p.Argv[:2])
				}
				v := flagPairs(t, p.Argv)
				raft, grpcAddr, httpAddr := flagOnce(t, v, "raft-addr"), flagOnce(t, v, "grpc-addr"), flagOnce(t, v, "http-addr")
				claim(p, []int{loopbackPort(t, raft), loopbackPort(t, grpcAddr), loopbackPort(t, httpAddr), port(t, flagOnce(t, v, "metrics-port"))})
				checkTLSArgs(t, v, runDir, name, c.tls)
				wantPeers[i] = name + "=" + raft
				grpcAddrs = append(grpcAddrs, grpcAddr)
				if flagOnce(t, v, "id") != name || flagOnce(t, v, "data-dir") != filepath.Join(runDir, name) || p.DataDir != flagOnce(t, v, "data-dir") {
					t.Errorf("%s: --id %q, --data-dir %q, data dir %q", name, v["id"], v["data-dir"], p.DataDir)
				}
				if p.LogPath != filepath.Join(runDir, "logs", name+".log") {
					t.Errorf("%s logs to %s", name, p.LogPath)
				}
				if p.ReadyURL != "http://"+httpAddr+"/status" {
					t.Errorf("%s is awaited at %q", name, p.ReadyURL)
				}
			}
			for _, p := range plan.placement {
				if got := flagOnce(t, flagPairs(t, p.Argv), "peers"); got != strings.Join(wantPeers, ",") {
					t.Errorf("%s: --peers %q, want %q", p.Name, got, strings.Join(wantPeers, ","))
				}
			}

			for i, s := range plan.silos {
				name := fmt.Sprintf("s%d", i+1)
				if s.Name != name || s.kind != kindSilo || s.Argv[0] != granary || s.Argv[1] != "silo" {
					t.Fatalf("silo %d: %s %s %q", i, s.Name, s.kind, s.Argv[:2])
				}
				if len(c.siloArgs) > 0 && !slices.Equal(s.Argv[len(s.Argv)-len(c.siloArgs):], c.siloArgs) {
					t.Errorf("%s: argv %q does not end with the silo arguments %q", name, s.Argv, c.siloArgs)
				}
				v := flagPairs(t, s.Argv)
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
				claim(s, []int{httpPort, loopbackPort(t, internal), port(t, flagOnce(t, v, "grpc-port")), port(t, flagOnce(t, v, "metrics-port"))})
				checkTLSArgs(t, v, runDir, name, c.tls)
				gateway := "http://127.0.0.1:" + strconv.Itoa(httpPort)
				if s.ReadyURL != gateway+"/v1.0/healthz" {
					t.Errorf("%s is awaited at %q", name, s.ReadyURL)
				}
				if i == 0 && plan.gatewayURL != gateway {
					t.Errorf("curl is pointed at %s, want the first silo's %s", plan.gatewayURL, gateway)
				}

				wantApps := c.appURLs
				if c.appCmd != "" {
					a := plan.apps[i]
					if a.Name != fmt.Sprintf("app%d", i+1) || a.kind != kindApp || !slices.Equal(a.Argv, []string{"/bin/sh", "-c", c.appShell}) {
						t.Fatalf("app of %s: %s %s %q", name, a.Name, a.kind, a.Argv)
					}
					env := envToMap(a.Env)
					appPort, err := strconv.Atoi(env["APP_PORT"])
					if err != nil {
						t.Fatalf("%s: APP_PORT %q", a.Name, env["APP_PORT"])
					}
					claim(a, []int{appPort})
					want := map[string]string{"APP_HOST": "127.0.0.1", "APP_PORT": env["APP_PORT"],
						"DAPR_HTTP_PORT": strconv.Itoa(httpPort), "GRANARY_URL": gateway}
					if len(env) != len(want) {
						t.Errorf("%s: env %q, want %v", a.Name, a.Env, want)
					}
					for k, val := range want {
						if env[k] != val {
							t.Errorf("%s: %s=%q, want %q", a.Name, k, env[k], val)
						}
					}
					if a.ReadyAddr != "127.0.0.1:"+env["APP_PORT"] || a.ReadyURL != "" {
						t.Errorf("%s is awaited at %q / %q", a.Name, a.ReadyURL, a.ReadyAddr)
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

func port(t *testing.T, s string) int {
	t.Helper()
	p, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("port %q: %v", s, err)
	}
	return p
}

// checkTLSArgs checks the mutual TLS flags of the process name: the CA and
// its own certificate under RUN/tls with --tls, none without.
func checkTLSArgs(t *testing.T, v map[string][]string, runDir, name string, tls bool) {
	t.Helper()
	if !tls {
		for _, fl := range []string{"tls-ca", "tls-cert", "tls-key"} {
			if len(v[fl]) > 0 {
				t.Errorf("%s: --%s %q without --tls", name, fl, v[fl])
			}
		}
		return
	}
	dir := filepath.Join(runDir, "tls")
	for fl, want := range map[string]string{"tls-ca": filepath.Join(dir, "ca.crt"), "tls-cert": filepath.Join(dir, name+".crt"), "tls-key": filepath.Join(dir, name+".key")} {
		if got := flagOnce(t, v, fl); got != want {
			t.Errorf("%s: --%s %q, want %q", name, fl, got, want)
		}
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

// cluster up --tls makes a CA and a certificate for every placement node
// and silo, at the paths their flags name, and keeps the CA on a restart.
func TestClusterUpTLSCertificates(t *testing.T) {
	runDir := t.TempDir()
	f, err := parseClusterUpFlags([]string{"--placement", "3", "--silos", "2", "--state-store", "redis://127.0.0.1:6379/0", "--tls"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := buildClusterPlan(f, "/bin/granary", runDir, launch.ConsecutivePorts(30000, f.portsNeeded()))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := makeClusterCerts(runDir, plan, &out); err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(filepath.Join(runDir, "tls", "ca.crt"))
	for _, p := range append(append([]clusterProcSpec{}, plan.placement...), plan.silos...) {
		v := flagPairs(t, p.Argv)
		src, err := mtls.Load(mtls.Files{CA: flagOnce(t, v, "tls-ca"), Cert: flagOnce(t, v, "tls-cert"), Key: flagOnce(t, v, "tls-key")}, nil)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if src.Leaf().Subject.CommonName != p.Name {
			t.Errorf("%s has the certificate of %s", p.Name, src.Leaf().Subject.CommonName)
		}
	}
	if err := makeClusterCerts(runDir, plan, &out); err != nil {
		t.Fatalf("a second start: %v", err)
	}
	if again, _ := os.ReadFile(filepath.Join(runDir, "tls", "ca.crt")); string(again) != string(ca) {
		t.Error("a second start made a new CA")
	}
}
