// Package gateway is Granary's HTTP front door: it serves the Dapr-compatible
// actor API (docs/api.md) and Granary's app registration API over
// fasthttp, checks the API token, validates names and bodies, and maps every
// failure to the protocol's JSON error.
package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/httpheader"
	"github.com/granaryhq/granary/silo"
	"github.com/granaryhq/granary/statestore"
)

// Backend is what the gateway serves: a silo.
type Backend interface {
	Invoke(ctx context.Context, id actor.ID, req *actor.Request) (*actor.Response, error)
	GetState(ctx context.Context, id actor.ID, key string) (statestore.Item, error)
	Transact(ctx context.Context, id actor.ID, ops []statestore.Op) error
	CreateTimer(ctx context.Context, id actor.ID, req silo.TimerRequest) error
	DeleteTimer(ctx context.Context, id actor.ID, name string) error
	CreateReminder(ctx context.Context, id actor.ID, req silo.ReminderRequest) error
	GetReminder(ctx context.Context, id actor.ID, name string) (silo.ReminderInfo, error)
	DeleteReminder(ctx context.Context, id actor.ID, name string) error
	RegisterApp(ctx context.Context, appID, url string) error
	UnregisterApp(ctx context.Context, appID string) error
	Metadata() silo.Metadata
	Ready() error
}

// Config configures a Server.
type Config struct {
	// APIToken, when set, is required in the dapr-api-token header of every
	// call except /v1.0/healthz.
	APIToken string
	// MaxBodySize bounds request bodies (default 4 MiB); larger bodies get 413.
	MaxBodySize int
	// ReadTimeout bounds reading one request (default 5 minutes); a client
	// slower than that gets 408.
	ReadTimeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// MaxURILength bounds a request's URI, its path and query string together.
// The longest valid route, a reminder whose type, ID and name are each
// actor.MaxNameLength bytes and percent-encoded (three bytes for each), is
// 9,241 bytes; the rest leaves room for a query string. A longer URI gets
// 414.
const MaxURILength = 12 << 10

// MaxHeaderBytes bounds a request's header lines, with the empty line that
// ends them; the request line is not counted. Larger headers get 431.
const MaxHeaderBytes = 8 << 10

// readBufferSize is fasthttp's read buffer, which must hold the request line
// and the headers at once: both limits, plus room for the method, the
// protocol version and line ends. fasthttp keeps one such buffer for every
// open connection, idle keep-alive ones included, so this costs 20 KiB per
// connection (200 MiB at 10,000 open connections, against 40 MiB with
// fasthttp's default of 4 KiB, which refused valid names).
const readBufferSize = MaxURILength + MaxHeaderBytes + 64

// shutdownSweep is how often Shutdown closes the connections no handler
// serves while it waits: a keep-alive connection may begin a request after
// the first sweep.
const shutdownSweep = 20 * time.Millisecond

// Server serves the HTTP API of one silo.
type Server struct {
	backend Backend
	cfg     Config
	log     *slog.Logger
	token   []byte
	srv     *fasthttp.Server

	connsMu sync.Mutex
	conns   map[*conn]struct{} // open connections accepted by Serve
}

// New returns a server for backend.
func New(backend Backend, cfg Config) *Server {
	if cfg.MaxBodySize <= 0 {
		cfg.MaxBodySize = 4 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 5 * time.Minute
	}
	s := &Server{backend: backend, cfg: cfg, log: cfg.Logger, token: []byte(cfg.APIToken), conns: map[*conn]struct{}{}}
	s.srv = &fasthttp.Server{
		Handler:                       s.handle,
		ErrorHandler:                  s.handleParseError,
		ConnState:                     s.connState,
		Logger:                        serverLogger{cfg.Logger},
		Name:                          "granary",
		MaxRequestBodySize:            cfg.MaxBodySize,
		ReadTimeout:                   cfg.ReadTimeout,
		ReadBufferSize:                readBufferSize,
		IdleTimeout:                   2 * time.Minute,
		DisableHeaderNamesNormalizing: false,
		NoDefaultContentType:          true,
		NoDefaultDate:                 true,
		CloseOnShutdown:               true,
		ReduceMemoryUsage:             false,
		// The body goes to the app as it came: a multipart form is not
		// parsed here, and its bytes on the wire are exactly Content-Length,
		// which the header scan of the next request relies on.
		DisablePreParseMultipartForm: true,
	}
	return s
}

// serverLogger sends fasthttp's connection-level messages to the configured logger.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Printf(format string, args ...any) {
	l.log.Warn("gateway: " + fmt.Sprintf(format, args...))
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(&listener{Listener: ln, s: s}) }

