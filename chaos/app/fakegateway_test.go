package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// fakeGateway plays the silo gateway's actor state API: an in-memory store
// keyed by type/id/key that applies each transaction atomically.
type fakeGateway struct {
	srv *httptest.Server

	mu           sync.Mutex
	state        map[string]json.RawMessage
	transactions int      // transactions applied
	claims       []string // the Granary-Activation header of every call
	failGets     bool     // answer every read 500
	failWrites   bool     // answer every transaction 500
}

func newFakeGateway(t *testing.T) *fakeGateway {
	t.Helper()
	g := &fakeGateway{state: map[string]json.RawMessage{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/actors/{type}/{id}/state/{key...}", g.get)
	mux.HandleFunc("POST /v1.0/actors/{type}/{id}/state", g.transact)
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func stateName(typ, id, key string) string { return typ + "/" + id + "/" + key }

func (g *fakeGateway) get(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.claims = append(g.claims, r.Header.Get(HeaderActivation))
	if g.failGets {
		http.Error(w, "store unavailable", http.StatusInternalServerError)
		return
	}
	v, ok := g.state[stateName(r.PathValue("type"), r.PathValue("id"), r.PathValue("key"))]
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(v)
}

func (g *fakeGateway) transact(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.claims = append(g.claims, r.Header.Get(HeaderActivation))
	if g.failWrites {
		http.Error(w, "store unavailable", http.StatusInternalServerError)
		return
	}
	var ops []struct {
		Operation string `json:"operation"`
		Request   struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		} `json:"request"`
	}
	if err := json.NewDecoder(r.Body).Decode(&ops); err != nil {
		http.Error(w, fmt.Sprintf("bad transaction: %v", err), http.StatusBadRequest)
		return
	}
	for _, op := range ops {
		if op.Operation != "upsert" || op.Request.Key == "" || len(op.Request.Value) == 0 {
			http.Error(w, fmt.Sprintf("bad operation %+v", op), http.StatusBadRequest)
			return
		}
	}
	for _, op := range ops {
		g.state[stateName(r.PathValue("type"), r.PathValue("id"), op.Request.Key)] = op.Request.Value
	}
	g.transactions++
	w.WriteHeader(http.StatusNoContent)
}

// value returns the stored value of a key and whether there is one.
func (g *fakeGateway) value(typ, id, key string) (json.RawMessage, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.state[stateName(typ, id, key)]
	return v, ok
}

func (g *fakeGateway) applied() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.transactions
}

func (g *fakeGateway) fail(gets, writes bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failGets, g.failWrites = gets, writes
}

func (g *fakeGateway) seenClaims() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.claims...)
}
