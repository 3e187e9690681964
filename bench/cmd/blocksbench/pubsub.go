package main

// Part 3: pub/sub. The subscriber is an HTTP server in this process; the
// publishers are this process's fasthttp clients, because every publish
// carries its send time, which a load generator replaying one template
// cannot put in.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

// What the pub/sub part publishes and subscribes to.
const (
	pubsubName   = "pubsub"
	topic        = "bench"
	route        = "/deliver"
	subAppID     = "bench"
	publishPath  = "/v1.0/publish/" + pubsubName + "/" + topic
	subscription = `[{"pubsubname":"` + pubsubName + `","topic":"` + topic + `","route":"` + route + `"}]`

	// The runs, as the "run" field of every message names them.
	runProbe      = "probe"
	runTputWarmup = "throughput-warmup"
	runTput       = "throughput"
	runLatWarmup  = "latency-warmup"
	runLat        = "latency"

	publishTimeout = 10 * time.Second
	probeTimeout   = 30 * time.Second
)

// Answers of the subscriber to a delivery.
var (
	answerSuccess = []byte(`{"status":"SUCCESS"}`)
	answerDrop    = []byte(`{"status":"DROP"}`)
)

// publisher sends publishes to the gateway over keep-alive connections.
type publisher struct {
	client *fasthttp.HostClient
	url    string
	seq    atomic.Uint64 // the last seq given out
}

func newPublisher(gwAddr string, conns int) *publisher {
	return &publisher{
		client: &fasthttp.HostClient{Addr: gwAddr, MaxConns: conns, ReadTimeout: publishTimeout, WriteTimeout: publishTimeout,
			MaxIdleConnDuration: time.Minute},
		url: "http://" + gwAddr + publishPath,
	}
}

func (p *publisher) close() { p.client.CloseIdleConnections() }

// pubOutcome is what became of one publish.
type pubOutcome struct {
	seq    uint64
	status int // 0: no answer
	err    error
	sent   time.Time
	took   time.Duration
}

// publishOne sends one message of run and reports its seq and whether it
// was acknowledged (204), with the status and body otherwise.
func (p *publisher) publishOne(req *fasthttp.Request, resp *fasthttp.Response, buf []byte, run string) (pubOutcome, []byte) {
	o := pubOutcome{seq: p.seq.Add(1)}
	o.sent = time.Now()
	buf = appendPayload(buf[:0], run, o.seq, o.sent.UnixNano())
	req.SetBodyRaw(buf)
	o.err = p.client.DoTimeout(req, resp, publishTimeout)
	o.took = time.Since(o.sent)
	if o.err == nil {
		o.status = resp.StatusCode()
		if o.status != fasthttp.StatusNoContent {
			o.err = fmt.Errorf("POST %s: status %d (want 204): %.300s", p.url, o.status, resp.Body())
		}
	}
	return o, buf
}

func (p *publisher) newRequest() *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI(p.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	return req
}

// pubLoad is one publishing run.
type pubLoad struct {
	clients          int
	rate             int // publishes per second across the clients; 0: as fast as they go
	warmup, duration time.Duration
	warmRun, run     string // the run of the messages sent before and after the warm-up
}

// pubResult is what the publishers saw of the measured part of a load.
type pubResult struct {
	start, end   time.Time // of the measured part
	acked        []uint64  // seqs acknowledged
	latency      loadgen.Histogram
	failures     int64
	codes        map[int]int64
	firstErr     string
	warmFailures int64
	sent         int64         // measured publishes sent
	maxLag       time.Duration // the latest a measured publish went out after it was due
	due          int64         // paced: measured publishes due
}

// publishLoad runs l: clients publishing in a closed loop, or, with a rate,
// taking turns to send each publish when it is due (an open loop paced by
// one ticker, see pace); a publish counts as of the part of the run it was
// due in.
func (p *publisher) publishLoad(ctx context.Context, l pubLoad) pubResult {
	start := time.Now()
	measureFrom := start.Add(l.warmup)
	end := measureFrom.Add(l.duration)
	var due chan time.Time
	if l.rate > 0 {
		due = make(chan time.Time, l.clients)
		go pace(ctx, due, start, end, l.rate)
	}
	results := make([]pubResult, l.clients)
	var wg sync.WaitGroup
	for i := range results {
		res := &results[i]
		wg.Go(func() {
			req, resp := p.newRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			var buf []byte
			for ctx.Err() == nil {
				var at time.Time // when this publish is due
				if due != nil {
					var ok bool
					if at, ok = <-due; !ok {
						return
					}
				} else if at = time.Now(); !at.Before(end) {
					return
				}
				measured := !at.Before(measureFrom)
				if due != nil && !time.Now().Before(end) {
					continue // due in time but not sent by the end of the run: skipped too
				}
				run := l.warmRun
				if measured {
					run = l.run
				}
				var o pubOutcome
				o, buf = p.publishOne(req, resp, buf, run)
				switch {
				case !measured && o.err != nil:
					res.warmFailures++
				case !measured:
				case o.err != nil:
					res.sent++
					res.failures++
					if o.status != 0 {
						if res.codes == nil {
							res.codes = map[int]int64{}
						}
						res.codes[o.status]++
					}
					if res.firstErr == "" {
						res.firstErr = fmt.Sprintf("publish %d: %v", o.seq, o.err)
					}
				default:
					res.sent++
					res.acked = append(res.acked, o.seq)
					res.latency.Record(o.took)
				}
				if measured {
					res.maxLag = max(res.maxLag, o.sent.Sub(at))
				}
			}
		})
	}
	wg.Wait()
	out := pubResult{start: measureFrom, end: time.Now()}
	if l.rate > 0 {
		out.due = dueCount(start, measureFrom, end, l.rate)
	}
	for i := range results {
		r := &results[i]
		out.acked = append(out.acked, r.acked...)
		out.latency.Merge(&r.latency)
		out.failures += r.failures
		out.warmFailures += r.warmFailures
		out.sent += r.sent
		out.maxLag = max(out.maxLag, r.maxLag)
		for c, n := range r.codes {
			if out.codes == nil {
				out.codes = map[int]int64{}
			}
			out.codes[c] += n
		}
		if out.firstErr == "" {
			out.firstErr = r.firstErr
		}
	}
	slices.Sort(out.acked)
	return out
}

