package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/busypoll"
	"github.com/valyala/fasthttp/fasthttputil"
)

// serve runs a gateway over backend on an in-memory listener until the test ends.
func serve(t *testing.T, backend Backend, cfg Config) *fasthttputil.InmemoryListener {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := New(backend, cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-ctx.Done():
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return ln
}

// roundTrip writes raw (one complete request, in one write) on a new
// connection and reads one response.
func roundTrip(t *testing.T, ln *fasthttputil.InmemoryListener, raw string) (*http.Response, []byte) {
	t.Helper()
	c, err := ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	return resp, body
}

// wantWireError checks a JSON error read off the wire.
func wantWireError(t *testing.T, what string, resp *http.Response, body []byte, status int, code string, mentions ...string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d; body %s", what, resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	var e struct{ ErrorCode, Message string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", what, body, err)
	}
	if e.ErrorCode != code {
		t.Errorf("%s: errorCode %q, want %q", what, e.ErrorCode, code)
	}
	for _, m := range mentions {
		if !strings.Contains(e.Message, m) {
			t.Errorf("%s: message %q does not mention %q", what, e.Message, m)
		}
	}
}

func invokeRequest(body string, extra string) string {
	return "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\n" + extra +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
}

func TestBodyTooLarge(t *testing.T) {
	const limit = 1024
	f := &fakeBackend{}
	ln := serve(t, f, Config{MaxBodySize: limit})

	// A body of exactly the limit is served.
	atLimit := strings.Repeat("a", limit)
	resp, body := roundTrip(t, ln, invokeRequest(atLimit, ""))
	if resp.StatusCode != 200 {
		t.Fatalf("body at the limit: status %d, body %s", resp.StatusCode, body)
	}
	if got := f.invoke.Body; got != atLimit {
		t.Errorf("body at the limit arrived as %d bytes", len(got))
	}

	// One byte more is refused, whether announced by Content-Length...
	resp, body = roundTrip(t, ln, invokeRequest(atLimit+"b", ""))
	wantWireError(t, "content-length", resp, body, 413, "ERR_BODY_TOO_LARGE", "1024")

	// ...or discovered while reading a chunked body.
	chunk := strings.Repeat("c", 700)
	chunked := "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk, len(chunk), chunk)
	resp, body = roundTrip(t, ln, chunked)
	wantWireError(t, "chunked", resp, body, 413, "ERR_BODY_TOO_LARGE", "1024")

	if calls := f.Calls(); len(calls) != 1 {
		t.Errorf("backend calls %q, want only the request at the limit", calls)
	}
}

func TestBodyTooLargeDefaultLimit(t *testing.T) {
	f := &fakeBackend{}
	ln := serve(t, f, Config{})
	// Announcing the size is enough; the body need not be sent.
	raw := "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\nContent-Length: 4194305\r\n\r\n"
	resp, body := roundTrip(t, ln, raw)
	wantWireError(t, "default limit", resp, body, 413, "ERR_BODY_TOO_LARGE", "4194304")
	wantCalls(t, "default limit", f)
}

func TestHeadersTooLarge(t *testing.T) {
	f := &fakeBackend{}
	ln := serve(t, f, Config{})
	raw := "GET /v1.0/healthz HTTP/1.1\r\nHost: gw\r\nX-Big: " + strings.Repeat("h", 64<<10) + "\r\n\r\n"
	resp, body := roundTrip(t, ln, raw)
	wantWireError(t, "big headers", resp, body, 431, "ERR_HEADERS_TOO_LARGE")
	wantCalls(t, "big headers", f)
}

func TestSlowRequestTimesOut(t *testing.T) {
	for _, tc := range []struct {
		name   string
		poller *busypoll.Poller
	}{{"parking reads", nil}, {"polling reads", busypoll.New(busypoll.MaxBudget)}} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeBackend{}
			c := servePlainTCP(t, f, Config{ReadTimeout: 100 * time.Millisecond, Poller: tc.poller}).dial(t)
			// Headers that never end: the server gives up after ReadTimeout.
			if _, err := io.WriteString(c, "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantWireError(t, "slow request", resp, body, 408, "ERR_REQUEST_TIMEOUT")
			wantCalls(t, "slow request", f)
		})
	}
}

