// Package report writes the report of one chaos run: from its history and
// the checkers' verdicts it computes a Summary, and writes it to the run
// directory as results.json beside a self-contained report.html with the
// verdicts, a timeline of faults and operation latencies, and availability
// under each kind of fault.
package report

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/granaryhq/granary/chaos/check"
	"github.com/granaryhq/granary/chaos/history"
)

// The files Write creates in the run directory.
const (
	ResultsFile = "results.json"
	ReportFile  = "report.html"
)

// Limits on what a Summary keeps.
const (
	// MaxFindings caps each checker's violations and, separately, its notes.
	MaxFindings = 200
	// MaxErrors is how many distinct error strings the Summary lists.
	MaxErrors = 20
	// MaxErrorLen is the length, in bytes, error strings are cut to before
	// they are grouped.
	MaxErrorLen = 120
)

// NoFault is the Nemesis of the availability row of operations invoked
// while no fault was active.
const NoFault = "none"

// Meta describes the run.
type Meta struct {
	Seed      int64
	Duration  time.Duration // planned length of the workload phase
	Nemeses   []string      // nemesis kinds enabled
	Placement int           // placement nodes
	Silos     int           // silos at start
	Started   time.Time
	Ended     time.Time
	Build     string // e.g. the granary binary path or version
}

// Summary is what results.json holds.
type Summary struct {
	Seed int64 `json:"seed"`
	// Duration is the planned length of the workload phase as
	// time.Duration.String formats it, e.g. "5m0s".
	Duration  string   `json:"duration"`
	Nemeses   []string `json:"nemeses"`
	Placement int      `json:"placement"`
	Silos     int      `json:"silos"`
	Build     string   `json:"build,omitempty"`
	// Started and Ended bound the run; when Meta leaves them zero they are
	// the earliest and latest times the history records. Times in the
	// report are relative to Started.
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	// Valid is whether every checker found the run valid.
	Valid        bool           `json:"valid"`
	Checkers     []Checker      `json:"checkers"`
	Ops          OpStats        `json:"ops"`
	Faults       FaultStats     `json:"faults"`
	Availability []Availability `json:"availability"`
	// Errors are the most frequent operation error strings, most frequent
	// first; ErrorsDistinct counts every distinct one.
	Errors         []ErrorCount `json:"errors"`
	ErrorsDistinct int          `json:"errors_distinct"`
	// Record counts of the rest of the history.
	Turns  int `json:"turns"`
	Ticks  int `json:"ticks"`
	Leases int `json:"leases"`
	Store  int `json:"store"`
}

// Checker is one checker's verdict. Violations and Notes hold at most
// MaxFindings rows each; the Truncated fields count the rows left out.
type Checker struct {
	Name                string         `json:"name"`
	Valid               bool           `json:"valid"`
	Counts              map[string]int `json:"counts"`
	Violations          []Finding      `json:"violations"`
	ViolationsTruncated int            `json:"violations_truncated,omitempty"`
	Notes               []Finding      `json:"notes"`
	NotesTruncated      int            `json:"notes_truncated,omitempty"`
}

// Finding is a violation or a note; At is in Unix nanoseconds, 0 when the
// checker gave no time.
type Finding struct {
	What   string `json:"what"`
	Key    string `json:"key"`
	At     int64  `json:"at"`
	Detail string `json:"detail"`
}

// OpCounts tallies operations by outcome.
type OpCounts struct {
	Total int `json:"total"`
	OK    int `json:"ok"`
	Fail  int `json:"fail"`
	Info  int `json:"info"`
}

func (c *OpCounts) add(o history.Outcome) {
	c.Total++
	switch o {
	case history.OK:
		c.OK++
	case history.Fail:
		c.Fail++
	case history.Info:
		c.Info++
	}
}

// OpStats tallies every client operation, and those of each kind.
type OpStats struct {
	OpCounts
	ByKind map[string]OpCounts `json:"by_kind"`
}

// FaultStats counts the faults the nemesis injected, and those of each kind.
type FaultStats struct {
	Total  int            `json:"total"`
	ByKind map[string]int `json:"by_kind"`
}

// Availability describes the operations invoked while a kind of fault was
// active (Nemesis is the kind), or while none was (Nemesis is NoFault). An
// operation counts in the row of every kind active at its invocation.
// Latencies, in milliseconds, are over the Completed operations: those that
// returned, whatever their outcome; an Info operation that never returned
// has no latency. Answered counts the operations the cluster answered:
// the OK ones and the Fail ones without an error (a compare-and-set whose
// value differed), as opposed to failures to answer.
type Availability struct {
	Nemesis       string  `json:"nemesis"`
	Faults        int     `json:"faults"`
	Ops           int     `json:"ops"`
	OK            int     `json:"ok"`
	Fail          int     `json:"fail"`
	Info          int     `json:"info"`
	OKShare       float64 `json:"ok_share"`
	Answered      int     `json:"answered"`
	AnsweredShare float64 `json:"answered_share"`
	Completed     int     `json:"completed"`
	LatencyP50MS  float64 `json:"latency_p50_ms"`
	LatencyP99MS  float64 `json:"latency_p99_ms"`
	LatencyMaxMS  float64 `json:"latency_max_ms"`
}

