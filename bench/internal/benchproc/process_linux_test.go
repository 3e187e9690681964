package benchproc

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func needBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("EXTERNAL BINARY %q NOT FOUND: process handling is not tested", name)
	}
	return path
}

// gone reports whether no process with this pid (or, negative, process
// group) exists any more.
func gone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func TestStopEndsProcesses(t *testing.T) {
	sh := needBinary(t, "sh")
	dir := t.TempDir()

	polite, err := Start("polite", dir, sh, nil, "-c", "echo started; exec sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	// The shell and its child both ignore SIGTERM.
	stubborn, err := Start("stubborn", dir, sh, nil, "-c", `trap "" TERM; echo started; sleep 30; sleep 30`)
	if err != nil {
		t.Fatal(err)
	}
	// Let the stubborn shell install its trap before it is signalled.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stubborn.Tail(1), "started"); {
		if time.Now().After(deadline) {
			t.Fatal("the stubborn shell did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}

	start := time.Now()
	if err := polite.Stop(5 * time.Second); err != nil {
		t.Errorf("stopping a process that honours SIGTERM: %v", err)
	}
	if time.Since(start) > 2*time.Second || !gone(polite.Pid()) {
		t.Errorf("polite process still there after %v", time.Since(start))
	}

	err = stubborn.Stop(100 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("stopping a process that ignores SIGTERM: %v", err)
	}
	if !gone(stubborn.Pid()) {
		t.Error("stubborn process survived")
	}
	// Its orphaned child is killed too, and reaped by init shortly after.
	for deadline := time.Now().Add(5 * time.Second); !gone(-stubborn.Pid()); {
		if time.Now().After(deadline) {
			t.Fatal("the stubborn process's child survived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := stubborn.Stop(time.Second); err != nil {
		t.Errorf("stopping twice: %v", err)
	}
}

func TestWaitForStatus(t *testing.T) {
	sh := needBinary(t, "sh")
	dir := t.TempDir()
	alive, err := Start("alive", dir, sh, nil, "-c", "exec sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Stop(time.Second)

	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if err := alive.WaitForStatus(context.Background(), "GET", srv.URL, 204, 5*time.Second); err != nil {
		t.Fatalf("became ready on the third try, but: %v", err)
	}

	err = alive.WaitForStatus(context.Background(), "GET", srv.URL+"/x", 200, 150*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "status 204") {
		t.Errorf("waiting for a status that never comes: %v", err)
	}

	dead, err := Start("dead", dir, sh, nil, "-c", "echo boom; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	err = dead.WaitForStatus(context.Background(), "GET", "http://127.0.0.1:1/", 200, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "dead exited") {
		t.Errorf("waiting on a process that exits: %v", err)
	}
	if !strings.Contains(dead.Tail(5), "boom") {
		t.Errorf("log tail %q", dead.Tail(5))
	}
	if err := dead.Err(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Err of a process that exited with status 3: %v", err)
	}
	if err := alive.Err(); err != nil {
		t.Errorf("Err of a running process: %v", err)
	}
}

func TestStartLogsAndEnvironment(t *testing.T) {
	sh := needBinary(t, "sh")
	dir := t.TempDir()
	t.Setenv("BENCHPROC_INHERITED", "from the parent")
	p, err := Start("env", dir, sh, []string{"BENCHPROC_ADDED=added"},
		"-c", `echo "$BENCHPROC_INHERITED"; echo "$BENCHPROC_ADDED"; echo to stderr >&2; echo last`)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !p.Exited(); {
		if time.Now().After(deadline) {
			t.Fatal("the shell did not exit")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("the shell failed: %v", err)
	}
	want := []string{"from the parent", "added", "to stderr", "last"}
	if got := p.Lines(); !slices.Equal(got, want) {
		t.Errorf("log lines %q, want %q", got, want)
	}
	if got := p.Tail(2); got != "to stderr\nlast" {
		t.Errorf("Tail(2) = %q", got)
	}
	if got := p.Tail(10); got != strings.Join(want, "\n") {
		t.Errorf("Tail(10) = %q", got)
	}
	if p.LogPath != filepath.Join(dir, "env.log") {
		t.Errorf("log path %s", p.LogPath)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("stopping a process that has exited: %v", err)
	}

	if _, err := Start("missing", dir, filepath.Join(dir, "no-such-binary"), nil); err == nil ||
		!strings.Contains(err.Error(), "start missing") {
		t.Errorf("starting a missing binary: %v", err)
	}
	gone := &Process{Name: "gone", LogPath: filepath.Join(dir, "gone.log")}
	if got := gone.Tail(3); !strings.HasPrefix(got, "(cannot read ") {
		t.Errorf("tail of a missing log: %q", got)
	}
}
