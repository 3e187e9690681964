package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	silopb "github.com/granaryhq/granary/proto/silo"
	"github.com/granaryhq/granary/silo/forward"
)

// fakeCluster answers Locate from a script, one entry per call (the last
// repeats), and records forwards.
type fakeCluster struct {
	mu        sync.Mutex
	locs      []Location
	calls     int
	forwards  []string
	tokens    []string // the dapr-api-token of each forward
	reply     *silopb.ForwardReply
	fwdErr    error
	version   uint64
	window    time.Duration
	onForward func()
}

func (c *fakeCluster) Locate(actor.ID) Location {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := min(c.calls, len(c.locs)-1)
	c.calls++
	return c.locs[i]
}

func (c *fakeCluster) TableVersion() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

func (c *fakeCluster) Forward(_ context.Context, addr string, version uint64, id actor.ID, req *fasthttp.Request) (*silopb.ForwardReply, error) {
	c.mu.Lock()
	c.forwards = append(c.forwards, fmt.Sprintf("%s v%d %s %s %s", addr, version, id, req.Header.Method(), req.Header.RequestURI()))
	c.tokens = append(c.tokens, string(req.Header.Peek("dapr-api-token")))
	reply, err, hook := c.reply, c.fwdErr, c.onForward
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	return reply, err
}

func (c *fakeCluster) RoutingWindow() time.Duration { return c.window }

func routed(c *fakeCluster) (*fakeBackend, fasthttp.RequestHandler) {
	f := &fakeBackend{}
	return f, New(f, Config{Cluster: c}).Handler()
}

const invokeURI = "/v1.0/actors/Counter/c1/method/inc?x=1"

func TestRouteRunsHere(t *testing.T) {
	c := &fakeCluster{locs: []Location{{Here: true, Hosted: true, Version: 3}}, window: time.Second}
	f, h := routed(c)
	resp := do(t, h, "POST", invokeURI, "{}")
	wantStatus(t, "local call", resp, http.StatusOK)
	if len(f.calls) != 1 || len(c.forwards) != 0 {
		t.Fatalf("backend calls %v, forwards %v", f.calls, c.forwards)
	}
}

func TestRouteForwardsToTheOwner(t *testing.T) {
	c := &fakeCluster{locs: []Location{{Addr: "10.0.0.2:7000", Hosted: true, Version: 5}}, window: time.Second,
		reply: &silopb.ForwardReply{Status: 201, Body: []byte("from owner"),
			Headers: []*silopb.Header{{Name: "Content-Type", Value: []byte("text/plain")}}}}
	f, h := routed(c)
	resp := do(t, h, "POST", invokeURI, "{}")
	wantStatus(t, "forwarded call", resp, 201)
	if string(resp.Body()) != "from owner" || string(resp.Header.ContentType()) != "text/plain" {
		t.Fatalf("reply %q %q", resp.Body(), resp.Header.ContentType())
	}
	if len(f.calls) != 0 {
		t.Fatalf("a forwarded call also ran here: %v", f.calls)
	}
	if want := "10.0.0.2:7000 v5 Counter/c1 POST " + invokeURI; len(c.forwards) != 1 || c.forwards[0] != want {
		t.Fatalf("forwards %q, want [%q]", c.forwards, want)
	}
}

func TestRouteBouncesARequestForwardedOnce(t *testing.T) {
	c := &fakeCluster{locs: []Location{{Addr: "10.0.0.3:7000", Hosted: true, Version: 9}}, window: time.Second}
	_, h := routed(c)
	resp := do(t, h, "POST", invokeURI, "{}", forward.HeaderForwarded, "8")
	if got := string(resp.Header.Peek(forward.HeaderNotOwner)); got != "9" {
		t.Fatalf("bounce header %q, want 9 (status %d)", got, resp.StatusCode())
	}
	if len(c.forwards) != 0 {
		t.Fatal("a forwarded request was forwarded again")
	}
}

func TestRouteRetriesAfterANotOwnerReplyOnceCaughtUp(t *testing.T) {
	c := &fakeCluster{locs: []Location{{Addr: "a:1", Hosted: true, Version: 4}, {Here: true, Hosted: true, Version: 6}},
		window: 2 * time.Second, reply: &silopb.ForwardReply{NotOwnerVersion: 6}}
	c.onForward = func() {
		c.mu.Lock()
		c.version = 6 // this silo catches up
		c.mu.Unlock()
	}
	f, h := routed(c)
	resp := do(t, h, "POST", invokeURI, "{}")
	wantStatus(t, "after catching up", resp, http.StatusOK)
	if len(f.calls) != 1 {
		t.Fatalf("the call did not run here after catching up: %v", f.calls)
	}
}

func TestRouteRoutesAgainWhenTheLocalCallFindsItNoLongerOwns(t *testing.T) {
	c := &fakeCluster{locs: []Location{{Here: true, Hosted: true, Version: 2}, {Addr: "b:1", Hosted: true, Version: 3}},
		window: time.Second, reply: &silopb.ForwardReply{Status: 200, Body: []byte("ok")}}
	f, h := routed(c)
	f.err = fmt.Errorf("actor Counter/c1: %w", actor.ErrNotOwner)
	resp := do(t, h, "POST", invokeURI, "{}")
	wantStatus(t, "rerouted", resp, http.StatusOK)
	if len(c.forwards) != 1 {
		t.Fatalf("forwards %v", c.forwards)
	}
}

