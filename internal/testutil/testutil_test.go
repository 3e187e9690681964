package testutil

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childEnv selects what the test binary does when it runs as a child of the
// tests below.
const childEnv = "TESTUTIL_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(m.Run())
}

// runChild plays one child role and returns its exit status.
func runChild(mode string) int {
	switch mode {
	case "print":
		fmt.Println("first line")
		fmt.Fprintln(os.Stderr, "to stderr")
		fmt.Print("no newline at the end")
		return 3
	case "serve":
		// Serves GET /ready on $PORT until SIGTERM, then exits 0.
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/ready" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprint(w, "ok")
		}))
		<-term
		fmt.Println("got SIGTERM")
		return 0
	case "stubborn":
		// Ignores SIGTERM and runs until killed.
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		select {}
	case "spawn":
		// Starts a stubborn grandchild, prints its pid, and runs until killed.
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"=stubborn")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("grandchild %d\n", cmd.Process.Pid)
		select {}
	}
	fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
	return 2
}

// child returns a command that runs this test binary in the given role.
func child(mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = Env(append([]string{childEnv + "=" + mode}, env...)...)
	return cmd
}

func TestFreePortDistinctAndBindable(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		port := FreePort(t)
		if seen[port] {
			t.Fatalf("FreePort returned %d twice", port)
		}
		seen[port] = true
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("port %d from FreePort cannot be bound: %v", port, err)
		}
		ln.Close()
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("TESTUTIL_A", "old")
	t.Setenv("TESTUTIL_B", "kept")
	env := Env("TESTUTIL_A=new", "TESTUTIL_C=")
	count := map[string]int{}
	values := map[string]string{}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		count[name]++
		values[name] = value
	}
	for name, n := range count {
		if n > 1 {
			t.Errorf("%s appears %d times", name, n)
		}
	}
	for name, want := range map[string]string{"TESTUTIL_A": "new", "TESTUTIL_B": "kept", "TESTUTIL_C": ""} {
		if got, ok := values[name]; !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", name, got, ok, want)
		}
	}
	if RaceEnabled && !strings.Contains(values["GORACE"], "atexit_sleep_ms=") {
		t.Errorf("GORACE = %q under -race, want an atexit_sleep_ms setting", values["GORACE"])
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(mod), "module github.com/granaryhq/granary\n") {
		t.Fatalf("go.mod at %s is not Granary's:\n%s", root, mod)
	}
	wd, _ := os.Getwd()
	if rel, err := filepath.Rel(root, wd); err != nil || rel != filepath.Join("internal", "testutil") {
		t.Fatalf("module root %s is not two levels above the package directory %s", root, wd)
	}
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	const pkg = "./internal/testutil/testdata/hello"
	bins, err := Build(dir, pkg)
	if err != nil {
		t.Fatal(err)
	}
	exe := bins[pkg]
	if filepath.Dir(exe) != dir {
		t.Fatalf("Build put %s outside %s", exe, dir)
	}
	out, err := exec.Command(exe, "a", "b").Output()
	if err != nil {
		t.Fatalf("running the built %s: %v", exe, err)
	}
	if got := string(out); got != "hello a b\n" {
		t.Fatalf("the built command printed %q, want %q", got, "hello a b\n")
	}

	if _, err := Build(t.TempDir(), "./internal/testutil/testdata/absent"); err == nil {
		t.Fatal("Build of a package that does not exist succeeded")
	}
}