// Shutdown stops accepting connections, closes those no handler serves (idle,
// or part-way through sending a request) and waits, until ctx ends, for the
// requests in handlers to be answered. fasthttp alone would wait for a
// client that stopped half-way through its request headers.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.srv.ShutdownWithContext(ctx) }()
	sweep := time.NewTicker(shutdownSweep)
	defer sweep.Stop()
	for {
		s.closeUnserved()
		select {
		case err := <-done:
			return err
		case <-sweep.C:
		}
	}
}

// Handler returns the request handler, for tests that drive it in memory.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		writeError(ctx, newError(http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			fmt.Sprintf("request body exceeds the limit of %d bytes", s.cfg.MaxBodySize)))
		return
	}
	if errors.Is(err, errBareLF) {
		writeError(ctx, malformed(errBareLF.Error()))
		return
	}
	if _, ok := errors.AsType[*fasthttp.ErrSmallBuffer](err); ok {
		// fasthttp says only that the request line and headers overflowed
		// the buffer; the connection's scan knows which was too long.
		if c, ok := ctx.Conn().(*conn); ok {
			if uri, known := c.scan.overflow(); known {
				if uri {
					writeError(ctx, uriTooLong())
				} else {
					writeError(ctx, headersTooLarge())
				}
				return
			}
		}
		writeError(ctx, newError(http.StatusRequestHeaderFieldsTooLarge, codeHeadersTooLarge,
			fmt.Sprintf("the request line and headers exceed %d bytes (URI limit %d bytes, headers %d bytes)",
				readBufferSize, MaxURILength, MaxHeaderBytes)))
		return
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		writeError(ctx, newError(http.StatusRequestTimeout, codeRequestTimeout, "the request was not received in time"))
		return
	}
	writeError(ctx, malformed("cannot parse the HTTP request: "+err.Error()))
}

func uriTooLong() *apiError {
	return newError(http.StatusRequestURITooLong, codeURITooLong,
		fmt.Sprintf("the request URI exceeds the limit of %d bytes", MaxURILength))
}

func headersTooLarge() *apiError {
	return newError(http.StatusRequestHeaderFieldsTooLarge, codeHeadersTooLarge,
		fmt.Sprintf("the request headers exceed the limit of %d bytes", MaxHeaderBytes))
}

var headerToken = []byte("dapr-api-token")

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	if c, ok := ctx.Conn().(*conn); ok {
		if !c.enter(&ctx.Request.Header) {
			// Shutdown has closed the connection: the answer would go nowhere.
			ctx.SetConnectionClose()
			return
		}
		if c.scan.bareLF {
			// fasthttp took the block whole, bare LF and all; a peer that
			// reads only CRLF would frame it differently.
			writeError(ctx, malformed(errBareLF.Error()))
			ctx.SetConnectionClose()
			return
		}
	}
	// The read buffer holds both limits together, so either may be
	// exceeded by a request that fits it.
	if len(ctx.Request.Header.RequestURI()) > MaxURILength {
		writeError(ctx, uriTooLong())
		return
	}
	if len(ctx.Request.Header.RawHeaders()) > MaxHeaderBytes {
		writeError(ctx, headersTooLarge())
		return
	}
	path := ctx.URI().PathOriginal()
	segs, err := splitPath(path)
	if err != nil {
		writeError(ctx, err)
		return
	}
	if len(s.token) > 0 && !(len(segs) == 2 && segs[0] == "v1.0" && segs[1] == "healthz") {
		got := ctx.Request.Header.PeekBytes(headerToken)
		if subtle.ConstantTimeCompare(got, s.token) != 1 {
			writeError(ctx, newError(http.StatusUnauthorized, codeUnauthorized, "missing or wrong dapr-api-token header"))
			return
		}
	}
	if e := s.route(ctx, segs); e != nil {
		writeError(ctx, e)
	}
}

