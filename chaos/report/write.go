package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/granaryhq/granary/chaos/check"
	"github.com/granaryhq/granary/chaos/history"
)

// registerChecker is the Name of check.Register's results, whose
// violations the porcupine visualizations illustrate.
const registerChecker = "register"

// Write writes dir/results.json (the indented JSON of s) and
// dir/report.html, creating dir when it does not exist. run (nil for an
// empty history) and results are what s was computed from; the report
// shows up to MaxFindings violations and notes of each result.
// visualizations maps a register key to the file name, relative to dir, of
// porcupine's visualization for that key; the report links each next to
// the register checker's violations (it may be nil).
func Write(dir string, s Summary, run *history.Run, results []check.Result, visualizations map[string]string) error {
	if run == nil {
		run = &history.Run{}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: create run directory: %w", err)
	}
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false) // results.json is read as JSON, never as HTML
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("report: encode %s: %w", ResultsFile, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ResultsFile), js.Bytes(), 0o644); err != nil {
		return fmt.Errorf("report: write %s: %w", ResultsFile, err)
	}
	var html bytes.Buffer
	if err := pageTemplate.Execute(&html, buildPage(s, run, results, visualizations)); err != nil {
		return fmt.Errorf("report: render %s: %w", ReportFile, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ReportFile), html.Bytes(), 0o644); err != nil {
		return fmt.Errorf("report: write %s: %w", ReportFile, err)
	}
	return nil
}

// page is what the report's template renders.
type page struct {
	Title        string
	Seed         int64
	Duration     string
	Valid        bool
	Failing      string
	Facts        []fact
	Checkers     []checkerView
	Timeline     timeline
	Availability []availabilityView
	Errors       []ErrorCount
	ErrorsOmit   int
	// LooseVisualizations are the visualizations shown on their own, when
	// no register checker's result is there to hold them.
	LooseVisualizations []vizLink
}

type fact struct {
	Label, Value string
}

type checkerView struct {
	Name           string
	Valid          bool
	Counts         []fact
	Violations     []findingView
	ViolationsOmit int
	Notes          []findingView
	NotesOmit      int
	// The Totals count the findings, shown or not.
	ViolationsTotal, NotesTotal int
	Visualizations              []vizLink
}

type findingView struct {
	What, Key, At, Detail string
	// Visualization is the link to the key's porcupine visualization, ""
	// when there is none.
	Visualization string
}

type vizLink struct {
	Key, Href string
}

type availabilityView struct {
	Nemesis, OKShare, Answered, P50, P99, Max string
	Faults, Ops, OK, Fail, Info               int
	Completed                                 int
}

func buildPage(s Summary, run *history.Run, results []check.Result, visualizations map[string]string) page {
	first, last := historySpan(run)
	origin, end := first, last
	if !s.Started.IsZero() {
		origin = s.Started.UnixNano()
	}
	if !s.Ended.IsZero() {
		end = max(end, s.Ended.UnixNano())
	}
	p := page{
		Title:      fmt.Sprintf("chaos seed=%d %s", s.Seed, s.Duration),
		Seed:       s.Seed,
		Duration:   s.Duration,
		Valid:      s.Valid,
		Failing:    strings.Join(s.FailingCheckers(), ", "),
		Facts:      facts(s),
		Timeline:   buildTimeline(run.Ops, run.Faults, origin, end),
		Errors:     s.Errors,
		ErrorsOmit: s.ErrorsDistinct - len(s.Errors),
	}
	links := vizLinks(visualizations)
	hrefs := map[string]string{}
	for _, l := range links {
		hrefs[l.Key] = l.Href
	}
	placed := false
	for _, r := range results {
		cv := checkerView{Name: r.Name, Valid: r.Valid}
		for _, k := range slices.Sorted(maps.Keys(r.Counts)) {
			cv.Counts = append(cv.Counts, fact{Label: k, Value: strconv.Itoa(r.Counts[k])})
		}
		linked := map[string]string(nil)
		if r.Name == registerChecker && !placed {
			linked, cv.Visualizations, placed = hrefs, links, true
		}
		cv.Violations, cv.ViolationsOmit = findingViews(r.Violations, origin, linked)
		cv.Notes, cv.NotesOmit = findingViews(r.Notes, origin, nil)
		cv.ViolationsTotal, cv.NotesTotal = len(r.Violations), len(r.Notes)
		p.Checkers = append(p.Checkers, cv)
	}
	if !placed {
		p.LooseVisualizations = links
	}
	for _, a := range s.Availability {
		av := availabilityView{
			Nemesis: a.Nemesis, Faults: a.Faults, Ops: a.Ops, OK: a.OK, Fail: a.Fail, Info: a.Info,
			Completed: a.Completed, OKShare: percent(a.OK, a.Ops), Answered: percent(a.Answered, a.Ops),
		}
		if a.Completed > 0 {
			av.P50, av.P99, av.Max = formatMS(a.LatencyP50MS), formatMS(a.LatencyP99MS), formatMS(a.LatencyMaxMS)
		}
		p.Availability = append(p.Availability, av)
	}
	return p
}

