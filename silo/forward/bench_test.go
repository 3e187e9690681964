package forward

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

var benchSizes = []struct {
	name string
	size int
}{
	{"128B", 128},
	{"16KiB", 16 << 10},
	{"1MiB", 1 << 20},
}

// benchRequest is an actor call as the gateway receives one.
func benchRequest(body []byte) *fasthttp.Request {
	req := postRequest("/v1.0/actors/counter/c-17/method/add?mode=fast", body)
	req.Header.SetContentType("application/json")
	req.Header.Set("Dapr-Api-Token", "secret-token")
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req.Header.SetUserAgent("bench/1.0")
	return req
}

// BenchmarkForwardEcho is one forwarded call end to end: the client's
// request to the owner over loopback gRPC, the owner's echo handler, and
// the reply written into the forwarding silo's response.
func BenchmarkForwardEcho(b *testing.B) {
	addr, _ := startSilo(b, echo)
	c := newTestClient(b)
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			body := patterned(bs.size)
			req := benchRequest(body)
			var out fasthttp.RequestCtx
			b.SetBytes(int64(bs.size))
			b.ReportAllocs()
			for b.Loop() {
				reply, err := c.Forward(context.Background(), addr, 1, "counter", "c-17", req)
				if err != nil {
					b.Fatal(err)
				}
				out.Response.Reset()
				WriteReply(&out, reply)
				if len(out.Response.Body()) != bs.size {
					b.Fatalf("echoed %d bytes of %d", len(out.Response.Body()), bs.size)
				}
			}
		})
	}
}

// BenchmarkDirectEcho is the same handler called in memory, as the owner's
// gateway runs it for a call it receives itself.
func BenchmarkDirectEcho(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			body := patterned(bs.size)
			req := benchRequest(body)
			var ctx fasthttp.RequestCtx
			b.SetBytes(int64(bs.size))
			b.ReportAllocs()
			for b.Loop() {
				ctx.Init(req, nil, nil)
				echo(&ctx)
				if len(ctx.Response.Body()) != bs.size {
					b.Fatalf("echoed %d bytes of %d", len(ctx.Response.Body()), bs.size)
				}
			}
		})
	}
}

// TestForwardLatency measures forwarded calls one at a time against the
// same handler called directly; the target is that forwarding adds at most
// 100µs at the median. The figures are logged, not asserted: the machine's
// load decides them, and the race detector inflates them several times.
func TestForwardLatency(t *testing.T) {
	const calls = 2000
	addr, _ := startSilo(t, echo)
	c := newTestClient(t)
	body := patterned(256)
	req := benchRequest(body)

	forwarded := make([]time.Duration, 0, calls)
	var out fasthttp.RequestCtx
	for i := range calls + calls/10 {
		start := time.Now()
		reply, err := c.Forward(context.Background(), addr, 1, "counter", "c-17", req)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		out.Response.Reset()
		WriteReply(&out, reply)
		elapsed := time.Since(start)
		if out.Response.StatusCode() != http.StatusOK || !bytes.Equal(out.Response.Body(), body) {
			t.Fatalf("call %d: status %d, %d bytes back", i, out.Response.StatusCode(), len(out.Response.Body()))
		}
		if i >= calls/10 { // the first tenth warms up the connection
			forwarded = append(forwarded, elapsed)
		}
	}

	direct := make([]time.Duration, 0, calls)
	var ctx fasthttp.RequestCtx
	for range calls {
		start := time.Now()
		ctx.Init(req, nil, nil)
		echo(&ctx)
		direct = append(direct, time.Since(start))
	}

	fp50, fp99 := percentiles(forwarded)
	dp50, dp99 := percentiles(direct)
	t.Logf("c=1, %d calls, 256-byte body (race detector %v): forwarded p50 %v p99 %v; direct p50 %v p99 %v; added at p50 %v",
		calls, raceEnabled, fp50, fp99, dp50, dp99, fp50-dp50)
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*50/100], s[len(s)*99/100]
}
