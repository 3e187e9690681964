package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serve starts an httptest server and returns its host:port.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func quickConfig(addr string, conns int, req Request) Config {
	return Config{Addr: addr, Connections: conns, Warmup: 50 * time.Millisecond, Duration: 250 * time.Millisecond, Request: req}
}

func mustRun(t *testing.T, cfg Config) Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("%v", res)
	return res
}

func TestRunRoundRobinWithBody(t *testing.T) {
	for _, client := range []string{ClientRaw, ClientNetHTTP} {
		t.Run(client, func(t *testing.T) { testRoundRobinWithBody(t, client) })
	}
}

func testRoundRobinWithBody(t *testing.T, client string) {
	const actors = 7
	var (
		mu     sync.Mutex
		perID  = map[string]int{}
		seen   = map[int]bool{}
		failed atomic.Value
	)
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			N     int    `json:"n"`
			Actor string `json:"actor"`
		}
		err := json.NewDecoder(r.Body).Decode(&body)
		id := strings.TrimPrefix(r.URL.Path, "/actors/Echo/")
		id = strings.TrimSuffix(id, "/method/echo")
		switch {
		case err != nil:
			failed.Store(fmt.Sprintf("body: %v", err))
		case r.Method != http.MethodPut || r.Header.Get("X-Bench") != "1" || r.Header.Get("Content-Type") != "application/json":
			failed.Store(fmt.Sprintf("method %s headers %v", r.Method, r.Header))
		case body.Actor != id || id != fmt.Sprintf("a%d", body.N%actors):
			failed.Store(fmt.Sprintf("request %d went to %q with actor %q", body.N, id, body.Actor))
		}
		mu.Lock()
		perID[id]++
		if seen[body.N] {
			failed.Store(fmt.Sprintf("sequence number %d sent twice", body.N))
		}
		seen[body.N] = true
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	cfg := quickConfig(addr, 4, Request{
		Method:  "PUT",
		Path:    "/actors/Echo/{actor}/method/echo",
		Body:    `{"n":{n},"actor":"{actor}"}`,
		Headers: map[string]string{"X-Bench": "1"},
		Actors:  ActorIDs("a", actors),
	})
	cfg.Client = client
	res := mustRun(t, cfg)
	if msg := failed.Load(); msg != nil {
		t.Fatal(msg)
	}
	if res.Requests < 50 || res.Errors.Total() != 0 || res.Reconnects != 0 {
		t.Fatalf("requests %d errors %+v reconnects %d", res.Requests, res.Errors, res.Reconnects)
	}
	if res.P50 <= 0 || res.P50 > res.P90 || res.P90 > res.P99 || res.P99 > res.P999 || res.P999 > res.Max {
		t.Errorf("percentiles out of order: %v", res)
	}
	if want := float64(res.Requests) / 0.25; res.RPS != want {
		t.Errorf("RPS %v, want %v", res.RPS, want)
	}
	mu.Lock()
	defer mu.Unlock()
	lo, hi := int(^uint(0)>>1), 0
	for i := range actors {
		n := perID[fmt.Sprintf("a%d", i)]
		lo, hi = min(lo, n), max(hi, n)
	}
	// Round-robin over a shared counter: counts differ by at most the
	// requests cut off in flight at the end, one per connection.
	if hi-lo > 4+1 {
		t.Errorf("actors called unevenly: %v", perID)
	}
}

func TestRunChunkedResponses(t *testing.T) {
	chunk := strings.Repeat("x", 3000)
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		for range 4 {
			_, _ = io.WriteString(w, chunk)
			w.(http.Flusher).Flush() // forces Transfer-Encoding: chunked
		}
	})
	res := mustRun(t, quickConfig(addr, 2, Request{Method: "GET", Path: "/big"}))
	if res.Requests < 20 || res.Errors.Total() != 0 || res.Reconnects != 0 {
		t.Fatalf("requests %d errors %+v reconnects %d", res.Requests, res.Errors, res.Reconnects)
	}
}

func TestRunConnectionClose(t *testing.T) {
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	res := mustRun(t, quickConfig(addr, 2, Request{Method: "GET", Path: "/"}))
	if res.Requests < 20 || res.Errors.Total() != 0 {
		t.Fatalf("requests %d errors %+v", res.Requests, res.Errors)
	}
	if res.Reconnects < res.Requests-2 {
		t.Errorf("reconnects %d for %d requests answered with Connection: close", res.Reconnects, res.Requests)
	}
}

