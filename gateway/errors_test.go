package gateway

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/reminders/schedule"
	"github.com/granaryhq/granary/silo"
	"github.com/granaryhq/granary/statestore"
)

// errorRoute is one route whose backend call can fail, and the code of the
// failures no row of the error table covers.
type errorRoute struct {
	name, method, path, body string
	fallback                 string
	reminder                 bool // reminder routes answer ErrTypeNotHosted with 403
}

var errorRoutes = []errorRoute{
	{"invoke", "PUT", "/v1.0/actors/T/1/method/m", "", "ERR_ACTOR_INVOKE_METHOD", false},
	{"transaction", "POST", "/v1.0/actors/T/1/state", `[{"operation":"upsert","request":{"key":"k","value":1}}]`, "ERR_ACTOR_STATE_TRANSACTION_SAVE", false},
	{"get state", "GET", "/v1.0/actors/T/1/state/k", "", "ERR_ACTOR_STATE_GET", false},
	{"create timer", "POST", "/v1.0/actors/T/1/timers/t", `{"dueTime":"1s"}`, "ERR_ACTOR_TIMER_CREATE", false},
	{"delete timer", "DELETE", "/v1.0/actors/T/1/timers/t", "", "ERR_ACTOR_TIMER_CREATE", false},
	{"create reminder", "PUT", "/v1.0/actors/T/1/reminders/r", `{"dueTime":"1s"}`, "ERR_ACTOR_REMINDER_CREATE", true},
	{"get reminder", "GET", "/v1.0/actors/T/1/reminders/r", "", "ERR_ACTOR_REMINDER_GET", true},
	{"delete reminder", "DELETE", "/v1.0/actors/T/1/reminders/r", "", "ERR_ACTOR_REMINDER_DELETE", true},
}

// TestErrorTable sends every runtime error through every route that can
// return it and checks status, code and message.
func TestErrorTable(t *testing.T) {
	const fallback = "" // marks rows answered with the route's own code
	rows := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"closed", actor.ErrClosed, 503, "ERR_ACTOR_RUNTIME_CLOSED"},
		{"closed wrapped", fmt.Errorf("actor T/1: %w", actor.ErrClosed), 503, "ERR_ACTOR_RUNTIME_CLOSED"},
		{"type unavailable", &actor.TypeError{Type: "T", Err: actor.ErrTypeUnavailable, Reason: "app unhealthy"}, 503, "ERR_ACTOR_RUNTIME_CLOSED"},
		{"fenced", fmt.Errorf("actor T/1: %w: %v", actor.ErrFenced, &statestore.FencedError{Key: "f", Want: []byte("r1"), Found: []byte("r2")}), 503, "ERR_ACTOR_RUNTIME_CLOSED"},
		{"type not hosted", &actor.TypeError{Type: "T", Err: actor.ErrTypeNotHosted}, 404, "ERR_ACTOR_NO_ADDRESS"},
		{"not owner", fmt.Errorf("route: %w", actor.ErrNotOwner), 404, "ERR_ACTOR_NO_ADDRESS"},
		{"stack depth", fmt.Errorf("actor T/1: %w", actor.ErrStackDepth), 500, "ERR_ACTOR_STACK_DEPTH"},
		{"not active", fmt.Errorf("actor T/1: %w", actor.ErrNotActive), 400, "ERR_ACTOR_INSTANCE_MISSING"},
		{"etag mismatch", &statestore.ConditionError{Key: "k", Want: "1", Have: "2"}, 409, "ERR_ACTOR_STATE_TRANSACTION_SAVE"},
		{"etag mismatch wrapped", fmt.Errorf("commit: %w", statestore.ErrETagMismatch), 409, "ERR_ACTOR_STATE_TRANSACTION_SAVE"},
		{"store failure", errors.New("bbolt: disk full"), 500, fallback},
		{"deadlock", actor.ErrDeadlock, 500, fallback},
		{"turn timeout", actor.ErrTurnTimeout, 500, fallback},
		{"deadline", context.DeadlineExceeded, 500, fallback},
	}
	for _, route := range errorRoutes {
		for _, r := range rows {
			what := route.name + ": " + r.name
			status, code := r.status, r.code
			if code == fallback {
				code = route.fallback
			}
			if route.reminder && errors.Is(r.err, actor.ErrTypeNotHosted) {
				status, code = 403, "ERR_ACTOR_REMINDER_NON_HOSTED"
			}
			f, h := newServer(Config{})
			f.err = r.err
			resp := do(t, h, route.method, route.path, route.body)
			msg := wantError(t, what, resp, status, code)
			if msg != r.err.Error() {
				t.Errorf("%s: message %q, want %q", what, msg, r.err.Error())
			}
			if len(f.Calls()) != 1 {
				t.Errorf("%s: backend calls %q, want one", what, f.Calls())
			}
		}
	}
}

// TestScheduleInputErrors checks that a bad schedule is 400 ERR_BAD_REQUEST
// naming the field, on both timers and reminders.
func TestScheduleInputErrors(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		dueTime, period, ttl string
		field                string
	}{
		{"soon", "", "", "dueTime"},
		{"", "R0/PT10S", "", "period"},
		{"", "every day", "", "period"},
		{"1m", "", "2000-01-01T00:00:00Z", "ttl"},
	}
	for _, c := range cases {
		_, perr := schedule.Parse(now, c.dueTime, c.period, c.ttl)
		var fe *schedule.FieldError
		if !errors.As(perr, &fe) || fe.Field != c.field {
			t.Fatalf("schedule.Parse(%q, %q, %q) = %v, want a %s field error", c.dueTime, c.period, c.ttl, perr, c.field)
		}
		for _, err := range []error{silo.InputError{Err: perr}, fmt.Errorf("actor T/1: %w", silo.InputError{Err: perr})} {
			for _, kind := range []string{"timers", "reminders"} {
				what := fmt.Sprintf("%s %v", kind, err)
				f, h := newServer(Config{})
				f.err = err
				resp := do(t, h, "PUT", "/v1.0/actors/T/1/"+kind+"/x", "{}")
				msg := wantError(t, what, resp, 400, "ERR_BAD_REQUEST", c.field)
				if msg != err.Error() {
					t.Errorf("%s: message %q, want %q", what, msg, err.Error())
				}
			}
		}
	}
}

// TestRuntimeErrorKeepsAPIError checks that an error already carrying a status
// and code passes through unchanged.
func TestRuntimeErrorKeepsAPIError(t *testing.T) {
	inner := newError(418, "ERR_TEAPOT", "short and stout")
	got := runtimeError(fmt.Errorf("wrapped: %w", inner), "ERR_ACTOR_INVOKE_METHOD")
	if got != inner {
		t.Errorf("runtimeError = %+v, want the wrapped %+v", got, inner)
	}

	f, h := newServer(Config{})
	f.err = fmt.Errorf("remote: %w", inner)
	resp := do(t, h, "PUT", "/v1.0/actors/T/1/method/m", "")
	wantError(t, "api error", resp, 418, "ERR_TEAPOT", "short and stout")
}