// pace sends the due time of every publish to due, rate a second from
// start until end, and then closes it. A publish that falls due while every
// client is busy and due's buffer (one per client) is full is not sent:
// the clients then publish as fast as they can, never behind by more than
// the buffer, and the publishes sent carry the latency of that rate rather
// than of a queue in this program.
func pace(ctx context.Context, due chan<- time.Time, start, end time.Time, rate int) {
	defer close(due)
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	interval := paceInterval(rate)
	var given int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for ; ; given++ {
				at := start.Add(time.Duration(given) * interval)
				if !at.Before(end) {
					return
				}
				if at.After(now) {
					break
				}
				select {
				case due <- at:
				default: // every client busy: skipped
				}
			}
		}
	}
}

func paceInterval(rate int) time.Duration { return time.Second / time.Duration(rate) }

// dueCount is how many publishes pace makes due in [from, to), from start.
func dueCount(start, from, to time.Time, rate int) int64 {
	interval := paceInterval(rate)
	before := func(t time.Time) int64 { // due times k·interval < t-start, k ≥ 0
		d := t.Sub(start)
		if d <= 0 {
			return 0
		}
		return int64((d + interval - 1) / interval)
	}
	return before(to) - before(from)
}

// ---- the part ----

// pubsubPart starts the subscriber and a granary with it as app "bench",
// waits until deliveries arrive, and runs the throughput and latency runs.
func (r *runner) pubsubPart(ctx context.Context, pr *pubsubReport) error {
	sub := newSubscriber(time.Now)
	subAddr, stop, err := startSubscriber(sub)
	if err != nil {
		return err
	}
	defer stop()
	r.progress("subscriber app %q serving on %s (in this process): GET /dapr/subscribe → %s", subAppID, subAddr, subscription)
	args := append(r.boltArgs("data-pubsub"), "--app-url", subAppID+"=http://"+subAddr)
	return r.withGranary(ctx, "granary-pubsub", args, false, func(g *benchproc.Process, gw string) error {
		pub := newPublisher(gw, r.o.clients)
		defer pub.close()
		began := time.Now()
		n, err := r.waitSubscribed(ctx, pub, sub)
		if err != nil {
			return err
		}
		pr.SubscribedAfter = time.Since(began)
		r.progress("pub/sub: the first delivery arrived %v after the first probe (%d probes published)",
			pr.SubscribedAfter.Round(time.Millisecond), n)

		// Throughput: a warm-up (every partition active, connections open)
		// delivered in full, then the measured run.
		r.progress("pub/sub throughput warm-up: %d clients publishing as fast as they can for %v", r.o.clients, r.o.warmup)
		if r.o.warmup > 0 {
			sub.begin(runTputWarmup)
			warm := pub.publishLoad(ctx, pubLoad{clients: r.o.clients, duration: r.o.warmup, run: runTputWarmup})
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.drain(ctx, sub, runTputWarmup, warm.acked, r.o.drainTimeout)
		}
		r.progress("pub/sub throughput: %d clients publishing as fast as they can for %v, then waiting up to %v for the deliveries",
			r.o.clients, r.o.duration, r.o.drainTimeout)
		sub.begin(runTput)
		res := pub.publishLoad(ctx, pubLoad{clients: r.o.clients, duration: r.o.duration, run: runTput})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.progress("      published %d (%.0f/s acknowledged, p50 %s, p99 %s), failed %d; waiting for the deliveries",
			len(res.acked), rate(int64(len(res.acked)), r.o.duration), loadgen.FormatDuration(res.latency.Quantile(0.5)),
			loadgen.FormatDuration(res.latency.Quantile(0.99)), res.failures)
		r.drain(ctx, sub, runTput, res.acked, r.o.drainTimeout)
		pr.Throughput = r.summarize(sub, runTput, res, 0)
		r.progress("      %s", pr.Throughput)
		if g.Exited() {
			return fmt.Errorf("%s exited during the throughput run: %v", g.Name, g.Err())
		}

		// Latency: a fixed rate, the warm-up's messages not measured.
		r.progress("pub/sub latency: %d publishes/s over %d clients, %v warm-up + %v, then waiting up to %v for the deliveries",
			r.o.pubRate, r.o.clients, r.o.warmup, r.o.duration, r.o.drainTimeout)
		sub.begin(runLatWarmup)
		sub.begin(runLat)
		res = pub.publishLoad(ctx, pubLoad{clients: r.o.clients, rate: r.o.pubRate, warmup: r.o.warmup, duration: r.o.duration,
			warmRun: runLatWarmup, run: runLat})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.drain(ctx, sub, runLat, res.acked, r.o.drainTimeout)
		pr.Latency = r.summarize(sub, runLat, res, r.o.pubRate)
		r.progress("      %s", pr.Latency)
		pr.UnknownDeliveries, pr.MalformedDeliveries, pr.FirstMalformed = sub.oddities()
		pr.AllDuplicates = sub.duplicates()
		if g.Exited() {
			return fmt.Errorf("%s exited during the latency run: %v", g.Name, g.Err())
		}
		return nil
	})
}

