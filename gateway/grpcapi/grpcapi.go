// Package grpcapi serves Dapr's gRPC API, the service
// dapr.proto.runtime.v1.Dapr of Dapr's published Go package, so that Dapr
// SDK clients speaking gRPC work against Granary. Each method runs as the
// equivalent request of the HTTP API, through the gateway in memory: the
// two APIs share one implementation, and so their routing, limits and
// errors. An HTTP error becomes a gRPC status whose google.rpc.ErrorInfo
// reason is the HTTP API's error code. Methods Granary does not serve answer
// Unimplemented, naming the method.
package grpcapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/valyala/fasthttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/internal/rawsock"
)

// Dispatcher runs an HTTP API request in memory (the gateway's Dispatch).
type Dispatcher interface {
	Dispatch(req *fasthttp.Request, resp *fasthttp.Response)
}

// Config configures a Server.
type Config struct {
	Gateway Dispatcher
	// APIToken, when set, is required in the dapr-api-token metadata of
	// every call.
	APIToken string
	// MaxMessageSize bounds a message either way; it should match the HTTP
	// body limit (default 4 MiB), plus room for the envelope.
	MaxMessageSize int
	// Shutdown is called, once, when a client calls the Shutdown method.
	Shutdown func()
	// Streams serves SubscribeTopicEventsAlpha1; nil answers Unimplemented.
	Streams Streams
	Logger  *slog.Logger
	// ObserveCall, when set, is told of every unary call answered: its
	// full method name, status code and duration, for metrics.
	ObserveCall func(method string, code codes.Code, d time.Duration)
}

// Server implements runtimev1.DaprServer.
type Server struct {
	runtimev1.UnimplementedDaprServer
	cfg Config
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 4 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg}
}

// streamWorkers is the size of the server's call goroutine pool; calls
// beyond it get goroutines of their own.
const streamWorkers = 64

// keepaliveTimeout is how long the server waits for the answer to a
// keepalive ping, and how long data it sent may stay unacknowledged before
// the kernel drops the connection (TCP_USER_TIMEOUT, set by Listener).
const keepaliveTimeout = 10 * time.Second

// Listener returns ln for the gRPC server that serves the API: its
// connections read and write with raw system calls (internal/rawsock),
// which took about a tenth off the CPU of a call at full load, and carry
// the TCP user timeout that grpc-go sets from the keepalive timeout on the
// connections it accepts itself. Under TLS, the gRPC server's own
// handshake runs above them.
func Listener(ln net.Listener) net.Listener { return rawsock.Listener(ln, keepaliveTimeout) }

// ServerOptions are the options of the gRPC server that serves s: message
// sizes, keepalive, and the API token check.
func (s *Server) ServerOptions() []grpc.ServerOption {
	// Room for the envelope around a body of the HTTP limit.
	size := s.cfg.MaxMessageSize + 64<<10
	return []grpc.ServerOption{
		// Calls run on a pool of goroutines whose stacks have grown to
		// what a call needs, instead of each on a fresh goroutine that
		// grows its stack again through the gateway and the runtime.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.MaxRecvMsgSize(size),
		grpc.MaxSendMsgSize(size),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			if s.cfg.ObserveCall == nil {
				if err := s.authorize(ctx); err != nil {
					return nil, err
				}
				return next(ctx, req)
			}
			began := time.Now()
			var out any
			err := s.authorize(ctx)
			if err == nil {
				out, err = next(ctx, req)
			}
			s.cfg.ObserveCall(info.FullMethod, status.Code(err), time.Since(began))
			return out, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
			if err := s.authorize(ss.Context()); err != nil {
				return err
			}
			return next(srv, ss)
		}),
	}
}

// Register registers s on g.
func (s *Server) Register(g *grpc.Server) { runtimev1.RegisterDaprServer(g, s) }

func (s *Server) authorize(ctx context.Context) error {
	if s.cfg.APIToken == "" {
		return nil
	}
	got := metadata.ValueFromIncomingContext(ctx, "dapr-api-token")
	if len(got) == 0 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(s.cfg.APIToken)) != 1 {
		return errorOf(answer{status: http.StatusUnauthorized,
			body: mustJSON(map[string]string{"errorCode": "ERR_UNAUTHORIZED", "message": "missing or wrong dapr-api-token metadata"})})
	}
	return nil
}

