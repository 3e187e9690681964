package main

// Parts 1 and 2: the state loads with their invocation-rate reference, and
// service invocation through the gateway and straight to the app.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
	"github.com/granaryhq/granary/internal/redisdb"
)

// The stores, in the order they run.
const (
	storeBolt  = "bbolt"
	storeRedis = "redis"
)

// What the loads send. The key of a state request is loadgen's {actor}
// placeholder: the load generator goes round-robin over the IDs it is
// given, whatever they name.
const (
	stateStore   = "statestore"
	keyPrefix    = "k"
	actorPrefix  = "actor-"
	preloadBatch = 100

	savePath   = "/v1.0/state/" + stateStore
	saveBody   = `[{"key":"` + loadgen.ActorPlaceholder + `","value":{"n":` + loadgen.SeqPlaceholder + `}}]`
	getPath    = "/v1.0/state/" + stateStore + "/" + loadgen.ActorPlaceholder
	bulkPath   = "/v1.0/state/" + stateStore + "/bulk"
	actorPath  = "/v1.0/actors/Echo/" + loadgen.ActorPlaceholder + "/method/x"
	echoAppID  = "echo"
	echoMethod = "actors/Echo/svc/method/echo" // a route of the echo app that answers with the request body
	svcPath    = "/v1.0/invoke/" + echoAppID + "/method/" + echoMethod
	directPath = "/" + echoMethod
	svcBody    = `{"n":` + loadgen.SeqPlaceholder + `}`
)

// load is one measured load: the request, where it goes, and the status a
// request of it answers when it works (for probing failures).
type load struct {
	name         string
	addr         string
	method, path string
	body         string
	ids          []string
	want         int
}

// fill returns a path or body template with {actor} and {n} filled in.
func fill(template, id string, n int) string {
	s := strings.ReplaceAll(template, loadgen.ActorPlaceholder, id)
	return strings.ReplaceAll(s, loadgen.SeqPlaceholder, strconv.Itoa(n))
}

// newHTTPClient is the client for everything but the measured loads.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxIdleConns: conns},
	}
}

// runLoad runs one load and, when it had failures, probes for their answer.
func (r *runner) runLoad(ctx context.Context, g *benchproc.Process, l load) (loadgen.Result, string, error) {
	r.progress("%s: %s %s, %d ids, %d clients, %v warm-up + %v", l.name, l.method, l.path, len(l.ids),
		r.o.clients, r.o.warmup, r.o.duration)
	res, err := loadgen.Run(ctx, loadgen.Config{
		Addr: l.addr, Connections: r.o.clients, Warmup: r.o.warmup, Duration: r.o.duration,
		Request: loadgen.Request{Method: l.method, Path: l.path, Body: l.body, Actors: l.ids},
	})
	if err != nil {
		return res, "", err
	}
	r.progress("      %v", res)
	if g.Exited() {
		return res, "", fmt.Errorf("%s exited during the %s load: %v", g.Name, l.name, g.Err())
	}
	var detail string
	if res.Errors.Total() > 0 {
		client := newHTTPClient(1)
		defer client.CloseIdleConnections()
		detail = errorDetail(ctx, client, "http://"+l.addr, l, res)
	}
	return res, detail, nil
}

// probeTries bounds the requests errorDetail sends.
const probeTries = 100

// errorDetail describes the failures of a load: loadgen's first error, and,
// because loadgen does not keep response bodies, the body of the first
// failure among up to probeTries requests of the same kind sent afterwards.
func errorDetail(ctx context.Context, client *http.Client, base string, l load, res loadgen.Result) string {
	detail := res.FirstError
	if res.Errors.Status == 0 {
		return detail
	}
	tries := probeTries
	if len(l.ids) > 0 {
		tries = min(tries, len(l.ids))
	}
	for i := range tries {
		id := ""
		if len(l.ids) > 0 {
			id = l.ids[i]
		}
		if _, err := benchproc.Call(ctx, client, l.method, base+fill(l.path, id, i), fill(l.body, id, i), l.want); err != nil {
			return detail + "; then " + err.Error()
		}
	}
	return fmt.Sprintf("%s; the next %d requests of this kind all succeeded", detail, tries)
}

// statePart preloads the keys and runs the save, get and invocation loads
// against the granary at gw.
func (r *runner) statePart(ctx context.Context, g *benchproc.Process, gw string, sr *storeReport) error {
	sr.Keys = r.o.keys
	keys := loadgen.ActorIDs(keyPrefix, r.o.keys)
	client := newHTTPClient(16)
	defer client.CloseIdleConnections()
	base := "http://" + gw
	began := time.Now()
	if err := preload(ctx, client, base, keys, 8); err != nil {
		return err
	}
	sr.Preload = time.Since(began)
	if err := verifyKeys(ctx, client, base, keys); err != nil {
		return err
	}
	r.progress("%s: %d keys saved in %v (batches of %d) and read back", sr.Store, len(keys),
		sr.Preload.Round(time.Millisecond), preloadBatch)
	loads := []struct {
		l      load
		dst    *loadgen.Result
		detail *string
	}{
		{load{name: sr.Store + " save", addr: gw, method: "POST", path: savePath, body: saveBody, ids: keys, want: http.StatusNoContent},
			&sr.Save, &sr.SaveError},
		{load{name: sr.Store + " get", addr: gw, method: "GET", path: getPath, ids: keys, want: http.StatusOK},
			&sr.Get, &sr.GetError},
		{load{name: sr.Store + " actor invocation", addr: gw, method: "POST", path: actorPath,
			ids: loadgen.ActorIDs(actorPrefix, r.o.actors), want: http.StatusOK},
			&sr.Invoke, &sr.InvokeError},
	}
	for _, l := range loads {
		res, detail, err := r.runLoad(ctx, g, l.l)
		if err != nil {
			return err
		}
		*l.dst, *l.detail = res, detail
	}
	return nil
}

