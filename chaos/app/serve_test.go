package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/history"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadSettings(t *testing.T) {
	s, err := loadSettings(envOf(map[string]string{"GRANARY_URL": "http://127.0.0.1:7001", "CHAOS_HISTORY": "/tmp/h"}))
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if s.addr != "127.0.0.1:3000" || s.app.IdleTimeout != 15*time.Second || s.app.GatewayURL != "http://127.0.0.1:7001" || s.app.HistoryPath != "/tmp/h" {
		t.Fatalf("defaults gave %+v", s)
	}
	s, err = loadSettings(envOf(map[string]string{
		"APP_HOST": "::1", "APP_PORT": "4001", "GRANARY_URL": "http://x:1", "CHAOS_HISTORY": "h", "CHAOS_IDLE_TIMEOUT": "2m",
	}))
	if err != nil || s.addr != "[::1]:4001" || s.app.IdleTimeout != 2*time.Minute {
		t.Fatalf("settings %+v, %v", s, err)
	}
	for _, env := range []map[string]string{
		{"CHAOS_HISTORY": "h"},
		{"GRANARY_URL": "http://x:1"},
		{"GRANARY_URL": "http://x:1", "CHAOS_HISTORY": "h", "APP_PORT": "70000"},
		{"GRANARY_URL": "http://x:1", "CHAOS_HISTORY": "h", "CHAOS_IDLE_TIMEOUT": "soon"},
		{"GRANARY_URL": "http://x:1", "CHAOS_HISTORY": "h", "CHAOS_IDLE_TIMEOUT": "-1s"},
	} {
		if _, err := loadSettings(envOf(env)); err == nil {
			t.Errorf("loadSettings(%v) accepted it", env)
		}
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	env := envOf(map[string]string{"APP_PORT": "0", "GRANARY_URL": "http://127.0.0.1:1", "CHAOS_HISTORY": path})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- Serve(ctx, env, log, func(a net.Addr) { addrs <- a }) }()

	var base string
	select {
	case a := <-addrs:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not start listening")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz answered %d", resp.StatusCode)
	}
	req, err := http.NewRequest("DELETE", base+"/actors/ChaosCounter/c1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Granary-Activation", "1/s1/i1")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatalf("deactivate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("deactivate answered %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop after its context was cancelled")
	}
	run, err := history.ReadFile(path)
	if err != nil {
		t.Fatalf("reading history: %v", err)
	}
	if len(run.Turns) != 1 || run.Turns[0].Method != history.MethodDeactivate || run.Turns[0].Silo != "s1" {
		t.Fatalf("history turns %+v, want one deactivation on s1", run.Turns)
	}
}
