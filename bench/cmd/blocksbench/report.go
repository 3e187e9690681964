package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

// The targets.
const (
	minGetToInvoke  = 1.5   // state get rps / actor invocation rps, each store
	minBoltSave     = 15000 // state saves per second on the embedded store
	minInvokeRatio  = 0.50  // service invocation through the gateway / straight to the app
	minDeliveryRate = 10000 // pub/sub messages delivered per second
	maxDeliveryP99  = 100 * time.Millisecond
	minRateShare    = 0.95 // the latency run counts only if it published this share of the rate asked
)

// storeReport is what the state part measured on one store.
type storeReport struct {
	Store       string         `json:"store"` // "bbolt" or "redis"
	Where       string         `json:"where"` // data directory or Redis URL (no password)
	Keys        int            `json:"keys"`
	Preload     time.Duration  `json:"preload_ns"` // saving every key, in batches of 100
	Save        loadgen.Result `json:"save"`
	Get         loadgen.Result `json:"get"`
	Invoke      loadgen.Result `json:"invoke"` // actor method calls through the echo app, the reference
	SaveError   string         `json:"save_error,omitempty"`
	GetError    string         `json:"get_error,omitempty"`
	InvokeError string         `json:"invoke_error,omitempty"`
	GetToInvoke float64        `json:"get_to_invoke"` // get rps / invoke rps
	Error       string         `json:"error,omitempty"`
}

// invokeReport is what the service invocation part measured.
type invokeReport struct {
	AppID        string         `json:"app_id"`
	Method       string         `json:"method"`
	Path         string         `json:"path"`        // through the gateway
	DirectPath   string         `json:"direct_path"` // straight to the app
	Gateway      loadgen.Result `json:"gateway"`
	Direct       loadgen.Result `json:"direct"`
	GatewayError string         `json:"gateway_error,omitempty"`
	DirectError  string         `json:"direct_error,omitempty"`
	Ratio        float64        `json:"ratio"` // gateway rps / direct rps
	Error        string         `json:"error,omitempty"`
}

// pubsubRun is what one pub/sub run measured: the publishers' side, and
// the subscriber's, counted over the messages published after the warm-up.
type pubsubRun struct {
	Run                   string        `json:"run"`
	Clients               int           `json:"clients"`
	TargetRate            int           `json:"target_rate,omitempty"` // publishes per second asked; 0: as fast as possible
	PublishTime           time.Duration `json:"publish_time_ns"`
	Due                   int64         `json:"due,omitempty"`     // paced: publishes due in the measured time
	Skipped               int64         `json:"skipped,omitempty"` // paced: due but not sent, every client being busy
	Sent                  int64         `json:"sent"`
	Published             int64         `json:"published"` // acknowledged (204)
	PublishRate           float64       `json:"publish_rate"`
	PublishFailures       int64         `json:"publish_failures"`
	PublishStatusCodes    map[int]int64 `json:"publish_status_codes,omitempty"`
	PublishFirstError     string        `json:"publish_first_error,omitempty"`
	WarmupPublishFailures int64         `json:"warmup_publish_failures"`
	PublishP50            time.Duration `json:"publish_p50_ns"`
	PublishP99            time.Duration `json:"publish_p99_ns"`
	PublishMax            time.Duration `json:"publish_max_ns"`
	PublishMaxLag         time.Duration `json:"publish_max_lag_ns"` // paced: the latest a publish went out after it was due
	Delivered             int64         `json:"delivered"`          // distinct messages
	Duplicates            int64         `json:"duplicates"`
	Missing               int64         `json:"missing"`        // acknowledged, not delivered within the wait
	Unacknowledged        int64         `json:"unacknowledged"` // delivered, though the publish failed
	Window                time.Duration `json:"window_ns"`      // first publish → last delivery
	DeliveredRate         float64       `json:"delivered_rate"` // delivered / window
	Drain                 time.Duration `json:"drain_ns"`       // end of publishing → last delivery
	LatencyP50            time.Duration `json:"latency_p50_ns"` // send → delivery
	LatencyP90            time.Duration `json:"latency_p90_ns"`
	LatencyP99            time.Duration `json:"latency_p99_ns"`
	LatencyMax            time.Duration `json:"latency_max_ns"`
}

// String is the run on one line, for the progress lines.
func (p pubsubRun) String() string {
	return fmt.Sprintf("published %d (%.0f/s), delivered %d in %v (%.0f/s), %d duplicates, %d missing, drain %v; latency p50 %s p99 %s max %s",
		p.Published, p.PublishRate, p.Delivered, p.Window.Round(time.Millisecond), p.DeliveredRate, p.Duplicates, p.Missing,
		p.Drain.Round(time.Millisecond), loadgen.FormatDuration(p.LatencyP50), loadgen.FormatDuration(p.LatencyP99),
		loadgen.FormatDuration(p.LatencyMax))
}

