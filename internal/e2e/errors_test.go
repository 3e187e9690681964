package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
)

// TestGatewayRejectsBadInput sends bad requests through a real gateway and
// checks each JSON error, then that none of them changed the actor's state.
func TestGatewayRejectsBadInput(t *testing.T) {
	t.Parallel()
	c := newCluster(t, goCounter)
	c.start()
	c.expectCount("a", "increment", `{"by": 5}`, 5) // a is now active

	cases := []struct {
		name         string
		method, path string
		body         string
		status       int
		code         string
	}{
		{"unknown actor type", "POST", "/v1.0/actors/NoSuchType/a/method/get", "", 404, "ERR_ACTOR_NO_ADDRESS"},
		{"state transaction cut short", "POST", "/v1.0/actors/Counter/a/state",
			`[{"operation":"upsert","request":{"key":"count","value":99}`, 400, "ERR_MALFORMED_REQUEST"},
		{"state transaction not an array", "PUT", "/v1.0/actors/Counter/a/state",
			`{"operation":"upsert","request":{"key":"count","value":99}}`, 400, "ERR_MALFORMED_REQUEST"},
		{"state transaction empty body", "POST", "/v1.0/actors/Counter/a/state", "", 400, "ERR_MALFORMED_REQUEST"},
		{"state transaction wrong field type", "POST", "/v1.0/actors/Counter/a/state",
			`[{"operation":"upsert","request":{"key":7,"value":99}}]`, 400, "ERR_MALFORMED_REQUEST"},
		{"state transaction unknown operation", "POST", "/v1.0/actors/Counter/a/state",
			`[{"operation":"upsert","request":{"key":"count","value":99}},{"operation":"merge","request":{"key":"count"}}]`, 400, "ERR_BAD_REQUEST"},
		{"state transaction for an inactive actor", "POST", "/v1.0/actors/Counter/not-active/state",
			`[{"operation":"upsert","request":{"key":"count","value":99}}]`, 400, "ERR_ACTOR_INSTANCE_MISSING"},
		{"actor id ..", "POST", "/v1.0/actors/Counter/../method/get", "", 400, "ERR_BAD_REQUEST"},
		{"actor id .. escaped", "POST", "/v1.0/actors/Counter/%2E%2E/method/get", "", 400, "ERR_BAD_REQUEST"},
		{"actor id .", "POST", "/v1.0/actors/Counter/./method/get", "", 400, "ERR_BAD_REQUEST"},
		{"actor id with a slash", "POST", "/v1.0/actors/Counter/a%2Fb/method/get", "", 400, "ERR_BAD_REQUEST"},
		{"actor id with a backslash", "POST", "/v1.0/actors/Counter/a%5Cb/method/get", "", 400, "ERR_BAD_REQUEST"},
		{"actor id with #", "POST", "/v1.0/actors/Counter/a%23b/method/get", "", 400, "ERR_BAD_REQUEST"},
		{"actor id with ?", "POST", "/v1.0/actors/Counter/a%3Fb/method/get", "", 400, "ERR_BAD_REQUEST"},
		{"actor id with NUL", "POST", "/v1.0/actors/Counter/a%00b/method/get", "", 400, "ERR_BAD_REQUEST"},
		{"actor id with a control character", "POST", "/v1.0/actors/Counter/a%1Fb/method/get", "", 400, "ERR_BAD_REQUEST"},
		{"empty actor id", "POST", "/v1.0/actors/Counter//method/get", "", 400, "ERR_BAD_REQUEST"},
		{"actor type with DEL", "POST", "/v1.0/actors/Count%7Fer/a/method/get", "", 400, "ERR_BAD_REQUEST"},
		{"method name ..", "POST", "/v1.0/actors/Counter/a/method/%2E%2E", "", 400, "ERR_BAD_REQUEST"},
		{"reminder name with a control character", "POST", "/v1.0/actors/Counter/a/reminders/r%0A", `{"dueTime":"1h"}`, 400, "ERR_BAD_REQUEST"},
		{"timer name ..", "POST", "/v1.0/actors/Counter/a/timers/..", `{"dueTime":"1h"}`, 400, "ERR_BAD_REQUEST"},
		{"app rejects the body", "POST", "/v1.0/actors/Counter/a/method/increment", `{"by": "two"}`, 500, "ERR_ACTOR_INVOKE_METHOD"},
		{"app has no such method", "POST", "/v1.0/actors/Counter/a/method/explode", "", 500, "ERR_ACTOR_INVOKE_METHOD"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.try(tc.method, tc.path, tc.body)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			expectError(t, tc.method+" "+tc.path, r, tc.status, tc.code)
		})
	}

	// A bad percent escape, which the Go client will not send.
	r, err := c.tryRaw("POST", "/v1.0/actors/Counter/a%zz/method/get", "")
	if err != nil {
		t.Fatalf("request with a bad percent escape: %v", err)
	}
	expectError(t, "bad percent escape", r, 400, "ERR_BAD_REQUEST")

	// The app's own status reaches the caller in the message.
	r = c.do("POST", "/v1.0/actors/Counter/a/method/explode", "")
	if e := expectError(t, "unknown method", r, 500, "ERR_ACTOR_INVOKE_METHOD"); !strings.Contains(e.Message, "404") {
		t.Errorf("the error for a method the app does not have does not carry the app's 404: %q", e.Message)
	}

	// Nothing above changed a: neither its stored count nor what the app
	// holds, and it still counts on from there.
	if n, ok := c.storedCount("a"); !ok || n != 5 {
		t.Fatalf("after the rejected requests the stored count of a is %d (present %v), want 5", n, ok)
	}
	if _, ok := c.storedCount("not-active"); ok {
		t.Fatal("a rejected state transaction created state for an inactive actor")
	}
	c.expectCount("a", "increment", "", 6)
	c.expectActive(1)
}

