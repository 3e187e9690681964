package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

func TestSendsTheRateOverTheConnections(t *testing.T) {
	var calls, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte("{}"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--addr", addr, "--conns", "4", "--rate", "200", "--duration", "500ms", "--pid", "0"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	// 200/s for 0.5 s: 100 calls, each connection's first a fraction of an
	// interval after the start.
	if n := calls.Load(); n < 90 || n > 100 {
		t.Errorf("%d calls, want about 100", n)
	}
	if n := conns.Load(); n != 4 {
		t.Errorf("%d connections, want 4 kept alive", n)
	}
	if !strings.Contains(out.String(), "over 4 connections") || !strings.Contains(out.String(), "errors 0") {
		t.Errorf("output %q", out.String())
	}
}

func TestReportsTheCPUOfAProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("NO /proc ON THIS SYSTEM: CPU time cannot be read here")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) }))
	defer srv.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--addr", strings.TrimPrefix(srv.URL, "http://"), "--conns", "2", "--rate", "100", "--duration", "200ms", "--pid", strconv.Itoa(os.Getpid())}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "of a core") {
		t.Fatalf("exit %d: %q %q", code, out.String(), errOut.String())
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--conns", "0"}, {"--rate", "-1"}, {"--duration", "0s"}, {"--nope"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestAppErrorsFailTheRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--addr", strings.TrimPrefix(srv.URL, "http://"), "--conns", "1", "--rate", "50", "--duration", "100ms"}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d with every call failing, want 1 (%q)", code, out.String())
	}
}
