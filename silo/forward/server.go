package forward

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	silopb "github.com/granaryhq/granary/proto/silo"
)

// Server answers forwarded calls by replaying them through the gateway's
// request handler. Register it on a gRPC server made with ServerOptions.
type Server struct {
	silopb.UnimplementedSiloServer

	handler fasthttp.RequestHandler
	log     *slog.Logger
}

// NewServer returns a Server that replays calls through handler, which,
// as under fasthttp.Server, must not use its ctx after it returns. A nil
// logger means slog.Default().
func NewServer(handler fasthttp.RequestHandler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	return &Server{handler: handler, log: logger}
}

// Forward rebuilds the HTTP request, marks it with HeaderForwarded, runs it
// through the handler in the calling goroutine and returns the response, or
// only NotOwnerVersion when the handler says this silo does not own the
// actor. A call whose context ends returns its context's status.
func (s *Server) Forward(ctx context.Context, in *silopb.ForwardRequest) (*silopb.ForwardReply, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if in.GetMethod() == "" || in.GetUri() == "" {
		return nil, status.Error(codes.InvalidArgument, "forward: the request has no method or no URI")
	}
	if len(in.GetBody()) > MaxBodySize {
		return nil, status.Errorf(codes.ResourceExhausted, "forward: request body of %d bytes exceeds %d", len(in.GetBody()), MaxBodySize)
	}

	var remote net.Addr
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr
	}
	rctx := acquireCtx(remote)
	defer releaseCtx(rctx)
	buildRequest(&rctx.Request, in)

	s.handler(rctx)

	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	return s.reply(rctx, in)
}

// ctxPool recycles request contexts as fasthttp.Server does, which is why
// the handler must not keep its ctx after it returns.
var ctxPool sync.Pool

func acquireCtx(remote net.Addr) *fasthttp.RequestCtx {
	rctx, _ := ctxPool.Get().(*fasthttp.RequestCtx)
	if rctx == nil {
		rctx = new(fasthttp.RequestCtx)
	}
	var empty fasthttp.Request
	rctx.Init(&empty, remote, nil)
	rctx.Response.Reset()
	// Only what the handler sets is forwarded; the gateway that answers
	// the client adds no default Content-Type either.
	rctx.Response.Header.SetNoDefaultContentType(true)
	return rctx
}

// releaseCtx drops the context's references to the call (its request
// body, user values and the response body the reply took) and pools it.
func releaseCtx(rctx *fasthttp.RequestCtx) {
	rctx.Request.Reset()
	rctx.Response.Reset()
	ctxPool.Put(rctx)
}

// buildRequest fills req from in: method, URI as received, the forwarded
// fields in order, the body without a copy, and HeaderForwarded.
func buildRequest(req *fasthttp.Request, in *silopb.ForwardRequest) {
	req.Header.SetMethod(in.GetMethod())
	req.Header.SetRequestURI(in.GetUri())
	var filter fieldFilter
	for _, h := range in.GetHeaders() {
		if equalFold(h.GetName(), fasthttp.HeaderConnection) {
			filter.addConnection(h.GetValue())
		}
	}
	for _, h := range in.GetHeaders() {
		if !drops(&filter, h.GetName()) {
			req.Header.AddBytesV(h.GetName(), h.GetValue())
		}
	}
	req.Header.Set(HeaderForwarded, strconv.FormatUint(in.GetTableVersion(), 10))
	if body := in.GetBody(); len(body) > 0 {
		req.SetBodyRaw(body)
		req.Header.SetContentLength(len(body))
	}
}

// reply turns the handler's response into a ForwardReply.
func (s *Server) reply(rctx *fasthttp.RequestCtx, in *silopb.ForwardRequest) (*silopb.ForwardReply, error) {
	resp := &rctx.Response
	if v := resp.Header.Peek(HeaderNotOwner); len(v) > 0 {
		version, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil || version == 0 {
			s.log.Error("forward: the handler's not-owner header is not a table version",
				"value", string(v), "actor_type", in.GetActorType(), "actor_id", in.GetActorId())
			return nil, status.Errorf(codes.Internal, "forward: malformed %s header %q", HeaderNotOwner, v)
		}
		return &silopb.ForwardReply{NotOwnerVersion: version}, nil
	}

	// The reply takes the body; the context keeps no reference to it.
	body := resp.Body()
	resp.SwapBody(nil)
	if len(body) > MaxBodySize {
		return nil, status.Errorf(codes.ResourceExhausted, "forward: response body of %d bytes exceeds %d", len(body), MaxBodySize)
	}
	filter := fieldFilter{response: true}
	for _, v := range resp.Header.PeekAll(fasthttp.HeaderConnection) {
		filter.addConnection(v)
	}
	var size headerSize
	for name, value := range resp.Header.All() {
		if !drops(&filter, name) {
			size.count(name, value)
		}
	}
	list := newHeaderList(size)
	for name, value := range resp.Header.All() {
		if !drops(&filter, name) {
			list.add(name, value)
		}
	}
	return &silopb.ForwardReply{
		Status:  int32(resp.StatusCode()),
		Headers: list.list(),
		Body:    body,
	}, nil
}
