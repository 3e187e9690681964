//go:build unix

package launch_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/launch"
)

// start starts spec and kills what is left of it when the test ends.
func start(t *testing.T, spec launch.Spec) *launch.Proc {
	t.Helper()
	if spec.LogPath == "" {
		spec.LogPath = filepath.Join(t.TempDir(), spec.Name+".log")
	}
	p, err := launch.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.GroupAlive() {
			p.Kill()
		}
	})
	return p
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

// waitDone fails unless p exits within d.
func waitDone(t *testing.T, p *launch.Proc, d time.Duration) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(d):
		t.Fatalf("%s (pid %d) still runs after %v\n%s", p.Spec.Name, p.Pid(), d, launch.LogTail(p.Spec.LogPath, 20))
	}
}

// waitFor fails unless cond holds within d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitForLog waits until the log of p has a line matching re and returns
// the line's submatches.
func waitForLog(t *testing.T, p *launch.Proc, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	waitFor(t, 5*time.Second, p.Spec.Name+" logs "+re, func() bool {
		data, _ := os.ReadFile(p.Spec.LogPath)
		m = rx.FindStringSubmatch(string(data))
		return m != nil
	})
	return m
}

// processState returns the state letter of pid ("S", "T", ...).
func processState(t *testing.T, pid int) string {
	t.Helper()
	if runtime.GOOS == "linux" {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		// pid (comm) state ...: comm may hold spaces, so cut after the last ')'.
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		return fields[0]
	}
	out, err := exec.Command("ps", "-o", "stat=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		t.Fatalf("ps -p %d: %v", pid, err)
	}
	return strings.TrimSpace(string(out))[:1]
}

