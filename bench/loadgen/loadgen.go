// Package loadgen is Granary's HTTP/1.1 load generator: a fixed number of
// keep-alive TCP connections, each sending one request, waiting for the
// response and sending the next (a closed loop), with every latency counted
// in a histogram. It writes requests and parses responses itself on raw
// connections, because a net/http client would cost more CPU than the
// servers it measures when both share a small machine.
package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run.
type Config struct {
	// Addr is the server's host:port.
	Addr string
	// Connections is the number of concurrent connections (and requests in flight).
	Connections int
	// Warmup is how long the load runs before measuring starts.
	Warmup time.Duration
	// Duration is how long the measured part of the run lasts.
	Duration time.Duration
	// Timeout bounds connecting and each request; 10 s when zero. A request
	// that takes longer fails after between half and all of Timeout.
	Timeout time.Duration
	// Request is what every connection sends.
	Request Request
	// Client is ClientRaw (the default when empty) or ClientNetHTTP.
	Client string
}

const (
	defaultTimeout = 10 * time.Second
	readBufferSize = 16 << 10
	dialBackoff    = 20 * time.Millisecond // pause after a failed dial
)

// Run sends load as cfg describes and returns what was measured. It returns
// an error for an invalid Config, or when ctx ends before the run does.
// Failed requests do not end the run: they are counted and the connection is
// opened again.
func Run(ctx context.Context, cfg Config) (Result, error) {
	r, err := newRun(cfg)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	r.measureFrom = start.Add(cfg.Warmup)
	r.end = r.measureFrom.Add(cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, r.end)
	defer cancel()

	workers := make([]*worker, cfg.Connections)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{run: r, codes: map[int]int64{}}
		workers[i] = w
		if cfg.Client == ClientNetHTTP {
			nw := newNetHTTPWorker(w)
			wg.Go(func() { nw.loop(runCtx) })
			continue
		}
		wg.Go(func() { w.loop(runCtx) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("load run against %s interrupted: %w", cfg.Addr, err)
	}
	return r.result(workers), nil
}

// run is the state shared by the workers of one Run.
type run struct {
	cfg         Config
	req         *compiledRequest
	timeout     time.Duration
	measureFrom time.Time
	end         time.Time
	seq         atomic.Uint64 // next request number, shared for round-robin
}

func newRun(cfg Config) (*run, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("load target %q: want host:port", cfg.Addr)
	}
	if cfg.Connections <= 0 {
		return nil, fmt.Errorf("load connections %d: want at least 1", cfg.Connections)
	}
	switch cfg.Client {
	case "", ClientRaw, ClientNetHTTP:
	default:
		return nil, fmt.Errorf("load client %q: want %q or %q", cfg.Client, ClientRaw, ClientNetHTTP)
	}
	if cfg.Duration <= 0 || cfg.Warmup < 0 {
		return nil, fmt.Errorf("load duration %v and warm-up %v: want a positive duration and a non-negative warm-up", cfg.Duration, cfg.Warmup)
	}
	req, err := compileRequest(cfg.Request, cfg.Addr)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	return &run{cfg: cfg, req: req, timeout: timeout}, nil
}

// worker drives one connection.
type worker struct {
	run      *run
	conn     net.Conn
	deadline time.Time   // the connection's current I/O deadline
	stop     func() bool // unregisters the connection's cancel hook
	br       *bufio.Reader

	reqBuf, bodyBuf []byte

	hist         Histogram
	errs         Errors
	warmupErrors int64
	codes        map[int]int64 // non-2xx statuses in the measured window
	firstErr     error
	dials        int64
}

func (w *worker) loop(ctx context.Context) {
	defer w.closeConn()
	for !over(ctx, time.Now(), w.run.end) {
		if w.conn == nil && !w.dial(ctx) {
			continue
		}
		w.roundTrip(ctx)
	}
}

