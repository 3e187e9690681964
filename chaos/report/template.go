package report

import "html/template"

// pageTemplate renders report.html. Everything it draws is inline: the
// stylesheet and the SVG timeline; it loads nothing and runs no script.
var pageTemplate = template.Must(template.New(ReportFile).Parse(pageSource))

const pageSource = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .4em; }
h2 { font-size: 1.15em; margin: 1.6em 0 .5em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .3em 0; }
th, td { text-align: left; padding: .2em .6em; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f5f5f5; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { display: inline-block; padding: .1em .6em; border-radius: 4px; color: #fff; font-weight: bold; }
.verdict.valid, .tag.valid { background: #2e7d32; }
.verdict.invalid, .tag.invalid { background: #c62828; }
.tag { color: #fff; padding: 0 .4em; border-radius: 3px; font-size: .9em; }
.facts th { background: none; font-weight: normal; color: #666; }
.counts { font-family: ui-monospace, monospace; font-size: .9em; }
.findings td { font-size: .92em; }
.detail { font-family: ui-monospace, monospace; white-space: pre-wrap; word-break: break-word; }
details, .links { margin: .2em 0 .4em 1em; }
summary { cursor: pointer; color: #444; }
.caption { color: #555; font-size: .92em; margin: .3em 0 1em; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .axis { stroke: #999; stroke-width: 1; }
svg .grid { stroke: #eee; stroke-width: 1; }
svg .shade { fill-opacity: .13; }
svg .fault { stroke: #333; stroke-width: .5; fill-opacity: .85; }
svg .fault.ongoing { stroke-dasharray: 4 2; stroke-width: 1; }
svg .band text { fill: #fff; font-size: 10px; }
svg .p-ok { fill: #2e9d3a; fill-opacity: .55; }
svg .p-fail { fill: #f08c00; }
svg .p-info { fill: #d32f2f; }
.swatch { display: inline-block; width: .9em; height: .9em; vertical-align: middle; margin: 0 .2em 0 .8em; }
</style>
</head>
<body>
<h1>Chaos run seed {{.Seed}}, {{.Duration}}:
{{if .Valid}}<span class="verdict valid">VALID</span>{{else}}<span class="verdict invalid">INVALID</span>{{if .Failing}} <span>({{.Failing}})</span>{{end}}{{end}}</h1>
<table class="facts">
{{range .Facts}}<tr><th>{{.Label}}</th><td>{{.Value}}</td></tr>
{{end}}</table>

<h2>Checkers</h2>
{{if .Checkers}}<table class="checkers">
<tr><th>checker</th><th>verdict</th><th>counts</th></tr>
{{range .Checkers}}<tr class="checker">
<td>{{.Name}}</td>
<td>{{if .Valid}}<span class="tag valid">valid</span>{{else}}<span class="tag invalid">INVALID</span>{{end}}</td>
<td class="counts">{{range .Counts}}{{.Label}}={{.Value}} {{end}}</td>
</tr>
{{if or .Violations .Notes .Visualizations}}<tr><td colspan="3">
{{if .Violations}}<details class="violations"><summary>violations: {{.ViolationsTotal}}{{if .ViolationsOmit}} (the first {{len .Violations}} shown){{end}}</summary>
{{template "findings" .Violations}}
</details>{{end}}
{{if .Visualizations}}<p class="links">linearizability visualizations: {{range $i, $l := .Visualizations}}{{if $i}}, {{end}}<a href="{{$l.Href}}">{{$l.Key}}</a>{{end}}</p>
{{end}}
{{if .Notes}}<details class="notes"><summary>notes: {{.NotesTotal}}{{if .NotesOmit}} (the first {{len .Notes}} shown){{end}}</summary>
{{template "findings" .Notes}}
</details>{{end}}
</td></tr>
{{end}}{{end}}</table>
{{else}}<p>No checker ran.</p>{{end}}
{{if .LooseVisualizations}}<p>Linearizability visualizations:</p>
{{template "links" .LooseVisualizations}}{{end}}

<h2>Timeline</h2>
{{with .Timeline}}<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="faults and operation latencies over time">
{{range .XTicks}}<line class="grid" x1="{{.Pos}}" x2="{{.Pos}}" y1="0" y2="{{$.Timeline.ScatterBottom}}"/>
{{end}}{{range .YTicks}}<line class="grid" x1="{{$.Timeline.PlotLeft}}" x2="{{$.Timeline.PlotRight}}" y1="{{.Pos}}" y2="{{.Pos}}"/>
<text x="{{$.Timeline.PlotLeft}}" dx="-4" y="{{.Pos}}" dy="4" text-anchor="end">{{.Label}}</text>
{{end}}{{range .Bands}}<rect class="shade" x="{{.X}}" y="{{$.Timeline.ScatterTop}}" width="{{.W}}" height="{{$.Timeline.ScatterHeight}}" fill="{{.Color}}"/>
{{end}}<text x="4" y="14">faults</text>
{{if .NoFaults}}<text x="{{.PlotLeft}}" y="22" dx="4">no faults</text>
{{end}}{{range .Bands}}<g><title>{{.Title}}</title><svg class="band" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><rect class="fault{{if .Ongoing}} ongoing{{end}}" width="100%" height="100%" fill="{{.Color}}"/><text x="3" y="{{.TextY}}">{{.Label}}</text></svg></g>
{{end}}<line class="axis" x1="0" x2="{{.Width}}" y1="{{.BandsBottom}}" y2="{{.BandsBottom}}"/>
{{if .HasNoReplyOps}}<text x="{{.PlotLeft}}" dx="-4" y="{{.NoReplyLabelY}}" text-anchor="end">no reply</text>
{{end}}<line class="axis" x1="{{.PlotLeft}}" x2="{{.PlotLeft}}" y1="{{.ScatterTop}}" y2="{{.ScatterBottom}}"/>
<line class="axis" x1="{{.PlotLeft}}" x2="{{.PlotRight}}" y1="{{.ScatterBottom}}" y2="{{.ScatterBottom}}"/>
{{range .XTicks}}<text x="{{.Pos}}" y="{{$.Timeline.XAxisLabelY}}" text-anchor="middle">{{.Label}}</text>
{{end}}{{range .Points}}<circle class="{{.Class}}" cx="{{.X}}" cy="{{.Y}}" r="2"/>
{{end}}</svg>
<p class="caption">x: seconds since the run started. Top: one band per fault, coloured by kind, and shading the operations below while it lasted{{range .Legend}}<span class="swatch" style="background: {{.Color}}"></span>{{.Kind}}{{end}}; a dashed band was still active when the run ended.
Below: latency of each operation against its invocation, log scale{{if not .HasLatencyAxis}} (no operation completed){{end}};
<span class="swatch" style="background: #2e9d3a"></span>ok <span class="swatch" style="background: #f08c00"></span>fail <span class="swatch" style="background: #d32f2f"></span>info, indeterminate operations that never returned on the top row.
{{if .Thinned}}{{.Drawn}} of {{.Total}} operations drawn: every fail and info one, and an even sample of the ok ones.{{else}}All {{.Total}} operations drawn.{{end}}</p>
{{end}}

<h2>Availability</h2>
<p class="caption">Operations by the faults active when they were invoked (an operation counts under every kind active then; "none": no fault active). Answered: the OK operations and the failed ones the cluster answered (a compare-and-set whose value differed) rather than failed to answer. Latencies in ms over the operations that returned.</p>
<table class="availability">
<tr><th>nemesis</th><th class="num">faults</th><th class="num">ops</th><th class="num">ok share</th><th class="num">answered</th><th class="num">ok</th><th class="num">fail</th><th class="num">info</th><th class="num">returned</th><th class="num">p50 ms</th><th class="num">p99 ms</th><th class="num">max ms</th></tr>
{{range .Availability}}<tr><td>{{.Nemesis}}</td><td class="num">{{.Faults}}</td><td class="num">{{.Ops}}</td><td class="num">{{.OKShare}}</td><td class="num">{{.Answered}}</td><td class="num">{{.OK}}</td><td class="num">{{.Fail}}</td><td class="num">{{.Info}}</td><td class="num">{{.Completed}}</td><td class="num">{{.P50}}</td><td class="num">{{.P99}}</td><td class="num">{{.Max}}</td></tr>
{{end}}</table>

<h2>Errors</h2>
{{if .Errors}}<table class="errors">
<tr><th class="num">count</th><th>error</th></tr>
{{range .Errors}}<tr><td class="num">{{.Count}}</td><td class="detail">{{.Error}}</td></tr>
{{end}}</table>
{{if .ErrorsOmit}}<p class="caption">{{.ErrorsOmit}} less frequent distinct errors are not shown.</p>{{end}}
{{else}}<p>No operation returned an error.</p>{{end}}
</body>
</html>
{{define "findings"}}<table class="findings">
<tr><th>what</th><th>key</th><th class="num">at (s)</th><th>detail</th></tr>
{{range .}}<tr><td>{{.What}}</td><td>{{.Key}}{{if .Visualization}} <a href="{{.Visualization}}">visualization</a>{{end}}</td><td class="num">{{.At}}</td><td class="detail">{{.Detail}}</td></tr>
{{end}}</table>{{end}}
{{define "links"}}<ul class="visualizations">
{{range .}}<li><a href="{{.Href}}">{{.Key}}</a></li>
{{end}}</ul>{{end}}
`
