package main

// The receiver: a net/http actor app run inside the bench, so that the
// lateness of a reminder callback is read off the bench's own clock, at the
// moment the callback arrives.

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"
)

const receiverType = "Bench"

// receiver serves the actor callback protocol for one type, receiverType:
// every method, timer and deactivation is answered 200, and the arrival of
// every reminder callback is recorded.
type receiver struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve returns

	mu      sync.Mutex
	at      map[string]time.Time // "actor name" → the first callback's arrival
	count   int                  // reminder callbacks, repeats included
	reached chan struct{}        // closed once count reaches want
	want    int
}

// startReceiver serves on a free loopback port until close.
func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc := &receiver{ln: ln, done: make(chan struct{}), at: map[string]time.Time{}, reached: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dapr/config", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"entities":["` + receiverType + `"]}`))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("PUT /actors/"+receiverType+"/{id}/method/remind/{name}", func(w http.ResponseWriter, r *http.Request) {
		rc.record(r.PathValue("id")+" "+r.PathValue("name"), time.Now())
	})
	mux.HandleFunc("PUT /actors/"+receiverType+"/{id}/method/{method...}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}"))
	})
	mux.HandleFunc("DELETE /actors/"+receiverType+"/{id}", func(w http.ResponseWriter, _ *http.Request) {})
	rc.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(rc.done)
		rc.srv.Serve(ln)
	}()
	return rc, nil
}

func (rc *receiver) url() string { return "http://" + rc.ln.Addr().String() }

func (rc *receiver) record(key string, t time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if _, seen := rc.at[key]; !seen {
		rc.at[key] = t
	}
	rc.count++
	if rc.count == rc.want {
		close(rc.reached)
	}
}

// expect returns a channel closed once n reminder callbacks have arrived,
// counting from now: it forgets what was recorded before.
func (rc *receiver) expect(n int) <-chan struct{} {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.at, rc.count, rc.want, rc.reached = map[string]time.Time{}, 0, n, make(chan struct{})
	return rc.reached
}

// arrivals returns the reminder callbacks counted and the first arrival of each.
func (rc *receiver) arrivals() (int, map[string]time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.count, maps.Clone(rc.at)
}

func (rc *receiver) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := rc.srv.Shutdown(ctx)
	<-rc.done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
