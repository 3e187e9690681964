package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

// The targets the gateway must meet.
const (
	minRatioB = 0.50                   // (b) through the gateway, as a share of direct-to-app rps
	maxP99B   = 10 * time.Millisecond  // (b) through the gateway
	maxP50A   = 250 * time.Microsecond // (a) through the gateway
	// maxAddedP50A bounds what the gateway adds to the p50 of load (a)
	// over calling the app directly, with either client.
	maxAddedP50A = 50 * time.Microsecond
	maxRSS       = 40 << 20 // silo resident memory after (b), bytes
)

type scenarioReport struct {
	Name        string         `json:"name"`
	Load        string         `json:"load"` // "a", "a-nethttp" or "b"
	Via         string         `json:"via"`  // "gateway", "direct" or "proxy" (the reference byte-copying proxy)
	Method      string         `json:"method"`
	Path        string         `json:"path"`
	Client      string         `json:"client,omitempty"` // empty: the raw-connection client
	Connections int            `json:"connections"`
	Actors      int            `json:"actors"`
	Result      loadgen.Result `json:"result"`
}

// report is everything a run found; it is also the JSON written by --json.
type report struct {
	Duration         string           `json:"duration"`
	Warmup           string           `json:"warmup"`
	Rounds           int              `json:"rounds"` // the loads took turns this many times
	Scenarios        []scenarioReport `json:"scenarios"`
	RatioA           float64          `json:"ratio_a"`        // gateway rps / direct rps, load (a)
	RatioB           float64          `json:"ratio_b"`        // the same for load (b)
	AddedP50A        time.Duration    `json:"added_p50_a_ns"` // gateway p50 − direct p50, load (a)
	AddedP50ANetHTTP time.Duration    `json:"added_p50_a_nethttp_ns,omitempty"`
	// ProxyAddedP50A is what a process copying bytes and nothing else adds
	// at p50 in the same run: the floor for a proxy whose reads sleep until
	// data comes (the gateway's --busy-poll saves some of those wake-ups).
	ProxyAddedP50A time.Duration `json:"proxy_added_p50_a_ns,omitempty"`
	// ProxyRatioB is the proxy's rps under load (b) as a share of direct:
	// the ceiling for RatioB of a process that adds one hop each way and
	// does nothing else, on this machine.
	ProxyRatioB      float64            `json:"proxy_ratio_b,omitempty"`
	SiloRSSBytes     int64              `json:"silo_rss_bytes"`      // after (b); -1 when unknown
	SiloPeakRSSBytes int64              `json:"silo_peak_rss_bytes"` // VmHWM after (b); -1 when unknown
	RSSError         string             `json:"rss_error,omitempty"`
	Targets          []benchproc.Target `json:"targets"`
	Pass             bool               `json:"pass"`
}

// result returns the result of one load, or an empty one if it did not run.
func (r *report) result(load, via string) loadgen.Result {
	for _, s := range r.Scenarios {
		if s.Load == load && s.Via == via {
			return s.Result
		}
	}
	return loadgen.Result{}
}

