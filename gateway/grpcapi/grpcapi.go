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
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/valyala/fasthttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/blocks/state"
	"github.com/granaryhq/granary/internal/grpcapp"
	"github.com/granaryhq/granary/silo"
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
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			if err := s.authorize(ctx); err != nil {
				return nil, err
			}
			return next(ctx, req)
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
	md, _ := metadata.FromIncomingContext(ctx)
	got := md.Get("dapr-api-token")
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

// answer is the HTTP API's answer to a call.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// do runs c through the gateway. A status outside 2xx is an error.
func (s *Server) do(ctx context.Context, c call) (answer, error) {
	if err := ctx.Err(); err != nil {
		return answer{}, status.FromContextError(err).Err()
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	var uri strings.Builder
	for _, seg := range c.path {
		uri.WriteByte('/')
		uri.WriteString(url.PathEscape(seg))
	}
	if len(c.query) > 0 {
		uri.WriteByte('?')
		uri.WriteString(c.query.Encode())
	}
	req.Header.SetMethod(c.method)
	req.SetRequestURI(uri.String())
	for _, h := range c.header {
		req.Header.Set(h[0], h[1])
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if tp := md.Get("traceparent"); len(tp) > 0 {
			req.Header.Set("traceparent", tp[0])
		}
	}
	if c.body != nil {
		req.SetBodyRaw(c.body)
	}
	s.cfg.Gateway.Dispatch(req, resp)
	a := answer{status: resp.StatusCode(), header: http.Header{}, body: bytes.Clone(resp.Body())}
	// Only the fields a method reads; copying all of them costs more than
	// the rest of a small call.
	for _, name := range answerFields {
		if v := resp.Header.Peek(name); len(v) > 0 {
			a.header.Set(name, string(v))
		}
	}
	if a.status < 200 || a.status > 299 {
		return a, errorOf(a)
	}
	return a, nil
}

// answerFields are the response fields the methods read.
var answerFields = []string{"Content-Type", "ETag", "Metadata.ttlExpireTime"}

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

func actorPath(actorType, actorID string, rest ...string) []string {
	return append([]string{"v1.0", "actors", actorType, actorID}, rest...)
}

// InvokeActor implements runtimev1.DaprServer.
func (s *Server) InvokeActor(ctx context.Context, in *runtimev1.InvokeActorRequest) (*runtimev1.InvokeActorResponse, error) {
	c := call{method: "POST", path: actorPath(in.GetActorType(), in.GetActorId(), "method", in.GetMethod()), body: in.GetData()}
	for k, v := range in.GetMetadata() {
		c.header = append(c.header, [2]string{k, v})
	}
	a, err := s.do(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtimev1.InvokeActorResponse{Data: a.body}, nil
}

type scheduleBody struct {
	DueTime  string          `json:"dueTime,omitempty"`
	Period   string          `json:"period,omitempty"`
	TTL      string          `json:"ttl,omitempty"`
	Callback string          `json:"callback,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

func (s *Server) schedule(ctx context.Context, kind, actorType, actorID, name string, b scheduleBody) error {
	body, _ := json.Marshal(b)
	_, err := s.do(ctx, call{method: "POST", path: actorPath(actorType, actorID, kind, name), body: body})
	return err
}

// RegisterActorTimer implements runtimev1.DaprServer.
func (s *Server) RegisterActorTimer(ctx context.Context, in *runtimev1.RegisterActorTimerRequest) (*emptypb.Empty, error) {
	err := s.schedule(ctx, "timers", in.GetActorType(), in.GetActorId(), in.GetName(), scheduleBody{
		DueTime: in.GetDueTime(), Period: in.GetPeriod(), TTL: in.GetTtl(), Callback: in.GetCallback(), Data: jsonValue(in.GetData())})
	return empty(err)
}

// UnregisterActorTimer implements runtimev1.DaprServer.
func (s *Server) UnregisterActorTimer(ctx context.Context, in *runtimev1.UnregisterActorTimerRequest) (*emptypb.Empty, error) {
	_, err := s.do(ctx, call{method: "DELETE", path: actorPath(in.GetActorType(), in.GetActorId(), "timers", in.GetName())})
	return empty(err)
}

// RegisterActorReminder implements runtimev1.DaprServer.
func (s *Server) RegisterActorReminder(ctx context.Context, in *runtimev1.RegisterActorReminderRequest) (*emptypb.Empty, error) {
	err := s.schedule(ctx, "reminders", in.GetActorType(), in.GetActorId(), in.GetName(), scheduleBody{
		DueTime: in.GetDueTime(), Period: in.GetPeriod(), TTL: in.GetTtl(), Data: jsonValue(in.GetData())})
	return empty(err)
}

// UnregisterActorReminder implements runtimev1.DaprServer.
func (s *Server) UnregisterActorReminder(ctx context.Context, in *runtimev1.UnregisterActorReminderRequest) (*emptypb.Empty, error) {
	_, err := s.do(ctx, call{method: "DELETE", path: actorPath(in.GetActorType(), in.GetActorId(), "reminders", in.GetName())})
	return empty(err)
}

// GetActorState implements runtimev1.DaprServer.
func (s *Server) GetActorState(ctx context.Context, in *runtimev1.GetActorStateRequest) (*runtimev1.GetActorStateResponse, error) {
	a, err := s.do(ctx, call{method: "GET", path: actorPath(in.GetActorType(), in.GetActorId(), "state", in.GetKey())})
	if err != nil {
		return nil, err
	}
	return &runtimev1.GetActorStateResponse{Data: a.body}, nil
}

type actorOperation struct {
	Operation string `json:"operation"`
	Request   struct {
		Key      string            `json:"key"`
		Value    json.RawMessage   `json:"value,omitempty"`
		Metadata map[string]string `json:"metadata,omitempty"`
	} `json:"request"`
}

// ExecuteActorStateTransaction implements runtimev1.DaprServer.
func (s *Server) ExecuteActorStateTransaction(ctx context.Context, in *runtimev1.ExecuteActorStateTransactionRequest) (*emptypb.Empty, error) {
	ops := make([]actorOperation, 0, len(in.GetOperations()))
	for _, o := range in.GetOperations() {
		var op actorOperation
		op.Operation = strings.ToLower(o.GetOperationType())
		op.Request.Key, op.Request.Metadata = o.GetKey(), o.GetMetadata()
		if v := o.GetValue(); v != nil {
			op.Request.Value = jsonValue(v.GetValue())
		}
		ops = append(ops, op)
	}
	body, _ := json.Marshal(ops)
	_, err := s.do(ctx, call{method: "POST", path: actorPath(in.GetActorType(), in.GetActorId(), "state"), body: body})
	return empty(err)
}

func empty(err error) (*emptypb.Empty, error) {
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// stateItem is an item of a save or a transaction's request, its value as
// base64 of its bytes (state.HeaderValueEncoding).
type stateItem struct {
	Key      string            `json:"key"`
	Value    []byte            `json:"value,omitempty"`
	ETag     *string           `json:"etag,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Options  *stateOptions     `json:"options,omitempty"`
}

type stateOptions struct {
	Concurrency string `json:"concurrency,omitempty"`
	Consistency string `json:"consistency,omitempty"`
}

var base64Header = [2]string{state.HeaderValueEncoding, "base64"}

func concurrencyOf(c commonv1.StateOptions_StateConcurrency) string {
	switch c {
	case commonv1.StateOptions_CONCURRENCY_FIRST_WRITE:
		return "first-write"
	case commonv1.StateOptions_CONCURRENCY_LAST_WRITE:
		return "last-write"
	}
	return ""
}

func consistencyOf(c commonv1.StateOptions_StateConsistency) string {
	switch c {
	case commonv1.StateOptions_CONSISTENCY_EVENTUAL:
		return "eventual"
	case commonv1.StateOptions_CONSISTENCY_STRONG:
		return "strong"
	}
	return ""
}

func itemOf(it *commonv1.StateItem) stateItem {
	out := stateItem{Key: it.GetKey(), Value: it.GetValue(), Metadata: it.GetMetadata()}
	if out.Value == nil {
		out.Value = []byte{}
	}
	if e := it.GetEtag(); e != nil {
		v := e.GetValue()
		out.ETag = &v
	}
	if o := it.GetOptions(); o != nil {
		out.Options = &stateOptions{Concurrency: concurrencyOf(o.GetConcurrency()), Consistency: consistencyOf(o.GetConsistency())}
	}
	return out
}

func statePath(store string, rest ...string) []string {
	return append([]string{"v1.0", "state", store}, rest...)
}

// SaveState implements runtimev1.DaprServer.
func (s *Server) SaveState(ctx context.Context, in *runtimev1.SaveStateRequest) (*emptypb.Empty, error) {
	items := make([]stateItem, 0, len(in.GetStates()))
	for _, it := range in.GetStates() {
		items = append(items, itemOf(it))
	}
	body, _ := json.Marshal(items)
	_, err := s.do(ctx, call{method: "POST", path: statePath(in.GetStoreName()), body: body, header: [][2]string{base64Header}})
	return empty(err)
}

// GetState implements runtimev1.DaprServer.
func (s *Server) GetState(ctx context.Context, in *runtimev1.GetStateRequest) (*runtimev1.GetStateResponse, error) {
	q := metadataQuery(in.GetMetadata())
	if c := consistencyOf(in.GetConsistency()); c != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("consistency", c)
	}
	a, err := s.do(ctx, call{method: "GET", path: statePath(in.GetStoreName(), in.GetKey()), query: q})
	if err != nil {
		return nil, err
	}
	out := &runtimev1.GetStateResponse{Data: a.body, Etag: a.header.Get("ETag")}
	if exp := a.header.Get("Metadata.ttlExpireTime"); exp != "" {
		out.Metadata = map[string]string{"ttlExpireTime": exp}
	}
	return out, nil
}

// GetBulkState implements runtimev1.DaprServer.
func (s *Server) GetBulkState(ctx context.Context, in *runtimev1.GetBulkStateRequest) (*runtimev1.GetBulkStateResponse, error) {
	body, _ := json.Marshal(map[string]any{"keys": in.GetKeys(), "parallelism": in.GetParallelism()})
	a, err := s.do(ctx, call{method: "POST", path: statePath(in.GetStoreName(), "bulk"), body: body,
		query: metadataQuery(in.GetMetadata()), header: [][2]string{base64Header}})
	if err != nil {
		return nil, err
	}
	var items []struct {
		Key      string            `json:"key"`
		Data     []byte            `json:"data"`
		ETag     string            `json:"etag"`
		Error    string            `json:"error"`
		Metadata map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal(a.body, &items); err != nil {
		return nil, status.Errorf(codes.Internal, "bulk get answer: %v", err)
	}
	out := &runtimev1.GetBulkStateResponse{Items: make([]*runtimev1.BulkStateItem, 0, len(items))}
	for _, it := range items {
		out.Items = append(out.Items, &runtimev1.BulkStateItem{Key: it.Key, Data: it.Data, Etag: it.ETag, Error: it.Error, Metadata: it.Metadata})
	}
	return out, nil
}

func (s *Server) deleteState(ctx context.Context, store, key string, etag *commonv1.Etag, opts *commonv1.StateOptions, md map[string]string) error {
	c := call{method: "DELETE", path: statePath(store, key), query: metadataQuery(md)}
	if etag != nil {
		c.header = append(c.header, [2]string{"If-Match", etag.GetValue()})
	}
	if opts != nil {
		if c.query == nil {
			c.query = url.Values{}
		}
		if v := concurrencyOf(opts.GetConcurrency()); v != "" {
			c.query.Set("concurrency", v)
		}
		if v := consistencyOf(opts.GetConsistency()); v != "" {
			c.query.Set("consistency", v)
		}
	}
	_, err := s.do(ctx, c)
	return err
}

// DeleteState implements runtimev1.DaprServer.
func (s *Server) DeleteState(ctx context.Context, in *runtimev1.DeleteStateRequest) (*emptypb.Empty, error) {
	return empty(s.deleteState(ctx, in.GetStoreName(), in.GetKey(), in.GetEtag(), in.GetOptions(), in.GetMetadata()))
}

// DeleteBulkState implements runtimev1.DaprServer: the keys are deleted
// one after another (not atomically, as in Dapr), stopping at the first
// failure.
func (s *Server) DeleteBulkState(ctx context.Context, in *runtimev1.DeleteBulkStateRequest) (*emptypb.Empty, error) {
	for _, it := range in.GetStates() {
		if err := s.deleteState(ctx, in.GetStoreName(), it.GetKey(), it.GetEtag(), it.GetOptions(), it.GetMetadata()); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

// ExecuteStateTransaction implements runtimev1.DaprServer.
func (s *Server) ExecuteStateTransaction(ctx context.Context, in *runtimev1.ExecuteStateTransactionRequest) (*emptypb.Empty, error) {
	type operation struct {
		Operation string    `json:"operation"`
		Request   stateItem `json:"request"`
	}
	ops := make([]operation, 0, len(in.GetOperations()))
	for _, o := range in.GetOperations() {
		req := o.GetRequest()
		if req == nil {
			return nil, status.Error(codes.InvalidArgument, "a transaction operation has no request")
		}
		ops = append(ops, operation{Operation: o.GetOperationType(), Request: itemOf(req)})
	}
	body, _ := json.Marshal(map[string]any{"operations": ops, "metadata": in.GetMetadata()})
	_, err := s.do(ctx, call{method: "POST", path: statePath(in.GetStoreName(), "transaction"), body: body, header: [][2]string{base64Header}})
	return empty(err)
}

// PublishEvent implements runtimev1.DaprServer.
func (s *Server) PublishEvent(ctx context.Context, in *runtimev1.PublishEventRequest) (*emptypb.Empty, error) {
	c := call{method: "POST", path: []string{"v1.0", "publish", in.GetPubsubName(), in.GetTopic()}, body: in.GetData(),
		query: metadataQuery(in.GetMetadata())}
	if c.body == nil {
		c.body = []byte{}
	}
	if ct := in.GetDataContentType(); ct != "" {
		c.header = append(c.header, [2]string{"Content-Type", ct})
	}
	_, err := s.do(ctx, c)
	return empty(err)
}

// BulkPublishEventAlpha1 implements runtimev1.DaprServer.
func (s *Server) BulkPublishEventAlpha1(ctx context.Context, in *runtimev1.BulkPublishRequest) (*runtimev1.BulkPublishResponse, error) {
	type entry struct {
		EntryID     string            `json:"entryId"`
		Event       json.RawMessage   `json:"event"`
		ContentType string            `json:"contentType,omitempty"`
		Metadata    map[string]string `json:"metadata,omitempty"`
	}
	entries := make([]entry, 0, len(in.GetEntries()))
	for _, e := range in.GetEntries() {
		ev := jsonValue(e.GetEvent())
		if ev == nil {
			ev = json.RawMessage(`""`)
		}
		entries = append(entries, entry{EntryID: e.GetEntryId(), Event: ev, ContentType: e.GetContentType(), Metadata: e.GetMetadata()})
	}
	body, _ := json.Marshal(map[string]any{"entries": entries})
	a, err := s.do(ctx, call{method: "POST", path: []string{"v1.0-alpha1", "publish", "bulk", in.GetPubsubName(), in.GetTopic()},
		body: body, query: metadataQuery(in.GetMetadata())})
	if err == nil {
		return &runtimev1.BulkPublishResponse{}, nil
	}
	var failed struct {
		FailedEntries []struct {
			EntryID string `json:"entryId"`
			Error   string `json:"error"`
		} `json:"failedEntries"`
	}
	if json.Unmarshal(a.body, &failed) != nil || len(failed.FailedEntries) == 0 {
		return nil, err
	}
	out := &runtimev1.BulkPublishResponse{}
	for _, f := range failed.FailedEntries {
		out.FailedEntries = append(out.FailedEntries, &runtimev1.BulkPublishResponseFailedEntry{EntryId: f.EntryID, Error: f.Error})
	}
	return out, nil
}

// InvokeService implements runtimev1.DaprServer.
func (s *Server) InvokeService(ctx context.Context, in *runtimev1.InvokeServiceRequest) (*commonv1.InvokeResponse, error) {
	msg := in.GetMessage()
	if msg == nil {
		return nil, status.Error(codes.InvalidArgument, "InvokeService needs a message")
	}
	verb := "POST"
	if ext := msg.GetHttpExtension(); ext != nil && ext.GetVerb() != commonv1.HTTPExtension_NONE {
		verb = ext.GetVerb().String()
	}
	c := call{method: verb, path: []string{"v1.0", "invoke", in.GetId(), "method"}}
	for seg := range strings.SplitSeq(strings.TrimPrefix(msg.GetMethod(), "/"), "/") {
		c.path = append(c.path, seg)
	}
	if ext := msg.GetHttpExtension(); ext != nil && ext.GetQuerystring() != "" {
		q, err := url.ParseQuery(ext.GetQuerystring())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "querystring %q: %v", ext.GetQuerystring(), err)
		}
		c.query = q
	}
	if d := msg.GetData(); d != nil {
		c.body = d.GetValue()
	}
	if ct := msg.GetContentType(); ct != "" {
		c.header = append(c.header, [2]string{"Content-Type", ct})
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for k, v := range md {
			if len(v) > 0 && !strings.HasPrefix(k, ":") && !strings.HasPrefix(k, "grpc-") && k != "dapr-api-token" &&
				k != "content-type" && k != "user-agent" && k != "traceparent" {
				c.header = append(c.header, [2]string{k, v[0]})
			}
		}
	}
	a, err := s.do(ctx, c)
	if err != nil {
		return nil, err
	}
	return &commonv1.InvokeResponse{Data: &anypb.Any{Value: a.body}, ContentType: a.header.Get("Content-Type")}, nil
}

// GetMetadata implements runtimev1.DaprServer.
func (s *Server) GetMetadata(ctx context.Context, _ *runtimev1.GetMetadataRequest) (*runtimev1.GetMetadataResponse, error) {
	a, err := s.do(ctx, call{method: "GET", path: []string{"v1.0", "metadata"}})
	if err != nil {
		return nil, err
	}
	var md silo.Metadata
	if err := json.Unmarshal(a.body, &md); err != nil {
		return nil, status.Errorf(codes.Internal, "metadata: %v", err)
	}
	out := &runtimev1.GetMetadataResponse{Id: md.ID, RuntimeVersion: md.RuntimeVersion,
		ExtendedMetadata: map[string]string{"stateStore": md.StateStore, "placement": md.Placement.Mode}}
	for _, a := range md.Actors {
		out.ActiveActorsCount = append(out.ActiveActorsCount, &runtimev1.ActiveActorsCount{Type: a.Type, Count: int32(a.Count)})
	}
	for _, c := range md.Components {
		out.RegisteredComponents = append(out.RegisteredComponents, &runtimev1.RegisteredComponents{Name: c.Name, Type: c.Type,
			Version: c.Version, Capabilities: c.Capabilities})
	}
	for _, sub := range md.Subscriptions {
		ps := &runtimev1.PubsubSubscription{PubsubName: sub.PubSubName, Topic: sub.Topic, Metadata: sub.Metadata,
			DeadLetterTopic: sub.DeadLetterTopic, Rules: &runtimev1.PubsubSubscriptionRules{}}
		switch sub.Type {
		case "declarative":
			ps.Type = runtimev1.PubsubSubscriptionType_DECLARATIVE
		case "programmatic":
			ps.Type = runtimev1.PubsubSubscriptionType_PROGRAMMATIC
		}
		for _, r := range sub.Rules.Rules {
			ps.Rules.Rules = append(ps.Rules.Rules, &runtimev1.PubsubSubscriptionRule{Match: r.Match, Path: r.Path})
		}
		out.Subscriptions = append(out.Subscriptions, ps)
	}
	sort.Slice(out.ActiveActorsCount, func(i, j int) bool { return out.ActiveActorsCount[i].Type < out.ActiveActorsCount[j].Type })
	return out, nil
}

// Shutdown implements runtimev1.DaprServer: it starts the silo's graceful
// shutdown and returns at once.
func (s *Server) Shutdown(context.Context, *runtimev1.ShutdownRequest) (*emptypb.Empty, error) {
	if s.cfg.Shutdown == nil {
		return nil, status.Error(codes.Unimplemented, "method Shutdown is not served by this silo")
	}
	s.cfg.Logger.Info("shutdown requested over the gRPC API")
	go s.cfg.Shutdown()
	return &emptypb.Empty{}, nil
}

// Streams opens streaming subscriptions: deliver is called with each
// message (a CloudEvent's JSON) for the topic until closeStream.
type Streams interface {
	OpenStream(ctx context.Context, pubsub, topic, deadLetterTopic string, md map[string]string,
		deliver func(ctx context.Context, path string, event []byte) (status string, err error)) (closeStream func(), err error)
}

// SubscribeTopicEventsAlpha1 implements runtimev1.DaprServer: after the
// initial request names the pub/sub and topic, each message is sent on the
// stream and waits for the client's answer for its ID (SUCCESS, RETRY or
// DROP), as a delivery to an app waits for the app's.
func (s *Server) SubscribeTopicEventsAlpha1(stream runtimev1.Dapr_SubscribeTopicEventsAlpha1Server) error {
	if s.cfg.Streams == nil {
		return status.Error(codes.Unimplemented, "method SubscribeTopicEventsAlpha1 is not served by this silo")
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	init := first.GetInitialRequest()
	if init == nil || init.GetPubsubName() == "" || init.GetTopic() == "" {
		return status.Error(codes.InvalidArgument, "the first message of a subscription stream must be an initial request naming the pub/sub and the topic")
	}
	var (
		sendMu  sync.Mutex
		mu      sync.Mutex
		pending = map[string]chan string{}
		done    = make(chan struct{})
	)
	deliver := func(ctx context.Context, path string, event []byte) (string, error) {
		ev, err := grpcapp.TopicEvent(path, event)
		if err != nil {
			return "", err
		}
		answer := make(chan string, 1)
		mu.Lock()
		pending[ev.GetId()] = answer
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(pending, ev.GetId())
			mu.Unlock()
		}()
		sendMu.Lock()
		err = stream.Send(&runtimev1.SubscribeTopicEventsResponseAlpha1{
			SubscribeTopicEventsResponseType: &runtimev1.SubscribeTopicEventsResponseAlpha1_EventMessage{EventMessage: ev}})
		sendMu.Unlock()
		if err != nil {
			return "", err
		}
		select {
		case st := <-answer:
			return st, nil
		case <-ctx.Done():
			return "", ctx.Err()
		case <-done:
			return "", errors.New("the subscription stream ended before the message was answered")
		}
	}
	closeStream, err := s.cfg.Streams.OpenStream(stream.Context(), init.GetPubsubName(), init.GetTopic(), init.GetDeadLetterTopic(), init.GetMetadata(), deliver)
	if err != nil {
		return toStatus(err)
	}
	defer closeStream()
	defer close(done)
	sendMu.Lock()
	err = stream.Send(&runtimev1.SubscribeTopicEventsResponseAlpha1{
		SubscribeTopicEventsResponseType: &runtimev1.SubscribeTopicEventsResponseAlpha1_InitialResponse{
			InitialResponse: &runtimev1.SubscribeTopicEventsResponseInitialAlpha1{}}})
	sendMu.Unlock()
	if err != nil {
		return err
	}
	for {
		in, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		p := in.GetEventProcessed()
		if p == nil {
			continue
		}
		mu.Lock()
		answer := pending[p.GetId()]
		mu.Unlock()
		if answer != nil {
			select {
			case answer <- p.GetStatus().GetStatus().String():
			default:
			}
		}
	}
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
