// Package invoke is the service invocation building block: Dapr's
// /v1.0/invoke/{appId}/method/{method} (and the dapr-app-id header form)
// sends a request to a live instance of an app, wherever in the cluster it
// runs, with its verb, path, query, headers and body unchanged, and returns
// the app's response as it came. Instances are taken in turn (round-robin);
// a call that could not be sent moves on to the next instance, and a call
// that was sent is never sent again.
package invoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/internal/grpcapp"
	silopb "github.com/granaryhq/granary/proto/silo"
	"github.com/granaryhq/granary/silo/forward"
)

const codeInvoke = "ERR_DIRECT_INVOKE"

// DefaultCallTimeout bounds one call to an app.
const DefaultCallTimeout = time.Minute

// LocalApps are the apps registered with this silo.
type LocalApps interface {
	// AppURL returns the base URL of app appID and whether it is healthy;
	// ok is false when no such app is registered here.
	AppURL(appID string) (base string, healthy, ok bool)
}

// Peers are the other silos of a cluster.
type Peers interface {
	// AppSilos lists the internal addresses of the other silos that have
	// an instance of appID, by placement's latest table.
	AppSilos(appID string) []string
	// ForwardApp sends req to the silo at addr; an error wrapping
	// forward.ErrUnreachable means it never left.
	ForwardApp(ctx context.Context, addr string, req *fasthttp.Request) (*silopb.ForwardReply, error)
}

// Config configures a Service.
type Config struct {
	Local LocalApps
	// Peers, nil on a single silo.
	Peers Peers
	// CallTimeout bounds one call (default DefaultCallTimeout).
	CallTimeout time.Duration
	// MaxResponseSize bounds an app's response body (default 16 MiB).
	MaxResponseSize int
	// APIToken, when the cluster's gateways require one, goes with every
	// call forwarded to another silo (the client's own was dropped, and a
	// delivery never had one).
	APIToken string
	Logger   *slog.Logger
}

// Service routes calls to apps. It implements blocks.Apps.
type Service struct {
	cfg  Config
	next atomic.Uint64 // round-robin position

	mu      sync.Mutex
	clients map[string]*appClient // by base URL
	streams map[string][]*stream  // streaming subscribers on this silo, by subscriber ID
}

// StreamHandler delivers one event (a CloudEvent's JSON) for route path to
// a streaming subscriber and returns its status: SUCCESS, RETRY or DROP.
type StreamHandler func(ctx context.Context, path string, event []byte) (status string, err error)

type stream struct{ deliver StreamHandler }

// AddStream makes h an instance of subscriberID on this silo, for
// deliveries only, until remove is called.
func (s *Service) AddStream(subscriberID string, h StreamHandler) (remove func()) {
	st := &stream{deliver: h}
	s.mu.Lock()
	s.streams[subscriberID] = append(s.streams[subscriberID], st)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		list := slices.DeleteFunc(slices.Clone(s.streams[subscriberID]), func(x *stream) bool { return x == st })
		if len(list) == 0 {
			delete(s.streams, subscriberID)
		} else {
			s.streams[subscriberID] = list
		}
	}
}

// StreamIDs lists the subscriber IDs streaming on this silo, sorted.
func (s *Service) StreamIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.streams))
	for id := range s.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

var _ blocks.Apps = (*Service)(nil)

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.MaxResponseSize <= 0 {
		cfg.MaxResponseSize = forward.MaxBodySize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg, clients: map[string]*appClient{}, streams: map[string][]*stream{}}
}

// HeaderAppID names the target app of a call made to any path.
const HeaderAppID = "dapr-app-id"

// headers a call does not take to the app: the caller's credentials for
// this API, and the silo-internal marks.
var dropped = []string{"dapr-api-token", HeaderAppID, forward.HeaderForwarded}

// Serve answers a call for appID; path is the path the app is to see,
// still percent-encoded as it came, starting with "/". A call forwarded
// from another silo is served by an instance here or not at all.
func (s *Service) Serve(ctx *fasthttp.RequestCtx, appID string, path []byte, forwarded bool) error {
	// The client's request itself goes on, less the fields meant for
	// Granary, with the app's path: no copy of its headers or body.
	req := &ctx.Request
	uri := make([]byte, 0, len(path)+1+len(ctx.URI().QueryString()))
	uri = append(uri, path...) // path is part of the request's URI, which changes below
	if q := ctx.URI().QueryString(); len(q) > 0 {
		uri = append(append(uri, '?'), q...)
	}
	for _, h := range dropped {
		req.Header.Del(h)
	}
	req.SetRequestURIBytes(uri)
	// Not the request's context: fasthttp's ends with the server, and one
	// derived from it costs a goroutine per call.
	if forwarded {
		return s.callLocal(context.Background(), appID, req, &ctx.Response)
	}
	return s.CallApp(context.Background(), appID, req, &ctx.Response)
}