// facts are the header's figures.
func facts(s Summary) []fact {
	ops := fmt.Sprintf("%d (ok %d, %s; fail %d, %s; info %d, %s)", s.Ops.Total,
		s.Ops.OK, percent(s.Ops.OK, s.Ops.Total), s.Ops.Fail, percent(s.Ops.Fail, s.Ops.Total),
		s.Ops.Info, percent(s.Ops.Info, s.Ops.Total))
	var byKind []string
	for _, k := range slices.Sorted(maps.Keys(s.Ops.ByKind)) {
		c := s.Ops.ByKind[k]
		byKind = append(byKind, fmt.Sprintf("%s %d (ok %d, fail %d, info %d)", k, c.Total, c.OK, c.Fail, c.Info))
	}
	faults := strconv.Itoa(s.Faults.Total)
	var fk []string
	for _, k := range slices.Sorted(maps.Keys(s.Faults.ByKind)) {
		fk = append(fk, fmt.Sprintf("%s %d", k, s.Faults.ByKind[k]))
	}
	if len(fk) > 0 {
		faults += " (" + strings.Join(fk, ", ") + ")"
	}
	out := []fact{
		{"seed", strconv.FormatInt(s.Seed, 10)},
		{"duration", s.Duration},
		{"started", formatTime(s)},
		{"nemeses", strings.Join(s.Nemeses, ", ")},
		{"cluster", fmt.Sprintf("%d placement nodes, %d silos at start", s.Placement, s.Silos)},
		{"operations", ops},
		{"by kind", strings.Join(byKind, "; ")},
		{"faults", faults},
		{"records", fmt.Sprintf("%d turns, %d ticks, %d leases, %d store writes", s.Turns, s.Ticks, s.Leases, s.Store)},
	}
	if s.Build != "" {
		out = append(out, fact{"build", s.Build})
	}
	return out
}

func formatTime(s Summary) string {
	if s.Started.IsZero() {
		return ""
	}
	out := s.Started.Format("2006-01-02 15:04:05.000 MST")
	if !s.Ended.IsZero() {
		out += fmt.Sprintf(", ran %s", s.Ended.Sub(s.Started).Round(1e6))
	}
	return out
}

func formatMS(ms float64) string { return strconv.FormatFloat(ms, 'f', 3, 64) }

// findingViews renders up to MaxFindings of vs, with times in seconds
// since origin, linking each whose key has an entry in hrefs; it returns
// how many it left out.
func findingViews(vs []check.Violation, origin int64, hrefs map[string]string) ([]findingView, int) {
	n := min(len(vs), MaxFindings)
	out := make([]findingView, n)
	for i, v := range vs[:n] {
		out[i] = findingView{What: v.What, Key: v.Key, At: seconds(v.At, origin), Detail: v.Detail, Visualization: hrefs[v.Key]}
	}
	return out, len(vs) - n
}

// vizLinks turns visualizations into links, in order of key, each file
// name made a relative URL: slash-separated, every segment escaped.
func vizLinks(visualizations map[string]string) []vizLink {
	var links []vizLink
	for _, k := range slices.Sorted(maps.Keys(visualizations)) {
		segments := strings.Split(filepath.ToSlash(visualizations[k]), "/")
		for i, seg := range segments {
			segments[i] = url.PathEscape(seg)
		}
		href := strings.Join(segments, "/")
		if strings.Contains(segments[0], ":") {
			href = "./" + href // a relative path, not a URL scheme
		}
		links = append(links, vizLink{Key: k, Href: href})
	}
	return links
}
