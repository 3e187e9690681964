package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/granaryhq/granary/bench/loadgen"
)

// defaultStuckAfter is how long a call may still be unanswered when a run
// ends before it counts as failed: 100 times the p99 target.
const defaultStuckAfter = time.Second

// unavailableBackoff is the pause after a call that failed Unavailable (the
// connection is down), so that a server that is gone is not hammered.
const unavailableBackoff = 20 * time.Millisecond

// grpcLoad is one run of the gRPC load: Concurrency goroutines, each calling
// InvokeActor, waiting for the answer and calling again (a closed loop, as
// loadgen's connections do), over the actors round-robin.
type grpcLoad struct {
	// Clients are shared round-robin: goroutine i calls through
	// Clients[i % len(Clients)], each client being one grpc.ClientConn (one
	// HTTP/2 connection).
	Clients     []runtimev1.DaprClient
	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
	ActorType   string
	Method      string
	// Actors are called round-robin across all goroutines: call n goes to
	// Actors[n % len(Actors)].
	Actors []string
	// Body is the data of every call; the answer must be the same bytes
	// (the echo app answers with the request body).
	Body []byte
	// StuckAfter: a call the end of the run cuts short counts as failed when
	// it had been waiting this long (defaultStuckAfter when zero); shorter
	// ones are dropped, as loadgen drops the requests the end cuts short.
	StuckAfter time.Duration
}

// Failures of the gRPC load are counted in loadgen's kinds:
//   - Status: the call ended with a gRPC status other than OK or Unavailable;
//   - IO: Unavailable (the connection failed; the gateway's 502 and 503 map
//     there too), or a call still unanswered StuckAfter after it began when
//     the run ended;
//   - Protocol: an OK answer whose data is not the request body.
//
// Result.StatusCodes counts every failed call by its gRPC code number
// (codes.Code; 0, OK, for a wrong answer).

// runGRPC runs l and returns what it measured, in loadgen's Result so the
// loads of both protocols are reported and folded across rounds alike. It
// returns an error for an invalid load or when ctx ends before the run.
func runGRPC(ctx context.Context, l grpcLoad) (loadgen.Result, error) {
	if err := l.check(); err != nil {
		return loadgen.Result{}, err
	}
	if l.StuckAfter <= 0 {
		l.StuckAfter = defaultStuckAfter
	}
	start := time.Now()
	measureFrom := start.Add(l.Warmup)
	end := measureFrom.Add(l.Duration)
	// The end of the run cancels the calls in flight. It is not a deadline
	// of the context: gRPC would send a deadline as grpc-timeout with every
	// call and have the server arm a timer for each, which the HTTP load
	// does not cost it.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopTimer := time.AfterFunc(time.Until(end), cancel)
	defer stopTimer.Stop()

	var seq atomic.Uint64
	workers := make([]grpcWorker, l.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.load, w.seq, w.measureFrom, w.end = &l, &seq, measureFrom, end
		w.codes = map[int]int64{}
		client := l.Clients[i%len(l.Clients)]
		wg.Go(func() { w.loop(runCtx, client) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return loadgen.Result{}, fmt.Errorf("gRPC load interrupted: %w", err)
	}
	res := loadgen.Result{Connections: len(l.Clients), Duration: l.Duration, Latency: &loadgen.Histogram{}}
	for i := range workers {
		w := &workers[i]
		res.Latency.Merge(&w.hist)
		res.Errors.Status += w.errs.Status
		res.Errors.IO += w.errs.IO
		res.Errors.Protocol += w.errs.Protocol
		res.WarmupErrors += w.warmupErrors
		for code, n := range w.codes {
			if res.StatusCodes == nil {
				res.StatusCodes = map[int]int64{}
			}
			res.StatusCodes[code] += n
		}
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
	}
	// Add to an empty Result computes the rate and the quantiles as
	// loadgen does.
	var out loadgen.Result
	out.Add(res)
	return out, nil
}

func (l *grpcLoad) check() error {
	switch {
	case len(l.Clients) == 0:
		return errors.New("gRPC load: no clients")
	case l.Concurrency <= 0:
		return fmt.Errorf("gRPC load concurrency %d: want at least 1", l.Concurrency)
	case l.Duration <= 0 || l.Warmup < 0:
		return fmt.Errorf("gRPC load duration %v and warm-up %v: want a positive duration and a non-negative warm-up", l.Duration, l.Warmup)
	case len(l.Actors) == 0 || l.ActorType == "" || l.Method == "":
		return errors.New("gRPC load: actor type, method and at least one actor ID are required")
	}
	return nil
}

// grpcWorker is one goroutine of a gRPC load.
type grpcWorker struct {
	load             *grpcLoad
	seq              *atomic.Uint64
	measureFrom, end time.Time

	hist         loadgen.Histogram
	errs         loadgen.Errors
	warmupErrors int64
	codes        map[int]int64
	firstErr     error
}

func (w *grpcWorker) loop(ctx context.Context, client runtimev1.DaprClient) {
	l := w.load
	// The request is reused: Invoke has marshalled it when it returns.
	req := &runtimev1.InvokeActorRequest{ActorType: l.ActorType, Method: l.Method, Data: l.Body}
	for ctx.Err() == nil && time.Now().Before(w.end) {
		n := w.seq.Add(1) - 1
		req.ActorId = l.Actors[n%uint64(len(l.Actors))]
		start := time.Now()
		resp, err := client.InvokeActor(ctx, req)
		elapsed := time.Since(start)
		measured := !start.Before(w.measureFrom)
		if ctx.Err() != nil || !start.Add(elapsed).Before(w.end) {
			// Cut short by the end of the run, or answered after it: neither
			// a success nor a failure, unless it had waited far too long.
			if err != nil && measured && elapsed >= l.StuckAfter {
				w.errs.IO++
				w.codes[int(codes.DeadlineExceeded)]++
				w.first(fmt.Errorf("call %d (actor %s): no answer after %v when the run ended", n, req.ActorId, elapsed.Round(time.Millisecond)))
			}
			return
		}
		if err == nil && !bytes.Equal(resp.GetData(), l.Body) {
			err = fmt.Errorf("call %d (actor %s): answered %q, want the request body %q", n, req.ActorId, truncate(resp.GetData(), 200), l.Body)
			if measured {
				w.errs.Protocol++
				w.codes[int(codes.OK)]++
				w.first(err)
			} else {
				w.warmupErrors++
			}
			continue
		}
		if err != nil {
			code := status.Code(err)
			switch {
			case !measured:
				w.warmupErrors++
			case code == codes.Unavailable:
				w.errs.IO++
			default:
				w.errs.Status++
			}
			if measured {
				w.codes[int(code)]++
				w.first(fmt.Errorf("call %d (actor %s): %w", n, req.ActorId, err))
			}
			if code == codes.Unavailable {
				sleep(ctx, unavailableBackoff)
			}
			continue
		}
		if measured {
			w.hist.Record(elapsed)
		}
	}
}

func (w *grpcWorker) first(err error) {
	if w.firstErr == nil {
		w.firstErr = err
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
