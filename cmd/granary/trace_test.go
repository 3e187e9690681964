package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/internal/testutil"
	"github.com/granaryhq/granary/internal/testutil/redistest"
)

// runInProcess runs a granary command until the test ends.
func runInProcess(t *testing.T, name string, cmd func(context.Context, []string, io.Writer, io.Writer) error, args ...string) *lockedBuffer {
	t.Helper()
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd(ctx, args, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop", name)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, logs.String())
		}
	})
	return logs
}

// TestTraceAcrossSilos follows one client trace through the gateway, the
// turn, the app call and a nested actor call that runs on another silo,
// with every process's spans in the SDK's in-memory exporter.
func TestTraceAcrossSilos(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	testSpanExporter = exp
	t.Cleanup(func() { testSpanExporter = nil })
	store := redistest.URL(t)

	raft, grpcAddr := testutil.FreePort(t), "127.0.0.1:"+strconv.Itoa(testutil.FreePort(t))
	placementMetrics := testutil.FreePort(t)
	runInProcess(t, "placement", runPlacement, "--id", "p1", "--raft-addr", "127.0.0.1:"+strconv.Itoa(raft), "--grpc-addr", grpcAddr,
		"--data-dir", t.TempDir(), "--peers", "p1=127.0.0.1:"+strconv.Itoa(raft), "--metrics-port", strconv.Itoa(placementMetrics))
	var gateways []string
	var siloMetrics []int
	for _, id := range []string{"s1", "s2"} {
		app := newNestApp(t)
		port := testutil.FreePort(t)
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		app.gateway.Store(&base)
		gateways = append(gateways, base)
		siloMetrics = append(siloMetrics, testutil.FreePort(t))
		runInProcess(t, id, runSilo, "--id", id, "--placement", grpcAddr, "--internal-addr", "127.0.0.1:"+strconv.Itoa(testutil.FreePort(t)),
			"--http-port", strconv.Itoa(port), "--grpc-port", "0", "--metrics-port", strconv.Itoa(siloMetrics[len(siloMetrics)-1]), "--state-store", store,
			"--app-url", "app="+app.srv.URL, "--shutdown-timeout", "5s")
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	call := func(tp, path, body string) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, gateways[0]+path, strings.NewReader(body))
		req.Header.Set("traceparent", tp)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	testutil.Eventually(t, 30*time.Second, "both silos to serve actors", func() error {
		for i := range 2 {
			st, err := call("00-"+strings.Repeat("1", 32)+"-"+strings.Repeat("1", 16)+"-01", "/v1.0/actors/Inner/warm"+strconv.Itoa(i)+"/method/echo", "")
			if err != nil || st != http.StatusOK {
				return fmt.Errorf("status %d, %v", st, err)
			}
		}
		return nil
	})

	// The placement node's and the silos' own metrics.
	testutil.Eventually(t, 10*time.Second, "the placement metrics", func() error {
		m := scrape(t, "http://127.0.0.1:"+strconv.Itoa(placementMetrics)+"/metrics")
		for series, want := range map[string]float64{
			"granary_placement_is_leader": 1, "granary_placement_members": 2, "granary_placement_silo_streams": 2,
			`granary_placement_raft_state{state="Leader"}`: 1, `granary_placement_raft_state{state="Follower"}`: 0,
		} {
			if m[series] != want {
				return fmt.Errorf("%s = %v, want %v", series, m[series], want)
			}
		}
		for _, series := range []string{"granary_placement_table_version", "granary_placement_disseminated_version",
			"granary_placement_dissemination_rounds_total", "granary_placement_dissemination_round_duration_seconds_count", "granary_placement_leader_changes_total"} {
			if m[series] < 1 {
				return fmt.Errorf("%s = %v, want at least 1", series, m[series])
			}
		}
		return nil
	})
	for i, port := range siloMetrics {
		m := scrape(t, "http://127.0.0.1:"+strconv.Itoa(port)+"/metrics")
		if m["granary_silo_lease"] != 1 || m["granary_silo_table_members"] != 2 || m["granary_silo_table_version"] < 1 {
			t.Errorf("silo %d: lease %v, members %v, version %v", i+1, m["granary_silo_lease"], m["granary_silo_table_members"], m["granary_silo_table_version"])
		}
	}

	// Look for an inner actor owned by the other silo than the outer's.
	for attempt := range 40 {
		exp.Reset()
		traceID := fmt.Sprintf("%032x", 0xabc0000+attempt)
		tp := "00-" + traceID + "-00f067aa0ba902b7-01"
		st, err := call(tp, "/v1.0/actors/Outer/o/method/call", "i"+strconv.Itoa(attempt))
		if err != nil || st != http.StatusOK {
			t.Fatalf("outer call: status %d, %v", st, err)
		}
		spans := exp.GetSpans()
		byID := map[trace.SpanID]tracetest.SpanStub{}
		var outerTurn, innerTurn, outerApp tracetest.SpanStub
		for _, s := range spans {
			if s.SpanContext.TraceID().String() != traceID {
				t.Fatalf("span %q is in trace %s, not the client's %s", s.Name, s.SpanContext.TraceID(), traceID)
			}
			byID[s.SpanContext.SpanID()] = s
			switch s.Name {
			case "actor turn Outer":
				outerTurn = s
			case "actor turn Inner":
				innerTurn = s
			case "app call app":
				if attr(s, "granary.actor.type") == "Outer" {
					outerApp = s
				}
			}
		}
		if outerTurn.Name == "" || innerTurn.Name == "" || outerApp.Name == "" {
			t.Fatalf("spans missing: %v", names(spans))
		}
		if instance(outerTurn) == instance(innerTurn) {
			continue // both ran on one silo; try another inner actor
		}
		// The chain from the inner turn up to the client: the inner
		// gateway span on its owner, the forwarding silo's gateway span,
		// the outer app call, the outer turn, the first gateway span.
		chain := []string{}
		for s, ok := innerTurn, true; ok; s, ok = byID[s.Parent.SpanID()] {
			chain = append(chain, s.Name+"@"+instance(s))
		}
		t.Logf("chain: %v", chain)
		for _, want := range []string{"app call app@" + instance(outerTurn), "actor turn Outer@" + instance(outerTurn)} {
			if !contains(chain, want) {
				t.Errorf("the inner turn's ancestors %v lack %s", chain, want)
			}
		}
		root := chain[len(chain)-1]
		if root != "gateway actors/method@s1" {
			t.Errorf("the trace's root here is %s, want the gateway span of s1, where the client called", root)
		}
		if byID[rootOf(byID, innerTurn)].Parent.SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("the root span's parent is not the client's span")
		}
		if gw := countPrefix(chain, "gateway actors/method@"); gw < 3 {
			t.Errorf("the chain %v has %d gateway spans, want the client's call, the nested call and its forward", chain, gw)
		}
		if w := attr(innerTurn, "granary.turn.queue_wait_ms"); w == "" {
			t.Errorf("the inner turn has no queue wait attribute")
		}
		return
	}
	t.Fatal("in 40 attempts the inner actor never ran on the other silo")
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if a.Key == attribute.Key(key) {
			return a.Value.Emit()
		}
	}
	return ""
}

func instance(s tracetest.SpanStub) string {
	for _, a := range s.Resource.Attributes() {
		if a.Key == "service.instance.id" {
			return a.Value.AsString()
		}
	}
	return ""
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name+"@"+instance(s))
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func countPrefix(list []string, p string) int {
	n := 0
	for _, x := range list {
		if strings.HasPrefix(x, p) {
			n++
		}
	}
	return n
}

func rootOf(byID map[trace.SpanID]tracetest.SpanStub, s tracetest.SpanStub) trace.SpanID {
	for {
		p, ok := byID[s.Parent.SpanID()]
		if !ok {
			return s.SpanContext.SpanID()
		}
		s = p
	}
}
