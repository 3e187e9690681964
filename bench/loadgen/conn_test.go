package loadgen

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestConnSendsRequestsOnOneConnection(t *testing.T) {
	var got []string
	remotes := map[string]bool{}
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		remotes[r.RemoteAddr] = true
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+string(b))
		if r.URL.Path == "/missing" {
			http.Error(w, "no such thing", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c := NewConn(addr, time.Second)
	defer c.Close()
	ctx := context.Background()
	for i, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/a/1", `{"n":1}`, http.StatusNoContent},
		{"PUT", "/a/2", `{"n":2}`, http.StatusNoContent},
		{"GET", "/missing", "", http.StatusNotFound},
		{"DELETE", "/a/3", "", http.StatusNoContent},
	} {
		status, err := c.Do(ctx, tc.method, tc.path, tc.body)
		if err != nil || status != tc.status {
			t.Fatalf("request %d: status %d, error %v; want %d", i, status, err, tc.status)
		}
	}
	if len(remotes) != 1 {
		t.Errorf("4 requests came on %d connections, want 1", len(remotes))
	}
	want := []string{
		"POST /a/1 application/json " + `{"n":1}`,
		"PUT /a/2 application/json " + `{"n":2}`,
		"GET /missing  ",
		"DELETE /a/3  ",
	}
	if len(got) != len(want) {
		t.Fatalf("server saw %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: server saw %q, want %q", i, got[i], want[i])
		}
	}
}

func TestConnReconnectsAfterClose(t *testing.T) {
	remotes := map[string]bool{}
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		remotes[r.RemoteAddr] = true
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusOK)
	})
	c := NewConn(addr, time.Second)
	defer c.Close()
	for i := range 3 {
		if status, err := c.Do(context.Background(), "POST", "/x", "{}"); err != nil || status != http.StatusOK {
			t.Fatalf("request %d: status %d, error %v", i, status, err)
		}
	}
	if len(remotes) != 3 {
		t.Errorf("3 requests answered with Connection: close came on %d connections, want 3", len(remotes))
	}
}

func TestConnErrors(t *testing.T) {
	release := make(chan struct{})
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	})
	defer close(release)
	c := NewConn(addr, 5*time.Second)
	defer c.Close()
	for _, tc := range []struct{ method, path string }{{"GE T", "/x"}, {"GET", "x"}, {"GET", "/a b"}, {"GET", "/a\r\nX: y"}} {
		if _, err := c.Do(context.Background(), tc.method, tc.path, ""); err == nil {
			t.Errorf("Do(%q, %q) succeeded; want an error", tc.method, tc.path)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Do(ctx, "GET", "/slow", ""); err == nil {
		t.Fatal("a request cut short by its context succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a request with a 100ms context took %v to fail", took)
	}
	// The connection was closed; the next request opens another.
	if status, err := c.Do(context.Background(), "GET", "/fast", ""); err != nil || status != http.StatusNoContent {
		t.Fatalf("after a failed request: status %d, error %v", status, err)
	}

	down := NewConn("127.0.0.1:1", time.Second)
	if _, err := down.Do(context.Background(), "GET", "/", ""); err == nil {
		t.Error("a request to a closed port succeeded")
	}
	c2 := NewConn(addr, 50*time.Millisecond)
	defer c2.Close()
	if _, err := c2.Do(context.Background(), "GET", "/slow", ""); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("a request past its timeout: error %v, want a timeout", err)
	}
}
