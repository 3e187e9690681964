package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

func scenarioResult(load, via string, rps float64, p50, p99 time.Duration, errs int64) scenarioReport {
	return scenarioReport{Name: "(" + load + ") " + via, Load: load, Via: via, Result: loadgen.Result{
		Requests: int64(rps) * 20, RPS: rps, P50: p50, P99: p99, Errors: loadgen.Errors{IO: errs},
	}}
}

func TestEvaluate(t *testing.T) {
	good := func() report {
		return report{SiloRSSBytes: 30 << 20, Scenarios: []scenarioReport{
			scenarioResult("a", "gateway", 5000, 120*time.Microsecond, time.Millisecond, 0),
			scenarioResult("a", "direct", 12000, 80*time.Microsecond, 300*time.Microsecond, 0),
			scenarioResult("a", "proxy", 9000, 105*time.Microsecond, 300*time.Microsecond, 0),
			scenarioResult("b", "gateway", 20000, 2*time.Millisecond, 8*time.Millisecond, 0),
			scenarioResult("b", "direct", 30000, time.Millisecond, 4*time.Millisecond, 0),
			scenarioResult("b", "proxy", 24000, 1500*time.Microsecond, 5*time.Millisecond, 0),
		}}
	}
	tests := []struct {
		name   string
		change func(*report)
		failed []string // the targets expected to fail, by prefix; none when empty
	}{
		{"all met", func(*report) {}, nil},
		{"slow (b)", func(r *report) { r.Scenarios[3].Result.RPS = 14000 }, []string{"(b) gateway rps"}},
		{"(b) at exactly half", func(r *report) { r.Scenarios[3].Result.RPS = 15000 }, nil},
		{"(b) tail", func(r *report) { r.Scenarios[3].Result.P99 = 11 * time.Millisecond }, []string{"(b) gateway p99"}},
		{"(a) median", func(r *report) {
			r.Scenarios[0].Result.P50, r.Scenarios[1].Result.P50 = 251*time.Microsecond, 240*time.Microsecond
		}, []string{"(a) gateway p50"}},
		{"(a) adds too much", func(r *report) { r.Scenarios[0].Result.P50 = 131 * time.Microsecond }, []string{"(a) gateway adds"}},
		{"(a) adds exactly the bound", func(r *report) { r.Scenarios[0].Result.P50 = 130 * time.Microsecond }, nil},
		{"(a) nothing answered", func(r *report) { r.Scenarios[0].Result = loadgen.Result{} }, []string{"(a) gateway p50", "(a) gateway adds"}},
		{"(a) with net/http adds too much", func(r *report) {
			r.Scenarios = append(r.Scenarios,
				scenarioResult("a-nethttp", "gateway", 3000, 300*time.Microsecond, time.Millisecond, 0),
				scenarioResult("a-nethttp", "direct", 6000, 200*time.Microsecond, time.Millisecond, 0))
		}, []string{"(a), net/http client"}},
		{"(a) with net/http within the bound", func(r *report) {
			r.Scenarios = append(r.Scenarios,
				scenarioResult("a-nethttp", "gateway", 3000, 240*time.Microsecond, time.Millisecond, 0),
				scenarioResult("a-nethttp", "direct", 6000, 200*time.Microsecond, time.Millisecond, 0))
		}, nil},
		{"memory", func(r *report) { r.SiloRSSBytes = 41 << 20 }, []string{"silo RSS"}},
		{"memory unknown", func(r *report) { r.SiloRSSBytes, r.RSSError = -1, "no /proc" }, []string{"silo RSS"}},
		{"errors on the direct path", func(r *report) { r.Scenarios[4].Result.Errors.Status = 2 }, []string{"no failed requests"}},
	}
	for _, tt := range tests {
		r := good()
		tt.change(&r)
		r.evaluate()
		var failed []string
		for _, tg := range r.Targets {
			if !tg.Pass {
				failed = append(failed, tg.Name)
			}
		}
		ok := len(failed) == len(tt.failed) && r.Pass == (len(tt.failed) == 0)
		for i := range failed {
			ok = ok && strings.HasPrefix(failed[i], tt.failed[i])
		}
		if !ok {
			t.Errorf("%s: failed %v (pass %v), want %q", tt.name, failed, r.Pass, tt.failed)
		}
	}
	r := good()
	r.evaluate()
	if r.RatioA != 5000.0/12000 || r.RatioB != 20000.0/30000 || r.ProxyRatioB != 24000.0/30000 {
		t.Errorf("ratios %v %v, proxy (b) %v", r.RatioA, r.RatioB, r.ProxyRatioB)
	}
	var out strings.Builder
	printReport(&out, r)
	for _, want := range []string{"(a) gateway", "(b) direct", "42%", "67%", "30.0 MiB", "PASS  (a) gateway p50 ≤ 250µs", "PASS  (a) gateway adds ≤ 50.0µs at p50", "added by the gateway at p50, load (a): 40.0µs", "bare byte-copying proxy process, load (a): 25.0µs",
		"bare byte-copying proxy process, load (b): 80% of direct", "overall: PASS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := [][]string{
		{"--granary", filepath.Join(dir, "missing"), "--echoapp", exe},
		{"--granary", exe, "--echoapp", dir},
		{"--granary", exe, "--echoapp", exe, "--duration", "0s"},
		{"--granary", exe, "--echoapp", exe, "extra"},
		{"--no-such-flag"},
	}
	for _, args := range tests {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != 2 {
			t.Errorf("run %v = %d, want 2", args, code)
		}
	}
}

func TestReferenceProxyForwardsBothWays(t *testing.T) {
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	go func() {
		c, err := app.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		c.Write(append([]byte("re:"), buf...))
	}()
	ports, err := benchproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:" + strconv.Itoa(ports[0])
	go runProxy(listen + "=" + app.Addr().String())
	var c net.Conn
	for range 100 {
		if c, err = net.Dial("tcp", listen); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	got, _ := io.ReadAll(c)
	if string(got) != "re:hello" {
		t.Fatalf("through the proxy: %q", got)
	}
	if err := runProxy("no-equals-sign"); err == nil {
		t.Fatal("a spec without = was accepted")
	}
}