// dial opens the worker's connection; on failure it counts the error and
// pauses briefly so that a server that is down is not hammered.
func (w *worker) dial(ctx context.Context) bool {
	r := w.run
	d := net.Dialer{Timeout: r.timeout}
	conn, err := d.DialContext(ctx, "tcp", r.cfg.Addr)
	if err != nil {
		if over(ctx, time.Now(), r.end) {
			return false // the dial was cut short by the end of the run
		}
		w.fail(time.Now(), fmt.Errorf("connect to %s: %w", r.cfg.Addr, err))
		t := time.NewTimer(dialBackoff)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		return false
	}
	w.dials++
	w.conn = conn
	w.deadline = time.Time{}
	// The end of the run (or its cancellation) interrupts a request in flight.
	w.stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	if w.br == nil {
		w.br = bufio.NewReaderSize(conn, readBufferSize)
	} else {
		w.br.Reset(conn)
	}
	return true
}

func (w *worker) closeConn() {
	if w.conn == nil {
		return
	}
	w.stop()
	_ = w.conn.Close()
	w.conn = nil
}

// roundTrip sends one request and reads its response.
func (w *worker) roundTrip(ctx context.Context) {
	r := w.run
	n := r.seq.Add(1) - 1
	w.reqBuf, w.bodyBuf = r.req.render(w.reqBuf, w.bodyBuf, n)

	start := time.Now()
	var err error
	if start.Add(r.timeout / 2).After(w.deadline) {
		// Moving the deadline costs a timer update, so it is moved only when
		// less than half the timeout is left: a request then fails after
		// between half and all of the timeout.
		w.deadline = start.Add(r.timeout)
		err = w.conn.SetDeadline(w.deadline)
		if ctx.Err() != nil {
			return // the run ended; its cancel hook may have fired before this deadline was set
		}
	}
	var resp response
	if err == nil {
		_, err = w.conn.Write(w.reqBuf)
	}
	if err == nil {
		resp, err = readResponse(w.br, r.req.noBody)
	}
	elapsed := time.Since(start)
	if over(ctx, start.Add(elapsed), r.end) {
		// Cut short by the end of the run: neither a success nor a failure,
		// and the connection may be mid-response.
		w.closeConn()
		return
	}
	if err != nil {
		w.fail(start, fmt.Errorf("request %d: %w", n, err))
		w.closeConn()
		return
	}
	measured := !start.Before(r.measureFrom)
	switch {
	case resp.status >= 200 && resp.status < 300:
		if measured {
			w.hist.Record(elapsed)
		}
	case measured:
		w.errs.Status++
		w.codes[resp.status]++
		if w.firstErr == nil {
			w.firstErr = fmt.Errorf("request %d: HTTP status %d", n, resp.status)
		}
	default:
		w.warmupErrors++
	}
	if !resp.keepAlive {
		w.closeConn()
	}
}

// over reports whether the run has ended at time now. The time is checked as
// well as ctx because a deadline taken from ctx (by a dial) or a request
// timeout can expire a moment before ctx reports it.
func over(ctx context.Context, now, end time.Time) bool {
	return ctx.Err() != nil || !now.Before(end)
}

