package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
	"github.com/granaryhq/granary/internal/busypoll"
	"github.com/granaryhq/granary/internal/metrics"
	"github.com/granaryhq/granary/internal/tracing"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/observed"
)

// defaultMetricsPort is Prometheus's customary port for an exporter.
const defaultMetricsPort = 9090

// observeFlags are the metrics and tracing flags of dev, silo and placement.
type observeFlags struct {
	metricsHost  string
	metricsPort  portFlag
	otlpEndpoint string
	sampleRate   float64
}

func (f *observeFlags) register(fs *flag.FlagSet) {
	f.registerMetrics(fs)
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "send traces to this OpenTelemetry collector: host:port or grpc://host:port for OTLP/gRPC, http://host:port[/path] for OTLP/HTTP (off when empty)")
	fs.Float64Var(&f.sampleRate, "trace-sample-rate", 1, "share of new traces recorded, 0 to 1 (a call continuing a client's trace follows the client's choice)")
}

// registerMetrics registers the metrics flags alone (placement nodes have
// nothing to trace).
func (f *observeFlags) registerMetrics(fs *flag.FlagSet) {
	f.metricsPort = portFlag{port: defaultMetricsPort}
	f.sampleRate = 1
	fs.StringVar(&f.metricsHost, "metrics-host", "127.0.0.1", "address the metrics endpoint listens on (0.0.0.0 for all interfaces)")
	fs.Var(&f.metricsPort, "metrics-port", "port of the Prometheus metrics endpoint, GET /metrics (0 for none)")
}

func (f *observeFlags) check() error {
	if f.sampleRate < 0 || f.sampleRate > 1 {
		return fmt.Errorf("--trace-sample-rate %v is not between 0 and 1", f.sampleRate)
	}
	if f.otlpEndpoint != "" {
		if err := tracing.CheckEndpoint(f.otlpEndpoint); err != nil {
			return fmt.Errorf("--otlp-endpoint: %w", err)
		}
	}
	return nil
}

// testSpanExporter, set by tests, receives every process's spans in memory.
var testSpanExporter sdktrace.SpanExporter

// observability is a process's metrics registry (nil when off) and tracer
// (nil when off), with the endpoint that serves the metrics.
type observability struct {
	metrics *metrics.Registry
	tracing *tracing.Tracing
	addr    string // the metrics endpoint's address, "" when off
	srv     *http.Server
}

