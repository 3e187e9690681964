package gateway

// The building-block routes (/v1.0/state, /v1.0/publish, /v1.0/invoke and
// the dapr-app-id header), and CallActor, through which the blocks reach
// their system actors wherever those run.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/silo/forward"
)

// Blocks are the building blocks a gateway serves. A block left out answers
// as Dapr does when it is not configured.
type Blocks struct {
	// State serves /v1.0/state/{store}, by store name.
	State map[string]StateStore
	// PubSub serves /v1.0/publish/{pubsub}, by pub/sub name.
	PubSub map[string]PubSub
	// Invoke serves /v1.0/invoke and calls carrying dapr-app-id.
	Invoke Invoker
}

// StateStore serves the routes of one state store; rest is the path after
// the store's name. An error it returns as *blocks.Error is the answer.
type StateStore interface {
	Serve(ctx *fasthttp.RequestCtx, method string, rest []string) error
}

// PubSub serves the publish routes of one pub/sub.
type PubSub interface {
	ServePublish(ctx *fasthttp.RequestCtx, topic string) error
	ServeBulkPublish(ctx *fasthttp.RequestCtx, topic string) error
}

// Invoker serves service invocation; path is what the app is to see, still
// percent-encoded, and forwarded says another silo sent the call here.
type Invoker interface {
	Serve(ctx *fasthttp.RequestCtx, appID string, path []byte, forwarded bool) error
}

// SetBlocks sets the building blocks served; call it before Serve.
func (s *Server) SetBlocks(b Blocks) { s.blocks.Store(&b) }

func (s *Server) currentBlocks() *Blocks {
	if b := s.blocks.Load(); b != nil {
		return b
	}
	return &Blocks{}
}

// blockError is the answer for an error a block returned.
func blockError(err error, fallback string) *apiError {
	if be, ok := errors.AsType[*blocks.Error](err); ok {
		e := newError(be.Status, be.Code, be.Message)
		e.allow = be.Allow
		return e
	}
	return newError(http.StatusInternalServerError, fallback, err.Error())
}