func (s *Server) route(ctx *fasthttp.RequestCtx, segs []string) *apiError {
	method := string(ctx.Method())
	switch {
	case len(segs) == 2 && segs[0] == "v1.0" && segs[1] == "healthz":
		if e := onlyMethods(method, "GET"); e != nil {
			return e
		}
		return s.healthz(ctx)
	case len(segs) == 2 && segs[0] == "v1.0" && segs[1] == "metadata":
		if e := onlyMethods(method, "GET"); e != nil {
			return e
		}
		return s.metadata(ctx)
	case len(segs) == 3 && segs[0] == "v1.0-alpha1" && segs[1] == "apps":
		return s.apps(ctx, method, segs[2])
	case len(segs) >= 5 && segs[0] == "v1.0" && segs[1] == "actors":
		return s.actors(ctx, method, segs[2:])
	}
	return newError(http.StatusNotFound, codeNotFound, fmt.Sprintf("no route for %s %s", method, ctx.URI().PathOriginal()))
}

// actors serves /v1.0/actors/{type}/{id}/...; rest starts at {type}.
func (s *Server) actors(ctx *fasthttp.RequestCtx, method string, rest []string) *apiError {
	if e := validName("actor type", rest[0]); e != nil {
		return e
	}
	if e := validName("actor id", rest[1]); e != nil {
		return e
	}
	id := actor.ID{Type: rest[0], ID: rest[1]}
	kind, tail := rest[2], rest[3:]
	switch {
	case kind == "method" && len(tail) == 1:
		if e := onlyMethods(method, "GET", "POST", "PUT", "DELETE"); e != nil {
			return e
		}
		if e := validName("method", tail[0]); e != nil {
			return e
		}
		return s.invoke(ctx, id, tail[0])
	case kind == "state" && len(tail) == 0:
		if e := onlyMethods(method, "POST", "PUT"); e != nil {
			return e
		}
		return s.transact(ctx, id)
	case kind == "state" && len(tail) >= 1:
		if e := onlyMethods(method, "GET"); e != nil {
			return e
		}
		return s.getState(ctx, id, joinPath(tail))
	case kind == "reminders" && len(tail) == 1:
		if e := validName("reminder name", tail[0]); e != nil {
			return e
		}
		switch method {
		case "POST", "PUT":
			return s.createReminder(ctx, id, tail[0])
		case "GET":
			return s.getReminder(ctx, id, tail[0])
		case "DELETE":
			return s.deleteReminder(ctx, id, tail[0])
		}
		return notAllowed(method, "GET", "POST", "PUT", "DELETE")
	case kind == "timers" && len(tail) == 1:
		if e := validName("timer name", tail[0]); e != nil {
			return e
		}
		switch method {
		case "POST", "PUT":
			return s.createTimer(ctx, id, tail[0])
		case "DELETE":
			return s.deleteTimer(ctx, id, tail[0])
		}
		return notAllowed(method, "POST", "PUT", "DELETE")
	}
	return newError(http.StatusNotFound, codeNotFound, fmt.Sprintf("no route for %s %s", method, ctx.URI().PathOriginal()))
}

var (
	headerErrorResponse = []byte("X-DaprErrorResponseHeader")
	headerCookie        = []byte("Cookie")
	headerExpect        = []byte("Expect")
	expectContinue      = []byte("100-continue")
)

