package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/check"
	"github.com/granaryhq/granary/chaos/history"
)

const (
	origin    = int64(1_700_000_000) * int64(time.Second)
	malicious = `<script>alert(1)</script>`
)

func ms(n int64) int64 { return origin + n*int64(time.Millisecond) }

var kinds = []history.Kind{history.KindRead, history.KindWrite, history.KindCAS, history.KindIncr, history.KindGet}

// syntheticRun has n operations, one every 150 ms: every tenth fails with
// the malicious error, every fifteenth that does not fail is Info (those
// at 15, 75, 135, ... never return), the rest are OK; latencies are 1 to 7
// ms. A partition from 10 s to 30 s overlaps a kill from 20 s that never
// ends.
func syntheticRun(n int) *history.Run {
	run := &history.Run{
		Faults: []history.Fault{
			{Kind: "partition", Target: "silo-a|silo-b", Start: ms(10_000), End: ms(30_000), Detail: malicious},
			{Kind: "kill", Target: "silo-c", Start: ms(20_000)},
		},
		Turns:  make([]history.Turn, 3),
		Ticks:  make([]history.Tick, 4),
		Leases: make([]history.Lease, 5),
		Writes: make([]history.StoreRecord, 6),
	}
	for i := range n {
		inv := ms(int64(i) * 150)
		op := history.Op{Process: i % 4, Kind: kinds[i%len(kinds)], Key: fmt.Sprintf("k%d", i%3), Invoke: inv, Complete: inv + int64(i%7+1)*int64(time.Millisecond), Outcome: history.OK}
		switch {
		case i%10 == 0:
			op.Outcome, op.Error = history.Fail, malicious
		case i%15 == 0:
			op.Outcome, op.Error = history.Info, "timeout after 1s"
			if (i/15)%4 == 1 {
				op.Complete = 0
			}
		}
		run.Ops = append(run.Ops, op)
	}
	return run
}

func syntheticResults() []check.Result {
	invalid := check.Result{Name: "register", Valid: false, Counts: map[string]int{"keys": 3, "keys_illegal": 1}}
	for i := range MaxFindings + 50 {
		invalid.Violations = append(invalid.Violations, check.Violation{What: "not linearizable", Key: "k1", At: ms(int64(1000 + i)), Detail: malicious})
	}
	invalid.Notes = []check.Violation{{What: "linearizability unknown", Key: "k2", Detail: "search timed out"}}
	return []check.Result{
		{Name: "counters", Valid: true, Counts: map[string]int{"keys": 2, "incr_ok": 50}},
		invalid,
	}
}

func syntheticMeta() Meta {
	return Meta{
		Seed: 4242, Duration: 45 * time.Second, Nemeses: []string{"partition", "kill"},
		Placement: 3, Silos: 5, Started: time.Unix(0, origin), Ended: time.Unix(0, ms(46_000)), Build: "granary test",
	}
}

// TestAvailabilityByHand checks the availability rows of a small run
// against figures worked out by hand, including operations invoked exactly
// when a fault starts (inside it) and ends (outside it).
func withError(o history.Op, err string) history.Op {
	o.Error = err
	return o
}