func TestRouteGivesUpAfterTheWindow(t *testing.T) {
	tests := []struct {
		name   string
		loc    Location
		fwdErr error
		status int
		code   string
	}{
		{"a hand-over that does not end", Location{Hosted: true, Wait: errors.New("the shard is being handed over")}, nil, 503, codeRuntimeClosed},
		{"an owner that cannot be reached", Location{Hosted: true, Addr: "c:1"}, fmt.Errorf("dial: %w", forward.ErrUnreachable), 503, codeRuntimeClosed},
		{"a type no silo hosts", Location{Version: 1}, nil, 404, codeNoAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const window = 150 * time.Millisecond
			c := &fakeCluster{locs: []Location{tt.loc}, window: window, fwdErr: tt.fwdErr}
			_, h := routed(c)
			start := time.Now()
			resp := do(t, h, "POST", invokeURI, "{}")
			took := time.Since(start)
			if resp.StatusCode() != tt.status || !strings.Contains(string(resp.Body()), tt.code) {
				t.Fatalf("status %d body %s, want %d %s", resp.StatusCode(), resp.Body(), tt.status, tt.code)
			}
			if took < window || took > window+time.Second {
				t.Fatalf("answered after %v, want just past the window of %v", took, window)
			}
			if c.calls < 3 {
				t.Fatalf("located %d times within the window: no retries", c.calls)
			}
		})
	}
}

func TestRouteAnswersBadRequestsWithoutRouting(t *testing.T) {
	c := &fakeCluster{locs: []Location{{Addr: "d:1", Hosted: true}}, window: time.Second}
	_, h := routed(c)
	resp := do(t, h, "PATCH", invokeURI, "{}")
	wantStatus(t, "bad method", resp, http.StatusMethodNotAllowed)
	if c.calls != 0 {
		t.Fatal("a malformed call was routed")
	}
}

func TestRouteDoesNotRetryAForwardThatMayHaveRun(t *testing.T) {
	c := &fakeCluster{locs: []Location{{Addr: "e:1", Hosted: true, Version: 2}}, window: 2 * time.Second,
		fwdErr: fmt.Errorf("forward: %w", forward.ErrOutcomeUnknown)}
	_, h := routed(c)
	start := time.Now()
	resp := do(t, h, "POST", invokeURI, "{}")
	if resp.StatusCode() != 503 || !strings.Contains(string(resp.Body()), "may have run") {
		t.Fatalf("status %d body %s", resp.StatusCode(), resp.Body())
	}
	if len(c.forwards) != 1 || time.Since(start) > time.Second {
		t.Fatalf("a forward that may have run was sent %d times over %v", len(c.forwards), time.Since(start))
	}
}

// TestRouteNeverForwardsActorState: actor state belongs to a turn, and a
// turn's app calls the silo that runs it. Such a call was forwarded when
// the actor had moved meanwhile: a write of a stale turn, still running on
// the old owner, reached the new owner's activation, passed its fence and
// interleaved with its turn (a lost update the chaos suite caught). State
// calls are served here, where the local runtime refuses them for an
// actor it does not run.
func TestRouteNeverForwardsActorState(t *testing.T) {
	c := &fakeCluster{locs: []Location{{Addr: "10.0.0.2:7000", Hosted: true, Version: 5}}, window: time.Second,
		reply: &silopb.ForwardReply{Status: 204}}
	f, h := routed(c)
	do(t, h, "POST", "/v1.0/actors/Counter/c1/state", `[{"operation":"upsert","request":{"key":"k","value":1}}]`)
	do(t, h, "GET", "/v1.0/actors/Counter/c1/state/k", "")
	if len(c.forwards) != 0 {
		t.Fatalf("state calls forwarded: %v", c.forwards)
	}
	if len(f.calls) != 2 {
		t.Fatalf("backend calls %v; want the transaction and the read served by this silo", f.calls)
	}
}

// TestRouteStateCallWaitsOutASuspension: a state call that finds this silo
// suspended is tried again here within the routing window, never forwarded.
func TestRouteStateCallWaitsOutASuspension(t *testing.T) {
	c := &fakeCluster{locs: []Location{{Addr: "10.0.0.2:7000", Hosted: true, Version: 5}}, window: 100 * time.Millisecond}
	f, h := routed(c)
	f.err = fmt.Errorf("%w: %w: no lease", actor.ErrNotOwner, actor.ErrSuspended)
	start := time.Now()
	do(t, h, "POST", "/v1.0/actors/Counter/c1/state", `[{"operation":"upsert","request":{"key":"k","value":1}}]`)
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Fatalf("gave up after %v, within the routing window", took)
	}
	if len(f.calls) < 2 || len(c.forwards) != 0 {
		t.Fatalf("backend calls %d, forwards %v; want retries here and no forward", len(f.calls), c.forwards)
	}
}