// instance is one place an app runs: here (addr empty) or at another silo;
// or a streaming subscriber here.
type instance struct {
	addr   string
	base   string
	stream *stream
}

func (s *Service) instances(appID string) []instance {
	var list []instance
	// Health probes are not consulted: an app need not serve /healthz to
	// be called, and one that is down refuses the connection, which moves
	// the call to the next instance.
	if base, _, ok := s.cfg.Local.AppURL(appID); ok {
		list = append(list, instance{base: base})
	}
	s.mu.Lock()
	for _, st := range s.streams[appID] {
		list = append(list, instance{stream: st})
	}
	s.mu.Unlock()
	if s.cfg.Peers != nil {
		for _, addr := range s.cfg.Peers.AppSilos(appID) {
			list = append(list, instance{addr: addr})
		}
	}
	return list
}

// CallApp implements blocks.Apps.
func (s *Service) CallApp(ctx context.Context, appID string, req *fasthttp.Request, resp *fasthttp.Response) error {
	list := s.instances(appID)
	if len(list) == 0 {
		return blocks.Errorf(http.StatusInternalServerError, codeInvoke,
			"failed to invoke, id: %s: no live instance of app %q is known", appID, appID)
	}
	start := int(s.next.Add(1) % uint64(len(list)))
	var errs []string
	for i := range list {
		in := list[(start+i)%len(list)]
		var err error
		var sent bool
		switch {
		case in.stream != nil:
			sent, err = s.sendStream(ctx, in.stream, req, resp)
		case in.addr == "":
			sent, err = s.send(ctx, in.base, req, resp)
		default:
			sent, err = s.forward(ctx, in.addr, appID, req, resp)
		}
		if err == nil {
			return nil
		}
		if sent {
			return blocks.Errorf(http.StatusInternalServerError, codeInvoke, "failed to invoke, id: %s: %v", appID, err)
		}
		errs = append(errs, err.Error())
		s.cfg.Logger.Debug("invoke: instance unreachable; trying the next", "app", appID, "err", err)
	}
	return blocks.Errorf(http.StatusInternalServerError, codeInvoke,
		"failed to invoke, id: %s: no instance could be reached: %s", appID, strings.Join(errs, "; "))
}

// callLocal calls the instance of appID on this silo only.
func (s *Service) callLocal(ctx context.Context, appID string, req *fasthttp.Request, resp *fasthttp.Response) error {
	base, _, ok := s.cfg.Local.AppURL(appID)
	if !ok {
		return blocks.Errorf(http.StatusInternalServerError, codeInvoke,
			"failed to invoke, id: %s: app %q is not registered with this silo", appID, appID)
	}
	if _, err := s.send(ctx, base, req, resp); err != nil {
		return blocks.Errorf(http.StatusInternalServerError, codeInvoke, "failed to invoke, id: %s: %v", appID, err)
	}
	return nil
}

// send calls the app at base; sent reports whether the request may have
// reached it.
func (s *Service) send(ctx context.Context, base string, req *fasthttp.Request, resp *fasthttp.Response) (sent bool, err error) {
	if grpcapp.IsURL(base) {
		return s.sendGRPC(ctx, base, req, resp)
	}
	app, err := s.client(base)
	if err != nil {
		return false, err
	}
	hc, out := app.hc, req
	if app.path != "" {
		// The request may go on to another instance if this one cannot
		// be reached: it keeps its own URI.
		out = fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(out)
		req.CopyTo(out)
		out.SetRequestURI(app.path + string(req.Header.RequestURI()))
	}
	out.Header.SetHost(hc.Addr)
	out.URI().SetHost(hc.Addr)
	timeout := s.cfg.CallTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	err = hc.DoTimeout(out, resp, timeout)
	switch {
	case err == nil:
		return true, nil
	case notSent(err):
		return false, err
	case errors.Is(err, fasthttp.ErrTimeout):
		return true, fmt.Errorf("the app did not answer within %v", timeout)
	}
	return true, err
}