func TestAvailabilityByHand(t *testing.T) {
	op := func(inv, comp int64, o history.Outcome) history.Op {
		c := int64(0)
		if comp != 0 {
			c = ms(comp)
		}
		return history.Op{Kind: history.KindRead, Key: "k", Invoke: ms(inv), Complete: c, Outcome: o}
	}
	run := &history.Run{
		Faults: []history.Fault{
			{Kind: "partition", Start: ms(100), End: ms(200)},
			{Kind: "kill", Start: ms(150)},
		},
		Ops: []history.Op{
			op(50, 60, history.OK),   // none, 10 ms
			op(90, 95, history.Fail), // none, 5 ms
			op(120, 130, history.OK), // partition, 10 ms
			withError(op(150, 190, history.Fail), "connection refused"), // partition and kill, 40 ms; not an answer
			op(170, 0, history.Info),                                    // partition and kill, never returned
			op(200, 205, history.OK),                                    // kill, 5 ms
			op(210, 260, history.OK),                                    // kill, 50 ms
			op(220, 230, history.Info),                                  // kill, 10 ms
		},
	}
	s := Summarize(Meta{Seed: 1}, run, nil)
	want := []Availability{
		{Nemesis: NoFault, Ops: 2, OK: 1, Fail: 1, OKShare: 0.5, Answered: 2, AnsweredShare: 1, Completed: 2, LatencyP50MS: 5, LatencyP99MS: 10, LatencyMaxMS: 10},
		{Nemesis: "kill", Faults: 1, Ops: 5, OK: 2, Fail: 1, Info: 2, OKShare: 0.4, Answered: 2, AnsweredShare: 0.4, Completed: 4, LatencyP50MS: 10, LatencyP99MS: 50, LatencyMaxMS: 50},
		{Nemesis: "partition", Faults: 1, Ops: 3, OK: 1, Fail: 1, Info: 1, OKShare: 1.0 / 3, Answered: 1, AnsweredShare: 1.0 / 3, Completed: 2, LatencyP50MS: 10, LatencyP99MS: 40, LatencyMaxMS: 40},
	}
	if !reflect.DeepEqual(s.Availability, want) {
		t.Errorf("availability:\n got %+v\nwant %+v", s.Availability, want)
	}
	if got := (OpCounts{Total: 8, OK: 4, Fail: 2, Info: 2}); s.Ops.OpCounts != got {
		t.Errorf("ops = %+v, want %+v", s.Ops.OpCounts, got)
	}
	if !s.Valid || s.Started != time.Unix(0, ms(50)).UTC() || s.Ended != time.Unix(0, ms(260)).UTC() {
		t.Errorf("valid %v, started %v, ended %v: want valid, the first and last times of the history", s.Valid, s.Started, s.Ended)
	}
}

func TestSummarize(t *testing.T) {
	run := syntheticRun(300)
	s := Summarize(syntheticMeta(), run, syntheticResults())
	if s.Valid {
		t.Error("valid with an invalid checker")
	}
	if s.Seed != 4242 || s.Duration != "45s" || s.Placement != 3 || s.Silos != 5 {
		t.Errorf("meta not carried: %+v", s)
	}
	// 300 ops: 30 fail (i%10 == 0); Info where i%15 == 0 and i%10 != 0:
	// the odd multiples of 15, 10 of them.
	if want := (OpCounts{Total: 300, OK: 260, Fail: 30, Info: 10}); s.Ops.OpCounts != want {
		t.Errorf("ops = %+v, want %+v", s.Ops.OpCounts, want)
	}
	if len(s.Ops.ByKind) != len(kinds) {
		t.Errorf("by kind = %v, want %d kinds", s.Ops.ByKind, len(kinds))
	}
	// Indices 0, 50, 100, ... are multiples of 10 and 5: the reads fail
	// at every multiple of 10 among multiples of 5, that is every other.
	if got := s.Ops.ByKind["read"]; got.Total != 60 || got.Fail != 30 || got.Info != 10 || got.OK != 20 {
		t.Errorf("reads = %+v, want 60: 20 ok, 30 failed, 10 info", got)
	}
	for _, k := range kinds[1:] {
		if got := s.Ops.ByKind[string(k)]; got.Total != 60 || got.Fail != 0 {
			t.Errorf("%s = %+v, want 60, none failed", k, got)
		}
	}
	if want := (FaultStats{Total: 2, ByKind: map[string]int{"partition": 1, "kill": 1}}); !reflect.DeepEqual(s.Faults, want) {
		t.Errorf("faults = %+v, want %+v", s.Faults, want)
	}
	if s.Turns != 3 || s.Ticks != 4 || s.Leases != 5 || s.Store != 6 {
		t.Errorf("record counts %d %d %d %d, want 3 4 5 6", s.Turns, s.Ticks, s.Leases, s.Store)
	}
	if len(s.Checkers) != 2 || s.Checkers[1].Name != "register" || s.Checkers[1].Valid {
		t.Fatalf("checkers = %+v", s.Checkers)
	}
	reg := s.Checkers[1]
	if len(reg.Violations) != MaxFindings || reg.ViolationsTruncated != 50 || len(reg.Notes) != 1 || reg.NotesTruncated != 0 {
		t.Errorf("register: %d violations (%d truncated), %d notes", len(reg.Violations), reg.ViolationsTruncated, len(reg.Notes))
	}
	if len(s.Availability) != 3 || s.Availability[0].Nemesis != NoFault {
		t.Fatalf("availability rows = %+v", s.Availability)
	}
	total := 0
	for _, a := range s.Availability {
		if a.Nemesis == NoFault {
			total += a.Ops
		}
	}
	// Ops from 10 s on are under a fault: indices 0..66 are not.
	if total != 67 {
		t.Errorf("ops under no fault = %d, want 67", total)
	}
	wantErrors := []ErrorCount{{Error: malicious, Count: 30}, {Error: "timeout after 1s", Count: 10}}
	if !reflect.DeepEqual(s.Errors, wantErrors) || s.ErrorsDistinct != 2 {
		t.Errorf("errors = %+v (%d distinct), want %+v", s.Errors, s.ErrorsDistinct, wantErrors)
	}
}

