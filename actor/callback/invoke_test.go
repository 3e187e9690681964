package callback_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/granaryhq/granary/actor"
)

func TestInvokeRoundTrip(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	app.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/vnd.result+json")
			w.Header().Set("X-Result", "r1")
			w.Header().Add("X-Multi-Out", "a")
			w.Header().Add("X-Multi-Out", "b")
			w.Header().Set("Connection", "keep-alive")
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"made":true}`))
		}
	})
	rt := newRuntime(t)
	opts := calmOptions()
	opts.Token = "app-secret"
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	app.reset()

	h := func(k, v string) actor.HeaderField { return actor.HeaderField{Name: []byte(k), Value: []byte(v)} }
	req := &actor.Request{
		Body:  []byte(`{"n":1}`),
		Query: []byte("a=1&b=x%20y"),
		Header: []actor.HeaderField{
			h("X-Custom", "v1"), h("X-Multi", "1"), h("X-Multi", "2"), h("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
			// Hop-by-hop and silo-owned headers from the client must not reach the app.
			h("Connection", "close"), h("Keep-Alive", "timeout=5"), h("Upgrade", "h2c"), h("Te", "trailers"),
			h("Proxy-Authorization", "Basic eA=="), h("Transfer-Encoding", "chunked"), h("Content-Length", "999"),
			h("Host", "evil.example"), h("Dapr-Api-Token", "client-forged"), h("Dapr-Reentrancy-Id", "client-forged"),
			h("Content-Type", "text/forged"),
		},
	}
	status, body, hdr, ct, err := invoke(ctx, rt, "Counter", "a b%", "do it", req)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}

	// What the app received.
	reqs := app.Requests("/actors/")
	if len(reqs) != 1 {
		t.Fatalf("app got %d actor calls; want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPut {
		t.Errorf("method = %s; want PUT", r.Method)
	}
	if want := "/actors/Counter/a%20b%25/method/do%20it?a=1&b=x%20y"; r.RequestURI != want {
		t.Errorf("request URI = %q; want %q", r.RequestURI, want)
	}
	if r.Path != "/actors/Counter/a b%/method/do it" {
		t.Errorf("decoded path = %q", r.Path)
	}
	if r.Body != `{"n":1}` {
		t.Errorf("body = %q", r.Body)
	}
	if r.Host != hostOf(t, app.URL()) {
		t.Errorf("Host = %q; want the app's address %q", r.Host, hostOf(t, app.URL()))
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q; want application/json for a body without one", got)
	}
	if got := r.Header.Get("X-Custom"); got != "v1" {
		t.Errorf("X-Custom = %q", got)
	}
	if got := r.Header.Values("X-Multi"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("X-Multi = %q; want both values", got)
	}
	if got := r.Header.Get("Traceparent"); !strings.HasPrefix(got, "00-0af7") {
		t.Errorf("traceparent = %q; want it propagated", got)
	}
	if got := r.Header.Values("Dapr-Api-Token"); !slices.Equal(got, []string{"app-secret"}) {
		t.Errorf("dapr-api-token = %q; want only the silo's token", got)
	}
	if got := r.Header.Values("Dapr-Reentrancy-Id"); len(got) != 0 {
		t.Errorf("Dapr-Reentrancy-Id = %q for a type without reentrancy", got)
	}
	for _, name := range []string{"Keep-Alive", "Upgrade", "Te", "Proxy-Authorization", "Transfer-Encoding"} {
		if got := r.Header.Values(name); len(got) != 0 {
			t.Errorf("hop-by-hop header %s = %q reached the app", name, got)
		}
	}
	if got := r.Header.Get("Connection"); strings.EqualFold(got, "close") {
		t.Errorf("the client's Connection: close reached the app")
	}

	// What came back.
	if status != http.StatusCreated {
		t.Errorf("status = %d; want 201", status)
	}
	if body != `{"made":true}` {
		t.Errorf("body = %q", body)
	}
	if ct != "application/vnd.result+json" {
		t.Errorf("content type = %q", ct)
	}
	if got := hdr.Get("X-Result"); got != "r1" {
		t.Errorf("X-Result = %q; headers %v", got, hdr)
	}
	if got := hdr.Values("X-Multi-Out"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("X-Multi-Out = %q", got)
	}
	for _, name := range []string{"Content-Length", "Content-Type", "Date", "Connection", "Transfer-Encoding"} {
		if got := hdr.Values(name); len(got) != 0 {
			t.Errorf("response header %s = %q came back; the silo sets it itself", name, got)
		}
	}
}

func TestInvokeContentTypes(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	app.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/empty") {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.Write([]byte("plain text"))
		}
	})
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	app.reset()

	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c", "typed", &actor.Request{Body: []byte("x,y"), ContentType: []byte("text/csv")}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c", "nobody", &actor.Request{}); err != nil {
		t.Fatal(err)
	}
	reqs := app.Requests("/actors/")
	if len(reqs) != 2 {
		t.Fatalf("got %d calls", len(reqs))
	}
	if got := reqs[0].Header.Get("Content-Type"); got != "text/csv" {
		t.Errorf("Content-Type = %q; want the client's text/csv", got)
	}
	if got := reqs[1].Header.Values("Content-Type"); len(got) != 0 {
		t.Errorf("Content-Type = %q for a call without a body", got)
	}

	status, body, _, ct, err := invoke(ctx, rt, "Counter", "c", "empty", nil)
	if err != nil || status != http.StatusOK || body != "" {
		t.Fatalf("empty answer = %d %q %v", status, body, err)
	}
	if ct != "" {
		t.Errorf("content type = %q for an answer that had none", ct)
	}
	_, _, _, ct, err = invoke(ctx, rt, "Counter", "c", "text", nil)
	if err != nil || ct != "text/plain; charset=utf-8" {
		t.Errorf("content type = %q, %v; want the app's text/plain; charset=utf-8", ct, err)
	}
}

// A non-200 answer is the app's to report: it comes back as it was, not as an error.
func TestInvokeAppErrorStatusComesBack(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	app.set(func(a *fakeApp) {
		a.actor = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-DaprErrorResponseHeader", "true")
			http.Error(w, "no such method", http.StatusNotFound)
		}
	})
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	status, body, hdr, _, err := invoke(ctx, rt, "Counter", "c", "nope", nil)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	if status != http.StatusNotFound || body != "no such method\n" || hdr.Get("X-DaprErrorResponseHeader") != "true" {
		t.Errorf("got %d %q %v; want the app's 404, body and error header", status, body, hdr)
	}
}

func TestInvokeReentrancyID(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Plain","Re"],"entitiesConfig":[{"entities":["Re"],"reentrancy":{"enabled":true,"maxStackDepth":4}}]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	app.reset()
	forged := &actor.Request{Header: []actor.HeaderField{{Name: []byte("Dapr-Reentrancy-Id"), Value: []byte("forged")}}}
	for range 2 {
		if _, _, _, _, err := invoke(ctx, rt, "Re", "r1", "m", &actor.Request{Header: forged.Header}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, _, err := invoke(actor.WithCallChain(ctx, "chain-7"), rt, "Re", "r1", "m", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := invoke(ctx, rt, "Plain", "p1", "m", &actor.Request{Header: forged.Header}); err != nil {
		t.Fatal(err)
	}

	re := app.Requests("/actors/Re/")
	if len(re) != 3 {
		t.Fatalf("got %d calls to Re", len(re))
	}
	first, second := re[0].Header.Values("Dapr-Reentrancy-Id"), re[1].Header.Values("Dapr-Reentrancy-Id")
	if len(first) != 1 || len(second) != 1 || first[0] == "" || first[0] == "forged" || second[0] == "forged" {
		t.Fatalf("Dapr-Reentrancy-Id = %q, %q; want one fresh ID per external call", first, second)
	}
	if first[0] == second[0] {
		t.Errorf("two external calls share the reentrancy ID %q", first[0])
	}
	if got := re[2].Header.Values("Dapr-Reentrancy-Id"); !slices.Equal(got, []string{"chain-7"}) {
		t.Errorf("Dapr-Reentrancy-Id = %q; want the caller's chain-7", got)
	}
	plain := app.Requests("/actors/Plain/")
	if len(plain) != 1 || len(plain[0].Header.Values("Dapr-Reentrancy-Id")) != 0 {
		t.Errorf("a type without reentrancy got Dapr-Reentrancy-Id: %+v", plain)
	}
}

func TestNoTokenWhenNoneConfigured(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	req := &actor.Request{Header: []actor.HeaderField{{Name: []byte("dapr-api-token"), Value: []byte("client-token")}}}
	if _, _, _, _, err := invoke(ctx, rt, "Counter", "c", "m", req); err != nil {
		t.Fatal(err)
	}
	for _, r := range app.Requests("") {
		if got := r.Header.Values("Dapr-Api-Token"); len(got) != 0 {
			t.Errorf("%s %s carried dapr-api-token %q", r.Method, r.Path, got)
		}
	}
}
