package tracing

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

func TestParseEndpoint(t *testing.T) {
	for _, c := range []struct {
		in, proto, host, path string
		bad                   bool
	}{
		{in: "collector:4317", proto: "grpc", host: "collector:4317"},
		{in: "grpc://127.0.0.1:4317", proto: "grpc", host: "127.0.0.1:4317"},
		{in: "http://127.0.0.1:4318", proto: "http", host: "127.0.0.1:4318"},
		{in: "https://otel.example:443/custom/v1/traces", proto: "http", host: "otel.example:443", path: "/custom/v1/traces"},
		{in: "ftp://x:1", bad: true},
		{in: "http://", bad: true},
		{in: "grpc://%zz", bad: true},
	} {
		proto, u, err := parseEndpoint(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: accepted", c.in)
			}
			continue
		}
		if err != nil || proto != c.proto || u.Host != c.host || u.Path != c.path {
			t.Errorf("%q: %q %v %v, want %q %q %q", c.in, proto, u, err, c.proto, c.host, c.path)
		}
	}
}

func TestOffByDefault(t *testing.T) {
	tr, err := Start(context.Background(), Config{})
	if err != nil || tr != nil || tr.Tracer() != nil || tr.Shutdown(context.Background()) != nil {
		t.Fatalf("tracing without an endpoint: %v, %v", tr, err)
	}
	if _, err := Start(context.Background(), Config{Exporter: tracetest.NewInMemoryExporter(), SampleRate: 2}); err == nil {
		t.Fatal("a sample rate of 2 was accepted")
	}
}

func TestSampling(t *testing.T) {
	for _, rate := range []float64{0, 1} {
		exp := tracetest.NewInMemoryExporter()
		tr, err := Start(context.Background(), Config{Exporter: exp, SampleRate: rate, Service: "granary-silo", Instance: "s1"})
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			_, span := tr.Tracer().Start(context.Background(), "root")
			span.End()
		}
		want := int(rate * 10)
		if got := len(exp.GetSpans()); got != want {
			t.Errorf("rate %v: %d of 10 root spans recorded, want %d", rate, got, want)
		}
		if rate == 1 && exp.GetSpans()[0].Resource.String() == "" {
			t.Errorf("no resource")
		}
		tr.Shutdown(context.Background())
	}
}

func TestLogLinesCarryTheTraceID(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("silo", "s1")
	exp := tracetest.NewInMemoryExporter()
	tr, err := Start(context.Background(), Config{Exporter: exp, SampleRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tr.Tracer().Start(context.Background(), "call")
	log.InfoContext(ctx, "traced")
	log.Info("untraced")
	span.End()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	if !strings.Contains(lines[0], "trace_id="+span.SpanContext().TraceID().String()) ||
		!strings.Contains(lines[0], "span_id="+span.SpanContext().SpanID().String()) || !strings.Contains(lines[0], "silo=s1") {
		t.Errorf("traced line %q", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("untraced line %q", lines[1])
	}
}

// traceCollector is an OTLP trace collector over gRPC that counts spans.
type traceCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	spans atomic.Int64
}

func (c *traceCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			c.spans.Add(int64(len(ss.Spans)))
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// Spans reach a collector over OTLP/gRPC and OTLP/HTTP.
func TestExportsOverOTLP(t *testing.T) {
	col := &traceCollector{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, col)
	go srv.Serve(ln)
	defer srv.Stop()

	var httpPaths []string
	var mu sync.Mutex
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		httpPaths = append(httpPaths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer hs.Close()

	for _, endpoint := range []string{ln.Addr().String(), "grpc://" + ln.Addr().String(), hs.URL, hs.URL + "/custom/traces"} {
		tr, err := Start(context.Background(), Config{Endpoint: endpoint, SampleRate: 1, Service: "granary-silo", Instance: "s1"})
		if err != nil {
			t.Fatalf("%s: %v", endpoint, err)
		}
		_, span := tr.Tracer().Start(context.Background(), "call")
		span.End()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := tr.Shutdown(ctx); err != nil {
			t.Errorf("%s: %v", endpoint, err)
		}
		cancel()
	}
	if n := col.spans.Load(); n != 2 {
		t.Errorf("the gRPC collector got %d spans, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(httpPaths) != 2 || httpPaths[0] != "POST /v1/traces" || httpPaths[1] != "POST /custom/traces" {
		t.Errorf("the HTTP collector got %q", httpPaths)
	}
}