// ErrorCount is how many operations failed with one error string.
type ErrorCount struct {
	Error string `json:"error"`
	Count int    `json:"count"`
}

// Summarize computes the summary of a run: run is the whole history (nil
// for an empty one), results are the checkers' verdicts. The run is valid
// when every checker found it valid.
func Summarize(meta Meta, run *history.Run, results []check.Result) Summary {
	if run == nil {
		run = &history.Run{}
	}
	first, last := historySpan(run)
	s := Summary{
		Seed:      meta.Seed,
		Duration:  meta.Duration.String(),
		Nemeses:   slices.Clone(meta.Nemeses),
		Placement: meta.Placement,
		Silos:     meta.Silos,
		Build:     meta.Build,
		Started:   pickTime(meta.Started, first),
		Ended:     pickTime(meta.Ended, last),
		Valid:     true,
		Checkers:  make([]Checker, 0, len(results)),
		Ops:       opStats(run.Ops),
		Faults:    faultStats(run.Faults),
		Turns:     len(run.Turns),
		Ticks:     len(run.Ticks),
		Leases:    len(run.Leases),
		Store:     len(run.Writes),
	}
	for _, r := range results {
		s.Checkers = append(s.Checkers, summarizeChecker(r))
		if !r.Valid {
			s.Valid = false
		}
	}
	s.Availability = availability(run.Ops, run.Faults)
	s.Errors, s.ErrorsDistinct = topErrors(run.Ops)
	return s
}

