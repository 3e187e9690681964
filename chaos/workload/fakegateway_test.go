package workload

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/granaryhq/granary/chaos/app"
	"github.com/granaryhq/granary/chaos/history"
)

// fakeGateway plays a silo gateway in front of the chaos app's actors: the
// register and counter methods over an in-memory state, and reminder
// registration on tickers. Several servers may share one fake, as the
// gateways of one cluster share their actors.
type fakeGateway struct {
	t       *testing.T
	handler http.Handler
	urls    []string
	release chan struct{} // closed when the test ends, to free hanging calls

	mu        sync.Mutex
	registers map[string]int64 // register id → value; absent: never written
	counters  map[string]int64
	applied   map[string]int64 // counter id + "/" + request ID → value after it
	reminders map[string]reminderBody
	calls     []fakeCall

	// failNext answers the next failNext calls 500; with failApplied it
	// applies each of them first, as a silo that committed the write and
	// lost the answer does.
	failNext    int
	failApplied bool
	// failMethod answers every call of that method 500 ("tick" for the
	// reminder registration, "*" for every call).
	failMethod string
	// failEvery answers every failEvery-th call 500, applying every other
	// one of them first.
	failEvery int
	// hang makes every call wait until the client gives up.
	hang bool
}

// fakeCall is one call the fake served and what it answered.
type fakeCall struct {
	Type, ID, Method string
	Req              string
	Value, Expect    int64
	Status           int
	Applied          bool   // the call changed the state (or was a retry of one that did)
	Held             *int64 // what a read, a get or an incr answered
	CASOK            bool   // a compare-and-set matched and wrote
}

type reminderBody struct {
	DueTime string `json:"dueTime"`
	Period  string `json:"period"`
}

