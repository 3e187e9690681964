package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/granaryhq/granary/chaos/history"
)

// MaxPlotted is how many operations the latency scatter draws at most
// before it thins the OK ones out; every Fail and Info operation is drawn
// whatever their number.
const MaxPlotted = 20000

// The timeline's geometry, in SVG user units.
const (
	plotWidth    = 1100
	marginLeft   = 72
	marginRight  = 16
	laneHeight   = 18
	laneGap      = 3
	bandsTop     = 8
	scatterGap   = 22
	noReplyStrip = 14
	scatterH     = 300
	axisH        = 34
	minBandWidth = 2
)

// faultPalette colours fault kinds, in the order of their names.
var faultPalette = []string{
	"#4e79a7", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
	"#bab0ac", "#59a14f", "#f28e2b", "#ff9da7", "#86bcb6",
}

// timeline is the SVG's content, every coordinate already formatted.
type timeline struct {
	Width, Height  int
	PlotLeft       int
	PlotRight      int
	BandsBottom    string
	ScatterTop     string
	ScatterBottom  string
	ScatterHeight  string
	NoReplyY       string
	NoReplyLabelY  string
	XAxisLabelY    string
	Bands          []faultBand
	NoFaults       bool
	Legend         []legendItem
	XTicks         []axisTick
	YTicks         []axisTick
	Points         []point
	Drawn, Total   int
	Thinned        bool
	HasNoReplyOps  bool
	HasLatencyAxis bool
}

type faultBand struct {
	X, Y, W, H, TextY string
	Color, Label      string
	Title             string
	Ongoing           bool
}

type legendItem struct {
	Kind, Color string
}

type axisTick struct {
	Pos, Label string
}

type point struct {
	X, Y, Class string
}

// timeScale maps Unix nanoseconds onto the plot's x axis.
type timeScale struct {
	origin, span int64
}

func (ts timeScale) x(ns int64) float64 {
	f := float64(ns-ts.origin) / float64(ts.span)
	return marginLeft + math.Min(math.Max(f, 0), 1)*(plotWidth-marginLeft-marginRight)
}

// latencyScale maps latencies in milliseconds onto the scatter's y axis,
// logarithmically, between two powers of ten.
type latencyScale struct {
	loExp, hiExp int
	top, bottom  float64
}

func newLatencyScale(minMS, maxMS, top, bottom float64) latencyScale {
	lo := int(math.Floor(math.Log10(math.Max(minMS, 1e-3))))
	hi := int(math.Ceil(math.Log10(math.Max(maxMS, 1e-3))))
	if hi <= lo {
		hi = lo + 1
	}
	return latencyScale{loExp: lo, hiExp: hi, top: top, bottom: bottom}
}

func (ls latencyScale) y(ms float64) float64 {
	e := math.Log10(math.Max(ms, math.Pow10(ls.loExp)))
	f := (e - float64(ls.loExp)) / float64(ls.hiExp-ls.loExp)
	return ls.bottom - math.Min(f, 1)*(ls.bottom-ls.top)
}

