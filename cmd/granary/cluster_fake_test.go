//go:build unix

package main

// The harness of the cluster tests: the test binary playing each process of
// a cluster, and granary cluster up run in the background with it.

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
	"strconv"
	"sync"
	"syscall"
	"testing"
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
	for _, name := range []string{"raft-addr", "grpc-addr", "data-dir", "peers", "placement", "internal-addr", "state-store", "grpc-port", "metrics-port", "tls-ca", "tls-cert", "tls-key"} {
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
