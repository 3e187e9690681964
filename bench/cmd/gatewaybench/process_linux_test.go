package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
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

	polite, err := startProcess("polite", dir, sh, "-c", "echo started; exec sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	// The shell and its child both ignore SIGTERM.
	stubborn, err := startProcess("stubborn", dir, sh, "-c", `trap "" TERM; echo started; sleep 30; sleep 30`)
	if err != nil {
		t.Fatal(err)
	}
	// Let the stubborn shell install its trap before it is signalled.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stubborn.tail(1), "started"); {
		if time.Now().After(deadline) {
			t.Fatal("the stubborn shell did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}

	start := time.Now()
	if err := polite.stop(5 * time.Second); err != nil {
		t.Errorf("stopping a process that honours SIGTERM: %v", err)
	}
	if time.Since(start) > 2*time.Second || !gone(polite.pid()) {
		t.Errorf("polite process still there after %v", time.Since(start))
	}

	err = stubborn.stop(100 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("stopping a process that ignores SIGTERM: %v", err)
	}
	if !gone(stubborn.pid()) {
		t.Error("stubborn process survived")
	}
	// Its orphaned child is killed too, and reaped by init shortly after.
	for deadline := time.Now().Add(5 * time.Second); !gone(-stubborn.pid()); {
		if time.Now().After(deadline) {
			t.Fatal("the stubborn process's child survived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := stubborn.stop(time.Second); err != nil {
		t.Errorf("stopping twice: %v", err)
	}
}

func TestWaitForStatus(t *testing.T) {
	sh := needBinary(t, "sh")
	dir := t.TempDir()
	alive, err := startProcess("alive", dir, sh, "-c", "exec sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	defer alive.stop(time.Second)

	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if err := waitForStatus(context.Background(), alive, "GET", srv.URL, 204, 5*time.Second); err != nil {
		t.Fatalf("became ready on the third try, but: %v", err)
	}

	err = waitForStatus(context.Background(), alive, "GET", srv.URL+"/x", 200, 150*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "status 204") {
		t.Errorf("waiting for a status that never comes: %v", err)
	}

	dead, err := startProcess("dead", dir, sh, "-c", "echo boom; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	err = waitForStatus(context.Background(), dead, "GET", "http://127.0.0.1:1/", 200, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "dead exited") {
		t.Errorf("waiting on a process that exits: %v", err)
	}
	if !strings.Contains(dead.tail(5), "boom") {
		t.Errorf("log tail %q", dead.tail(5))
	}
}