func newFakeGateway(t *testing.T) *fakeGateway {
	t.Helper()
	g := &fakeGateway{
		t:         t,
		release:   make(chan struct{}),
		registers: map[string]int64{},
		counters:  map[string]int64{},
		applied:   map[string]int64{},
		reminders: map[string]reminderBody{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/actors/{type}/{id}/method/{method}", g.method)
	mux.HandleFunc("POST /v1.0/actors/{type}/{id}/reminders/{name}", g.reminder)
	g.handler = mux
	g.addServer()
	return g
}

// addServer starts one more gateway on the fake's state.
func (g *fakeGateway) addServer() string {
	srv := httptest.NewServer(g.handler)
	g.t.Cleanup(srv.Close)
	// Cleanups run last first: hanging handlers are freed before Close
	// waits for them.
	g.t.Cleanup(g.releaseOnce)
	g.urls = append(g.urls, srv.URL)
	return srv.URL
}

func (g *fakeGateway) releaseOnce() {
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}

// gateways is a Config.Gateways over every server of the fake.
func (g *fakeGateway) gateways() []string { return slices.Clone(g.urls) }

func (g *fakeGateway) set(f func(g *fakeGateway)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(g)
}

func (g *fakeGateway) callLog() []fakeCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

func (g *fakeGateway) counter(id string) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.counters[id]
}

// failure decides, with g.mu held, whether this call answers 500 and
// whether it applies before it does.
func (g *fakeGateway) failure(method string) (fail, apply bool) {
	n := len(g.calls) + 1
	switch {
	case g.failNext > 0:
		g.failNext--
		return true, g.failApplied
	case g.failMethod == "*" || g.failMethod == method:
		return true, false
	case g.failEvery > 0 && n%g.failEvery == 0:
		return true, (n/g.failEvery)%2 == 1
	}
	return false, false
}

// waitHang blocks a call while g.hang is set, until the client gives up or
// the test ends. It reports whether the call hung.
func (g *fakeGateway) waitHang(r *http.Request) bool {
	g.mu.Lock()
	hang := g.hang
	g.mu.Unlock()
	if !hang {
		return false
	}
	select {
	case <-r.Context().Done():
	case <-g.release:
	}
	return true
}

func (g *fakeGateway) method(w http.ResponseWriter, r *http.Request) {
	if g.waitHang(r) {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var body struct {
		Req    string `json:"req"`
		Value  int64  `json:"value"`
		Expect int64  `json:"expect"`
		Delta  int64  `json:"delta"`
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	typ, id, name := r.PathValue("type"), r.PathValue("id"), r.PathValue("method")

	g.mu.Lock()
	defer g.mu.Unlock()
	c := fakeCall{Type: typ, ID: id, Method: name, Req: body.Req, Value: body.Value, Expect: body.Expect, Status: http.StatusOK}
	defer func() { g.calls = append(g.calls, c) }()
	fail, apply := g.failure(name)
	if fail && !apply {
		c.Status = http.StatusInternalServerError
		http.Error(w, "silo unavailable", c.Status)
		return
	}

	var answer any
	switch {
	case typ == app.TypeRegister && name == "read":
		if v, ok := g.registers[id]; ok {
			c.Held = &v
		}
		answer = map[string]*int64{"value": c.Held}
	case typ == app.TypeRegister && name == "write":
		if body.Req == "" {
			c.Status = http.StatusBadRequest
			http.Error(w, "no req", c.Status)
			return
		}
		g.registers[id] = body.Value
		c.Applied = true
		answer = map[string]bool{"ok": true}
	case typ == app.TypeRegister && name == "cas":
		if body.Req == "" {
			c.Status = http.StatusBadRequest
			http.Error(w, "no req", c.Status)
			return
		}
		cur, ok := g.registers[id]
		if !ok || cur != body.Expect {
			var held *int64
			if ok {
				held = &cur
			}
			answer = map[string]any{"ok": false, "value": held}
			break
		}
		g.registers[id] = body.Value
		c.Applied, c.CASOK = true, true
		answer = map[string]bool{"ok": true}
	case typ == app.TypeCounter && name == "incr":
		if body.Req == "" {
			c.Status = http.StatusBadRequest
			http.Error(w, "no req", c.Status)
			return
		}
		delta := body.Delta
		if delta == 0 {
			delta = 1
		}
		c.Value = delta
		dedup := id + "/" + body.Req
		v, ok := g.applied[dedup]
		if !ok {
			g.counters[id] += delta
			v = g.counters[id]
			g.applied[dedup] = v
		}
		c.Applied, c.Held = true, &v
		answer = map[string]*int64{"value": &v}
	case typ == app.TypeCounter && name == "get":
		v := g.counters[id]
		c.Held = &v
		answer = map[string]*int64{"value": &v}
	default:
		c.Status = http.StatusNotFound
		http.Error(w, "no such actor method", c.Status)
		return
	}
	if fail {
		// Applied, but the answer is lost.
		c.Status = http.StatusInternalServerError
		http.Error(w, "silo unavailable", c.Status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

func (g *fakeGateway) reminder(w http.ResponseWriter, r *http.Request) {
	if g.waitHang(r) {
		return
	}
	typ, id, name := r.PathValue("type"), r.PathValue("id"), r.PathValue("name")
	var body reminderBody
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := fakeCall{Type: typ, ID: id, Method: name, Status: http.StatusNoContent}
	defer func() { g.calls = append(g.calls, c) }()
	if typ != app.TypeTicker {
		c.Status = http.StatusNotFound
		http.Error(w, "no reminders on "+typ, c.Status)
		return
	}
	if fail, _ := g.failure(name); fail {
		c.Status = http.StatusInternalServerError
		http.Error(w, "silo unavailable", c.Status)
		return
	}
	g.reminders[id+"/"+name] = body
	c.Applied = true
	w.WriteHeader(http.StatusNoContent)
}

// deadURL is the URL of a local port nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// recorder is a Config.Record that keeps the operations.
type recorder struct {
	t   *testing.T
	mu  sync.Mutex
	ops []history.Op
}

func (r *recorder) record(rec history.Record) {
	op, ok := rec.(history.Op)
	if !ok {
		r.t.Errorf("recorded a %T, want a history.Op", rec)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
}

func (r *recorder) all() []history.Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = nil
}
