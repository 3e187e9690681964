// Package metrics is Granary's Prometheus instrumentation: one registry per
// process holding every granary_* metric, the Go runtime and process
// collectors, and the observers the runtime, the app callbacks, the
// reminders, the stores and the gateway report to. Label values are bounded
// sets (actor types, app IDs, store names, routes, status codes), never actor
// IDs. Hot paths hold their labelled series from the first use on, so
// recording costs no allocation.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
)

// Registry holds one process's metrics.
type Registry struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	grpcRequests    *prometheus.CounterVec
	grpcDuration    *prometheus.HistogramVec

	turnDuration  *prometheus.HistogramVec
	turnWait      *prometheus.HistogramVec
	turnsInFlight *prometheus.GaugeVec
	turnErrors    *prometheus.CounterVec
	activations   *prometheus.CounterVec
	deactivations *prometheus.CounterVec

	appCallDuration *prometheus.HistogramVec
	appCallErrors   *prometheus.CounterVec

	remindersScheduled *prometheus.CounterVec
	remindersFired     *prometheus.CounterVec
	remindersFailed    *prometheus.CounterVec
	reminderLateness   *prometheus.HistogramVec

	storeDuration *prometheus.HistogramVec
	storeErrors   *prometheus.CounterVec

	roundsDone    prometheus.Counter
	roundDuration prometheus.Histogram

	// routes caches the series of (route, status) pairs, calls those of
	// (gRPC method, code) pairs, reminders those of each actor type: a map
	// read under a read lock allocates nothing, where a labelled lookup
	// would.
	mu        sync.RWMutex
	routes    map[routeKey]*routeSeries
	calls     map[callKey]*routeSeries
	reminders map[string]*reminderSeries
}

// Latency buckets, in seconds: 100µs to 30s.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// New returns a registry with the Go runtime and process collectors and
// every granary_* metric registered.
func New() *Registry {
	r := &Registry{reg: prometheus.NewRegistry(), routes: map[routeKey]*routeSeries{}, calls: map[callKey]*routeSeries{}, reminders: map[string]*reminderSeries{}}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hist := func(name, help string, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, labels)
		r.reg.MustRegister(v)
		return v
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		r.reg.MustRegister(v)
		return v
	}
	r.requests = counter("granary_gateway_requests_total", "HTTP requests the gateway answered, by route and status code.", "route", "status")
	r.requestDuration = hist("granary_gateway_request_duration_seconds", "Time the gateway took to answer an HTTP request, by route.", "route")
	r.grpcRequests = counter("granary_grpc_requests_total", "Calls of the gRPC API, by method and status code.", "method", "code")
	r.grpcDuration = hist("granary_grpc_request_duration_seconds", "Time the gRPC API took to answer a call, by method.", "method")

	r.turnDuration = hist("granary_actor_turn_duration_seconds", "Time an actor turn ran, from the turn's start to its end, by actor type.", "type")
	r.turnWait = hist("granary_actor_turn_queue_wait_seconds", "Time a call waited for its actor's turn (earlier turns and the activation), by actor type.", "type")
	r.turnsInFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "granary_actor_turns_in_flight", Help: "Actor turns running now, by actor type."}, []string{"type"})
	r.reg.MustRegister(r.turnsInFlight)
	r.turnErrors = counter("granary_actor_turn_errors_total", "Actor turns that failed, by actor type.", "type")
	r.activations = counter("granary_actor_activations_total", "Actors activated, by actor type.", "type")
	r.deactivations = counter("granary_actor_deactivations_total", "Actors deactivated, by actor type.", "type")

	r.appCallDuration = hist("granary_app_call_duration_seconds", "Time an app took to answer an actor call, by app ID.", "app")
	r.appCallErrors = counter("granary_app_call_errors_total", "Actor calls to an app that failed (no answer, or a 5xx status), by app ID.", "app")

	r.remindersScheduled = counter("granary_reminders_scheduled_total", "Reminders created or replaced, by actor type.", "type")
	r.remindersFired = counter("granary_reminders_fired_total", "Reminder fires delivered to their actor, by actor type.", "type")
	r.remindersFailed = counter("granary_reminders_failed_total", "Reminder fires that failed (they are retried), by actor type.", "type")
	r.reminderLateness = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "granary_reminder_fire_lateness_seconds", Help: "How long after its due time a reminder fire started, by actor type.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"type"})
	r.reg.MustRegister(r.reminderLateness)

	r.storeDuration = hist("granary_store_operation_duration_seconds", "Time a state store operation took, by store and operation.", "store", "op")
	r.storeErrors = counter("granary_store_operation_errors_total", "State store operations that failed (conditions and fences that refused a write are not failures), by store and operation.", "store", "op")

	r.roundsDone = prometheus.NewCounter(prometheus.CounterOpts{Name: "granary_placement_dissemination_rounds_total", Help: "Dissemination rounds this placement node finished as the leader."})
	r.roundDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "granary_placement_dissemination_round_duration_seconds",
		Help: "Time a dissemination round took, from its lock phase to its unlock.", Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}})
	r.reg.MustRegister(r.roundsDone, r.roundDuration)
	return r
}

// Handler serves the registry in the Prometheus exposition format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Gatherer is the registry, for tests that read it.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// MustRegister adds collectors of a component, such as a gauge read from its
// status at scrape time.
func (r *Registry) MustRegister(cs ...prometheus.Collector) { r.reg.MustRegister(cs...) }

// GaugeFunc registers a gauge whose value f gives at scrape time.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// RoundDone records a dissemination round that took d.
func (r *Registry) RoundDone(d time.Duration) {
	r.roundsDone.Inc()
	r.roundDuration.Observe(d.Seconds())
}

// routeKey names the series of one route and status.
type routeKey struct {
	route  string
	status int
}

type routeSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// Request records one HTTP request the gateway answered. route must be one
// of a fixed set of route names.
func (r *Registry) Request(route string, status int, d time.Duration) {
	rs := cachedSeries(r, r.routes, routeKey{route, status}, func() *routeSeries {
		return &routeSeries{
			count:    r.requests.WithLabelValues(route, strconv.Itoa(status)),
			duration: r.requestDuration.WithLabelValues(route),
		}
	})
	rs.count.Inc()
	rs.duration.Observe(d.Seconds())
}

// cachedSeries returns m[k], made by mk the first time k is asked for.
func cachedSeries[K comparable](r *Registry, m map[K]*routeSeries, k K, mk func() *routeSeries) *routeSeries {
	r.mu.RLock()
	s := m[k]
	r.mu.RUnlock()
	if s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s = m[k]; s == nil {
		s = mk()
		m[k] = s
	}
	return s
}

// GRPCCall records one unary call of the gRPC API. method is the full
// method name, one of the service's (unknown methods are refused by gRPC
// before any interceptor runs).
func (r *Registry) GRPCCall(method string, code codes.Code, d time.Duration) {
	cs := cachedSeries(r, r.calls, callKey{method, code}, func() *routeSeries {
		return &routeSeries{
			count:    r.grpcRequests.WithLabelValues(method, code.String()),
			duration: r.grpcDuration.WithLabelValues(method),
		}
	})
	cs.count.Inc()
	cs.duration.Observe(d.Seconds())
}

// callKey names the series of one gRPC method and status code.
type callKey struct {
	method string
	code   codes.Code
}