func TestErrorsAreCutAndCapped(t *testing.T) {
	run := &history.Run{}
	long := strings.Repeat("é", 100) // 200 bytes
	for i := range MaxErrors + 5 {
		for range i + 1 {
			run.Ops = append(run.Ops, history.Op{Kind: history.KindRead, Key: "k", Outcome: history.Fail, Error: fmt.Sprintf("error %02d", i)})
		}
	}
	run.Ops = append(run.Ops, history.Op{Kind: history.KindRead, Key: "k", Outcome: history.Fail, Error: long + "a"},
		history.Op{Kind: history.KindRead, Key: "k", Outcome: history.Fail, Error: long + "b"})
	s := Summarize(Meta{}, run, nil)
	if len(s.Errors) != MaxErrors || s.ErrorsDistinct != MaxErrors+6 {
		t.Fatalf("%d errors listed, %d distinct; want %d, %d", len(s.Errors), s.ErrorsDistinct, MaxErrors, MaxErrors+6)
	}
	if s.Errors[0] != (ErrorCount{Error: "error 24", Count: 25}) {
		t.Errorf("most frequent = %+v", s.Errors[0])
	}
	cut := truncateError(long + "a")
	if len(cut) > MaxErrorLen || cut != strings.Repeat("é", MaxErrorLen/2) {
		t.Errorf("cut to %q (%d bytes)", cut, len(cut))
	}
}

func TestLine(t *testing.T) {
	s := Summarize(syntheticMeta(), syntheticRun(300), syntheticResults())
	line := s.Line("/tmp/run")
	for _, want := range []string{"chaos seed=4242 45s: INVALID (register)", "ops=300 (ok 86.7%, info 3.3%, fail 10.0%)", "faults=2", "checkers: counters ok, register INVALID", "report: /tmp/run/report.html"} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
	s = Summarize(syntheticMeta(), syntheticRun(10), syntheticResults()[:1])
	if line := s.Line("d"); !strings.Contains(line, ": VALID  ops=10") || strings.Contains(line, "INVALID") {
		t.Errorf("valid run: %q", line)
	}
}

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	run, results := syntheticRun(300), syntheticResults()
	s := Summarize(syntheticMeta(), run, results)
	viz := map[string]string{"k1": "viz/register-k1.html"}
	if err := Write(dir, s, run, results, viz); err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("results.json does not round-trip:\n got %+v\nwant %+v", back, s)
	}
	var shape map[string]any
	if err := json.Unmarshal(js, &shape); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"seed", "duration", "started", "ended", "valid", "checkers", "ops", "faults", "availability", "errors", "ticks", "turns", "leases", "store"} {
		if _, ok := shape[k]; !ok {
			t.Errorf("results.json lacks %q", k)
		}
	}

	b, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, want := range []string{
		"Chaos run seed 4242", ">register<", ">counters<", "<svg", "verdict invalid",
		`<a href="viz/register-k1.html">`, "&lt;script&gt;alert(1)&lt;/script&gt;", "partition silo-a|silo-b", "kill silo-c",
		"All 300 operations drawn", "<details",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if strings.Contains(html, malicious) || strings.Contains(html, "<script") {
		t.Error("report.html holds a raw script tag")
	}
	if n := strings.Count(html, `<rect class="fault`); n != 2 {
		t.Errorf("%d fault bands, want 2", n)
	}
	if n := strings.Count(html, `<rect class="shade"`); n != 2 {
		t.Errorf("%d fault shadings over the operations, want one per fault", n)
	}
	if n := strings.Count(html, `<rect class="fault ongoing"`); n != 1 {
		t.Errorf("%d ongoing fault bands, want 1", n)
	}
	if n := strings.Count(html, "<circle "); n != 300 {
		t.Errorf("%d points, want 300", n)
	}
	for _, ref := range []string{"<link", " src=", "https://", "@import"} {
		if strings.Contains(html, ref) {
			t.Errorf("report.html refers outside itself: %q", ref)
		}
	}
}