// TestAppCrashAndRecovery kills the app while granary runs: calls to Counter
// must fail quickly with a JSON 5xx, the gateway's own endpoints must keep
// answering, and once the app is back on its port the health probe must
// bring Counter back with its state.
func TestAppCrashAndRecovery(t *testing.T) {
	t.Parallel()
	c := newCluster(t, goCounter)
	c.start()
	c.expectCount("a", "increment", "", 1)
	c.expectCount("a", "increment", "", 2)

	c.appProc.Kill()

	// The first call after the crash fails at once: the app's connection is gone.
	start := time.Now()
	r := c.do(http.MethodPost, "/v1.0/actors/Counter/a/method/increment", "")
	took := time.Since(start)
	e, err := errorOf(r, r.status)
	if err != nil || r.status < 500 || r.status > 599 {
		t.Fatalf("increment with the app dead: %v (%v), want a JSON 5xx", r, err)
	}
	if e.ErrorCode != "ERR_ACTOR_INVOKE_METHOD" && e.ErrorCode != "ERR_ACTOR_RUNTIME_CLOSED" {
		t.Fatalf("increment with the app dead: errorCode %q, want ERR_ACTOR_INVOKE_METHOD or ERR_ACTOR_RUNTIME_CLOSED", e.ErrorCode)
	}
	if took > 5*time.Second {
		t.Fatalf("increment with the app dead took %v to fail", took)
	}

	// The health probe notices; meanwhile healthz and metadata answer.
	testutil.Eventually(t, 15*time.Second, "granary to mark the app unhealthy", func() error {
		c.expectHealthy()
		md := c.metadata()
		ct, ok := md.actorType("Counter")
		if !ok || ct.Available {
			return fmt.Errorf("Counter still listed as available (listed %v)", ok)
		}
		if len(md.Apps) != 1 || md.Apps[0].ID != "counter" || md.Apps[0].Healthy {
			return fmt.Errorf("apps in metadata: %+v, want counter unhealthy", md.Apps)
		}
		return nil
	})

	// Now calls are refused at once, without reaching for the app.
	for _, method := range []string{"increment", "get"} {
		start := time.Now()
		r := c.do(http.MethodPost, "/v1.0/actors/Counter/a/method/"+method, "")
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("%s on an unhealthy app's type took %v to fail", method, took)
		}
		e := expectError(t, method+" on an unhealthy app's type", r, http.StatusServiceUnavailable, "ERR_ACTOR_RUNTIME_CLOSED")
		if !strings.Contains(e.Message, "unhealthy") {
			t.Errorf("the error for an unhealthy app does not say so: %q", e.Message)
		}
	}
	c.expectHealthy()

	// The app comes back on the same port; the probe restores Counter and
	// the new app process reads the count from the store.
	c.startApp()
	testutil.Eventually(t, 15*time.Second, "Counter to answer again", func() error {
		r, err := c.try(http.MethodPost, "/v1.0/actors/Counter/a/method/get", "")
		if err != nil {
			return err
		}
		n, err := countOf(r)
		if err != nil {
			return err
		}
		if n != 2 {
			t.Fatalf("after the app came back, a's count is %d, want 2", n)
		}
		return nil
	})
	c.expectCount("a", "increment", "", 3)
	md := c.metadata()
	if len(md.Apps) != 1 || !md.Apps[0].Healthy {
		t.Fatalf("apps in metadata after recovery: %+v, want counter healthy", md.Apps)
	}

	c.stopGranary()
}

// expectHealthy checks that the gateway's healthz answers 204.
func (c *cluster) expectHealthy() {
	c.t.Helper()
	if r := c.do(http.MethodGet, "/v1.0/healthz", ""); r.status != http.StatusNoContent {
		c.t.Fatalf("GET /v1.0/healthz: %v, want 204", r)
	}
}

// TestAppStartingAfterGranary starts granary before its app. A call to the
// app's type fails with 404 ERR_ACTOR_NO_ADDRESS once the routing window has
// passed; a call made while the app is starting waits for it and succeeds.
func TestAppStartingAfterGranary(t *testing.T) {
	t.Parallel()
	c := newCluster(t, goCounter)
	c.startGranaryAlone()
	md := c.metadata()
	if _, ok := md.actorType("Counter"); ok {
		t.Fatalf("Counter is listed before its app answered: %+v", md.Actors)
	}
	if len(md.Apps) != 1 || md.Apps[0].ID != "counter" || md.Apps[0].Healthy {
		t.Fatalf("apps in metadata before the app started: %+v, want counter, not healthy", md.Apps)
	}

	start := time.Now()
	r := c.do(http.MethodPost, "/v1.0/actors/Counter/a/method/get", "")
	expectError(t, "get before the app started", r, http.StatusNotFound, "ERR_ACTOR_NO_ADDRESS")
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("the call for a type nobody hosts took %v to fail", took)
	}

	type answer struct {
		r   reply
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		r, err := c.try(http.MethodPost, "/v1.0/actors/Counter/a/method/increment", "")
		answered <- answer{r, err}
	}()
	c.startApp()
	a := <-answered
	if a.err != nil {
		t.Fatalf("increment made while the app started: %v", a.err)
	}
	if n, err := countOf(a.r); err != nil || n != 1 {
		t.Fatalf("increment made while the app started: count %d, %v; want count 1", n, err)
	}
	c.waitReady(c.granaryProc)
	c.expectCount("a", "increment", "", 2)
	c.stopGranary()
}