// startObservability starts the metrics endpoint and tracing of a process
// named service (granary-silo, ...) and instance (its ID). Like the gRPC
// API's, a metrics port given with --metrics-port that cannot be listened
// on is an error and the default one only logged, so that several processes
// start on one machine.
func startObservability(ctx context.Context, f *observeFlags, service, instance string, log *slog.Logger) (*observability, error) {
	o := &observability{}
	tr, err := tracing.Start(ctx, tracing.Config{Endpoint: f.otlpEndpoint, SampleRate: f.sampleRate,
		Service: service, Instance: instance, Exporter: testSpanExporter})
	if err != nil {
		return nil, err
	}
	o.tracing = tr
	if f.metricsPort.port == 0 {
		return o, nil
	}
	hostPort := net.JoinHostPort(f.metricsHost, strconv.Itoa(f.metricsPort.port))
	ln, err := net.Listen("tcp", hostPort)
	if err != nil {
		if f.metricsPort.set {
			_ = tr.Shutdown(ctx)
			return nil, fmt.Errorf("metrics endpoint cannot listen on %s: %w (choose another --metrics-port, or 0 for none)", hostPort, err)
		}
		log.Error("metrics are not served: their default port is taken; give this process a --metrics-port of its own", "addr", hostPort, "err", err)
		return o, nil
	}
	o.metrics = metrics.New()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", o.metrics.Handler())
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	o.addr = ln.Addr().String()
	go func() {
		if err := o.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	return o, nil
}

// Close stops the endpoint and flushes the spans still buffered.
func (o *observability) Close() {
	if o.srv != nil {
		_ = o.srv.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.tracing.Shutdown(ctx); err != nil {
		slog.Warn("flushing traces", "err", err)
	}
}

func (o *observability) tracer() trace.Tracer { return o.tracing.Tracer() }

// actors is the runtime's observer, nil when metrics are off.
func (o *observability) actors() actor.Observer {
	if o.metrics == nil {
		return nil
	}
	return o.metrics.Actors()
}

// apps is the app callbacks' observer, nil when metrics are off.
func (o *observability) apps() func(string) callback.AppObserver {
	if o.metrics == nil {
		return nil
	}
	return o.metrics.Apps
}

// requests is the gateway's observer, nil when metrics are off.
func (o *observability) requests() func(string, int, time.Duration) {
	if o.metrics == nil {
		return nil
	}
	return o.metrics.Request
}

// grpcCalls is the gRPC API's observer, nil when metrics are off.
func (o *observability) grpcCalls() func(string, codes.Code, time.Duration) {
	if o.metrics == nil {
		return nil
	}
	return o.metrics.GRPCCall
}

// store returns s observed, under the label name ("bbolt", "redis").
func (o *observability) store(s statestore.Store, name string) statestore.Store {
	var rec observed.Recorder
	if o.metrics != nil {
		rec = o.metrics.StoreOp
	}
	return observed.Wrap(s, name, rec, o.tracer())
}

// reminders sets cfg's observers.
func (o *observability) reminders(cfg *reminders.Config) {
	if o.metrics != nil {
		cfg.Observe, cfg.ObserveCreate = o.metrics.ReminderFired, o.metrics.ReminderCreated
	}
}

// activeActors registers the gauge of active actors by type, read from the
// runtime at scrape time.
func (o *observability) activeActors(rt *actor.Runtime) {
	if o.metrics == nil {
		return
	}
	o.metrics.MustRegister(activeCollector{rt})
}

var activeDesc = prometheus.NewDesc("granary_actors_active", "Actors active on this silo now, by actor type.", []string{"type"}, nil)

type activeCollector struct{ rt *actor.Runtime }

func (c activeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- activeDesc }

func (c activeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.rt.Stats() {
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(st.Active), st.Type)
	}
}

// busyPolls counts the polls of p (see busypoll), when metrics are on.
func (o *observability) busyPolls(p *busypoll.Poller) {
	if o.metrics == nil || p == nil {
		return
	}
	o.metrics.MustRegister(pollCollector{p})
}

var pollDesc = prometheus.NewDesc("granary_busy_polls_total",
	"Reads that could poll their socket before parking (--busy-poll), by whether the data came while polling (found), the poll ran out (parked), or the read did not poll because polls like it had mostly run out just before (paused).",
	[]string{"result"}, nil)

type pollCollector struct{ p *busypoll.Poller }

func (c pollCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pollDesc }

func (c pollCollector) Collect(ch chan<- prometheus.Metric) {
	found, parked, paused := c.p.Stats()
	ch <- prometheus.MustNewConstMetric(pollDesc, prometheus.CounterValue, float64(found), "found")
	ch <- prometheus.MustNewConstMetric(pollDesc, prometheus.CounterValue, float64(parked), "parked")
	ch <- prometheus.MustNewConstMetric(pollDesc, prometheus.CounterValue, float64(paused), "paused")
}

// gauge registers a gauge read at scrape time, when metrics are on.
func (o *observability) gauge(name, help string, f func() float64) {
	if o.metrics != nil {
		o.metrics.GaugeFunc(name, help, f)
	}
}

// storeKind is the store label of a store described as "redis (...)".
func storeKind(description string) string {
	for i, c := range description {
		if c == ' ' {
			return description[:i]
		}
	}
	return description
}

// metricsURL is where the metrics are served, or "off".
func metricsURL(addr string) string {
	if addr == "" {
		return "off"
	}
	return "http://" + addr + "/metrics"
}
