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
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/busypoll"
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
	// call except /v1.0/healthz and /v1.0/healthz/outbound.
	APIToken string
	// MaxBodySize bounds request bodies (default 4 MiB); larger bodies get 413.
	MaxBodySize int
	// ReadTimeout bounds reading one request (default 5 minutes); a client
	// slower than that gets 408.
	ReadTimeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Cluster, when set, routes each actor call to the silo that owns the
	// actor (see route.go); nil serves every call on this silo.
	Cluster Cluster
	// ObserveRequest, when set, is told of every request answered: its
	// route (one of a fixed set of names), status and duration, for metrics.
	ObserveRequest func(route string, status int, d time.Duration)
	// Tracer, when set, makes a server span of every request, continuing
	// the client's W3C trace context.
	Tracer trace.Tracer
	// Poller, when set, counts requests in flight and may poll an idle
	// connection for its next request while none is (see busypoll); nil
	// never polls.
	Poller *busypoll.Poller
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

	cluster Cluster
	blocks  atomic.Pointer[Blocks]
	// forwardSlack is how long past the routing window a forwarded call
	// may run at its owner (the owner's turn itself).
	forwardSlack time.Duration
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
	s := &Server{backend: backend, cfg: cfg, log: cfg.Logger, token: []byte(cfg.APIToken), conns: map[*conn]struct{}{},
		cluster: cfg.Cluster, forwardSlack: forwardSlack}
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
	s.cfg.Poller.Begin()
	defer s.cfg.Poller.End()
	if s.cfg.ObserveRequest != nil || s.cfg.Tracer != nil {
		s.observe(ctx)
		return
	}
	s.serve(ctx)
}

func (s *Server) serve(ctx *fasthttp.RequestCtx) {
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
	if len(s.token) > 0 && !isHealthz(segs) {
		got := ctx.Request.Header.PeekBytes(headerToken)
		if subtle.ConstantTimeCompare(got, s.token) != 1 {
			writeError(ctx, newError(http.StatusUnauthorized, codeUnauthorized, "missing or wrong dapr-api-token header"))
			return
		}
	}
	if appID := ctx.Request.Header.PeekBytes(headerAppID); len(appID) > 0 && !bytes.HasPrefix(path, invokePrefix) {
		// Any path, named for the app it is meant for by the header.
		if e := s.invokeApp(ctx, string(appID), path); e != nil {
			writeError(ctx, e)
		}
		return
	}
	if e := s.route(ctx, segs); e != nil {
		writeError(ctx, e)
	}
}

// isHealthz reports whether segs is a health route, which needs no token.
func isHealthz(segs []string) bool {
	return (len(segs) == 2 || len(segs) == 3 && segs[2] == "outbound") && segs[0] == "v1.0" && segs[1] == "healthz"
}

func (s *Server) route(ctx *fasthttp.RequestCtx, segs []string) *apiError {
	method := string(ctx.Method())
	switch {
	case len(segs) == 2 && segs[0] == "v1.0" && segs[1] == "healthz":
		if e := onlyMethods(method, "GET"); e != nil {
			return e
		}
		return s.healthz(ctx, false)
	case len(segs) == 3 && segs[0] == "v1.0" && segs[1] == "healthz" && segs[2] == "outbound":
		if e := onlyMethods(method, "GET"); e != nil {
			return e
		}
		return s.healthz(ctx, true)
	case len(segs) >= 3 && segs[0] == "v1.0" && segs[1] == "state":
		return s.state(ctx, method, segs[2:])
	case len(segs) >= 3 && segs[0] == "v1.0" && segs[1] == "publish":
		return s.publish(ctx, method, segs[2:], false)
	case len(segs) >= 4 && segs[0] == "v1.0-alpha1" && segs[1] == "publish" && segs[2] == "bulk":
		return s.publish(ctx, method, segs[3:], true)
	case len(segs) >= 3 && segs[0] == "v1.0" && segs[1] == "invoke":
		return s.invokeRoute(ctx, ctx.URI().PathOriginal())
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