func alive(pid int) bool { return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

func TestStartAppendsOutputToTheLog(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LAUNCH_TEST_PARENT", "from the parent")
	t.Setenv("LAUNCH_TEST_OVERRIDDEN", "old")
	spec := launch.Spec{
		Name:    "a1",
		Argv:    sh(`echo "out $1"; echo err >&2; echo "parent: $LAUNCH_TEST_PARENT; set: $LAUNCH_TEST_OVERRIDDEN"`),
		Env:     []string{"LAUNCH_TEST_OVERRIDDEN=new"},
		DataDir: filepath.Join(dir, "data", "a1"),
		LogPath: filepath.Join(dir, "logs", "deeper", "a1.log"),
	}
	spec.Argv = append(spec.Argv, "sh", "first")
	began := time.Now()
	p := start(t, spec)
	if p.Pid() <= 0 || p.Started().Before(began) || p.Started().After(time.Now()) {
		t.Errorf("pid %d, started %v (test began %v)", p.Pid(), p.Started(), began)
	}
	if p.Spec.Name != "a1" || p.Spec.LogPath != spec.LogPath {
		t.Errorf("the process's spec is %+v, want %+v", p.Spec, spec)
	}
	waitDone(t, p, 5*time.Second)
	if !p.Exited() || p.ExitStatus() != "exit status 0" {
		t.Errorf("exited %v, status %q", p.Exited(), p.ExitStatus())
	}
	if st, err := os.Stat(spec.DataDir); err != nil || !st.IsDir() {
		t.Errorf("no data directory: %v", err)
	}

	spec.Argv[len(spec.Argv)-1] = "second"
	waitDone(t, start(t, spec), 5*time.Second)
	logged, err := os.ReadFile(spec.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	want := "out first\nerr\nparent: from the parent; set: new\nout second\nerr\nparent: from the parent; set: new\n"
	if string(logged) != want {
		t.Errorf("log %q, want %q", logged, want)
	}
}

func TestStartFails(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "x.log")
	cases := []struct {
		name string
		spec launch.Spec
		want string
	}{
		{"no program", launch.Spec{Name: "x", LogPath: log}, "starting x: no program given"},
		{"no log", launch.Spec{Name: "x", Argv: []string{"true"}}, "starting x: no log file given"},
		{"a missing program", launch.Spec{Name: "x", Argv: []string{filepath.Join(dir, "missing")}, LogPath: log},
			"starting x (" + filepath.Join(dir, "missing") + "): "},
		{"a data directory under a file", launch.Spec{Name: "x", Argv: []string{"true"}, DataDir: filepath.Join(file, "d"), LogPath: log},
			"x: data directory: "},
		{"a log directory under a file", launch.Spec{Name: "x", Argv: []string{"true"}, LogPath: filepath.Join(file, "x.log")},
			"x: log directory: "},
		{"a log that is a directory", launch.Spec{Name: "x", Argv: []string{"true"}, LogPath: dir}, "x: log file: "},
	}
	for _, c := range cases {
		p, err := launch.Start(c.spec)
		if err == nil {
			p.Kill()
			t.Errorf("%s: started", c.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: %v, want it to begin %q", c.name, err, c.want)
		}
	}
}

func TestExitStatus(t *testing.T) {
	p := start(t, launch.Spec{Name: "three", Argv: sh("exit 3")})
	waitDone(t, p, 5*time.Second)
	if got := p.ExitStatus(); got != "exit status 3" {
		t.Errorf("exit 3: status %q", got)
	}

	p = start(t, launch.Spec{Name: "sleeper", Argv: []string{"sleep", "60"}})
	time.Sleep(50 * time.Millisecond)
	if p.Exited() || p.ExitStatus() != "running" || !p.GroupAlive() {
		t.Fatalf("a sleeping process: exited %v, status %q, group alive %v", p.Exited(), p.ExitStatus(), p.GroupAlive())
	}
	p.Kill()
	select {
	case <-p.Done():
	default:
		t.Fatal("Kill returned before the process was waited for")
	}
	if !p.Exited() || p.ExitStatus() != "signal: killed" {
		t.Errorf("after Kill: exited %v, status %q", p.Exited(), p.ExitStatus())
	}
}

func TestKillKillsTheGroup(t *testing.T) {
	p := start(t, launch.Spec{Name: "parent",
		Argv: sh(`(trap "" TERM; exec sleep 60) & echo "child $!"; wait`)})
	child, _ := strconv.Atoi(waitForLog(t, p, `child (\d+)`)[1])

	// SIGTERM ends the shell but not its child, which keeps the group.
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 5*time.Second)
	if p.ExitStatus() != "signal: terminated" {
		t.Errorf("the shell ended with %q", p.ExitStatus())
	}
	time.Sleep(100 * time.Millisecond)
	if !alive(child) || !p.GroupAlive() {
		t.Fatalf("the child (pid %d) that ignores SIGTERM is gone (alive %v, group alive %v)", child, alive(child), p.GroupAlive())
	}

	p.Kill()
	waitFor(t, 5*time.Second, "the group is gone after Kill", func() bool { return !p.GroupAlive() })
	if alive(child) {
		t.Errorf("the child (pid %d) survived Kill", child)
	}
}

func TestStop(t *testing.T) {
	cases := []struct {
		name       string
		script     string
		pause      bool
		timeout    time.Duration
		wantKilled bool
		wantStatus string
	}{
		// The shells fork nothing after "up": dash runs a foreground
		// command through vfork, and a SIGSTOP to the group that lands
		// between the vfork and the exec stops the child before it can
		// exec, so the shell waits in vfork for good and never shows "T".
		// The ignoring shell's sleep ignores SIGTERM too (inherited).
		{"a shell that exits on SIGTERM", `sleep 60 & echo up; wait`, false, 5 * time.Second, false, "signal: terminated"},
		{"a stopped shell that exits on SIGTERM", `sleep 60 & echo up; wait`, true, 5 * time.Second, false, "signal: terminated"},
		{"a shell that ignores SIGTERM", `trap "" TERM; sleep 600 & echo up; while :; do wait; done`, false, 300 * time.Millisecond, true, "signal: killed"},
		{"a stopped shell that ignores SIGTERM", `trap "" TERM; sleep 600 & echo up; while :; do wait; done`, true, 300 * time.Millisecond, true, "signal: killed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := start(t, launch.Spec{Name: "stopme", Argv: sh(c.script)})
			waitForLog(t, p, `up`)
			if c.pause {
				if err := p.Signal(syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 5*time.Second, "the shell is stopped", func() bool { return processState(t, p.Pid()) == "T" })
			}
			began := time.Now()
			killed := p.Stop(c.timeout)
			took := time.Since(began)
			if killed != c.wantKilled {
				t.Errorf("Stop reported killed=%v, want %v (took %v)", killed, c.wantKilled, took)
			}
			if !p.Exited() || p.ExitStatus() != c.wantStatus {
				t.Errorf("after Stop: exited %v, status %q, want %q", p.Exited(), p.ExitStatus(), c.wantStatus)
			}
			if c.wantKilled && took < c.timeout {
				t.Errorf("killed after %v, before the timeout of %v", took, c.timeout)
			}
			if took > c.timeout+2*time.Second {
				t.Errorf("Stop took %v with a timeout of %v", took, c.timeout)
			}
			if !c.wantKilled && p.GroupAlive() {
				t.Error("the group outlived a Stop that did not kill it")
			}
			if c.wantKilled {
				waitFor(t, 5*time.Second, "the group is gone after the kill", func() bool { return !p.GroupAlive() })
			}
		})
	}
}

