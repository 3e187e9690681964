package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	silopb "github.com/granaryhq/granary/proto/silo"
)

const (
	// keepaliveTime is how long a connection may be silent before the
	// client pings it; a peer that does not answer within keepaliveTimeout
	// is taken for gone, so calls fail with ErrUnreachable instead of
	// waiting for their deadlines on a dead connection.
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
	// Reconnection after a failure starts after reconnectBase and backs off
	// to reconnectMax, not gRPC's two minutes: a silo that restarts at its
	// address must be reachable again within a routing window.
	reconnectBase = 100 * time.Millisecond
	reconnectMax  = 3 * time.Second
	// connectTimeout bounds one connection attempt.
	connectTimeout = 3 * time.Second
)

// Client forwards calls to other silos over one persistent, multiplexed
// gRPC connection per address, made on first use. It is safe for
// concurrent use.
type Client struct {
	log   *slog.Logger
	creds credentials.TransportCredentials

	mu     sync.Mutex
	conns  map[string]*peerConn
	closed bool
}

type peerConn struct {
	cc     *grpc.ClientConn
	client silopb.SiloClient
}

// NewClient returns a Client. A nil logger means slog.Default().
func NewClient(logger *slog.Logger) *Client { return NewSecureClient(logger, nil) }

// NewSecureClient returns a client whose connections use creds (mutual TLS
// between silos); nil creds means plaintext.
func NewSecureClient(logger *slog.Logger, creds credentials.TransportCredentials) *Client {
	if logger == nil {
		logger = slog.Default()
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	return &Client{log: logger, conns: map[string]*peerConn{}, creds: creds}
}

// Forward sends req, an HTTP request for actor (actorType, actorID), to the
// silo at addr, which the caller routed to under tableVersion. The request
// goes as it is: method, URI as received, header fields in order (less the
// ones that describe the connection) and body; req must not change until
// Forward returns.
//
// A reply with NotOwnerVersion set means the receiver does not own the
// actor under that newer table: catch up and route again. Otherwise write
// the reply with WriteReply. Errors: ErrUnreachable when the owner cannot be
// reached, ErrTooLarge for a body over MaxBodySize, the context's error when
// ctx ends first, ErrClosed after Close; status.Code gives the gRPC code of
// an error the call itself returned.
func (c *Client) Forward(ctx context.Context, addr string, tableVersion uint64, actorType, actorID string, req *fasthttp.Request) (*silopb.ForwardReply, error) {
	body := req.Body()
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("forward %s/%s to %s: %w: request body of %d bytes, limit %d",
			actorType, actorID, addr, ErrTooLarge, len(body), MaxBodySize)
	}
	pc, err := c.conn(addr)
	if err != nil {
		return nil, fmt.Errorf("forward %s/%s: %w", actorType, actorID, err)
	}
	in := &silopb.ForwardRequest{
		TableVersion: tableVersion,
		Method:       string(req.Header.Method()),
		Uri:          string(req.Header.RequestURI()),
		Headers:      requestHeaders(req),
		Body:         body,
		ActorType:    actorType,
		ActorId:      actorID,
	}
	// The peer is filled in only once the call was put on a connection:
	// without it, a failure certainly happened before the owner saw it.
	var sentTo peer.Peer
	reply, err := pc.client.Forward(ctx, in, grpc.Peer(&sentTo))
	if err != nil {
		return nil, fmt.Errorf("forward %s/%s to %s: %w", actorType, actorID, addr, classify(ctx, err, sentTo.Addr != nil))
	}
	return reply, nil
}

// classify wraps a failed call's error with the sentinel that says what the
// caller can do about it, keeping the gRPC status.
func classify(ctx context.Context, err error, sent bool) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w: %w", ctxErr, err)
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		// The receiver enforces the caller's deadline too, and its timer
		// may fire a moment before the caller's.
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	case codes.Unavailable:
		if sent {
			return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	case codes.Canceled:
		// Not the caller's context, so the connection was closed under
		// the call by Retain or Close.
		if sent {
			return fmt.Errorf("%w: connection closed: %w", ErrOutcomeUnknown, err)
		}
		return fmt.Errorf("%w: connection closed: %w", ErrUnreachable, err)
	case codes.ResourceExhausted:
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return err
}

