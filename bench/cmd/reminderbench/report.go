package main

// The figures each scenario reports, their targets, and the printed table.

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

// metric is one measured figure, with its target when it has one.
type metric struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Shown   string  `json:"shown"`
	Target  string  `json:"target,omitempty"`
	Verdict string  `json:"verdict,omitempty"` // PASS or FAIL; empty without a target
}

func rateMetric(name string, perSecond float64) metric {
	return metric{Name: name, Value: perSecond, Unit: "/s", Shown: fmt.Sprintf("%.0f/s", perSecond)}
}

func durationMetric(name string, d time.Duration) metric {
	return metric{Name: name, Value: float64(d) / float64(time.Millisecond), Unit: "ms", Shown: loadgen.FormatDuration(d)}
}

func countMetric(name string, n int64) metric {
	return metric{Name: name, Value: float64(n), Unit: "count", Shown: strconv.FormatInt(n, 10)}
}

func mibMetric(name string, bytes uint64) metric {
	v := float64(bytes) / (1 << 20)
	return metric{Name: name, Value: v, Unit: "MiB", Shown: fmt.Sprintf("%.1f MiB", v)}
}

func bytesMetric(name string, bytes float64) metric {
	return metric{Name: name, Value: bytes, Unit: "B", Shown: fmt.Sprintf("%.0f B", bytes)}
}

// atLeast sets the target value ≥ bound (bound in the metric's unit).
func (m metric) atLeast(bound float64, shown string) metric {
	m.Target = "≥ " + shown
	m.Verdict = benchproc.Verdict(m.Value >= bound)
	return m
}

// atMost sets the target value ≤ bound (bound in the metric's unit).
func (m metric) atMost(bound float64, shown string) metric {
	m.Target = "≤ " + shown
	m.Verdict = benchproc.Verdict(m.Value <= bound)
	return m
}

// result is what one scenario found.
type result struct {
	Scenario string   `json:"scenario"`
	Title    string   `json:"title"`
	Setup    string   `json:"setup"`
	Metrics  []metric `json:"metrics"`
	Notes    []string `json:"notes,omitempty"`
	Error    string   `json:"error,omitempty"`
	Pass     bool     `json:"pass"`
}

func (r *result) add(m ...metric) { r.Metrics = append(r.Metrics, m...) }
func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// fail records an error; a scenario may record several.
func (r *result) fail(err error) {
	if r.Error != "" {
		r.Error += "; "
	}
	r.Error += err.Error()
}
func (r *result) failf(format string, args ...any) { r.fail(fmt.Errorf(format, args...)) }

// evaluate sets Pass: no error and no missed target.
func (r *result) evaluate() {
	r.Pass = r.Error == ""
	for _, m := range r.Metrics {
		if m.Verdict == "FAIL" {
			r.Pass = false
		}
	}
}

// report is a whole run; it is also the JSON written by --json.
type report struct {
	Started   string   `json:"started"`
	GoVersion string   `json:"go_version"`
	Platform  string   `json:"platform"`
	CPUs      int      `json:"cpus"`
	LoadAvg   string   `json:"load_average,omitempty"` // of the machine when the run started
	Results   []result `json:"results"`
	Pass      bool     `json:"pass"`
}

func printReport(w io.Writer, rep report) {
	fmt.Fprintf(w, "\nreminderbench %s, %s, %d CPUs, load average at start %s\n", rep.Started, rep.Platform, rep.CPUs, rep.LoadAvg)
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\n== %s: %s ==\n%s\n", r.Scenario, r.Title, r.Setup)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  figure\tvalue\ttarget\t")
		for _, m := range r.Metrics {
			target := m.Target
			if target == "" {
				target = "—"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.Name, m.Shown, target, m.Verdict)
		}
		tw.Flush()
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  ERROR: %s\n", r.Error)
		}
		fmt.Fprintf(w, "  scenario: %s\n", benchproc.Verdict(r.Pass))
	}
	fmt.Fprintf(w, "\noverall: %s\n", benchproc.Verdict(rep.Pass))
}