func (s *Server) invoke(ctx *fasthttp.RequestCtx, id actor.ID, method string) *apiError {
	req := actor.Request{
		Method:      method,
		Body:        ctx.PostBody(),
		ContentType: ctx.Request.Header.ContentType(),
		Query:       ctx.URI().QueryString(),
	}
	var hdr [16]actor.HeaderField
	req.Header = hdr[:0]
	var chain []byte
	var conn httpheader.Connection
	for k, v := range ctx.Request.Header.All() {
		if !httpheader.ValidName(k) {
			// fasthttp lets a space through; the app's server would refuse
			// the call, and the client see a 500 for its own mistake.
			return malformed(fmt.Sprintf("request header name %q is not a valid field name (RFC 9110 token)", k))
		}
		switch {
		case httpheader.IsConnection(k):
			conn.Add(v)
			continue
		case httpheader.HopByHop(k):
			if bytes.EqualFold(k, headerReentrancyID) {
				chain = v
			}
			continue
		case bytes.EqualFold(k, headerExpect):
			// fasthttp has answered 100-continue before reading the body;
			// the expectation ends here.
			if v = bytes.TrimSpace(v); len(v) > 0 && !bytes.EqualFold(v, expectContinue) {
				return newError(http.StatusExpectationFailed, codeExpectationFailed,
					fmt.Sprintf("Expect: %s cannot be met; the only expectation served is 100-continue", v))
			}
			continue
		case bytes.EqualFold(k, headerCookie):
			// fasthttp formats the cookies into a buffer it reuses during
			// the iteration; keep a copy.
			v = bytes.Clone(v)
		}
		req.Header = append(req.Header, actor.HeaderField{Name: k, Value: v})
	}
	if !conn.Empty() {
		// The fields the client's Connection fields name are meant for
		// this hop alone (RFC 9110 §7.6.1).
		req.Header = actor.DropHeaders(req.Header, conn.Names)
	}
	// Not the fasthttp request itself: its Done channel is the server's
	// shutdown signal, which means nothing to a turn, and a turn's context
	// derived from it would cost a goroutine per call (context.WithCancel
	// watches a parent it cannot hook into). fasthttp does not report a
	// client going away either, so nothing is lost.
	var c context.Context = context.Background()
	if len(chain) > 0 {
		c = actor.WithCallChain(c, string(chain))
	}
	resp, err := s.backend.Invoke(c, id, &req)
	if err != nil {
		return runtimeError(err, codeInvoke)
	}
	defer resp.Release()
	if resp.Status != http.StatusOK && !hasHeader(resp.Header, headerErrorResponse) {
		return newError(http.StatusInternalServerError, codeInvoke,
			fmt.Sprintf("actor %s method %s: app answered status %d: %s", id, method, resp.Status, truncate(resp.Body, 1024)))
	}
	ctx.SetStatusCode(resp.Status)
	for _, h := range resp.Header {
		ctx.Response.Header.AddBytesKV(h.Name, h.Value)
	}
	if len(resp.ContentType) > 0 {
		ctx.Response.Header.SetContentTypeBytes(resp.ContentType)
	}
	ctx.Response.SetBody(resp.Body)
	return nil
}

var headerReentrancyID = []byte("Dapr-Reentrancy-Id")

