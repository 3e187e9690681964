package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders"
)

func TestObserversCount(t *testing.T) {
	r := New()
	ty := r.Actors().Type("Counter")
	ty.Activated()
	for range 3 {
		ty.TurnStarted(2 * time.Millisecond)
		ty.TurnEnded(time.Millisecond, nil)
	}
	ty.TurnStarted(0)
	if got := testutil.ToFloat64(r.turnsInFlight.WithLabelValues("Counter")); got != 1 {
		t.Errorf("in flight %v during a turn", got)
	}
	ty.TurnEnded(time.Millisecond, errors.New("app failed"))
	ty.Deactivated()
	app := r.Apps("shop")
	app.Called(time.Millisecond, 200, nil)
	app.Called(time.Millisecond, 503, nil)
	app.Called(time.Millisecond, 0, errors.New("refused"))
	id := actor.ID{Type: "Counter", ID: "a"}
	r.ReminderCreated(id)
	due := time.Now()
	r.ReminderFired(reminders.Fire{ID: id, Due: due, Started: due.Add(30 * time.Millisecond)})
	r.ReminderFired(reminders.Fire{ID: id, Due: due, Started: due.Add(-time.Millisecond), Err: errors.New("x")})
	r.StoreOp("redis", "get", time.Millisecond, false)
	r.StoreOp("redis", "get", time.Millisecond, true)
	r.Request("actors/method", 200, time.Millisecond)
	r.Request("actors/method", 200, time.Millisecond)
	r.Request("actors/method", 500, time.Millisecond)
	r.GRPCCall("/dapr.proto.runtime.v1.Dapr/InvokeActor", codes.NotFound, time.Millisecond)
	r.RoundDone(40 * time.Millisecond)

	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"turns", float64(testutil.CollectAndCount(r.turnDuration)), 1},
		{"activations", testutil.ToFloat64(r.activations.WithLabelValues("Counter")), 1},
		{"deactivations", testutil.ToFloat64(r.deactivations.WithLabelValues("Counter")), 1},
		{"turn errors", testutil.ToFloat64(r.turnErrors.WithLabelValues("Counter")), 1},
		{"in flight after", testutil.ToFloat64(r.turnsInFlight.WithLabelValues("Counter")), 0},
		{"app errors", testutil.ToFloat64(r.appCallErrors.WithLabelValues("shop")), 2},
		{"scheduled", testutil.ToFloat64(r.remindersScheduled.WithLabelValues("Counter")), 1},
		{"fired", testutil.ToFloat64(r.remindersFired.WithLabelValues("Counter")), 1},
		{"failed", testutil.ToFloat64(r.remindersFailed.WithLabelValues("Counter")), 1},
		{"store errors", testutil.ToFloat64(r.storeErrors.WithLabelValues("redis", "get")), 1},
		{"requests 200", testutil.ToFloat64(r.requests.WithLabelValues("actors/method", "200")), 2},
		{"requests 500", testutil.ToFloat64(r.requests.WithLabelValues("actors/method", "500")), 1},
		{"grpc", testutil.ToFloat64(r.grpcRequests.WithLabelValues("/dapr.proto.runtime.v1.Dapr/InvokeActor", "NotFound")), 1},
		{"rounds", testutil.ToFloat64(r.roundsDone), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}

	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`granary_actor_turn_duration_seconds_count{type="Counter"} 4`,
		`granary_actor_turn_queue_wait_seconds_count{type="Counter"} 4`,
		`granary_app_call_duration_seconds_count{app="shop"} 3`,
		`granary_reminder_fire_lateness_seconds_bucket{type="Counter",le="0.05"} 2`,
		`granary_gateway_request_duration_seconds_count{route="actors/method"} 3`,
		`granary_placement_dissemination_round_duration_seconds_count 1`,
		"go_goroutines ", "process_cpu_seconds_total ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the exposition lacks %q", want)
		}
	}
}

// The observers of the hot paths allocate nothing once their series exist.
func TestHotPathsDoNotAllocate(t *testing.T) {
	r := New()
	ty := r.Actors().Type("Counter")
	app := r.Apps("shop")
	r.Request("actors/method", 200, time.Millisecond)
	if n := testing.AllocsPerRun(100, func() {
		ty.TurnStarted(time.Millisecond)
		ty.TurnEnded(time.Millisecond, nil)
		app.Called(time.Millisecond, 200, nil)
		r.Request("actors/method", 200, time.Millisecond)
	}); n != 0 {
		t.Errorf("%v allocations per turn, app call and request", n)
	}
}

// BenchmarkGRPCCall records calls of one method and code, as the gRPC API
// does on every call.
func BenchmarkGRPCCall(b *testing.B) {
	r := New()
	b.ReportAllocs()
	for b.Loop() {
		r.GRPCCall("/dapr.proto.runtime.v1.Dapr/InvokeActor", codes.OK, time.Millisecond)
	}
}

// BenchmarkRequest records requests of one route and status, as the
// gateway does on every request.
func BenchmarkRequest(b *testing.B) {
	r := New()
	b.ReportAllocs()
	for b.Loop() {
		r.Request("actors/method", 200, time.Millisecond)
	}
}