// pickTime is t in UTC, or the Unix nanosecond time ns when t is zero.
func pickTime(t time.Time, ns int64) time.Time {
	if !t.IsZero() {
		return t.UTC()
	}
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// historySpan returns the earliest and latest nonzero times of the
// workload's records: operations, turns, ticks and faults.
func historySpan(run *history.Run) (first, last int64) {
	see := func(ns int64) {
		if ns == 0 {
			return
		}
		if first == 0 || ns < first {
			first = ns
		}
		last = max(last, ns)
	}
	for _, o := range run.Ops {
		see(o.Invoke)
		see(o.Complete)
	}
	for _, t := range run.Turns {
		see(t.Start)
		see(t.End)
	}
	for _, t := range run.Ticks {
		see(t.At)
	}
	for _, f := range run.Faults {
		see(f.Start)
		see(f.End)
	}
	return first, last
}

func summarizeChecker(r check.Result) Checker {
	c := Checker{Name: r.Name, Valid: r.Valid, Counts: maps.Clone(r.Counts)}
	c.Violations, c.ViolationsTruncated = findings(r.Violations)
	c.Notes, c.NotesTruncated = findings(r.Notes)
	return c
}

// findings converts vs, keeping the first MaxFindings, and returns how many
// it left out.
func findings(vs []check.Violation) ([]Finding, int) {
	n := min(len(vs), MaxFindings)
	out := make([]Finding, n)
	for i, v := range vs[:n] {
		out[i] = Finding{What: v.What, Key: v.Key, At: v.At, Detail: v.Detail}
	}
	return out, len(vs) - n
}

func opStats(ops []history.Op) OpStats {
	st := OpStats{ByKind: map[string]OpCounts{}}
	for _, o := range ops {
		st.add(o.Outcome)
		k := st.ByKind[string(o.Kind)]
		k.add(o.Outcome)
		st.ByKind[string(o.Kind)] = k
	}
	return st
}

func faultStats(faults []history.Fault) FaultStats {
	st := FaultStats{Total: len(faults), ByKind: map[string]int{}}
	for _, f := range faults {
		st.ByKind[f.Kind]++
	}
	return st
}

// activeAt reports whether f was active at ns: it started no later and had
// not ended, or never ended.
func activeAt(f history.Fault, ns int64) bool {
	return f.Start <= ns && (f.End == 0 || ns < f.End)
}

// faultKinds returns the distinct kinds of faults, sorted.
func faultKinds(faults []history.Fault) []string {
	kinds := map[string]bool{}
	for _, f := range faults {
		kinds[f.Kind] = true
	}
	return slices.Sorted(maps.Keys(kinds))
}

// availability returns the NoFault row, then one row per fault kind in
// order of name.
func availability(ops []history.Op, faults []history.Fault) []Availability {
	kinds := faultKinds(faults)
	rows := make(map[string]*Availability, len(kinds)+1)
	latencies := make(map[string][]int64, len(kinds)+1)
	order := append([]string{NoFault}, kinds...)
	for _, k := range order {
		rows[k] = &Availability{Nemesis: k}
	}
	for _, f := range faults {
		rows[f.Kind].Faults++
	}
	active := map[string]bool{}
	for _, o := range ops {
		clear(active)
		for _, f := range faults {
			if activeAt(f, o.Invoke) {
				active[f.Kind] = true
			}
		}
		if len(active) == 0 {
			active[NoFault] = true
		}
		for k := range active {
			row := rows[k]
			row.Ops++
			switch o.Outcome {
			case history.OK:
				row.OK++
				row.Answered++
			case history.Fail:
				row.Fail++
				if o.Error == "" {
					row.Answered++
				}
			case history.Info:
				row.Info++
			}
			if o.Complete != 0 {
				latencies[k] = append(latencies[k], o.Complete-o.Invoke)
			}
		}
	}
	out := make([]Availability, 0, len(order))
	for _, k := range order {
		row := rows[k]
		if row.Ops > 0 {
			row.OKShare = float64(row.OK) / float64(row.Ops)
			row.AnsweredShare = float64(row.Answered) / float64(row.Ops)
		}
		lat := latencies[k]
		slices.Sort(lat)
		row.Completed = len(lat)
		if len(lat) > 0 {
			row.LatencyP50MS = millis(percentile(lat, 50))
			row.LatencyP99MS = millis(percentile(lat, 99))
			row.LatencyMaxMS = millis(lat[len(lat)-1])
		}
		out = append(out, *row)
	}
	return out
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted, which
// is not empty, by the nearest-rank method.
func percentile(sorted []int64, p int) int64 {
	rank := int(math.Ceil(float64(p) / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// millis converts nanoseconds to milliseconds, rounded to the microsecond.
func millis(ns int64) float64 {
	return math.Round(float64(ns)/1e3) / 1e3
}

// truncateError cuts e to at most MaxErrorLen bytes without splitting a
// UTF-8 sequence.
func truncateError(e string) string {
	if len(e) <= MaxErrorLen {
		return e
	}
	cut := MaxErrorLen
	for cut > 0 && !isRuneStart(e[cut]) {
		cut--
	}
	return e[:cut]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// topErrors groups the operations' error strings, cut to MaxErrorLen, and
// returns the MaxErrors most frequent (ties in order of the string) and the
// number of distinct ones.
func topErrors(ops []history.Op) ([]ErrorCount, int) {
	counts := map[string]int{}
	for _, o := range ops {
		if o.Error != "" {
			counts[truncateError(o.Error)]++
		}
	}
	all := make([]ErrorCount, 0, len(counts))
	for e, n := range counts {
		all = append(all, ErrorCount{Error: e, Count: n})
	}
	slices.SortFunc(all, func(a, b ErrorCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Error, b.Error))
	})
	return all[:min(len(all), MaxErrors)], len(counts)
}

// FailingCheckers returns the names of the checkers that found the run
// invalid, in the order of the Summary.
func (s Summary) FailingCheckers() []string {
	var names []string
	for _, c := range s.Checkers {
		if !c.Valid {
			names = append(names, c.Name)
		}
	}
	return names
}

// Line is the one summary line printed on stdout, e.g.
//
//	chaos seed=42 5m0s: VALID  ops=12345 (ok 97.1%, info 2.3%, fail 0.6%)  faults=38  checkers: register ok, counters ok  report: DIR/report.html
//
// with "INVALID (name, ...)" naming the failing checkers instead of VALID
// when any checker found the run invalid.
func (s Summary) Line(dir string) string {
	verdict := "VALID"
	if !s.Valid {
		verdict = "INVALID"
		if failing := s.FailingCheckers(); len(failing) > 0 {
			verdict += " (" + strings.Join(failing, ", ") + ")"
		}
	}
	checkers := make([]string, 0, len(s.Checkers))
	for _, c := range s.Checkers {
		state := "ok"
		if !c.Valid {
			state = "INVALID"
		}
		checkers = append(checkers, c.Name+" "+state)
	}
	if len(checkers) == 0 {
		checkers = append(checkers, "none")
	}
	return fmt.Sprintf("chaos seed=%d %s: %s  ops=%d (ok %s, info %s, fail %s)  faults=%d  checkers: %s  report: %s",
		s.Seed, s.Duration, verdict, s.Ops.Total,
		percent(s.Ops.OK, s.Ops.Total), percent(s.Ops.Info, s.Ops.Total), percent(s.Ops.Fail, s.Ops.Total),
		s.Faults.Total, strings.Join(checkers, ", "), filepath.Join(dir, ReportFile))
}

// percent formats n/total as a percentage with one decimal, 0.0% when
// total is 0.
func percent(n, total int) string {
	if total == 0 {
		return "0.0%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(total))
}