func TestUnparsableRequest(t *testing.T) {
	f := &fakeBackend{}
	ln := serve(t, f, Config{})
	resp, body := roundTrip(t, ln, "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\nContent-Length: ten\r\n\r\n")
	wantWireError(t, "bad content-length", resp, body, 400, "ERR_MALFORMED_REQUEST")
	wantCalls(t, "bad content-length", f)
}

func TestServeOverListener(t *testing.T) {
	f := &fakeBackend{}
	f.resp.Body = []byte("pong")
	ln := serve(t, f, Config{APIToken: "tok"})

	resp, body := roundTrip(t, ln, invokeRequest("ping", "dapr-api-token: tok\r\nX-Client: c\r\n"))
	if resp.StatusCode != 200 || string(body) != "pong" {
		t.Fatalf("invoke: status %d, body %q", resp.StatusCode, body)
	}
	if f.invoke.Body != "ping" || f.invoke.Header["x-client"] != "c" {
		t.Errorf("backend saw body %q, headers %v", f.invoke.Body, f.invoke.Header)
	}
	if got := resp.Header.Get("Server"); got != "granary" {
		t.Errorf("Server header %q", got)
	}
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("Content-Type %q set though the app gave none", ct)
	}

	f.resp.ContentType = []byte("text/x-pong")
	resp, _ = roundTrip(t, ln, invokeRequest("ping", "dapr-api-token: tok\r\n"))
	if ct := resp.Header.Get("Content-Type"); ct != "text/x-pong" {
		t.Errorf("Content-Type %q, want the app's", ct)
	}

	resp, body = roundTrip(t, ln, invokeRequest("ping", ""))
	wantWireError(t, "no token", resp, body, 401, "ERR_UNAUTHORIZED")

	resp, _ = roundTrip(t, ln, "GET /v1.0/healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
	if resp.StatusCode != 204 {
		t.Errorf("healthz: status %d", resp.StatusCode)
	}
}

// TestServeRealSocket serves on a loopback TCP listener, as in production.
func TestServeRealSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("no loopback TCP listener: %v", err)
	}
	f := &fakeBackend{}
	s := New(f, Config{MaxBodySize: 64, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	url := "http://" + ln.Addr().String()

	resp, err := client.Get(url + "/v1.0/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("healthz: status %d", resp.StatusCode)
	}

	// Announce a too-large body but send none, so the refusal is read cleanly.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "POST /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\nContent-Length: 65\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantWireError(t, "tcp too large", resp, body, 413, "ERR_BODY_TOO_LARGE", "64")
}

// logSink is a log destination safe for the server's goroutines; logged is
// closed at the first line containing want.
type logSink struct {
	want   string
	logged chan struct{}

	mu  sync.Mutex
	buf strings.Builder
}

func (b *logSink) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	had := strings.Contains(b.buf.String(), b.want)
	b.buf.Write(p)
	if !had && strings.Contains(b.buf.String(), b.want) {
		close(b.logged)
	}
	return len(p), nil
}

func (b *logSink) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestConnectionErrorsGoToConfiguredLogger(t *testing.T) {
	logs := &logSink{want: "body size exceeds", logged: make(chan struct{})}
	ln := serve(t, &fakeBackend{}, Config{MaxBodySize: 8, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	resp, body := roundTrip(t, ln, invokeRequest("123456789", ""))
	wantWireError(t, "too large", resp, body, 413, "ERR_BODY_TOO_LARGE")
	// The server logs after writing the response.
	select {
	case <-logs.logged:
	case <-time.After(10 * time.Second):
		t.Fatalf("configured logger got %q, want the connection error", logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("log %q: want a warning", logs.String())
	}
}
