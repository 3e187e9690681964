package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

// maxP99B is the target for the p99 of load (b) over gRPC.
const maxP99B = 10 * time.Millisecond

type scenarioReport struct {
	Name        string `json:"name"`
	Load        string `json:"load"`        // "a" or "b"
	Protocol    string `json:"protocol"`    // "grpc" or "http"
	Clients     int    `json:"clients"`     // calls in flight
	Connections int    `json:"connections"` // TCP connections they share
	Actors      int    `json:"actors"`
	// Result is loadgen's for HTTP. For gRPC its status_codes count the
	// failed calls by gRPC code number (see grpcLoad).
	Result loadgen.Result `json:"result"`
	// CPU is the CPU time each process used during the measured part of
	// the load's rounds.
	CPU cpuTimes `json:"cpu"`
}

// perCall returns the CPU time per answered call.
func (s scenarioReport) perCall(d time.Duration) time.Duration {
	if s.Result.Requests == 0 {
		return 0
	}
	return d / time.Duration(s.Result.Requests)
}

// failed is the number of failed calls, measured or in the warm-up.
func (s scenarioReport) failed() int64 { return s.Result.Errors.Total() + s.Result.WarmupErrors }

// report is everything a run found; it is also the JSON written by --json.
type report struct {
	Duration  string             `json:"duration"` // measured time of each load
	Warmup    string             `json:"warmup"`   // before each round of each load
	Rounds    int                `json:"rounds"`
	Round     string             `json:"round"` // measured time of a load in one round
	Body      string             `json:"body"`
	Actors    int                `json:"actors"`
	Clients   int                `json:"clients"`
	GRPCConns int                `json:"grpc_connections"` // the pool of load (b)
	Scenarios []scenarioReport   `json:"scenarios"`
	RatioA    float64            `json:"ratio_a"` // gRPC rps / HTTP rps, load (a)
	RatioB    float64            `json:"ratio_b"` // the same for load (b)
	CPUError  string             `json:"cpu_error,omitempty"`
	Failed    int64              `json:"failed_calls"` // in every load, warm-ups included
	Targets   []benchproc.Target `json:"targets"`
	Pass      bool               `json:"pass"`
}

// scenario returns the report of one load, or an empty one if it did not run.
func (r *report) scenario(load, proto string) scenarioReport {
	for _, s := range r.Scenarios {
		if s.Load == load && s.Protocol == proto {
			return s
		}
	}
	return scenarioReport{}
}

// evaluate computes the ratios and checks every target.
func (r *report) evaluate() {
	ga, ha := r.scenario("a", protoGRPC).Result, r.scenario("a", protoHTTP).Result
	gb, hb := r.scenario("b", protoGRPC).Result, r.scenario("b", protoHTTP).Result
	r.RatioA, r.RatioB = benchproc.Ratio(ga.RPS, ha.RPS), benchproc.Ratio(gb.RPS, hb.RPS)
	r.Failed = 0
	for _, s := range r.Scenarios {
		r.Failed += s.failed()
	}
	r.Targets = []benchproc.Target{
		{Name: "(b) gRPC rps ≥ (b) HTTP rps",
			Value: fmt.Sprintf("%.0f vs %.0f (%.0f%%)", gb.RPS, hb.RPS, 100*r.RatioB),
			Pass:  gb.Requests > 0 && hb.Requests > 0 && gb.RPS >= hb.RPS},
		{Name: "(b) gRPC p99 ≤ " + loadgen.FormatDuration(maxP99B),
			Value: loadgen.FormatDuration(gb.P99), Pass: gb.Requests > 0 && gb.P99 <= maxP99B},
		{Name: "no failed calls", Value: strconv.FormatInt(r.Failed, 10), Pass: r.Failed == 0},
	}
	r.Pass = benchproc.AllPass(r.Targets)
}

func printReport(w io.Writer, r report) {
	fmt.Fprintf(w, "\ngRPC vs HTTP actor invocation through granary dev: InvokeActor vs POST %s, body %s\n", httpPath, r.Body)
	fmt.Fprintf(w, "%s per load in %d rounds of %s, each after %s warm-up; gRPC and HTTP take turns (swapping places every other round)\n",
		r.Duration, r.Rounds, r.Round, r.Warmup)
	fmt.Fprintf(w, "gRPC: google.golang.org/grpc, insecure; (a) 1 client on 1 connection, (b) %d goroutines sharing %d grpc.ClientConn round-robin\n",
		r.Clients, r.GRPCConns)
	fmt.Fprintf(w, "HTTP: bench/loadgen's raw HTTP/1.1 client, one keep-alive connection per client\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-8s\tclients\tconns\tactors\trps\tp50\tp90\tp99\tp99.9\tmax\terrors\tCPU/call: granary\techoapp\tclient\tcores busy\t\n", "scenario")
	for _, load := range []string{"a", "b"} {
		for _, proto := range []string{protoGRPC, protoHTTP} {
			s := r.scenario(load, proto)
			if s.Name == "" {
				continue
			}
			res := s.Result
			cpu := []string{"-", "-", "-", "-"}
			if r.CPUError == "" && res.Requests > 0 {
				cpu = []string{loadgen.FormatDuration(s.perCall(s.CPU.Granary)), loadgen.FormatDuration(s.perCall(s.CPU.App)),
					loadgen.FormatDuration(s.perCall(s.CPU.Client)),
					strconv.FormatFloat(benchproc.Ratio(float64(s.CPU.total()), float64(res.Duration)), 'f', 2, 64)}
			}
			fmt.Fprintf(tw, "%-8s\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", s.Name, s.Clients, s.Connections,
				s.Actors, res.RPS, loadgen.FormatDuration(res.P50), loadgen.FormatDuration(res.P90), loadgen.FormatDuration(res.P99),
				loadgen.FormatDuration(res.P999), loadgen.FormatDuration(res.Max), s.failed(), cpu[0], cpu[1], cpu[2], cpu[3])
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\ngRPC/HTTP rps: (a) %.0f%%  (b) %.0f%%\n", 100*r.RatioA, 100*r.RatioB)
	if r.CPUError != "" {
		fmt.Fprintf(w, "CPU time per call: unknown (%s)\n", r.CPUError)
	} else {
		fmt.Fprintln(w, "CPU/call: CPU time (user+system, from /proc, 10ms ticks) of each process in the measured windows over the calls answered; client is this program")
	}
	for _, s := range r.Scenarios {
		if s.failed() == 0 {
			continue
		}
		e := s.Result.Errors
		fmt.Fprintf(w, "%s failed calls: status %d, io %d, protocol %d, in warm-ups %d; %s; first: %s\n", s.Name,
			e.Status, e.IO, e.Protocol, s.Result.WarmupErrors, describeCodes(s.Protocol, s.Result.StatusCodes), s.Result.FirstError)
	}
	benchproc.PrintTargets(w, r.Targets, 30, r.Pass)
}

// describeCodes lists failures by code: HTTP statuses, or gRPC codes by name.
func describeCodes(proto string, counts map[int]int64) string {
	if len(counts) == 0 {
		return "no codes"
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(counts)) {
		name := strconv.Itoa(c)
		if proto == protoGRPC {
			name = codes.Code(uint32(c)).String()
			if c == int(codes.OK) {
				name = "OK with a wrong answer"
			}
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", name, counts[c]))
	}
	return strings.Join(parts, ", ")
}
