package tracing

import (
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/propagation"
)

// TraceContext is the W3C Trace Context propagator: traceparent and
// tracestate.
var TraceContext = propagation.TraceContext{}

// RequestCarrier carries trace context in a fasthttp request's header.
type RequestCarrier struct{ Req *fasthttp.Request }

func (c RequestCarrier) Get(key string) string { return string(c.Req.Header.Peek(key)) }
func (c RequestCarrier) Set(key, value string) { c.Req.Header.Set(key, value) }

func (c RequestCarrier) Keys() []string {
	var keys []string
	for k := range c.Req.Header.All() {
		keys = append(keys, string(k))
	}
	return keys
}
