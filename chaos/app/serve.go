package app

// Serving the app as a process, configured from the environment the cluster
// launcher sets:
//
//	APP_HOST, APP_PORT    where to listen (default 127.0.0.1:3000)
//	GRANARY_URL           base URL of the silo gateway (required)
//	CHAOS_HISTORY         the JSON-lines history file to append to (required)
//	CHAOS_IDLE_TIMEOUT    actorIdleTimeout reported to the silo (default 15s)

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// shutdownTimeout bounds how long calls in progress may take to finish.
const shutdownTimeout = 10 * time.Second

// settings is what the environment decides.
type settings struct {
	addr string // host:port to listen on
	app  Config
}

func loadSettings(getenv func(string) string) (settings, error) {
	port := cmp.Or(getenv("APP_PORT"), "3000")
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return settings{}, fmt.Errorf("APP_PORT %q is not a port number", port)
	}
	s := settings{
		addr: net.JoinHostPort(cmp.Or(getenv("APP_HOST"), "127.0.0.1"), port),
		app: Config{
			GatewayURL:  getenv("GRANARY_URL"),
			HistoryPath: getenv("CHAOS_HISTORY"),
		},
	}
	if s.app.GatewayURL == "" {
		return settings{}, errors.New("GRANARY_URL is not set")
	}
	if s.app.HistoryPath == "" {
		return settings{}, errors.New("CHAOS_HISTORY is not set")
	}
	idle, err := time.ParseDuration(cmp.Or(getenv("CHAOS_IDLE_TIMEOUT"), "15s"))
	if err != nil || idle <= 0 {
		return settings{}, fmt.Errorf("CHAOS_IDLE_TIMEOUT %q is not a positive duration", getenv("CHAOS_IDLE_TIMEOUT"))
	}
	s.app.IdleTimeout = idle
	return s, nil
}

// Serve serves until ctx is done, then shuts the server down and closes the
// history. listening, when not nil, is told the address once it listens.
func Serve(ctx context.Context, getenv func(string) string, log *slog.Logger, listening func(net.Addr)) error {
	s, err := loadSettings(getenv)
	if err != nil {
		return err
	}
	s.app.Log = log
	a, err := New(s.app)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen: %w", err), a.Close())
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("chaos app listening", "addr", ln.Addr().String(), "gateway", s.app.GatewayURL, "history", s.app.HistoryPath)
	if listening != nil {
		listening(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return errors.Join(fmt.Errorf("serve: %w", err), a.Close())
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return errors.Join(fmt.Errorf("shutdown: %w", err), a.Close())
	}
	log.Info("chaos app stopped")
	return a.Close()
}