// pubsubReport is what the pub/sub part measured.
type pubsubReport struct {
	Clients             int           `json:"clients"`
	Rate                int           `json:"rate"` // of the latency run
	SubscribedAfter     time.Duration `json:"subscribed_after_ns"`
	Throughput          pubsubRun     `json:"throughput"`
	Latency             pubsubRun     `json:"latency"`
	AllDuplicates       int64         `json:"all_duplicates"`       // of every run, warm-ups and probes included
	UnknownDeliveries   int64         `json:"unknown_deliveries"`   // of no run the subscriber knew
	MalformedDeliveries int64         `json:"malformed_deliveries"` // not a CloudEvent with the benchmark's data
	FirstMalformed      string        `json:"first_malformed,omitempty"`
	Error               string        `json:"error,omitempty"`
}

// report is everything a run found; it is also the JSON written by --json.
type report struct {
	Duration string             `json:"duration"`
	Warmup   string             `json:"warmup"`
	Clients  int                `json:"clients"`
	Keys     int                `json:"keys"`
	Actors   int                `json:"actors"`
	PubRate  int                `json:"pub_rate"`
	Parts    []string           `json:"parts"`
	Stores   []storeReport      `json:"stores,omitempty"`
	Invoke   *invokeReport      `json:"invoke,omitempty"`
	PubSub   *pubsubReport      `json:"pubsub,omitempty"`
	Targets  []benchproc.Target `json:"targets"`
	Pass     bool               `json:"pass"`
}

// errors returns the parts' errors, "part: error".
func (r *report) errors() []string {
	var out []string
	for _, s := range r.Stores {
		if s.Error != "" {
			out = append(out, s.Store+" state: "+s.Error)
		}
	}
	if r.Invoke != nil && r.Invoke.Error != "" {
		out = append(out, "service invocation: "+r.Invoke.Error)
	}
	if r.PubSub != nil && r.PubSub.Error != "" {
		out = append(out, "pub/sub: "+r.PubSub.Error)
	}
	return out
}

const notMeasured = "not measured (see errors)"

// evaluate computes the ratios and checks the targets of the parts run.
func (r *report) evaluate() {
	r.Targets = nil
	var failed int64
	add := func(name, value string, pass bool) {
		r.Targets = append(r.Targets, benchproc.Target{Name: name, Value: value, Pass: pass})
	}
	for i := range r.Stores {
		s := &r.Stores[i]
		s.GetToInvoke = benchproc.Ratio(s.Get.RPS, s.Invoke.RPS)
		failed += s.Save.Errors.Total() + s.Get.Errors.Total() + s.Invoke.Errors.Total()
		value := fmt.Sprintf("%.2f× (%.0f vs %.0f rps)", s.GetToInvoke, s.Get.RPS, s.Invoke.RPS)
		if s.Error != "" {
			value = notMeasured
		}
		add(fmt.Sprintf("%s get ≥ %.1f× actor invocation rate", s.Store, minGetToInvoke), value,
			s.Error == "" && s.Invoke.Requests > 0 && s.GetToInvoke >= minGetToInvoke)
		if s.Store == storeBolt {
			value := fmt.Sprintf("%.0f rps", s.Save.RPS)
			if s.Error != "" {
				value = notMeasured
			}
			add(fmt.Sprintf("%s save ≥ %d rps", s.Store, minBoltSave), value, s.Error == "" && s.Save.RPS >= minBoltSave)
		}
	}
	if inv := r.Invoke; inv != nil {
		inv.Ratio = benchproc.Ratio(inv.Gateway.RPS, inv.Direct.RPS)
		failed += inv.Gateway.Errors.Total() + inv.Direct.Errors.Total()
		value := fmt.Sprintf("%.0f%% (%.0f vs %.0f rps)", 100*inv.Ratio, inv.Gateway.RPS, inv.Direct.RPS)
		if inv.Error != "" {
			value = notMeasured
		}
		add(fmt.Sprintf("service invocation ≥ %.0f%% of direct", 100*minInvokeRatio), value,
			inv.Error == "" && inv.Direct.Requests > 0 && inv.Ratio >= minInvokeRatio)
	}
	if ps := r.PubSub; ps != nil {
		tp, lat := ps.Throughput, ps.Latency
		failed += tp.PublishFailures + lat.PublishFailures
		value := fmt.Sprintf("%.0f msg/s", tp.DeliveredRate)
		if ps.Error != "" && tp.Published == 0 {
			value = notMeasured
		}
		add(fmt.Sprintf("pub/sub delivered ≥ %d msg/s", minDeliveryRate), value,
			ps.Error == "" && tp.Missing == 0 && tp.DeliveredRate >= minDeliveryRate)
		value = fmt.Sprintf("p99 %s at %.0f msg/s published", loadgen.FormatDuration(lat.LatencyP99), lat.PublishRate)
		if ps.Error != "" && lat.Published == 0 {
			value = notMeasured
		}
		add(fmt.Sprintf("pub/sub p99 ≤ %s at %d msg/s", loadgen.FormatDuration(maxDeliveryP99), ps.Rate), value,
			ps.Error == "" && lat.Delivered > 0 && lat.LatencyP99 <= maxDeliveryP99 &&
				lat.PublishRate >= minRateShare*float64(ps.Rate))
		missing := tp.Missing + lat.Missing
		value = fmt.Sprintf("%d missing of %d", missing, tp.Published+lat.Published)
		if ps.Error != "" && tp.Published+lat.Published == 0 {
			value = notMeasured
		}
		add("pub/sub every acknowledged message delivered", value,
			ps.Error == "" && missing == 0 && tp.Published+lat.Published > 0)
	}
	add("no failed requests", strconv.FormatInt(failed, 10), failed == 0)
	r.Pass = benchproc.AllPass(r.Targets)
}

