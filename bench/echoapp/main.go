// Command echoapp is the smallest app Granary's benchmarks can drive: it
// hosts the actor type Echo over the actor callback protocol and answers
// every method call with the request body (or {"ok":true} when there is
// none). It uses only the standard library.
//
//	echoapp --port 3000        (or APP_PORT=3000 echoapp)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// maxBody bounds the request bodies echoed back.
const maxBody = 4 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "echoapp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("echoapp", flag.ContinueOnError)
	defaultPort := 3000
	if p, err := strconv.Atoi(os.Getenv("APP_PORT")); err == nil {
		defaultPort = p
	}
	port := fs.Int("port", defaultPort, "port to listen on, on 127.0.0.1 (default from APP_PORT, else 3000)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: newHandler(), ReadHeaderTimeout: 10 * time.Second}
	slog.Info("echoapp listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newHandler serves the callback protocol for the actor type Echo.
func newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dapr/config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, []byte(`{"entities":["Echo"]}`))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	// Methods, and reminder and timer callbacks (method/remind/…, method/timer/…).
	mux.HandleFunc("PUT /actors/Echo/{id}/method/{method...}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) == 0 {
			body = []byte(`{"ok":true}`)
		}
		writeJSON(w, body)
	})
	mux.HandleFunc("DELETE /actors/Echo/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}