func TestSignalAndStopAfterExit(t *testing.T) {
	p := start(t, launch.Spec{Name: "quick", Argv: sh("exit 0")})
	waitDone(t, p, 5*time.Second)
	waitFor(t, 5*time.Second, "the group of an exited process is gone", func() bool { return !p.GroupAlive() })
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("Signal after the exit: %v", err)
	}
	began := time.Now()
	if p.Stop(5 * time.Second) {
		t.Error("Stop after the exit killed")
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("Stop after the exit took %v", took)
	}
	p.Kill() // returns at once
	if p.ExitStatus() != "exit status 0" {
		t.Errorf("status %q after Signal, Stop and Kill of an exited process", p.ExitStatus())
	}
}

func TestAwaitReady(t *testing.T) {
	var hits, busyFor atomic.Int32
	busyFor.Store(3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		if r.URL.Path == "/never" || n <= busyFor.Load() {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	ctx := context.Background()

	t.Run("a URL that answers after a while", func(t *testing.T) {
		hits.Store(0)
		p := start(t, launch.Spec{Name: "web", Argv: []string{"sleep", "60"}, ReadyURL: srv.URL + "/ready"})
		began := time.Now()
		if err := launch.AwaitReady(ctx, srv.Client(), p, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := hits.Load(); got != 4 {
			t.Errorf("%d probes, want 4 (three refused)", got)
		}
		if took := time.Since(began); took < 3*launch.PollInterval-20*time.Millisecond {
			t.Errorf("ready after %v: the probes were not %v apart", took, launch.PollInterval)
		}
	})

	t.Run("an address that accepts", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		p := start(t, launch.Spec{Name: "tcp", Argv: []string{"sleep", "60"}, ReadyAddr: ln.Addr().String()})
		if err := launch.AwaitReady(ctx, nil, p, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("nothing to wait for", func(t *testing.T) {
		p := start(t, launch.Spec{Name: "plain", Argv: []string{"sleep", "60"}})
		began := time.Now()
		if err := launch.AwaitReady(ctx, nil, p, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took > time.Second {
			t.Errorf("took %v", took)
		}
	})

	t.Run("the process exits first", func(t *testing.T) {
		p := start(t, launch.Spec{Name: "doomed", Argv: sh("echo boom; sleep 0.3; exit 7"), ReadyURL: srv.URL + "/never"})
		began := time.Now()
		err := launch.AwaitReady(ctx, srv.Client(), p, 20*time.Second)
		if took := time.Since(began); took > 3*time.Second {
			t.Errorf("the exit was noticed after %v", took)
		}
		if err == nil {
			t.Fatal("ready")
		}
		for _, want := range []string{"doomed (pid " + strconv.Itoa(p.Pid()) + ") exited before it answered GET " + srv.URL + "/never",
			"exit status 7", "last lines of " + p.Spec.LogPath, "    boom\n"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})

	t.Run("a timeout", func(t *testing.T) {
		p := start(t, launch.Spec{Name: "slow", Argv: sh("echo waiting; exec sleep 60"), ReadyURL: srv.URL + "/never"})
		waitForLog(t, p, "waiting")
		began := time.Now()
		err := launch.AwaitReady(ctx, srv.Client(), p, 300*time.Millisecond)
		took := time.Since(began)
		if err == nil {
			t.Fatal("ready")
		}
		if took < 300*time.Millisecond || took > 3*time.Second {
			t.Errorf("gave up after %v with a timeout of 300ms", took)
		}
		for _, want := range []string{"slow (pid " + strconv.Itoa(p.Pid()) + ") did not answer GET " + srv.URL + "/never within 300ms",
			"(last: status 503 Service Unavailable)", "    waiting\n"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if p.Exited() {
			t.Error("AwaitReady ended the process")
		}
	})

	t.Run("the context ends", func(t *testing.T) {
		p := start(t, launch.Spec{Name: "slow", Argv: []string{"sleep", "60"}, ReadyURL: srv.URL + "/never"})
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		began := time.Now()
		err := launch.AwaitReady(ctx, srv.Client(), p, 20*time.Second)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%v, want the context's error", err)
		}
		if took := time.Since(began); took > 3*time.Second {
			t.Errorf("returned %v after the start", took)
		}
	})
}