// requestHeaders lists the fields of req to forward, in fasthttp's order:
// the fields it keeps apart (Host, Content-Type, User-Agent, Cookie) first,
// then the others as they arrived, repeated ones included. A request built
// in memory may name its host only in its URI; that host is sent as the
// Host field, as fasthttp's client would.
func requestHeaders(req *fasthttp.Request) []*silopb.Header {
	h := &req.Header
	host := h.Host()
	if len(host) == 0 {
		host = req.URI().Host()
	}
	var filter fieldFilter
	for _, v := range h.PeekAll(fasthttp.HeaderConnection) {
		filter.addConnection(v)
	}
	hostName := []byte(fasthttp.HeaderHost)
	var size headerSize
	if len(host) > 0 {
		size.count(hostName, host)
	}
	for name, value := range h.All() {
		if !drops(&filter, name) && !equalFold(name, fasthttp.HeaderHost) {
			size.count(name, value)
		}
	}
	list := newHeaderList(size)
	if len(host) > 0 {
		list.add(hostName, host)
	}
	for name, value := range h.All() {
		if !drops(&filter, name) && !equalFold(name, fasthttp.HeaderHost) {
			list.add(name, value)
		}
	}
	return list.list()
}

// conn returns the connection to addr, making it on first use. gRPC
// connects in the background, so nothing here waits on the network.
func (c *Client) conn(addr string) (*peerConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if pc, ok := c.conns[addr]; ok {
		return pc, nil
	}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(c.creds),
		grpc.WithContextDialer(dial),
		grpc.WithStaticStreamWindowSize(streamWindow),
		grpc.WithStaticConnWindowSize(connWindow),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessageSize),
			grpc.MaxCallSendMsgSize(maxMessageSize),
		),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  reconnectBase,
				Multiplier: backoff.DefaultConfig.Multiplier,
				Jitter:     backoff.DefaultConfig.Jitter,
				MaxDelay:   reconnectMax,
			},
			MinConnectTimeout: connectTimeout,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                keepaliveTime,
			Timeout:             keepaliveTimeout,
			PermitWithoutStream: true,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to %s: %w", ErrUnreachable, addr, err)
	}
	pc := &peerConn{cc: cc, client: silopb.NewSiloClient(cc)}
	c.conns[addr] = pc
	c.log.Debug("forward: connection opened", "addr", addr)
	return pc, nil
}

// Retain closes the connections to addresses not in addrs, the silos of
// the current table. Calls under way on them fail with ErrUnreachable; a
// later Forward to such an address connects again.
func (c *Client) Retain(addrs []string) {
	keep := make(map[string]struct{}, len(addrs))
	for _, a := range addrs {
		keep[a] = struct{}{}
	}
	var dropped []*peerConn
	var names []string
	c.mu.Lock()
	for addr, pc := range c.conns {
		if _, ok := keep[addr]; !ok {
			delete(c.conns, addr)
			dropped = append(dropped, pc)
			names = append(names, addr)
		}
	}
	c.mu.Unlock()
	for i, pc := range dropped {
		if err := c.closeConn(names[i], pc); err != nil {
			c.log.Warn("forward: closing a dropped connection", "addr", names[i], "err", err)
		}
	}
}

// Close closes every connection; Forward fails with ErrClosed afterwards.
func (c *Client) Close() error {
	c.mu.Lock()
	conns := c.conns
	c.conns = map[string]*peerConn{}
	c.closed = true
	c.mu.Unlock()
	var errs []error
	for addr, pc := range conns {
		errs = append(errs, c.closeConn(addr, pc))
	}
	return errors.Join(errs...)
}

func (c *Client) closeConn(addr string, pc *peerConn) error {
	if err := pc.cc.Close(); err != nil {
		return fmt.Errorf("close connection to %s: %w", addr, err)
	}
	c.log.Debug("forward: connection closed", "addr", addr)
	return nil
}

// WriteReply writes a forwarded call's response into ctx: status, header
// fields in order (added to any ctx already has; the ones that describe the
// connection are left to ctx's server) and body, without copying it, so
// reply must not change afterwards. A not-owner reply carries no response
// and must be handled by routing again; given one, or a reply without a
// valid status, WriteReply answers 502.
func WriteReply(ctx *fasthttp.RequestCtx, reply *silopb.ForwardReply) {
	code := int(reply.GetStatus())
	if reply.GetNotOwnerVersion() != 0 || code < 100 || code > 999 {
		ctx.Response.Reset()
		ctx.SetStatusCode(http.StatusBadGateway)
		return
	}
	ctx.SetStatusCode(code)
	filter := fieldFilter{response: true}
	for _, h := range reply.GetHeaders() {
		if equalFold(h.GetName(), fasthttp.HeaderConnection) {
			filter.addConnection(h.GetValue())
		}
	}
	for _, h := range reply.GetHeaders() {
		if !drops(&filter, h.GetName()) {
			ctx.Response.Header.AddBytesV(h.GetName(), h.GetValue())
		}
	}
	ctx.Response.SetBodyRaw(reply.GetBody())
}
