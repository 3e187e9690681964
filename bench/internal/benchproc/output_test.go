package benchproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestVerdictRatioMiB(t *testing.T) {
	if Verdict(true) != "PASS" || Verdict(false) != "FAIL" {
		t.Errorf("verdicts %q %q", Verdict(true), Verdict(false))
	}
	for _, tt := range []struct{ a, b, want float64 }{{3, 4, 0.75}, {5, 0, 0}, {5, -1, 0}, {0, 2, 0}} {
		if got := Ratio(tt.a, tt.b); got != tt.want {
			t.Errorf("Ratio(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	for in, want := range map[int64]string{30 << 20: "30.0 MiB", 40<<20 + 1<<19: "40.5 MiB", 0: "0.0 MiB"} {
		if got := MiB(in); got != want {
			t.Errorf("MiB(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestTargets(t *testing.T) {
	targets := []Target{{"rps ≥ 50% of direct", "67%", true}, {"no failed requests", "3", false}}
	if AllPass(targets) || !AllPass(targets[:1]) || !AllPass(nil) {
		t.Error("AllPass")
	}
	var out strings.Builder
	PrintTargets(&out, targets, 22, false)
	want := "\ntargets:\n" +
		"  PASS  rps ≥ 50% of direct    67%\n" +
		"  FAIL  no failed requests     3\n" +
		"overall: FAIL\n"
	if out.String() != want {
		t.Errorf("printed\n%q\nwant\n%q", out.String(), want)
	}
}

func TestProgress(t *testing.T) {
	var out strings.Builder
	Progress(&out, "%s ready after %v", "granary", 3)
	if !regexp.MustCompile(`^\d\d:\d\d:\d\d  granary ready after 3\n$`).MatchString(out.String()) {
		t.Errorf("progress line %q", out.String())
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.json")
	in := struct {
		Targets []Target `json:"targets"`
	}{[]Target{{"a", "1", true}}}
	if err := WriteJSON(path, in); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"targets\": [\n    {\n      \"name\": \"a\",\n      \"value\": \"1\",\n      \"pass\": true\n    }\n  ]\n}\n"
	if string(data) != want {
		t.Errorf("file holds %q, want %q", data, want)
	}
	if err := WriteJSON(path, func() {}); err == nil || !strings.Contains(err.Error(), "encoding results") {
		t.Errorf("writing what JSON cannot encode: %v", err)
	}
	if err := WriteJSON(filepath.Join(path, "below-a-file.json"), in); err == nil || !strings.Contains(err.Error(), "writing results") {
		t.Errorf("writing below a file: %v", err)
	}
	var back struct{ Targets []Target }
	if err := json.Unmarshal(data, &back); err != nil || len(back.Targets) != 1 || back.Targets[0] != in.Targets[0] {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func TestExecutable(t *testing.T) {
	dir := t.TempDir()
	exe, plain := filepath.Join(dir, "exe"), filepath.Join(dir, "plain")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !Executable(exe) || Executable(plain) || Executable(dir) || Executable(filepath.Join(dir, "missing")) {
		t.Errorf("Executable: exe %v plain %v dir %v missing %v", Executable(exe), Executable(plain), Executable(dir),
			Executable(filepath.Join(dir, "missing")))
	}
}

func TestFinish(t *testing.T) {
	dir := t.TempDir()
	var out, errs bytes.Buffer
	printed := func(w io.Writer) { io.WriteString(w, "table\n") }
	rep := map[string]int{"rps": 7}
	if code := Finish("bench", &out, &errs, rep, printed, filepath.Join(dir, "r.json"), true, true); code != 0 {
		t.Fatalf("passing run: exit %d", code)
	}
	if !strings.Contains(out.String(), "table") || !strings.Contains(out.String(), "results written to") {
		t.Fatalf("output %q", out.String())
	}
	if b, err := os.ReadFile(filepath.Join(dir, "r.json")); err != nil || !strings.Contains(string(b), `"rps": 7`) {
		t.Fatalf("json %q, %v", b, err)
	}
	if code := Finish("bench", &out, &errs, rep, printed, "", true, false); code != 1 {
		t.Fatalf("strict run with a missed target: exit %d, want 1", code)
	}
	if code := Finish("bench", &out, &errs, rep, printed, "", false, false); code != 0 {
		t.Fatalf("missed target without strict: exit %d, want 0", code)
	}
	if code := Finish("bench", &out, &errs, rep, printed, filepath.Join(dir, "no", "such", "dir", "r.json"), false, true); code != 1 || !strings.Contains(errs.String(), "bench:") {
		t.Fatalf("unwritable JSON: exit %d, stderr %q", code, errs.String())
	}
}

func TestFailed(t *testing.T) {
	var out bytes.Buffer
	if code := Failed(context.Background(), "xbench", &out, errors.New("boom")); code != 1 || out.String() != "xbench: boom\n" {
		t.Fatalf("failed run: %d %q", code, out.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out.Reset()
	if code := Failed(ctx, "xbench", &out, errors.New("boom")); code != 130 || !strings.Contains(out.String(), "interrupted") {
		t.Fatalf("interrupted run: %d %q", code, out.String())
	}
}