func TestProcOutputAndExitStatus(t *testing.T) {
	p := Start(t, "print", child("print"))
	if !p.WaitExit(10 * time.Second) {
		t.Fatal("the child did not exit")
	}
	if got := p.ExitCode(); got != 3 {
		t.Fatalf("exit code %d, want 3", got)
	}
	var ee *exec.ExitError
	if err := p.Err(); !errors.As(err, &ee) {
		t.Fatalf("Err() = %v, want an *exec.ExitError", err)
	}
	out := p.Output()
	for _, want := range []string{"first line\n", "to stderr\n", "no newline at the end"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
}

func TestProcStopGraceful(t *testing.T) {
	port := FreePort(t)
	p := Start(t, "serve", child("serve", fmt.Sprintf("PORT=%d", port)))
	if err := p.Err(); err == nil {
		t.Fatal("Err() of a running process is nil")
	}
	if got := p.ExitCode(); got != -1 {
		t.Fatalf("ExitCode() of a running process is %d, want -1", got)
	}
	p.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/ready", port), 10*time.Second, func(status int, body []byte) error {
		if status != http.StatusOK || string(body) != "ok" {
			return fmt.Errorf("status %d, body %q", status, body)
		}
		return nil
	})
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := p.ExitCode(); got != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", got)
	}
	Eventually(t, 5*time.Second, "the last line in the output", func() error {
		if !strings.Contains(p.Output(), "got SIGTERM") {
			return fmt.Errorf("output so far: %q", p.Output())
		}
		return nil
	})
}

func TestProcStopKillsAStubbornProcess(t *testing.T) {
	p := Start(t, "stubborn", child("stubborn"))
	Eventually(t, 10*time.Second, "the child to start", func() error {
		if !strings.Contains(p.Output(), "ignoring SIGTERM") {
			return errors.New("no greeting yet")
		}
		return nil
	})
	start := time.Now()
	err := p.Stop(300 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop of a process that ignores SIGTERM returned %v, want an error saying it was killed", err)
	}
	if !p.Exited() {
		t.Fatal("the process runs on after Stop")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Stop took %v with a grace of 300ms", took)
	}
}

func TestProcKillReachesGrandchildren(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("SKIPPED: process groups are used on Linux only, not %s", runtime.GOOS)
	}
	p := Start(t, "spawn", child("spawn"))
	var pid int
	Eventually(t, 10*time.Second, "the grandchild's pid", func() error {
		_, err := fmt.Sscanf(p.Output(), "grandchild %d\n", &pid)
		return err
	})
	if !alive(pid) {
		t.Fatalf("grandchild %d is not running before Kill", pid)
	}
	p.Kill()
	Eventually(t, 10*time.Second, fmt.Sprintf("grandchild %d to end", pid), func() error {
		if alive(pid) {
			return errors.New("still running")
		}
		return nil
	})
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the
// calling goroutine, so a test can check that a helper gives up.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.msg = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

// fatalOf runs fn in its own goroutine with a fatalRecorder and returns the
// Fatalf message ("" when fn returned normally) and how long fn ran.
func fatalOf(t *testing.T, fn func(tb testing.TB)) (string, time.Duration) {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msg, time.Since(start)
}

func TestEventuallyTimesOutWithTheLastError(t *testing.T) {
	calls := 0
	msg, took := fatalOf(t, func(tb testing.TB) {
		Eventually(tb, 300*time.Millisecond, "the impossible", func() error {
			calls++
			return fmt.Errorf("attempt %d failed", calls)
		})
	})
	if !strings.Contains(msg, "the impossible") || !strings.Contains(msg, fmt.Sprintf("attempt %d failed", calls)) {
		t.Fatalf("Fatalf message %q does not name the wait and the last error (attempt %d)", msg, calls)
	}
	if calls < 2 {
		t.Fatalf("cond ran %d times in 300ms; want it polled", calls)
	}
	if took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Eventually gave up after %v, want about 300ms", took)
	}

	msg, _ = fatalOf(t, func(tb testing.TB) {
		Eventually(tb, time.Second, "success", func() error { return nil })
	})
	if msg != "" {
		t.Fatalf("Eventually failed on a condition that holds: %s", msg)
	}
}

func TestWaitHTTPGivesUpWhenTheProcessExits(t *testing.T) {
	p := Start(t, "print", child("print"))
	url := fmt.Sprintf("http://127.0.0.1:%d/", FreePort(t))
	msg, took := fatalOf(t, func(tb testing.TB) {
		p.WaitHTTP(tb, url, time.Minute, func(int, []byte) error { return nil })
	})
	if !strings.Contains(msg, "exited") {
		t.Fatalf("WaitHTTP on a process that exits failed with %q, want it to say the process exited", msg)
	}
	if took > 20*time.Second {
		t.Fatalf("WaitHTTP took %v to notice the exit", took)
	}
}