func coord(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// buildTimeline lays out the faults in lanes above a latency scatter of
// ops, x in seconds since origin; end is the latest time drawn, and faults
// still active at the end of the run reach it.
func buildTimeline(ops []history.Op, faults []history.Fault, origin, end int64) timeline {
	for _, o := range ops {
		end = max(end, o.Invoke, o.Complete)
	}
	for _, f := range faults {
		end = max(end, f.Start, f.End)
	}
	ts := timeScale{origin: origin, span: max(end-origin, int64(1e6))}
	tl := timeline{Width: plotWidth, PlotLeft: marginLeft, PlotRight: plotWidth - marginRight, Total: len(ops)}

	lanes := layoutLanes(faults, end)
	nLanes := 1
	kinds := faultKinds(faults)
	color := map[string]string{}
	for i, k := range kinds {
		color[k] = faultPalette[i%len(faultPalette)]
		tl.Legend = append(tl.Legend, legendItem{Kind: k, Color: color[k]})
	}
	for i, f := range faults {
		nLanes = max(nLanes, lanes[i]+1)
		stop, ongoing := f.End, f.End == 0
		if ongoing {
			stop = end
		}
		x0, x1 := ts.x(f.Start), ts.x(stop)
		y := float64(bandsTop + lanes[i]*(laneHeight+laneGap))
		label := f.Kind
		if f.Target != "" {
			label += " " + f.Target
		}
		title := fmt.Sprintf("%s: %s–%s s", label, seconds(f.Start, origin), seconds(stop, origin))
		if ongoing {
			title += " (still active at the end)"
		}
		if f.Detail != "" {
			title += ": " + f.Detail
		}
		tl.Bands = append(tl.Bands, faultBand{
			X: coord(x0), Y: coord(y), W: coord(math.Max(x1-x0, minBandWidth)), H: coord(laneHeight),
			TextY: coord(laneHeight - 5), Color: color[f.Kind], Label: label, Title: title, Ongoing: ongoing,
		})
	}
	tl.NoFaults = len(faults) == 0
	bandsBottom := float64(bandsTop + nLanes*(laneHeight+laneGap))
	scatterTop := bandsBottom + scatterGap
	scaleTop := scatterTop + noReplyStrip
	scaleBottom := scaleTop + scatterH
	tl.BandsBottom = coord(bandsBottom)
	tl.ScatterTop = coord(scatterTop)
	tl.ScatterBottom = coord(scaleBottom)
	tl.ScatterHeight = coord(scaleBottom - scatterTop)
	tl.NoReplyY = coord(scatterTop + noReplyStrip/2)
	tl.NoReplyLabelY = coord(scatterTop + noReplyStrip/2 + 4)
	tl.XAxisLabelY = coord(scaleBottom + 16)
	tl.Height = int(scaleBottom) + axisH

	drawn := plottedOps(ops, MaxPlotted)
	tl.Drawn, tl.Thinned = len(drawn), len(drawn) < len(ops)
	minMS, maxMS := math.Inf(1), math.Inf(-1)
	for _, o := range drawn {
		if o.Complete != 0 {
			ms := float64(o.Complete-o.Invoke) / 1e6
			minMS, maxMS = math.Min(minMS, ms), math.Max(maxMS, ms)
		}
	}
	if math.IsInf(minMS, 1) {
		minMS, maxMS = 1, 1000
	} else {
		tl.HasLatencyAxis = true
	}
	ls := newLatencyScale(minMS, maxMS, scaleTop, scaleBottom)
	for _, o := range drawn {
		p := point{X: coord(ts.x(o.Invoke)), Class: "p-" + string(o.Outcome)}
		if o.Complete == 0 {
			p.Y = tl.NoReplyY
			tl.HasNoReplyOps = true
		} else {
			p.Y = coord(ls.y(float64(o.Complete-o.Invoke) / 1e6))
		}
		tl.Points = append(tl.Points, p)
	}
	for e := ls.loExp; e <= ls.hiExp; e++ {
		ms := math.Pow10(e)
		tl.YTicks = append(tl.YTicks, axisTick{Pos: coord(ls.y(ms)), Label: formatLatency(ms)})
	}
	spanS := float64(ts.span) / 1e9
	step := tickStep(spanS)
	decimals := max(0, int(-math.Floor(math.Log10(step))))
	for i := 0; float64(i)*step <= spanS*(1+1e-9); i++ {
		t := float64(i) * step
		tl.XTicks = append(tl.XTicks, axisTick{Pos: coord(ts.x(origin + int64(t*1e9))), Label: strconv.FormatFloat(t, 'f', decimals, 64)})
	}
	return tl
}

// layoutLanes assigns each fault a lane, the lowest whose previous fault
// ended before this one starts, so overlapping faults never share one. A
// fault still active at the end of the run lasts until end.
func layoutLanes(faults []history.Fault, end int64) []int {
	order := make([]int, len(faults))
	for i := range order {
		order[i] = i
	}
	stop := func(f history.Fault) int64 {
		if f.End == 0 {
			return max(end, f.Start)
		}
		return f.End
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(faults[a].Start, faults[b].Start), cmp.Compare(stop(faults[a]), stop(faults[b])))
	})
	lanes := make([]int, len(faults))
	var laneEnd []int64
	for _, i := range order {
		f := faults[i]
		lane := slices.IndexFunc(laneEnd, func(e int64) bool { return e < f.Start })
		if lane < 0 {
			lane = len(laneEnd)
			laneEnd = append(laneEnd, 0)
		}
		laneEnd[lane] = stop(f)
		lanes[i] = lane
	}
	return lanes
}

// plottedOps returns the operations the scatter draws, in drawing order:
// OK ones first, so that the rarer outcomes are drawn over them, each
// outcome in order of invocation. When there are more than limit, it keeps
// every Fail and Info operation and an even sample of the OK ones, as many
// as fit in limit, and never fewer than a quarter of limit.
func plottedOps(ops []history.Op, limit int) []history.Op {
	var ok, others []history.Op
	for _, o := range ops {
		if o.Outcome == history.OK {
			ok = append(ok, o)
		} else {
			others = append(others, o)
		}
	}
	byInvoke := func(a, b history.Op) int { return cmp.Compare(a.Invoke, b.Invoke) }
	slices.SortStableFunc(ok, byInvoke)
	slices.SortStableFunc(others, func(a, b history.Op) int {
		return cmp.Or(cmp.Compare(outcomeRank(a.Outcome), outcomeRank(b.Outcome)), byInvoke(a, b))
	})
	if len(ops) > limit {
		budget := min(max(limit-len(others), limit/4), len(ok))
		sample := make([]history.Op, budget)
		for i := range sample {
			sample[i] = ok[i*len(ok)/budget]
		}
		ok = sample
	}
	return append(ok, others...)
}

func outcomeRank(o history.Outcome) int {
	switch o {
	case history.OK:
		return 0
	case history.Fail:
		return 1
	}
	return 2
}

// tickStep is 1, 2 or 5 times a power of ten, the smallest that cuts span
// into at most ten steps.
func tickStep(span float64) float64 {
	if span <= 0 {
		return 1
	}
	base := math.Pow10(int(math.Floor(math.Log10(span / 10))))
	for _, m := range []float64{1, 2, 5, 10} {
		if span/(m*base) <= 10 {
			return m * base
		}
	}
	return 10 * base
}

// formatLatency labels a power of ten of milliseconds.
func formatLatency(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'f', -1, 64) + " s"
	}
	return strconv.FormatFloat(ms, 'f', -1, 64) + " ms"
}

// seconds formats ns as seconds since origin, "" for a zero time.
func seconds(ns, origin int64) string {
	if ns == 0 {
		return ""
	}
	return strconv.FormatFloat(float64(ns-origin)/1e9, 'f', 3, 64)
}