// loadRow is one row of a load table.
type loadRow struct {
	name, target string
	res          loadgen.Result
	missing      bool // not measured: dashes
}

func printLoads(w io.Writer, first string, rows []loadRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\trps\tp50\tp90\tp99\tmax\terrors\t  target\n", first)
	for _, row := range rows {
		if row.missing {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t  %s\n", row.name, row.target)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%d\t  %s\n", row.name, row.res.RPS,
			loadgen.FormatDuration(row.res.P50), loadgen.FormatDuration(row.res.P90), loadgen.FormatDuration(row.res.P99),
			loadgen.FormatDuration(row.res.Max), row.res.Errors.Total(), row.target)
	}
	tw.Flush()
}

// printErrors writes the failures of a load, when it had any.
func printErrors(w io.Writer, name, detail string, res loadgen.Result) {
	if res.Errors.Total() == 0 {
		return
	}
	fmt.Fprintf(w, "%s errors: status %d %v, io %d, protocol %d; first: %s\n", name,
		res.Errors.Status, res.StatusCodes, res.Errors.IO, res.Errors.Protocol, detail)
}

func printReport(w io.Writer, r report) {
	if len(r.Stores) > 0 {
		fmt.Fprintf(w, "\nState through the gateway (store %q): %d clients over %d keys, %s per load after %s warm-up;\n"+
			"invocation is an actor method call through the echo app over %d actors, the same clients, on the same silo\n\n",
			stateStore, r.Clients, r.Keys, r.Duration, r.Warmup, r.Actors)
		var rows []loadRow
		for _, s := range r.Stores {
			if s.Error != "" && s.Save.Requests == 0 {
				for _, l := range []string{"save      ", "get       ", "invocation"} {
					rows = append(rows, loadRow{name: fmt.Sprintf("%-5s  %s", s.Store, l), target: "not measured", missing: true})
				}
				continue
			}
			saveTarget := "(no target)"
			if s.Store == storeBolt {
				saveTarget = fmt.Sprintf("≥ %d rps", minBoltSave)
			}
			rows = append(rows,
				loadRow{name: fmt.Sprintf("%-5s  save      ", s.Store), target: saveTarget, res: s.Save},
				loadRow{name: fmt.Sprintf("%-5s  get       ", s.Store),
					target: fmt.Sprintf("≥ %.1f× invocation: %.2f× %s", minGetToInvoke, s.GetToInvoke,
						benchproc.Verdict(s.Error == "" && s.Invoke.Requests > 0 && s.GetToInvoke >= minGetToInvoke)), res: s.Get},
				loadRow{name: fmt.Sprintf("%-5s  invocation", s.Store), target: "(the reference)", res: s.Invoke})
		}
		printLoads(w, "store  load      ", rows)
		for _, s := range r.Stores {
			if s.Preload > 0 {
				fmt.Fprintf(w, "%s: %d keys preloaded in %v (%s)\n", s.Store, s.Keys, s.Preload.Round(time.Millisecond), s.Where)
			}
			printErrors(w, s.Store+" save", s.SaveError, s.Save)
			printErrors(w, s.Store+" get", s.GetError, s.Get)
			printErrors(w, s.Store+" invocation", s.InvokeError, s.Invoke)
		}
	}
	if inv := r.Invoke; inv != nil {
		fmt.Fprintf(w, "\nService invocation: %d clients, %s %s through the gateway vs %s %s straight to the echo app (a route that echoes the body)\n\n",
			r.Clients, inv.Method, inv.Path, inv.Method, inv.DirectPath)
		if inv.Direct.Requests > 0 || inv.Gateway.Requests > 0 {
			printLoads(w, "via    ", []loadRow{
				{name: "gateway", target: fmt.Sprintf("≥ %.0f%% of direct: %.0f%% %s", 100*minInvokeRatio, 100*inv.Ratio,
					benchproc.Verdict(inv.Error == "" && inv.Direct.Requests > 0 && inv.Ratio >= minInvokeRatio)), res: inv.Gateway},
				{name: "direct ", res: inv.Direct},
			})
		}
		printErrors(w, "gateway", inv.GatewayError, inv.Gateway)
		printErrors(w, "direct", inv.DirectError, inv.Direct)
	}
	if ps := r.PubSub; ps != nil {
		fmt.Fprintf(w, "\nPub/sub: topic %q of %q to one subscriber app (%q, in this process) on one silo, embedded store; %d clients\n",
			topic, pubsubName, subAppID, ps.Clients)
		if ps.SubscribedAfter > 0 {
			fmt.Fprintf(w, "first delivery %v after the first probe publish\n", ps.SubscribedAfter.Round(time.Millisecond))
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "run            \tpublished\tpublish/s\tpub p99\tdelivered\tdelivered/s\tdups\tmissing\tdrain\tlat p50\tlat p90\tlat p99\tlat max\t  target\n")
		for _, run := range []struct {
			name, target string
			p            pubsubRun
		}{
			{fmt.Sprintf("%-15s", "throughput"), fmt.Sprintf("≥ %d delivered/s: %s", minDeliveryRate,
				benchproc.Verdict(ps.Error == "" && ps.Throughput.Missing == 0 && ps.Throughput.DeliveredRate >= minDeliveryRate)), ps.Throughput},
			{fmt.Sprintf("%-15s", fmt.Sprintf("latency @%d/s", ps.Rate)), fmt.Sprintf("p99 ≤ %s: %s", loadgen.FormatDuration(maxDeliveryP99),
				benchproc.Verdict(ps.Error == "" && ps.Latency.Delivered > 0 && ps.Latency.LatencyP99 <= maxDeliveryP99 &&
					ps.Latency.PublishRate >= minRateShare*float64(ps.Rate))), ps.Latency},
		} {
			p := run.p
			if p.Sent == 0 {
				fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t  not measured\n", run.name)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%d\t%.0f\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t  %s\n", run.name, p.Published, p.PublishRate,
				loadgen.FormatDuration(p.PublishP99), p.Delivered, p.DeliveredRate, p.Duplicates, p.Missing,
				loadgen.FormatDuration(p.Drain), loadgen.FormatDuration(p.LatencyP50), loadgen.FormatDuration(p.LatencyP90),
				loadgen.FormatDuration(p.LatencyP99), loadgen.FormatDuration(p.LatencyMax), run.target)
		}
		tw.Flush()
		fmt.Fprintf(w, "delivered/s counts the distinct messages delivered from the first publish to the last delivery; "+
			"duplicates over every run (probes and warm-ups included): %d\n", ps.AllDuplicates)
		if ps.Latency.Sent > 0 {
			fmt.Fprintf(w, "latency run: of %d publishes due (%d/s), %d were sent, up to %s late; %d skipped, every client waiting on an answer\n",
				ps.Latency.Due, ps.Rate, ps.Latency.Sent, loadgen.FormatDuration(ps.Latency.PublishMaxLag), ps.Latency.Skipped)
		}
		for _, p := range []pubsubRun{ps.Throughput, ps.Latency} {
			if p.PublishFailures > 0 || p.WarmupPublishFailures > 0 {
				fmt.Fprintf(w, "%s publishes failed: %d measured %v, %d in the warm-up; first: %s\n", p.Run,
					p.PublishFailures, p.PublishStatusCodes, p.WarmupPublishFailures, p.PublishFirstError)
			}
			if p.Unacknowledged > 0 {
				fmt.Fprintf(w, "%s: %d messages delivered whose publish was not acknowledged\n", p.Run, p.Unacknowledged)
			}
		}
		if ps.UnknownDeliveries > 0 || ps.MalformedDeliveries > 0 {
			fmt.Fprintf(w, "deliveries of no run: %d; unreadable: %d (answered DROP)", ps.UnknownDeliveries, ps.MalformedDeliveries)
			if ps.FirstMalformed != "" {
				fmt.Fprintf(w, "; first: %s", ps.FirstMalformed)
			}
			fmt.Fprintln(w)
		}
	}
	if errs := r.errors(); len(errs) > 0 {
		fmt.Fprintln(w, "\nerrors:")
		for _, e := range errs {
			fmt.Fprintln(w, "  "+strings.ReplaceAll(e, "\n", " "))
		}
	}
	benchproc.PrintTargets(w, r.Targets, 46, r.Pass)
}