// fail counts a failed connection or request that started at start.
func (w *worker) fail(start time.Time, err error) {
	if start.Before(w.run.measureFrom) {
		w.warmupErrors++
		return
	}
	if errors.Is(err, errProtocol) {
		w.errs.Protocol++
	} else {
		w.errs.IO++
	}
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// Errors counts the failures of the measured part of a run, by kind.
type Errors struct {
	Status   int64 `json:"status"`   // responses with a status outside 2xx
	IO       int64 `json:"io"`       // failed connects, reads and writes, timeouts, connections closed mid-response
	Protocol int64 `json:"protocol"` // responses that are not valid HTTP/1.x
}

// Total is the number of failed requests of every kind.
func (e Errors) Total() int64 { return e.Status + e.IO + e.Protocol }

// Result is what a run measured. Latencies and counts cover only the
// measured part (after the warm-up) and only 2xx responses.
type Result struct {
	Connections  int           `json:"connections"`
	Duration     time.Duration `json:"duration_ns"`
	Requests     int64         `json:"requests"` // 2xx responses
	RPS          float64       `json:"rps"`
	Mean         time.Duration `json:"mean_ns"`
	P50          time.Duration `json:"p50_ns"`
	P90          time.Duration `json:"p90_ns"`
	P99          time.Duration `json:"p99_ns"`
	P999         time.Duration `json:"p999_ns"`
	Max          time.Duration `json:"max_ns"`
	Errors       Errors        `json:"errors"`
	StatusCodes  map[int]int64 `json:"status_codes,omitempty"` // the non-2xx statuses seen
	FirstError   string        `json:"first_error,omitempty"`
	WarmupErrors int64         `json:"warmup_errors"` // failures during the warm-up, of any kind
	Reconnects   int64         `json:"reconnects"`    // connections opened beyond one per connection slot
	Latency      *Histogram    `json:"-"`
}

func (r *run) result(workers []*worker) Result {
	res := Result{
		Connections: r.cfg.Connections,
		Duration:    r.cfg.Duration,
		Latency:     &Histogram{},
	}
	for _, w := range workers {
		res.Latency.Merge(&w.hist)
		res.Errors.Status += w.errs.Status
		res.Errors.IO += w.errs.IO
		res.Errors.Protocol += w.errs.Protocol
		res.WarmupErrors += w.warmupErrors
		res.Reconnects += max(w.dials-1, 0)
		for code, c := range w.codes {
			if res.StatusCodes == nil {
				res.StatusCodes = map[int]int64{}
			}
			res.StatusCodes[code] += c
		}
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
	}
	h := res.Latency
	res.Requests = int64(h.Count())
	res.RPS = float64(res.Requests) / r.cfg.Duration.Seconds()
	res.Mean, res.Max = h.Mean(), h.Max()
	res.P50, res.P90, res.P99, res.P999 = h.Quantile(0.50), h.Quantile(0.90), h.Quantile(0.99), h.Quantile(0.999)
	return res
}

// Add folds another run of the same load into res, as if the two had been
// one run of their summed durations.
func (res *Result) Add(o Result) {
	if res.Latency == nil {
		res.Latency = &Histogram{}
	}
	if o.Latency != nil {
		res.Latency.Merge(o.Latency)
	}
	res.Connections = max(res.Connections, o.Connections)
	res.Duration += o.Duration
	res.Errors.Status += o.Errors.Status
	res.Errors.IO += o.Errors.IO
	res.Errors.Protocol += o.Errors.Protocol
	res.WarmupErrors += o.WarmupErrors
	res.Reconnects += o.Reconnects
	for code, c := range o.StatusCodes {
		if res.StatusCodes == nil {
			res.StatusCodes = map[int]int64{}
		}
		res.StatusCodes[code] += c
	}
	if res.FirstError == "" {
		res.FirstError = o.FirstError
	}
	h := res.Latency
	res.Requests = int64(h.Count())
	res.RPS = 0
	if res.Duration > 0 {
		res.RPS = float64(res.Requests) / res.Duration.Seconds()
	}
	res.Mean, res.Max = h.Mean(), h.Max()
	res.P50, res.P90, res.P99, res.P999 = h.Quantile(0.50), h.Quantile(0.90), h.Quantile(0.99), h.Quantile(0.999)
}

// String is the result on one line, e.g.
// "41234 rps  p50 812µs  p90 1.31ms  p99 2.90ms  p99.9 5.10ms  max 12.0ms  ok 824680  errors 0",
// followed by the errors by kind and the first error when there were any.
func (res Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.0f rps  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  ok %d  errors %d",
		res.RPS, FormatDuration(res.P50), FormatDuration(res.P90), FormatDuration(res.P99),
		FormatDuration(res.P999), FormatDuration(res.Max), res.Requests, res.Errors.Total())
	if res.Errors.Total() > 0 {
		fmt.Fprintf(&b, " (status %d, io %d, protocol %d; first: %s)",
			res.Errors.Status, res.Errors.IO, res.Errors.Protocol, res.FirstError)
	}
	return b.String()
}

// FormatDuration prints d with three significant digits in ns, µs, ms or s.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return threeDigits(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		return threeDigits(float64(d)/float64(time.Millisecond)) + "ms"
	}
	return threeDigits(d.Seconds()) + "s"
}

func threeDigits(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