// evaluate computes the ratios and checks every target.
func (r *report) evaluate() {
	ga, da := r.result("a", "gateway"), r.result("a", "direct")
	gb, db := r.result("b", "gateway"), r.result("b", "direct")
	r.RatioA, r.RatioB = benchproc.Ratio(ga.RPS, da.RPS), benchproc.Ratio(gb.RPS, db.RPS)
	gn, dn := r.result("a-nethttp", "gateway"), r.result("a-nethttp", "direct")
	r.AddedP50A = ga.P50 - da.P50
	if pa := r.result("a", "proxy"); pa.Requests > 0 {
		r.ProxyAddedP50A = pa.P50 - da.P50
	}
	if pb := r.result("b", "proxy"); pb.Requests > 0 {
		r.ProxyRatioB = benchproc.Ratio(pb.RPS, db.RPS)
	}
	if gn.Requests > 0 {
		r.AddedP50ANetHTTP = gn.P50 - dn.P50
	}
	rssValue := benchproc.MiB(r.SiloRSSBytes)
	if r.SiloRSSBytes < 0 {
		rssValue = "unknown: " + r.RSSError
	}
	var failed int64
	for _, s := range r.Scenarios {
		failed += s.Result.Errors.Total()
	}
	r.Targets = []benchproc.Target{
		{Name: fmt.Sprintf("(b) gateway rps ≥ %.0f%% of direct", 100*minRatioB),
			Value: fmt.Sprintf("%.0f%%", 100*r.RatioB), Pass: r.RatioB >= minRatioB},
		{Name: "(b) gateway p99 ≤ " + loadgen.FormatDuration(maxP99B),
			Value: loadgen.FormatDuration(gb.P99), Pass: gb.Requests > 0 && gb.P99 <= maxP99B},
		{Name: "(a) gateway p50 ≤ " + loadgen.FormatDuration(maxP50A),
			Value: loadgen.FormatDuration(ga.P50), Pass: ga.Requests > 0 && ga.P50 <= maxP50A},
		{Name: "(a) gateway adds ≤ " + loadgen.FormatDuration(maxAddedP50A) + " at p50",
			Value: loadgen.FormatDuration(r.AddedP50A), Pass: ga.Requests > 0 && da.Requests > 0 && r.AddedP50A <= maxAddedP50A},
	}
	if gn.Requests > 0 || dn.Requests > 0 {
		r.Targets = append(r.Targets, benchproc.Target{
			Name:  "(a), net/http client: adds ≤ " + loadgen.FormatDuration(maxAddedP50A) + " at p50",
			Value: loadgen.FormatDuration(r.AddedP50ANetHTTP), Pass: gn.Requests > 0 && dn.Requests > 0 && r.AddedP50ANetHTTP <= maxAddedP50A})
	}
	r.Targets = append(r.Targets, []benchproc.Target{
		{Name: "silo RSS after (b) ≤ " + benchproc.MiB(maxRSS),
			Value: rssValue, Pass: r.SiloRSSBytes >= 0 && r.SiloRSSBytes <= maxRSS},
		{Name: "no failed requests", Value: strconv.FormatInt(failed, 10), Pass: failed == 0},
	}...)
	r.Pass = benchproc.AllPass(r.Targets)
}

func printReport(w io.Writer, r report) {
	fmt.Fprintf(w, "\nGateway benchmark: %s per load in %d rounds, each after %s warm-up; gateway and direct loads take turns\n\n",
		r.Duration, r.Rounds, r.Warmup)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-11s\tconns\tactors\trps\tp50\tp90\tp99\tp99.9\tmax\terrors\t\n", "scenario")
	for _, load := range []string{"a", "a-nethttp", "b"} {
		for _, via := range []string{"gateway", "direct", "proxy"} {
			for _, s := range r.Scenarios {
				if s.Load != load || s.Via != via {
					continue
				}
				res := s.Result
				fmt.Fprintf(tw, "%-11s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", s.Name, s.Connections, s.Actors, res.RPS,
					loadgen.FormatDuration(res.P50), loadgen.FormatDuration(res.P90), loadgen.FormatDuration(res.P99),
					loadgen.FormatDuration(res.P999), loadgen.FormatDuration(res.Max), res.Errors.Total())
			}
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\ngateway/direct rps: (a) %.0f%%  (b) %.0f%%\n", 100*r.RatioA, 100*r.RatioB)
	fmt.Fprintf(w, "added by the gateway at p50, load (a): %s", loadgen.FormatDuration(r.AddedP50A))
	if r.AddedP50ANetHTTP != 0 {
		fmt.Fprintf(w, "; with a net/http client: %s", loadgen.FormatDuration(r.AddedP50ANetHTTP))
	}
	fmt.Fprintln(w)
	if r.ProxyAddedP50A != 0 {
		fmt.Fprintf(w, "added at p50 by a bare byte-copying proxy process, load (a): %s (a proxy whose reads sleep until data comes)\n",
			loadgen.FormatDuration(r.ProxyAddedP50A))
	}
	if r.ProxyRatioB != 0 {
		fmt.Fprintf(w, "rps of a bare byte-copying proxy process, load (b): %.0f%% of direct (the ceiling for a process in the path)\n",
			100*r.ProxyRatioB)
	}
	if r.SiloRSSBytes >= 0 {
		fmt.Fprintf(w, "silo RSS after (b): %s (peak %s)\n", benchproc.MiB(r.SiloRSSBytes), benchproc.MiB(r.SiloPeakRSSBytes))
	} else {
		fmt.Fprintf(w, "silo RSS after (b): unknown (%s)\n", r.RSSError)
	}
	for _, s := range r.Scenarios {
		if s.Result.Errors.Total() > 0 {
			fmt.Fprintf(w, "%s errors: status %d %v, io %d, protocol %d; first: %s\n", s.Name, s.Result.Errors.Status,
				s.Result.StatusCodes, s.Result.Errors.IO, s.Result.Errors.Protocol, s.Result.FirstError)
		}
	}
	benchproc.PrintTargets(w, r.Targets, 36, r.Pass)
}
