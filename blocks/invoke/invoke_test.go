package invoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/blocks"
	silopb "github.com/granaryhq/granary/proto/silo"
	"github.com/granaryhq/granary/silo/forward"
)

type localApps map[string]string

func (l localApps) AppURL(id string) (string, bool, bool) {
	u, ok := l[id]
	return u, true, ok
}

// fakePeers answers forwards for the silos it knows, and fails the others
// the way forward.Client does.
type fakePeers struct {
	mu      sync.Mutex
	silos   []string
	answers map[string]string // silo → body; a silo not here is unreachable
	hung    map[string]bool   // silos that took the call and failed after
	calls   []string          // "silo URI"
	tokens  []string          // the dapr-api-token of each forward
}

func (p *fakePeers) AppSilos(string) []string { return p.silos }

func (p *fakePeers) ForwardApp(_ context.Context, addr string, req *fasthttp.Request) (*silopb.ForwardReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, addr+" "+string(req.Header.RequestURI()))
	p.tokens = append(p.tokens, string(req.Header.Peek("dapr-api-token")))
	if p.hung[addr] {
		return nil, fmt.Errorf("forward: %w", forward.ErrOutcomeUnknown)
	}
	body, ok := p.answers[addr]
	if !ok {
		return nil, fmt.Errorf("forward: %w", forward.ErrUnreachable)
	}
	return &silopb.ForwardReply{Status: 200, Body: []byte(body), Headers: []*silopb.Header{{Name: "X-From", Value: []byte(addr)}}}, nil
}

func (p *fakePeers) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

func newApp(t *testing.T, name string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Token-Seen", r.Header.Get("dapr-api-token"))
		w.Header().Set("X-App-Id-Seen", r.Header.Get("dapr-app-id"))
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprintf(w, "%s %s %s %s", name, r.Method, r.URL.RequestURI(), b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, s *Service, appID, path string, forwarded bool) (*fasthttp.Response, error) {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("PATCH")
	ctx.Request.SetRequestURI("/v1.0/invoke/" + appID + "/method" + path + "?q=1")
	ctx.Request.Header.Set("dapr-api-token", "secret")
	ctx.Request.Header.Set("dapr-app-id", appID)
	ctx.Request.SetBodyString("body")
	err := s.Serve(&ctx, appID, []byte(path), forwarded)
	resp := new(fasthttp.Response)
	ctx.Response.CopyTo(resp)
	return resp, err
}

func TestCallsReachTheAppUnchanged(t *testing.T) {
	app := newApp(t, "local")
	s := New(Config{Local: localApps{"shop": app.URL + "/base"}})
	resp, err := call(t, s, "shop", "/orders/a%2Fb", false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != http.StatusTeapot || string(resp.Body()) != "local PATCH /base/orders/a%2Fb?q=1 body" {
		t.Fatalf("answer %d %q", resp.StatusCode(), resp.Body())
	}
	if resp.Header.Peek("X-Token-Seen") == nil || len(resp.Header.Peek("X-Token-Seen")) != 0 || len(resp.Header.Peek("X-App-Id-Seen")) != 0 {
		t.Fatalf("the app saw the API token or the app id header: %q %q", resp.Header.Peek("X-Token-Seen"), resp.Header.Peek("X-App-Id-Seen"))
	}
}

func TestInstancesTakeTurns(t *testing.T) {
	app := newApp(t, "local")
	peers := &fakePeers{silos: []string{"s2", "s3"}, answers: map[string]string{"s2": "from s2", "s3": "from s3"}}
	s := New(Config{Local: localApps{"shop": app.URL}, Peers: peers})
	seen := map[string]int{}
	for range 30 {
		resp, err := call(t, s, "shop", "/x", false)
		if err != nil {
			t.Fatal(err)
		}
		seen[string(resp.Body())[:7]]++
	}
	if len(seen) != 3 || seen["local P"] != 10 || seen["from s2"] != 10 || seen["from s3"] != 10 {
		t.Fatalf("calls per instance %v, want 10 each", seen)
	}
	for _, c := range peers.Calls() {
		if c[3:] != "/v1.0/invoke/shop/method/x?q=1" {
			t.Fatalf("forwarded as %q", c)
		}
	}
}

// A connection that could not be made moves the call on; a call that was
// handed over and failed is not sent again.
func TestOnlyUnsentCallsMoveOn(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	peers := &fakePeers{silos: []string{"gone", "s2"}, answers: map[string]string{"s2": "from s2"}}
	s := New(Config{Local: localApps{"shop": deadURL}, Peers: peers})
	for range 6 {
		resp, err := call(t, s, "shop", "/x", false)
		if err != nil || string(resp.Body()) != "from s2" {
			t.Fatalf("with two of three instances unreachable: %q, %v", resp.Body(), err)
		}
	}

	peers = &fakePeers{silos: []string{"s2"}, hung: map[string]bool{"s2": true}, answers: map[string]string{}}
	s = New(Config{Local: localApps{}, Peers: peers})
	_, err := call(t, s, "shop", "/x", false)
	if be, ok := errors.AsType[*blocks.Error](err); !ok || be.Code != codeInvoke || be.Status != 500 {
		t.Fatalf("a failed forward: %v", err)
	}
	if n := len(peers.Calls()); n != 1 {
		t.Fatalf("a call whose outcome is unknown was sent %d times", n)
	}
}

func TestUnknownAndUnreachableApps(t *testing.T) {
	s := New(Config{Local: localApps{}})
	if _, err := call(t, s, "nobody", "/x", false); err == nil {
		t.Fatal("a call to an unknown app succeeded")
	} else if be, ok := errors.AsType[*blocks.Error](err); !ok || be.Code != codeInvoke {
		t.Fatalf("unknown app: %v", err)
	}
	// A forwarded call is served here or not at all.
	peers := &fakePeers{silos: []string{"s2"}, answers: map[string]string{"s2": "from s2"}}
	s = New(Config{Local: localApps{}, Peers: peers})
	if _, err := call(t, s, "shop", "/x", true); err == nil || len(peers.Calls()) != 0 {
		t.Fatalf("a forwarded call for an app not here: %v, forwarded again %v", err, peers.Calls())
	}
}

func TestSlowAppTimesOut(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer slow.Close()
	defer close(release)
	s := New(Config{Local: localApps{"shop": slow.URL}, CallTimeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := call(t, s, "shop", "/x", false)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a hung app: %v after %v", err, time.Since(start))
	}
}

func TestNotSent(t *testing.T) {
	if !notSent(&net.OpError{Op: "dial", Err: errors.New("refused")}) || !notSent(fasthttp.ErrDialTimeout) {
		t.Error("dial failures are not recognised as unsent")
	}
	if notSent(fasthttp.ErrTimeout) || notSent(io.ErrUnexpectedEOF) {
		t.Error("failures after sending are taken for unsent")
	}
}

// A forward carries the cluster's API token, not the client's (dropped).
func TestForwardsCarryTheClusterToken(t *testing.T) {
	peers := &fakePeers{silos: []string{"s2"}, answers: map[string]string{"s2": "from s2"}}
	s := New(Config{Local: localApps{}, Peers: peers, APIToken: "cluster-token"})
	if _, err := call(t, s, "shop", "/x", false); err != nil {
		t.Fatal(err)
	}
	if len(peers.tokens) != 1 || peers.tokens[0] != "cluster-token" {
		t.Fatalf("forwarded with tokens %q", peers.tokens)
	}
}
