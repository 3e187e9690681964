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
	"github.com/granaryhq/granary/placement/membership"
)

// The targets.
const (
	// maxAddedP50 bounds what forwarding adds to the p50 of a call at c=1.
	maxAddedP50 = 100 * time.Microsecond
	// failoverLimit bounds the time from a silo's kill until its actors
	// are served again: the faulty-host timeout, plus 1 s.
	failoverLimit = membership.DefaultFaultyHostTimeout + time.Second
)

// forwardingReport is part 1.
type forwardingReport struct {
	Via             string         `json:"via"`   // the silo every call goes to
	Owner           string         `json:"owner"` // the owner of the forwarded calls' actors
	LocalActors     []string       `json:"local_actors"`
	ForwardedActors []string       `json:"forwarded_actors"`
	Blocks          int            `json:"blocks"`
	Rounds          int            `json:"rounds"` // rounds of one local and one forwarded block
	Local           loadgen.Result `json:"local"`
	Forwarded       loadgen.Result `json:"forwarded"`
	AddedP50        time.Duration  `json:"added_p50_ns"` // forwarded p50 − local p50
	AddedP99        time.Duration  `json:"added_p99_ns"`
	// The active actors of the type on each silo afterwards: the local
	// actors on Via, the forwarded ones on Owner.
	ActiveOnVia   int `json:"active_on_via"`
	ActiveOnOwner int `json:"active_on_owner"`
}

// throughputReport is part 2.
type throughputReport struct {
	Dev           loadgen.Result   `json:"dev"`
	Cluster       loadgen.Result   `json:"cluster"`        // the gateways' loads merged
	PerGateway    []loadgen.Result `json:"per_gateway"`    // the load through each gateway
	Gateways      []string         `json:"gateways"`       // the silo of each PerGateway load
	GatewayActors []int            `json:"gateway_actors"` // the actors each was called with
	Ratio         float64          `json:"ratio"`          // cluster rps / dev rps
}

// failoverActor is one actor of the killed silo in part 3.
type failoverActor struct {
	ID        string        `json:"id"`
	Shard     int           `json:"shard"`
	Via       string        `json:"via"` // the surviving silo it was called through
	Served    bool          `json:"served"`
	Took      time.Duration `json:"took_ns"`  // from the kill to the first successful call
	Attempts  int           `json:"attempts"` // calls made, the successful one included
	LastError string        `json:"last_error,omitempty"`
}

// failoverReport is part 3.
type failoverReport struct {
	Victim string          `json:"victim"`
	Actors []failoverActor `json:"actors"`
	Max    time.Duration   `json:"max_ns"` // the longest Took of the actors served
	Limit  time.Duration   `json:"limit_ns"`
}

// report is everything a run found; it is also the JSON written by --json.
type report struct {
	Took           string             `json:"took"`
	Redis          string             `json:"redis"`     // the cluster's database
	DevRedis       string             `json:"dev_redis"` // granary dev's
	Rounds         int                `json:"rounds"`    // part 2: the loads took turns this many times
	PlacementNodes int                `json:"placement_nodes"`
	Calls          int                `json:"calls"` // part 1, per kind, at least
	Warmup         string             `json:"warmup"`
	Duration       string             `json:"duration"`
	Connections    int                `json:"connections"`
	Actors         int                `json:"actors"`
	Forwarding     forwardingReport   `json:"forwarding"`
	Throughput     throughputReport   `json:"throughput"`
	Failover       failoverReport     `json:"failover"`
	Targets        []benchproc.Target `json:"targets"`
	Pass           bool               `json:"pass"`
}

func newReport(o options) report {
	return report{PlacementNodes: 1, Calls: o.calls, Warmup: o.warmup.String(), Duration: o.duration.String(),
		Rounds: o.rounds, Connections: o.conns, Actors: o.actors}
}

// signedDuration formats d as loadgen does, with a minus sign when negative.
func signedDuration(d time.Duration) string {
	if d < 0 {
		return "-" + loadgen.FormatDuration(-d)
	}
	return loadgen.FormatDuration(d)
}

// evaluate computes the differences and the ratio and checks every target.
func (r *report) evaluate() {
	f := &r.Forwarding
	f.AddedP50 = f.Forwarded.P50 - f.Local.P50
	f.AddedP99 = f.Forwarded.P99 - f.Local.P99
	t := &r.Throughput
	t.Ratio = benchproc.Ratio(t.Cluster.RPS, t.Dev.RPS)

	fo := &r.Failover
	fo.Max = 0
	served := 0
	for _, a := range fo.Actors {
		if a.Served {
			served++
			fo.Max = max(fo.Max, a.Took)
		}
	}
	failoverValue := loadgen.FormatDuration(fo.Max)
	if served < len(fo.Actors) {
		failoverValue = fmt.Sprintf("%d of %d actors not served again", len(fo.Actors)-served, len(fo.Actors))
	}
	if len(fo.Actors) == 0 {
		failoverValue = "not measured"
	}

	var failed int64
	for _, res := range []loadgen.Result{f.Local, f.Forwarded, t.Dev, t.Cluster} {
		failed += res.Errors.Total()
	}
	measured := f.Local.Requests > 0 && f.Forwarded.Requests > 0
	r.Targets = []benchproc.Target{
		{Name: "(1) forwarding adds ≤ " + loadgen.FormatDuration(maxAddedP50) + " at p50",
			Value: signedDuration(f.AddedP50), Pass: measured && f.AddedP50 <= maxAddedP50},
		{Name: "(1) actors active where the ring puts them",
			Value: fmt.Sprintf("%s %d of %d, %s %d of %d", f.Via, f.ActiveOnVia, len(f.LocalActors), f.Owner, f.ActiveOnOwner, len(f.ForwardedActors)),
			Pass:  len(f.LocalActors) > 0 && f.ActiveOnVia == len(f.LocalActors) && f.ActiveOnOwner == len(f.ForwardedActors)},
		{Name: "(3) killed silo's actors served again ≤ " + loadgen.FormatDuration(failoverLimit),
			Value: failoverValue, Pass: len(fo.Actors) > 0 && served == len(fo.Actors) && fo.Max <= failoverLimit},
		{Name: "no failed requests in (1) and (2)", Value: strconv.FormatInt(failed, 10), Pass: failed == 0},
	}
	r.Pass = benchproc.AllPass(r.Targets)
}