func TestRunServerDropsConnections(t *testing.T) {
	var calls atomic.Int64
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%3 != 0 {
			_, _ = io.WriteString(w, "fine")
			return
		}
		// Promise a body, send half of it, and hang up.
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
		_ = buf.Flush()
		_ = conn.Close()
	})
	res := mustRun(t, quickConfig(addr, 2, Request{Method: "GET", Path: "/"}))
	if res.Requests < 20 || res.Errors.IO < 10 || res.Errors.Status != 0 || res.Errors.Protocol != 0 {
		t.Fatalf("requests %d errors %+v", res.Requests, res.Errors)
	}
	// Every third request fails, so about half as many as succeed.
	if ratio := float64(res.Errors.IO) / float64(res.Requests); ratio < 0.35 || ratio > 0.65 {
		t.Errorf("IO errors %d for %d successes", res.Errors.IO, res.Requests)
	}
	if res.Reconnects < res.Errors.IO-2 || !strings.Contains(res.FirstError, "EOF") {
		t.Errorf("reconnects %d, first error %q", res.Reconnects, res.FirstError)
	}
}

func TestRunCountsErrorStatuses(t *testing.T) {
	var calls atomic.Int64
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%2 == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	res := mustRun(t, quickConfig(addr, 1, Request{Method: "DELETE", Path: "/x"}))
	if res.Errors.Status < 10 || res.Errors.IO != 0 || res.StatusCodes[503] != res.Errors.Status || len(res.StatusCodes) != 1 {
		t.Fatalf("errors %+v codes %v", res.Errors, res.StatusCodes)
	}
	if d := res.Requests - res.Errors.Status; d < -1 || d > 1 {
		t.Errorf("%d successes and %d failures; they alternate", res.Requests, res.Errors.Status)
	}
	if res.WarmupErrors == 0 {
		t.Error("failures during the warm-up were not counted apart")
	}
	if !strings.Contains(res.FirstError, "503") {
		t.Errorf("first error %q does not name the status", res.FirstError)
	}
}

func TestRunTimeout(t *testing.T) {
	release := make(chan struct{})
	var inFlight atomic.Int64
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		select {
		case <-release:
		case <-r.Context().Done(): // the client hung up
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	cfg := quickConfig(addr, 2, Request{Method: "GET", Path: "/hang"})
	cfg.Warmup = 0
	cfg.Timeout = 40 * time.Millisecond
	start := time.Now()
	res := mustRun(t, cfg)
	if elapsed := time.Since(start); elapsed > cfg.Duration+time.Second {
		t.Errorf("run took %v for a %v duration", elapsed, cfg.Duration)
	}
	if res.Requests != 0 || res.Errors.IO < 4 || !strings.Contains(res.FirstError, "timeout") {
		t.Fatalf("requests %d errors %+v first %q", res.Requests, res.Errors, res.FirstError)
	}
	// Every connection with a request in flight has been closed, so the
	// server sees each client hang up.
	for deadline := time.Now().Add(5 * time.Second); inFlight.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests still in flight on the server: a connection was left open or reused", inFlight.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunServerDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	cfg := quickConfig(addr, 2, Request{Method: "GET", Path: "/"})
	cfg.Warmup = 0
	res := mustRun(t, cfg)
	if res.Requests != 0 || res.Errors.IO == 0 || !strings.Contains(res.FirstError, "connect") {
		t.Fatalf("requests %d errors %+v first %q", res.Requests, res.Errors, res.FirstError)
	}
	// The pause after a failed dial keeps the count modest.
	if res.Errors.IO > 2*int64(cfg.Duration/dialBackoff)+4 {
		t.Errorf("%d failed dials in %v: no back-off", res.Errors.IO, cfg.Duration)
	}
}

func TestRunCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		once.Do(cancel) // the first request reaching the server cancels the run
	})
	cfg := quickConfig(addr, 2, Request{Method: "GET", Path: "/"})
	cfg.Duration = time.Minute
	start := time.Now()
	_, err := Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Run took %v to notice the cancellation", elapsed)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	ok := Config{Addr: "127.0.0.1:1", Connections: 1, Duration: time.Second, Request: Request{Method: "GET", Path: "/"}}
	bad := map[string]func(*Config){
		"no port":         func(c *Config) { c.Addr = "127.0.0.1" },
		"no host":         func(c *Config) { c.Addr = ":80" },
		"no connections":  func(c *Config) { c.Connections = 0 },
		"no duration":     func(c *Config) { c.Duration = 0 },
		"negative warmup": func(c *Config) { c.Warmup = -time.Second },
		"bad request":     func(c *Config) { c.Request.Path = "nope" },
	}
	for name, mutate := range bad {
		cfg := ok
		mutate(&cfg)
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0ns"},
		{999, "999ns"},
		{1500, "1.50µs"},
		{812_300, "812µs"},
		{999_700, "1000µs"},
		{1_314_000, "1.31ms"},
		{12_040_000, "12.0ms"},
		{2_500_000_000, "2.50s"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.d); got != tt.want {
			t.Errorf("FormatDuration(%d) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
