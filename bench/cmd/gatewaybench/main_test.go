package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
			scenarioResult("a", "gateway", 5000, 200*time.Microsecond, time.Millisecond, 0),
			scenarioResult("a", "direct", 12000, 80*time.Microsecond, 300*time.Microsecond, 0),
			scenarioResult("b", "gateway", 20000, 2*time.Millisecond, 8*time.Millisecond, 0),
			scenarioResult("b", "direct", 30000, time.Millisecond, 4*time.Millisecond, 0),
		}}
	}
	tests := []struct {
		name   string
		change func(*report)
		failed string // the one target expected to fail; "" for none
	}{
		{"all met", func(*report) {}, ""},
		{"slow (b)", func(r *report) { r.Scenarios[2].Result.RPS = 14000 }, "(b) gateway rps"},
		{"(b) at exactly half", func(r *report) { r.Scenarios[2].Result.RPS = 15000 }, ""},
		{"(b) tail", func(r *report) { r.Scenarios[2].Result.P99 = 11 * time.Millisecond }, "(b) gateway p99"},
		{"(a) median", func(r *report) { r.Scenarios[0].Result.P50 = 251 * time.Microsecond }, "(a) gateway p50"},
		{"(a) nothing answered", func(r *report) { r.Scenarios[0].Result = loadgen.Result{} }, "(a) gateway p50"},
		{"memory", func(r *report) { r.SiloRSSBytes = 41 << 20 }, "silo RSS"},
		{"memory unknown", func(r *report) { r.SiloRSSBytes, r.RSSError = -1, "no /proc" }, "silo RSS"},
		{"errors on the direct path", func(r *report) { r.Scenarios[3].Result.Errors.Status = 2 }, "no failed requests"},
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
		switch {
		case tt.failed == "" && (len(failed) != 0 || !r.Pass):
			t.Errorf("%s: failed %v", tt.name, failed)
		case tt.failed != "" && (len(failed) != 1 || !strings.HasPrefix(failed[0], tt.failed) || r.Pass):
			t.Errorf("%s: failed %v (pass %v), want only %q", tt.name, failed, r.Pass, tt.failed)
		}
	}
	r := good()
	r.evaluate()
	if r.RatioA != 5000.0/12000 || r.RatioB != 20000.0/30000 {
		t.Errorf("ratios %v %v", r.RatioA, r.RatioB)
	}
	var out strings.Builder
	printReport(&out, r)
	for _, want := range []string{"(a) gateway", "(b) direct", "42%", "67%", "30.0 MiB", "PASS  (a) gateway p50 ≤ 250µs", "overall: PASS"} {
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