func TestFaultLanesDoNotOverlap(t *testing.T) {
	faults := []history.Fault{
		{Kind: "a", Start: 0, End: 10},
		{Kind: "b", Start: 5, End: 15},
		{Kind: "c", Start: 12},
		{Kind: "d", Start: 11, End: 20},
		{Kind: "e", Start: 25, End: 30},
	}
	lanes := layoutLanes(faults, 40)
	if want := []int{0, 1, 2, 0, 0}; !reflect.DeepEqual(lanes, want) {
		t.Errorf("lanes = %v, want %v", lanes, want)
	}
}

func TestDownsamplingKeepsEveryFailAndInfo(t *testing.T) {
	const n = 25_000
	run := &history.Run{Faults: []history.Fault{{Kind: "pause", Start: ms(100)}}}
	var notOK int
	for i := range n {
		o := history.Op{Kind: history.KindWrite, Key: "k", Invoke: ms(int64(i)), Complete: ms(int64(i) + 3), Outcome: history.OK}
		switch {
		case i%9 == 0:
			o.Outcome = history.Fail
		case i%13 == 0:
			o.Outcome, o.Complete = history.Info, 0
		}
		if o.Outcome != history.OK {
			notOK++
		}
		run.Ops = append(run.Ops, o)
	}
	drawn := plottedOps(run.Ops, MaxPlotted)
	if len(drawn) != MaxPlotted {
		t.Errorf("%d drawn, want %d", len(drawn), MaxPlotted)
	}
	var okInvokes []int64
	kept := 0
	for _, o := range drawn {
		if o.Outcome == history.OK {
			okInvokes = append(okInvokes, o.Invoke)
		} else {
			kept++
		}
	}
	if kept != notOK {
		t.Errorf("kept %d fail and info ops of %d", kept, notOK)
	}
	// An even sample: no gap between drawn OK ops much wider than the
	// stride, and both ends of the run covered.
	stride := int64(n-notOK) / int64(len(okInvokes))
	for i := 1; i < len(okInvokes); i++ {
		if gap := (okInvokes[i] - okInvokes[i-1]) / int64(time.Millisecond); gap < 1 || gap > 3*stride+2 {
			t.Fatalf("gap of %d ms between drawn ok ops %d and %d", gap, i-1, i)
		}
	}
	if okInvokes[0] > ms(10) || okInvokes[len(okInvokes)-1] < ms(n-10) {
		t.Errorf("sample spans %d..%d ms", (okInvokes[0]-origin)/1e6, (okInvokes[len(okInvokes)-1]-origin)/1e6)
	}

	// With more fail and info ops than the limit, all are drawn still.
	if got := plottedOps(run.Ops, 1000); len(got) != notOK+250 {
		t.Errorf("limit 1000: %d drawn, want %d", len(got), notOK+250)
	}

	dir := t.TempDir()
	s := Summarize(Meta{Seed: 7}, run, nil)
	if err := Write(dir, s, run, nil, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	if got, want := strings.Count(html, `<circle class="p-fail"`)+strings.Count(html, `<circle class="p-info"`), notOK; got != want {
		t.Errorf("report draws %d fail and info ops, want %d", got, want)
	}
	if !strings.Contains(html, fmt.Sprintf("%d of %d operations drawn", MaxPlotted, n)) {
		t.Error("caption does not say how many operations are drawn")
	}
	if !strings.Contains(html, "no reply") {
		t.Error("no row for info ops that never returned")
	}
}

func TestWriteReportsUnwritableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := Write(filepath.Join(file, "run"), Summary{}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "report:") {
		t.Errorf("Write into a file: %v", err)
	}
}
