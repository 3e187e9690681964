package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	tests := []struct {
		method, path, body string
		status             int
		want               string // response body; "" to skip
		json               bool
	}{
		{"GET", "/dapr/config", "", 200, `{"entities":["Echo"]}`, true},
		{"GET", "/healthz", "", 200, "", false},
		{"PUT", "/actors/Echo/a1/method/echo", `{"x":[1,2]}`, 200, `{"x":[1,2]}`, true},
		{"PUT", "/actors/Echo/a1/method/echo", "", 200, `{"ok":true}`, true},
		{"PUT", "/actors/Echo/a1/method/remind/r1", `{"data":"x","dueTime":"","period":""}`, 200, `{"data":"x","dueTime":"","period":""}`, true},
		{"DELETE", "/actors/Echo/a1", "", 200, "", false},
		{"PUT", "/actors/Other/a1/method/echo", "", 404, "", false},
		{"POST", "/actors/Echo/a1/method/echo", "", 405, "", false},
		{"GET", "/nowhere", "", 404, "", false},
	}
	h := newHandler()
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
		if rec.Code != tt.status {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, rec.Code, tt.status)
			continue
		}
		if tt.want != "" && rec.Body.String() != tt.want {
			t.Errorf("%s %s: body %q, want %q", tt.method, tt.path, rec.Body.String(), tt.want)
		}
		if tt.json && rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: content type %q", tt.method, tt.path, rec.Header().Get("Content-Type"))
		}
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--port", "0"}) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancellation")
	}
}

func TestRunRejectsBadPort(t *testing.T) {
	if err := run(context.Background(), []string{"--port", "70000"}); err == nil {
		t.Fatal("listening on port 70000 succeeded")
	}
}