// call is one HTTP API request.
type call struct {
	method string
	path   []string // segments, escaped here
	query  url.Values
	header [][2]string
	body   []byte
}

// answer is the HTTP API's answer to a call, with the only response
// fields a method reads.
type answer struct {
	status      int
	contentType string
	etag        string
	ttlExpire   string // Metadata.ttlExpireTime
	body        []byte
}

// do runs c through the gateway. A status outside 2xx is an error.
func (s *Server) do(ctx context.Context, c call) (answer, error) {
	if err := ctx.Err(); err != nil {
		return answer{}, status.FromContextError(err).Err()
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	var buf [256]byte
	uri := buf[:0]
	for _, seg := range c.path {
		uri = append(uri, '/')
		uri = appendPathSegment(uri, seg)
	}
	if len(c.query) > 0 {
		uri = append(uri, '?')
		uri = append(uri, c.query.Encode()...)
	}
	req.Header.SetMethod(c.method)
	req.SetRequestURIBytes(uri)
	for _, h := range c.header {
		req.Header.Set(h[0], h[1])
	}
	if tp := metadata.ValueFromIncomingContext(ctx, "traceparent"); len(tp) > 0 {
		req.Header.Set("traceparent", tp[0])
	}
	if c.body != nil {
		req.SetBodyRaw(c.body)
	}
	s.cfg.Gateway.Dispatch(req, resp)
	// Only the fields a method reads; copying all of them costs more than
	// the rest of a small call.
	a := answer{status: resp.StatusCode(), body: bytes.Clone(resp.Body()),
		contentType: string(resp.Header.Peek("Content-Type")),
		etag:        string(resp.Header.Peek("ETag")),
		ttlExpire:   string(resp.Header.Peek("Metadata.ttlExpireTime"))}
	if a.status < 200 || a.status > 299 {
		return a, errorOf(a)
	}
	return a, nil
}

// appendPathSegment appends seg escaped as url.PathEscape escapes it,
// without allocating when it needs no escape.
func appendPathSegment(dst []byte, seg string) []byte {
	for i := 0; i < len(seg); i++ {
		if !pathUnreserved(seg[i]) {
			return append(dst, url.PathEscape(seg)...)
		}
	}
	return append(dst, seg...)
}

// pathUnreserved reports whether url.PathEscape leaves c as it is.
func pathUnreserved(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '~', '$', '&', '+', ':', '=', '@':
		return true
	}
	return false
}

// errorOf turns an HTTP error answer into a gRPC status with the error code
// as its ErrorInfo reason.
func errorOf(a answer) error {
	var e struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	if json.Unmarshal(a.body, &e) != nil || e.ErrorCode == "" {
		e.Message = fmt.Sprintf("answered %d: %s", a.status, truncate(a.body, 1024))
	}
	st := status.New(CodeOf(a.status), e.Message)
	if e.ErrorCode != "" {
		if with, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.ErrorCode, Domain: "dapr.io",
			Metadata: map[string]string{"httpStatusCode": fmt.Sprint(a.status)}}); err == nil {
			st = with
		}
	}
	return st.Err()
}

// CodeOf is the gRPC code of an HTTP status (docs/api.md has the table).
func CodeOf(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusBadRequest, http.StatusRequestURITooLong, http.StatusRequestHeaderFieldsTooLarge:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusConflict:
		return codes.Aborted
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusExpectationFailed, http.StatusPreconditionFailed:
		return codes.FailedPrecondition
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	if httpStatus >= 500 {
		return codes.Internal
	}
	return codes.Unknown
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// jsonValue is b as a JSON value: itself when it is JSON, else a JSON
// string; nil stays nil.
func jsonValue(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	enc, _ := json.Marshal(string(b))
	return enc
}

func metadataQuery(md map[string]string) url.Values {
	if len(md) == 0 {
		return nil
	}
	q := url.Values{}
	for k, v := range md {
		q.Set("metadata."+k, v)
	}
	return q
}

func empty(err error) (*emptypb.Empty, error) {
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// toStatus is err as a gRPC status: a block's error by its HTTP status.
func toStatus(err error) error {
	if be, ok := errors.AsType[*blocks.Error](err); ok {
		return errorOf(answer{status: be.Status, body: mustJSON(map[string]string{"errorCode": be.Code, "message": be.Message})})
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