func hasHeader(h []actor.HeaderField, name []byte) bool {
	for _, f := range h {
		if bytes.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

func (s *Server) transact(ctx *fasthttp.RequestCtx, id actor.ID) *apiError {
	ops, e := decodeTransaction(ctx.PostBody())
	if e != nil {
		return e
	}
	if len(ops) > 0 {
		if err := s.backend.Transact(ctx, id, ops); err != nil {
			return runtimeError(err, codeStateSave)
		}
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Server) getState(ctx *fasthttp.RequestCtx, id actor.ID, key string) *apiError {
	if err := validateStateKey(key); err != nil {
		return badRequest(fmt.Sprintf("state key %q %v", key, err))
	}
	item, err := s.backend.GetState(ctx, id, key)
	if errors.Is(err, statestore.ErrNotFound) {
		ctx.SetStatusCode(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return runtimeError(err, codeStateGet)
	}
	ctx.SetStatusCode(http.StatusOK)
	ctx.Response.Header.Set("ETag", item.ETag)
	ctx.SetContentType("application/json")
	ctx.SetBody(item.Value)
	return nil
}

func (s *Server) createTimer(ctx *fasthttp.RequestCtx, id actor.ID, name string) *apiError {
	b, e := decodeSchedule(ctx.PostBody())
	if e != nil {
		return e
	}
	err := s.backend.CreateTimer(ctx, id, silo.TimerRequest{
		Name: name, Callback: b.Callback, Data: b.Data, DueTime: b.DueTime, Period: b.Period, TTL: b.TTL,
	})
	if err != nil {
		return scheduleError(err, codeTimerCreate)
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Server) deleteTimer(ctx *fasthttp.RequestCtx, id actor.ID, name string) *apiError {
	if err := s.backend.DeleteTimer(ctx, id, name); err != nil {
		return runtimeError(err, codeTimerCreate)
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Server) createReminder(ctx *fasthttp.RequestCtx, id actor.ID, name string) *apiError {
	b, e := decodeSchedule(ctx.PostBody())
	if e != nil {
		return e
	}
	err := s.backend.CreateReminder(ctx, id, silo.ReminderRequest{
		Name: name, Data: b.Data, DueTime: b.DueTime, Period: b.Period, TTL: b.TTL,
	})
	if err != nil {
		if errors.Is(err, actor.ErrTypeNotHosted) {
			return newError(http.StatusForbidden, codeReminderNoHost, err.Error())
		}
		return scheduleError(err, codeReminderCreate)
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Server) getReminder(ctx *fasthttp.RequestCtx, id actor.ID, name string) *apiError {
	info, err := s.backend.GetReminder(ctx, id, name)
	if errors.Is(err, statestore.ErrNotFound) {
		return newError(http.StatusNotFound, codeReminderNotFound, fmt.Sprintf("actor %s has no reminder %q", id, name))
	}
	if err != nil {
		if errors.Is(err, actor.ErrTypeNotHosted) {
			return newError(http.StatusForbidden, codeReminderNoHost, err.Error())
		}
		return runtimeError(err, codeReminderGet)
	}
	return writeJSON(ctx, http.StatusOK, info)
}

func (s *Server) deleteReminder(ctx *fasthttp.RequestCtx, id actor.ID, name string) *apiError {
	if err := s.backend.DeleteReminder(ctx, id, name); err != nil {
		if errors.Is(err, actor.ErrTypeNotHosted) {
			return newError(http.StatusForbidden, codeReminderNoHost, err.Error())
		}
		return runtimeError(err, codeReminderDelete)
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

// scheduleError maps schedule validation failures to 400 and the rest by the table.
func scheduleError(err error, fallback string) *apiError {
	var fe silo.InputError
	if errors.As(err, &fe) {
		return badRequest(err.Error())
	}
	return runtimeError(err, fallback)
}

func (s *Server) healthz(ctx *fasthttp.RequestCtx) *apiError {
	if err := s.backend.Ready(); err != nil {
		return newError(http.StatusServiceUnavailable, codeRuntimeClosed, "not ready: "+err.Error())
	}
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

func (s *Server) metadata(ctx *fasthttp.RequestCtx) *apiError {
	return writeJSON(ctx, http.StatusOK, s.backend.Metadata())
}

func (s *Server) apps(ctx *fasthttp.RequestCtx, method, appID string) *apiError {
	if e := validName("app id", appID); e != nil {
		return e
	}
	switch method {
	case "PUT", "POST":
		reg, e := decodeAppRegistration(ctx.PostBody())
		if e != nil {
			return e
		}
		if err := s.backend.RegisterApp(ctx, appID, reg.URL); err != nil {
			var fe silo.InputError
			if errors.As(err, &fe) {
				return badRequest(err.Error())
			}
			return newError(http.StatusBadGateway, codeAppRegister, err.Error())
		}
		ctx.SetStatusCode(http.StatusNoContent)
		return nil
	case "DELETE":
		if err := s.backend.UnregisterApp(ctx, appID); err != nil {
			return newError(http.StatusNotFound, codeAppRegister, err.Error())
		}
		ctx.SetStatusCode(http.StatusNoContent)
		return nil
	}
	return notAllowed(method, "PUT", "POST", "DELETE")
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) *apiError {
	body, err := marshalJSON(v)
	if err != nil {
		return newError(http.StatusInternalServerError, "ERR_INTERNAL", err.Error())
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
	return nil
}

// onlyMethods refuses a method the route does not serve.
func onlyMethods(method string, allowed ...string) *apiError {
	if slices.Contains(allowed, method) {
		return nil
	}
	return notAllowed(method, allowed...)
}

// notAllowed is the 405 answer; its Allow header lists the route's methods.
func notAllowed(method string, allowed ...string) *apiError {
	e := newError(http.StatusMethodNotAllowed, codeMethodNotAllowed, "method "+method+" is not allowed on this route")
	e.allow = strings.Join(allowed, ", ")
	return e
}

func validName(what, s string) *apiError {
	if err := actor.ValidateName(s); err != nil {
		return badRequest(fmt.Sprintf("%s %q %v", what, s, err))
	}
	return nil
}

// splitPath splits a raw request path into percent-decoded segments.
func splitPath(p []byte) ([]string, *apiError) {
	if len(p) == 0 || p[0] != '/' {
		return nil, malformed("request path must start with /")
	}
	// One string for the whole path; segments are slices of it.
	rest := string(p[1:])
	segs := make([]string, 0, 8)
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if strings.IndexByte(seg, '%') >= 0 {
			dec, err := url.PathUnescape(seg)
			if err != nil {
				return nil, badRequest(fmt.Sprintf("request path segment %q is not valid percent-encoding", seg))
			}
			seg = dec
		}
		segs = append(segs, seg)
		if !more {
			return segs, nil
		}
		rest = tail
	}
}

func joinPath(segs []string) string {
	n := len(segs) - 1
	for _, s := range segs {
		n += len(s)
	}
	b := make([]byte, 0, n)
	for i, s := range segs {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, s...)
	}
	return string(b)
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