// waitSubscribed publishes probe messages until one is delivered and
// returns how many it published.
func (r *runner) waitSubscribed(ctx context.Context, pub *publisher, sub *subscriber) (int, error) {
	sub.begin(runProbe)
	req, resp := pub.newRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	deadline := time.Now().Add(probeTimeout)
	var buf []byte
	var lastErr error
	published := 0
	for {
		var o pubOutcome
		o, buf = pub.publishOne(req, resp, buf, runProbe)
		if o.err != nil {
			lastErr = o.err
		} else {
			published++
		}
		// Wait a moment for it (or an earlier probe) to arrive.
		for range 10 {
			if sub.delivered(runProbe) > 0 {
				return published, nil
			}
			select {
			case <-ctx.Done():
				return published, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		if time.Now().After(deadline) {
			unknown, malformed, bad := sub.oddities()
			msg := fmt.Sprintf("no probe message was delivered within %v of publishing (%d published and acknowledged",
				probeTimeout, published)
			if lastErr != nil {
				msg += "; last publish error: " + lastErr.Error()
			}
			if unknown+malformed > 0 {
				msg += fmt.Sprintf("; %d other and %d unreadable deliveries, first: %s", unknown, malformed, bad)
			}
			return published, fmt.Errorf("%s)", msg)
		}
	}
}

// drain waits until every acknowledged message of run has been delivered,
// at most timeout, saying how far the deliveries got every few seconds.
func (r *runner) drain(ctx context.Context, sub *subscriber, run string, acked []uint64, timeout time.Duration) {
	want := int64(len(acked))
	deadline := time.Now().Add(timeout)
	nextSay := time.Now().Add(5 * time.Second)
	lastExact := time.Time{}
	for ctx.Err() == nil {
		now := time.Now()
		// The count is cheap, the exact check (every acknowledged seq seen)
		// less so: it runs once the count is reached.
		if sub.delivered(run) >= want && now.Sub(lastExact) > 250*time.Millisecond {
			lastExact = now
			if missing, _ := sub.missing(run, acked); missing == 0 {
				return
			}
		}
		if now.After(deadline) {
			r.progress("      %s: stopped waiting after %v: %d of %d acknowledged messages delivered", run, timeout,
				sub.delivered(run), want)
			return
		}
		if now.After(nextSay) {
			r.progress("      %s: %d of %d delivered", run, sub.delivered(run), want)
			nextSay = now.Add(5 * time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// summarize joins what the publishers and the subscriber saw of a run.
func (r *runner) summarize(sub *subscriber, run string, res pubResult, target int) pubsubRun {
	v := sub.view(run)
	missing, unacked := sub.missing(run, res.acked)
	pr := pubsubRun{
		Run: run, Clients: r.o.clients, TargetRate: target, PublishTime: res.end.Sub(res.start),
		Sent: res.sent, Published: int64(len(res.acked)), PublishFailures: res.failures, PublishStatusCodes: res.codes,
		PublishFirstError: res.firstErr, WarmupPublishFailures: res.warmFailures, PublishMaxLag: res.maxLag,
		Due: res.due, Skipped: max(res.due-res.sent, 0),
		PublishP50: res.latency.Quantile(0.5), PublishP99: res.latency.Quantile(0.99), PublishMax: res.latency.Max(),
		Delivered: v.delivered, Duplicates: v.dups, Missing: missing, Unacknowledged: unacked,
		LatencyP50: v.latency.Quantile(0.5), LatencyP90: v.latency.Quantile(0.9), LatencyP99: v.latency.Quantile(0.99),
		LatencyMax: v.latency.Max(),
	}
	pr.PublishRate = rate(pr.Published, pr.PublishTime)
	if v.delivered > 0 {
		pr.Window = v.last.Sub(res.start)
		pr.DeliveredRate = rate(v.delivered, pr.Window)
		pr.Drain = max(v.last.Sub(res.end), 0)
	}
	return pr
}
