package silo

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
	"github.com/granaryhq/granary/statestore/memstore"
)

func newTestSilo(t *testing.T, cfg Config) *Silo {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := actor.New(actor.Config{Store: memstore.New(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	apps := callback.NewRegistry(rt, callback.Options{Logger: log})
	t.Cleanup(func() {
		apps.Close(context.Background())
		rt.Close(context.Background())
	})
	cfg.ID, cfg.Runtime, cfg.Apps, cfg.Logger = "s1", rt, apps, log
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReadyWaitsForStarted(t *testing.T) {
	if err := newTestSilo(t, Config{}).Ready(); err != nil {
		t.Fatalf("a silo not configured as starting: Ready = %v", err)
	}
	s := newTestSilo(t, Config{Starting: true})
	err := s.Ready()
	if !errors.Is(err, ErrStarting) || !strings.Contains(err.Error(), "s1") {
		t.Fatalf("Ready before Started = %v, want ErrStarting naming the silo", err)
	}
	s.Started()
	if err := s.Ready(); err != nil {
		t.Fatalf("Ready after Started = %v", err)
	}
}

func TestRegisterAppTellsAppRegisteredBeforeItReturns(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/config" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"entities":[]}`)
		}
	}))
	defer app.Close()
	var told []string
	s := newTestSilo(t, Config{AppRegistered: func(_ context.Context, appID, url string) { told = append(told, appID+" "+url) }})
	if err := s.RegisterApp(context.Background(), "shop", app.URL); err != nil {
		t.Fatal(err)
	}
	if want := "shop " + app.URL; len(told) != 1 || told[0] != want {
		t.Fatalf("AppRegistered told %q, want [%q]", told, want)
	}
	if err := s.RegisterApp(context.Background(), "bad", "http://127.0.0.1:1"); err == nil {
		t.Fatal("registering an app that does not answer succeeded")
	}
	if len(told) != 1 {
		t.Fatalf("AppRegistered told of a failed registration: %q", told)
	}
}