func names[V any](m map[string]V) string {
	list := make([]string, 0, len(m))
	for n := range m {
		list = append(list, n)
	}
	slices.Sort(list)
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

func (s *Server) state(ctx *fasthttp.RequestCtx, method string, rest []string) *apiError {
	stores := s.currentBlocks().State
	if len(stores) == 0 {
		return newError(http.StatusInternalServerError, "ERR_STATE_STORES_NOT_CONFIGURED", "state store is not configured")
	}
	store, ok := stores[rest[0]]
	if !ok {
		return newError(http.StatusBadRequest, "ERR_STATE_STORE_NOT_FOUND",
			fmt.Sprintf("state store %s is not found (configured: %s)", rest[0], names(stores)))
	}
	if err := store.Serve(ctx, method, rest[1:]); err != nil {
		return blockError(err, "ERR_STATE_SAVE")
	}
	return nil
}

// publish serves /v1.0/publish/{pubsub}/{topic} (bulk false) and
// /v1.0-alpha1/publish/bulk/{pubsub}/{topic}; rest starts at {pubsub}.
func (s *Server) publish(ctx *fasthttp.RequestCtx, method string, rest []string, bulk bool) *apiError {
	if e := onlyMethods(method, "POST", "PUT"); e != nil {
		return e
	}
	all := s.currentBlocks().PubSub
	if len(all) == 0 {
		return newError(http.StatusBadRequest, "ERR_PUBSUB_NOT_CONFIGURED", "no pubsub is configured")
	}
	if rest[0] == "" {
		return newError(http.StatusNotFound, "ERR_PUBSUB_EMPTY", "pubsub name is empty")
	}
	ps, ok := all[rest[0]]
	if !ok {
		return newError(http.StatusNotFound, "ERR_PUBSUB_NOT_FOUND",
			fmt.Sprintf("pubsub %s is not found (configured: %s)", rest[0], names(all)))
	}
	topic := joinPath(rest[1:])
	if topic == "" {
		return newError(http.StatusNotFound, "ERR_TOPIC_NAME_EMPTY", fmt.Sprintf("topic is empty in pubsub %s", rest[0]))
	}
	var err error
	if bulk {
		err = ps.ServeBulkPublish(ctx, topic)
	} else {
		err = ps.ServePublish(ctx, topic)
	}
	if err != nil {
		return blockError(err, "ERR_PUBSUB_PUBLISH_MESSAGE")
	}
	return nil
}

var (
	headerAppID   = []byte("dapr-app-id")
	invokePrefix  = []byte("/v1.0/invoke/")
	methodSegment = []byte("/method")
)

// invokeRoute serves /v1.0/invoke/{appId}/method/{path...}; raw is the
// request path as it came.
func (s *Server) invokeRoute(ctx *fasthttp.RequestCtx, raw []byte) *apiError {
	rest := raw[len(invokePrefix):]
	slash := bytes.IndexByte(rest, '/')
	if slash < 0 || !bytes.HasPrefix(rest[slash:], methodSegment) ||
		(len(rest) > slash+len(methodSegment) && rest[slash+len(methodSegment)] != '/') {
		return newError(http.StatusNotFound, codeNotFound, "the invoke route is /v1.0/invoke/{appId}/method/{method}")
	}
	appID, err := url.PathUnescape(string(rest[:slash]))
	if err != nil {
		return badRequest(fmt.Sprintf("app id %q is not valid percent-encoding", rest[:slash]))
	}
	path := rest[slash+len(methodSegment):]
	if len(path) == 0 {
		path = []byte("/")
	}
	return s.invokeApp(ctx, appID, path)
}

func (s *Server) invokeApp(ctx *fasthttp.RequestCtx, appID string, path []byte) *apiError {
	if e := validName("app id", appID); e != nil {
		return e
	}
	inv := s.currentBlocks().Invoke
	if inv == nil {
		return newError(http.StatusInternalServerError, "ERR_DIRECT_INVOKE", "service invocation is not served by this silo")
	}
	public := isPublic(ctx)
	forwarded := !public && len(ctx.Request.Header.Peek(forward.HeaderForwarded)) > 0
	if err := inv.Serve(ctx, appID, path, forwarded); err != nil {
		return blockError(err, "ERR_DIRECT_INVOKE")
	}
	return nil
}

// callCtxPool recycles the request contexts of calls made in memory
// (CallActor, Dispatch).
var callCtxPool sync.Pool

// acquireCallCtx returns a request context with no connection: the gateway
// treats its request as one from inside the cluster, never from the public
// listener.
func acquireCallCtx() *fasthttp.RequestCtx {
	rctx, _ := callCtxPool.Get().(*fasthttp.RequestCtx)
	if rctx == nil {
		rctx = new(fasthttp.RequestCtx)
	}
	var empty fasthttp.Request
	rctx.Init(&empty, nil, nil)
	rctx.Response.Reset()
	return rctx
}

func releaseCallCtx(rctx *fasthttp.RequestCtx) {
	rctx.Request.Reset()
	rctx.Response.Reset()
	callCtxPool.Put(rctx)
}

// Dispatch runs req through the gateway in memory, as the public listener
// would run it after the API token check, and fills resp with the answer.
// The gRPC API serves its methods through it, so that both APIs share one
// implementation. The request counts as the public's: system actor types
// are refused as they are on the listener.
func (s *Server) Dispatch(req *fasthttp.Request, resp *fasthttp.Response) {
	rctx := acquireCallCtx()
	defer releaseCallCtx(rctx)
	if len(req.Body()) > s.cfg.MaxBodySize {
		// The listener refuses such a body before the handler sees it.
		rctx.Request.Header.SetRequestURIBytes(req.Header.RequestURI())
		s.handleParseError(rctx, fasthttp.ErrBodyTooLarge)
		rctx.Response.CopyTo(resp)
		return
	}
	req.CopyTo(&rctx.Request)
	rctx.SetUserValue(publicCallKey, true)
	if len(s.token) > 0 {
		rctx.Request.Header.SetBytesV("dapr-api-token", s.token)
	}
	s.handle(rctx)
	rctx.Response.CopyTo(resp)
}

// publicCallKey marks a request that Dispatch runs for a public API.
const publicCallKey = "granary.public"

// isPublic reports whether a request came from a client: on the public
// listener, or through Dispatch. Only other silos' forwards and the blocks'
// own calls are not.
func isPublic(ctx *fasthttp.RequestCtx) bool {
	if _, ok := ctx.Conn().(*conn); ok {
		return true
	}
	return ctx.UserValue(publicCallKey) != nil
}

// CallActor implements blocks.Actors: it runs a method of id where the actor
// lives, as a call to this gateway would, and returns its body. A call for
// an actor this silo runs goes straight to the runtime.
func (s *Server) CallActor(ctx context.Context, id actor.ID, method string, body []byte) ([]byte, error) {
	if s.cluster == nil || s.cluster.Locate(id).Here {
		if out, done, err := s.callHere(ctx, id, method, body); done {
			return out, err
		}
	}
	return s.callRouted(ctx, id, method, body)
}

var contentTypeJSON = []byte("application/json")

// callHere runs the call on this silo's runtime, as routeActor's local
// branch would; done is false when this silo turned out not to own the
// actor, and the call must be routed.
func (s *Server) callHere(ctx context.Context, id actor.ID, method string, body []byte) (out []byte, done bool, err error) {
	resp, err := s.backend.Invoke(ctx, id, &actor.Request{Method: method, Body: body, ContentType: contentTypeJSON})
	if err != nil {
		if s.cluster != nil && errors.Is(err, actor.ErrNotOwner) {
			return nil, false, nil
		}
		e := runtimeErrorOf(err, codeInvoke)
		return nil, true, &blocks.Error{Status: e.status, Code: e.code, Message: e.message}
	}
	defer resp.Release()
	if resp.Status != http.StatusOK {
		return nil, true, &blocks.Error{Status: resp.Status, Code: codeInvoke,
			Message: fmt.Sprintf("actor %s method %s answered %d: %s", id, method, resp.Status, truncate(resp.Body, 512))}
	}
	return bytes.Clone(resp.Body), true, nil
}

// callRouted runs the call as a request to this gateway would run, routed
// to the actor's owner.
func (s *Server) callRouted(ctx context.Context, id actor.ID, method string, body []byte) ([]byte, error) {
	rctx := acquireCallCtx()
	defer releaseCallCtx(rctx)
	rctx.Request.Header.SetMethod("POST")
	rctx.Request.SetRequestURI("/v1.0/actors/" + url.PathEscape(id.Type) + "/" + url.PathEscape(id.ID) + "/method/" + url.PathEscape(method))
	rctx.Request.Header.SetContentType("application/json")
	if len(s.token) > 0 {
		// A forward to another silo meets its token check.
		rctx.Request.Header.SetBytesV("dapr-api-token", s.token)
	}
	rctx.Request.SetBodyRaw(body)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e := s.routeActor(rctx, id, actorCallOf{op: opInvoke, arg: method}); e != nil {
		return nil, &blocks.Error{Status: e.status, Code: e.code, Message: e.message}
	}
	status := rctx.Response.StatusCode()
	out := bytes.Clone(rctx.Response.Body())
	if status != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(out, &eb) == nil && eb.ErrorCode != "" {
			return nil, &blocks.Error{Status: status, Code: eb.ErrorCode, Message: eb.Message}
		}
		return nil, &blocks.Error{Status: status, Code: codeInvoke, Message: fmt.Sprintf("actor %s method %s answered %d: %s", id, method, status, truncate(out, 512))}
	}
	return out, nil
}

var _ blocks.Actors = (*Server)(nil)
