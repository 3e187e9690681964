package grpcapi

import (
	"context"
	"testing"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/metadata"
)

// echoGateway answers every request with its body, as an actor method that
// echoes would, and checks the path it was sent.
type echoGateway struct{ tb testing.TB }

func (g echoGateway) Dispatch(req *fasthttp.Request, resp *fasthttp.Response) {
	if string(req.URI().PathOriginal()) != "/v1.0/actors/Echo/a%2F1/method/echo" {
		g.tb.Fatalf("path %q", req.URI().PathOriginal())
	}
	resp.Header.SetContentType("application/json")
	resp.SetBodyRaw(req.Body())
}

// BenchmarkInvokeActor is InvokeActor's own cost: the gRPC message turned
// into the HTTP request, run through a gateway that echoes, and back.
func BenchmarkInvokeActor(b *testing.B) {
	s := New(Config{Gateway: echoGateway{b}})
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "user-agent", "grpc-go/1.85.0", "content-type", "application/grpc"))
	in := &runtimev1.InvokeActorRequest{ActorType: "Echo", ActorId: "a/1", Method: "echo", Data: []byte(`{"n":1}`)}
	b.ReportAllocs()
	for b.Loop() {
		out, err := s.InvokeActor(ctx, in)
		if err != nil || string(out.GetData()) != `{"n":1}` {
			b.Fatalf("%v %q", err, out.GetData())
		}
	}
}
