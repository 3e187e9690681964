// Command sparseload sends a steady, sparse load to a gateway: --rate actor
// calls a second spread over --conns keep-alive connections, so that each
// connection sends one request every conns/rate seconds and sits idle in
// between. It prints the calls made, their p50 and p99, and, given --pid,
// the CPU that process spent per call: the load under which a gateway that
// polls its idle connections (--busy-poll) would waste the most CPU.
//
//	sparseload --addr 127.0.0.1:3500 --conns 200 --rate 1000 --duration 5s --pid PID
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

func main() { benchproc.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sparseload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:3500", "host:port of the gateway")
	conns := fs.Int("conns", 200, "keep-alive connections")
	rate := fs.Int("rate", 1000, "calls per second over all connections")
	duration := fs.Duration("duration", 5*time.Second, "how long to send")
	pid := fs.Int("pid", 0, "process whose CPU time to report per call (0: none)")
	path := fs.String("path", "/v1.0/actors/Echo/%d/method/echo", "request path; %d is the connection's number")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *conns <= 0 || *rate <= 0 || *duration <= 0 {
		fmt.Fprintln(stderr, "sparseload: --conns, --rate and --duration must be positive")
		return 2
	}
	res, err := send(ctx, *addr, *path, *conns, *rate, *duration, *pid)
	if err != nil {
		fmt.Fprintf(stderr, "sparseload: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d calls in %s (%.0f/s) over %d connections, p50 %s, p99 %s, errors %d",
		res.calls, res.elapsed.Round(time.Millisecond), float64(res.calls)/res.elapsed.Seconds(), *conns,
		loadgen.FormatDuration(res.hist.Quantile(0.5)), loadgen.FormatDuration(res.hist.Quantile(0.99)), res.errors)
	if *pid != 0 && res.calls > 0 {
		fmt.Fprintf(stdout, "; process %d: %.1f%% of a core, %s of CPU per call",
			*pid, 100*res.cpu.Seconds()/res.elapsed.Seconds(), loadgen.FormatDuration(res.cpu/time.Duration(res.calls)))
	}
	fmt.Fprintln(stdout)
	if res.errors > 0 {
		return 1
	}
	return 0
}

type result struct {
	calls, errors int
	elapsed, cpu  time.Duration
	hist          loadgen.Histogram
}

// send runs the load: connection i sends its first call i/conns of an
// interval after the start, then one every interval.
func send(ctx context.Context, addr, path string, conns, rate int, duration time.Duration, pid int) (result, error) {
	var res result
	cpuBefore := time.Duration(0)
	if pid != 0 {
		var err error
		if cpuBefore, err = benchproc.ProcCPU(pid); err != nil {
			return res, err
		}
	}
	interval := time.Second * time.Duration(conns) / time.Duration(rate)
	start := time.Now()
	end := start.Add(duration)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c := loadgen.NewConn(addr, 10*time.Second)
			defer c.Close()
			var hist loadgen.Histogram
			calls, errors := 0, 0
			p := fmt.Sprintf(path, i)
			for next := start.Add(interval * time.Duration(i) / time.Duration(conns)); next.Before(end); next = next.Add(interval) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				t := time.Now()
				status, err := c.Do(ctx, http.MethodPost, p, `{"n":1}`)
				hist.Record(time.Since(t))
				calls++
				if err != nil || status != http.StatusOK {
					errors++
				}
			}
			mu.Lock()
			res.hist.Merge(&hist)
			res.calls += calls
			res.errors += errors
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if pid != 0 {
		after, err := benchproc.ProcCPU(pid)
		if err != nil {
			return res, err
		}
		res.cpu = after - cpuBefore
	}
	return res, ctx.Err()
}