// sendGRPC calls a gRPC app: OnTopicEvent for a delivery, whose answer
// becomes 200 {"status": …}; OnInvoke otherwise, whose answer becomes a 200
// with its body, and whose error status the HTTP status of its code.
func (s *Service) sendGRPC(ctx context.Context, base string, req *fasthttp.Request, resp *fasthttp.Response) (sent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	path := string(req.URI().Path())
	resp.Reset()
	if len(req.Header.Peek(blocks.HeaderTopicEvent)) > 0 {
		st, err := grpcapp.Deliver(ctx, base, path, req.Body())
		if err != nil {
			return sentGRPC(err), err
		}
		resp.SetStatusCode(http.StatusOK)
		resp.Header.SetContentType("application/json")
		resp.SetBodyString(`{"status":"` + st + `"}`)
		return true, nil
	}
	out, err := grpcapp.Invoke(ctx, base, grpcapp.Request{Verb: string(req.Header.Method()), Method: strings.TrimPrefix(path, "/"),
		Query: string(req.URI().QueryString()), ContentType: string(req.Header.ContentType()), Body: req.Body()})
	if st, ok := status.FromError(err); ok && err != nil && st.Code() != codes.Unavailable && st.Code() != codes.Canceled {
		// The app answered with an error status: that is its answer.
		resp.SetStatusCode(httpStatusOf(st.Code()))
		resp.Header.SetContentType("application/json")
		body, _ := json.Marshal(map[string]string{"errorCode": "ERR_DIRECT_INVOKE", "message": st.Message()})
		resp.SetBody(body)
		return true, nil
	}
	if err != nil {
		return sentGRPC(err), err
	}
	resp.SetStatusCode(http.StatusOK)
	if out.ContentType != "" {
		resp.Header.SetContentType(out.ContentType)
	}
	resp.SetBody(out.Body)
	return true, nil
}

// sendStream delivers a message to a streaming subscriber.
func (s *Service) sendStream(ctx context.Context, st *stream, req *fasthttp.Request, resp *fasthttp.Response) (sent bool, err error) {
	if len(req.Header.Peek(blocks.HeaderTopicEvent)) == 0 {
		return false, errors.New("a streaming subscriber takes deliveries only")
	}
	status, err := st.deliver(ctx, string(req.URI().Path()), req.Body())
	if err != nil {
		return true, err
	}
	resp.Reset()
	resp.SetStatusCode(http.StatusOK)
	resp.Header.SetContentType("application/json")
	resp.SetBodyString(`{"status":"` + status + `"}`)
	return true, nil
}

// sentGRPC reports whether a failed gRPC call may have reached the app. A
// gRPC failure does not tell a connection never made from one lost under
// the call, so every one counts as sent: the call is not moved on.
func sentGRPC(error) bool { return true }

// httpStatusOf is the HTTP status of a gRPC app's error code.
func httpStatusOf(c codes.Code) int {
	switch c {
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.FailedPrecondition:
		return http.StatusPreconditionFailed
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// notSent reports whether a client error happened before the request could
// have reached the app.
func notSent(err error) bool {
	if errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, fasthttp.ErrNoFreeConns) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (s *Service) forward(ctx context.Context, addr, appID string, req *fasthttp.Request, resp *fasthttp.Response) (sent bool, err error) {
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	req.CopyTo(out)
	out.Header.SetRequestURI("/v1.0/invoke/" + url.PathEscape(appID) + "/method" + string(req.Header.RequestURI()))
	if s.cfg.APIToken != "" {
		out.Header.Set("dapr-api-token", s.cfg.APIToken)
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	reply, err := s.cfg.Peers.ForwardApp(rctx, addr, out)
	switch {
	case err == nil:
	case errors.Is(err, forward.ErrUnreachable):
		return false, err
	default:
		return true, err
	}
	resp.Reset()
	resp.SetStatusCode(int(reply.GetStatus()))
	for _, h := range reply.GetHeaders() {
		resp.Header.AddBytesV(h.GetName(), h.GetValue())
	}
	resp.SetBodyRaw(reply.GetBody())
	return true, nil
}

// appClient is the pooled client of one app and the path prefix of its base
// URL.
type appClient struct {
	hc   *fasthttp.HostClient
	path string
}

// client returns the client of the app at base.
func (s *Service) client(base string) (*appClient, error) {
	s.mu.Lock()
	c := s.clients[base]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("app URL %q: %w", base, err)
	}
	c = &appClient{path: strings.TrimSuffix(u.EscapedPath(), "/"), hc: &fasthttp.HostClient{
		Addr:     u.Host,
		Name:     "granary",
		MaxConns: 1024,
		// Below the 5 s after which Node.js closes an idle
		// connection: a request written to a connection the app
		// has just closed would fail, and is never sent again.
		MaxIdleConnDuration:           4 * time.Second,
		MaxResponseBodySize:           s.cfg.MaxResponseSize,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		DialDualStack:                 true,
		// A request that was sent may have been acted on: never
		// send it again.
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev := s.clients[base]; prev != nil {
		return prev, nil
	}
	s.clients[base] = c
	return c, nil
}

// Forget drops the clients of apps no longer registered here; known lists
// the base URLs still in use.
func (s *Service) Forget(known []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for base, c := range s.clients {
		if !slices.Contains(known, base) {
			c.hc.CloseIdleConnections()
			delete(s.clients, base)
		}
	}
}