func printReport(w io.Writer, r report) {
	f, t, fo := r.Forwarding, r.Throughput, r.Failover
	fmt.Fprintf(w, "\nCluster benchmark: %d placement node, silos on %s, granary dev on %s; the run took %s\n",
		r.PlacementNodes, r.Redis, r.DevRedis, r.Took)
	fmt.Fprintf(w, "(1) one connection through %s of a 2-silo cluster: actors %s owns (local) and %s owns (forwarded), "+
		"%d rounds of alternating blocks\n", f.Via, f.Via, f.Owner, f.Rounds)
	fmt.Fprintf(w, "(2) %d connections over %d actors, %s per load in %d rounds, each after %s warm-up, taking turns: "+
		"granary dev, and a 3-silo cluster with actor k called through gateway k mod 3\n\n",
		r.Connections, r.Actors, r.Duration, r.Rounds, r.Warmup)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-24s\tconns\tactors\tcalls\trps\tp50\tp90\tp99\tp99.9\tmax\terrors\t\n", "scenario")
	row := func(name string, actors int, res loadgen.Result) {
		fmt.Fprintf(tw, "%-24s\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", name, res.Connections, actors, res.Requests, res.RPS,
			loadgen.FormatDuration(res.P50), loadgen.FormatDuration(res.P90), loadgen.FormatDuration(res.P99),
			loadgen.FormatDuration(res.P999), loadgen.FormatDuration(res.Max), res.Errors.Total())
	}
	row(fmt.Sprintf("(1) local %s→%s", f.Via, f.Via), len(f.LocalActors), f.Local)
	row(fmt.Sprintf("(1) forwarded %s→%s", f.Via, f.Owner), len(f.ForwardedActors), f.Forwarded)
	row("(2) granary dev", r.Actors, t.Dev)
	row(fmt.Sprintf("(2) cluster, %d gateways", len(t.PerGateway)), r.Actors, t.Cluster)
	for i, g := range t.PerGateway {
		if i < len(t.Gateways) && i < len(t.GatewayActors) {
			row("(2)   through "+t.Gateways[i], t.GatewayActors[i], g)
		}
	}
	tw.Flush()

	fmt.Fprintf(w, "\n(1) added by forwarding at c=1: p50 %s, p99 %s\n", signedDuration(f.AddedP50), signedDuration(f.AddedP99))
	fmt.Fprintf(w, "(2) cluster/dev rps: %.0f%%\n", 100*t.Ratio)
	for _, l := range []struct {
		name string
		res  loadgen.Result
	}{{"(1) local", f.Local}, {"(1) forwarded", f.Forwarded}, {"(2) granary dev", t.Dev}, {"(2) cluster", t.Cluster}} {
		if l.res.Errors.Total() > 0 {
			fmt.Fprintf(w, "%s errors: status %d %v, io %d, protocol %d; first: %s\n", l.name, l.res.Errors.Status,
				l.res.StatusCodes, l.res.Errors.IO, l.res.Errors.Protocol, l.res.FirstError)
		}
	}

	fmt.Fprintf(w, "\n(3) SIGKILL of %s; each actor called through a survivor until a call succeeds, all at once:\n", fo.Victim)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-16s\tshard\tthrough\tserved after\tattempts\t\n", "actor")
	for _, a := range fo.Actors {
		took := "never"
		if a.Served {
			took = loadgen.FormatDuration(a.Took)
		}
		fmt.Fprintf(tw, "%-16s\t%d\t%s\t%s\t%d\t\n", a.ID, a.Shard, a.Via, took, a.Attempts)
	}
	tw.Flush()
	var last []string
	for _, a := range fo.Actors {
		if !a.Served && a.LastError != "" {
			last = append(last, a.ID+": "+a.LastError)
		}
	}
	if len(last) > 0 {
		fmt.Fprintf(w, "last errors: %s\n", strings.Join(last, "; "))
	}
	fmt.Fprintf(w, "max: %s (faulty-host timeout %s + 1s = %s)\n", loadgen.FormatDuration(fo.Max),
		loadgen.FormatDuration(membership.DefaultFaultyHostTimeout), loadgen.FormatDuration(fo.Limit))
	benchproc.PrintTargets(w, r.Targets, 44, r.Pass)
}
