// Package tracing sets up OpenTelemetry tracing for one process: a tracer
// provider sampling a share of new traces (and following the caller's
// decision for continued ones), exporting spans over OTLP, gRPC or HTTP, and
// a log handler that adds the trace and span IDs to log lines written with a
// traced context.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Config says where spans go and how many traces are kept.
type Config struct {
	// Endpoint is the OTLP collector: grpc://host:port (or host:port) for
	// OTLP over gRPC, http://host:port[/path] or https://... for OTLP over
	// HTTP (the path defaults to /v1/traces). Empty turns tracing off
	// unless Exporter is set.
	Endpoint string
	// SampleRate is the share of new traces recorded, 0 to 1. A call that
	// continues a trace follows the caller's decision.
	SampleRate float64
	// Service and Instance name the process in its spans' resource
	// (service.name, service.instance.id).
	Service, Instance string
	// Exporter, when set, receives the spans instead of an OTLP endpoint
	// (tests use the SDK's in-memory exporter).
	Exporter sdktrace.SpanExporter
}

// CheckEndpoint validates an --otlp-endpoint value.
func CheckEndpoint(endpoint string) error {
	_, _, err := parseEndpoint(endpoint)
	return err
}

// parseEndpoint returns the protocol ("grpc" or "http") and what its
// exporter is given.
func parseEndpoint(endpoint string) (proto string, target *url.URL, err error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "grpc://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", nil, fmt.Errorf("OTLP endpoint %q: %w", endpoint, err)
	}
	if u.Host == "" {
		return "", nil, fmt.Errorf("OTLP endpoint %q names no host:port", endpoint)
	}
	switch u.Scheme {
	case "grpc":
		return "grpc", u, nil
	case "http", "https":
		return "http", u, nil
	}
	return "", nil, fmt.Errorf("OTLP endpoint %q: scheme %q is neither grpc, http nor https", endpoint, u.Scheme)
}

// Tracing is a running tracer provider.
type Tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

// Start returns the process's tracing, or nil with no error when tracing is
// off (no endpoint and no exporter).
func Start(ctx context.Context, cfg Config) (*Tracing, error) {
	if cfg.Endpoint == "" && cfg.Exporter == nil {
		return nil, nil
	}
	if cfg.SampleRate < 0 || cfg.SampleRate > 1 {
		return nil, fmt.Errorf("trace sample rate %v is not between 0 and 1", cfg.SampleRate)
	}
	exp := cfg.Exporter
	if exp == nil {
		proto, u, err := parseEndpoint(cfg.Endpoint)
		if err != nil {
			return nil, err
		}
		switch proto {
		case "grpc":
			exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(u.Host), otlptracegrpc.WithInsecure())
		default:
			opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
			if u.Scheme == "http" {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
			if u.Path != "" && u.Path != "/" {
				opts = append(opts, otlptracehttp.WithURLPath(u.Path))
			}
			exp, err = otlptracehttp.New(ctx, opts...)
		}
		if err != nil {
			return nil, fmt.Errorf("OTLP exporter for %s: %w", cfg.Endpoint, err)
		}
	}
	res := resource.NewSchemaless(attribute.String("service.name", cfg.Service), attribute.String("service.instance.id", cfg.Instance))
	var batch sdktrace.TracerProviderOption
	if cfg.Exporter != nil {
		// Tests read the spans as soon as they end.
		batch = sdktrace.WithSyncer(exp)
	} else {
		batch = sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(2*time.Second))
	}
	tp := sdktrace.NewTracerProvider(batch, sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRate))))
	return &Tracing{provider: tp, tracer: tp.Tracer("github.com/granaryhq/granary")}, nil
}

// Tracer is the process's tracer; nil when t is nil (tracing off), which
// every component takes to mean no spans.
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tracer
}

// Shutdown exports the spans still buffered and stops the provider.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("stopping tracing: %w", err)
	}
	return nil
}