// redisState runs the state part on Redis, in a database claimed and
// flushed for the run.
func (r *runner) redisState(ctx context.Context, sr *storeReport) (err error) {
	target, err := redisdb.ParseTarget(r.o.redisURL)
	if err != nil {
		return err
	}
	sr.Where = target.Redacted
	db, err := redisdb.Prepare(ctx, target, "blocksbench", r.o.claimPatience, r.progress)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	r.progress("redis database %d on %s flushed", target.DB, target.Options.Addr)
	return r.withGranary(ctx, "granary-"+storeRedis, []string{"--state-store", r.o.redisURL}, true,
		func(g *benchproc.Process, gw string) error {
			if err := r.statePart(ctx, g, gw, sr); err != nil {
				sr.Error = err.Error()
				return err
			}
			return nil
		})
}

// saveItem is one item of a state save.
type saveItem struct {
	Key   string `json:"key"`
	Value struct {
		N int `json:"n"`
	} `json:"value"`
}

// preloadBody is the save of keys[from:to], key i holding {"n":i}.
func preloadBody(keys []string, from, to int) string {
	items := make([]saveItem, 0, to-from)
	for i := from; i < to; i++ {
		it := saveItem{Key: keys[i]}
		it.Value.N = i
		items = append(items, it)
	}
	b, _ := json.Marshal(items)
	return string(b)
}

// preload saves every key, in batches of up to preloadBatch, with workers
// saves in flight. It stops at the first failure and returns it.
func preload(ctx context.Context, client *http.Client, base string, keys []string, workers int) error {
	batches := (len(keys) + preloadBatch - 1) / preloadBatch
	return benchproc.Parallel(ctx, batches, workers, func(ctx context.Context, i int) error {
		from := i * preloadBatch
		to := min(from+preloadBatch, len(keys))
		if _, err := benchproc.Call(ctx, client, "POST", base+savePath, preloadBody(keys, from, to), http.StatusNoContent); err != nil {
			return fmt.Errorf("preloading keys %s…%s: %w", keys[from], keys[to-1], err)
		}
		return nil
	})
}

// bulkItem is one entry of a bulk get's answer.
type bulkItem struct {
	Key  string          `json:"key"`
	Data json.RawMessage `json:"data"`
	Err  string          `json:"error"`
}

// verifyKeys reads every preloaded key back with bulk gets, so that a read
// load answered 204 (no such key) cannot pass for a working one.
func verifyKeys(ctx context.Context, client *http.Client, base string, keys []string) error {
	for from := 0; from < len(keys); from += preloadBatch {
		to := min(from+preloadBatch, len(keys))
		req, _ := json.Marshal(map[string]any{"keys": keys[from:to], "parallelism": 10})
		body, err := benchproc.Call(ctx, client, "POST", base+bulkPath, string(req), http.StatusOK)
		if err != nil {
			return fmt.Errorf("reading the preloaded keys back: %w", err)
		}
		var items []bulkItem
		if err := json.Unmarshal(body, &items); err != nil {
			return fmt.Errorf("reading the preloaded keys back: the bulk answer is not a JSON array of items: %v: %.200s", err, body)
		}
		if len(items) != to-from {
			return fmt.Errorf("reading the preloaded keys back: %d items for %d keys", len(items), to-from)
		}
		for j, it := range items {
			i := from + j
			if want := `{"n":` + strconv.Itoa(i) + `}`; it.Key != keys[i] || string(it.Data) != want {
				return fmt.Errorf("reading the preloaded keys back: item %d is key %q data %s (error %q), want key %q data %s",
					j, it.Key, it.Data, it.Err, keys[i], want)
			}
		}
	}
	return nil
}

// invokePart measures service invocation through the gateway and the same
// request straight to the echo app.
func (r *runner) invokePart(ctx context.Context, g *benchproc.Process, gw string, ir *invokeReport) error {
	ir.Method, ir.Path, ir.DirectPath, ir.AppID = "PUT", svcPath, directPath, echoAppID
	client := newHTTPClient(1)
	defer client.CloseIdleConnections()
	for _, base := range []string{"http://" + gw + svcPath, "http://" + r.appAddr + directPath} {
		got, err := benchproc.Call(ctx, client, "PUT", base, `{"n":1}`, http.StatusOK)
		if err != nil {
			return fmt.Errorf("checking the request: %w", err)
		}
		if string(got) != `{"n":1}` {
			return fmt.Errorf("checking the request: PUT %s answered %q, want the body echoed", base, got)
		}
	}
	loads := []struct {
		l      load
		dst    *loadgen.Result
		detail *string
	}{
		{load{name: "invoke via gateway", addr: gw, method: "PUT", path: svcPath, body: svcBody, want: http.StatusOK},
			&ir.Gateway, &ir.GatewayError},
		{load{name: "invoke direct", addr: r.appAddr, method: "PUT", path: directPath, body: svcBody, want: http.StatusOK},
			&ir.Direct, &ir.DirectError},
	}
	for _, l := range loads {
		res, detail, err := r.runLoad(ctx, g, l.l)
		if err != nil {
			return err
		}
		*l.dst, *l.detail = res, detail
	}
	return nil
}
