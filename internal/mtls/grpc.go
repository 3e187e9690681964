package mtls

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// GRPCCredentials are the transport credentials of the internal link named
// side ("placement", "silo internal"), for its servers (grpc.Creds) and its
// clients (grpc.WithTransportCredentials) alike: mutual TLS 1.3 with src's
// current certificate and CAs. A refused connection is logged at warn with
// Explain's sentence, once per peer and reason every 10 seconds, so a peer
// retrying in a loop does not flood the log.
func GRPCCredentials(src *Source, log *slog.Logger, side string) credentials.TransportCredentials {
	if log == nil {
		log = slog.Default()
	}
	return &grpcCreds{
		src:    src,
		side:   side,
		log:    newRefusalLog(log),
		server: credentials.NewTLS(src.ServerConfig("h2")),
	}
}

type grpcCreds struct {
	src        *Source
	side       string
	log        *refusalLog
	server     credentials.TransportCredentials
	serverName string // set by OverrideServerName
}

// ClientHandshake makes a client config per handshake, carrying the host
// dialed: the server's certificate is checked against it.
func (c *grpcCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	name := c.serverName
	if name == "" {
		name = authority
		if h, _, err := net.SplitHostPort(authority); err == nil {
			name = h
		}
	}
	cfg := c.src.ClientConfig("h2")
	cfg.ServerName = name
	nc, info, err := credentials.NewTLS(cfg).ClientHandshake(ctx, authority, conn)
	if err != nil {
		err = c.src.annotate(err)
		if ctx.Err() == nil {
			c.log.warn("TLS handshake failed: "+Explain(err), "target", authority, c.side)
		}
	}
	return nc, info, err
}

func (c *grpcCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, info, err := c.server.ServerHandshake(conn)
	if err != nil {
		err = c.src.annotate(err)
		c.log.warn("refused a connection: "+Explain(err), "remote", conn.RemoteAddr().String(), c.side)
	}
	return nc, info, err
}

func (c *grpcCreds) Info() credentials.ProtocolInfo { return c.server.Info() }

func (c *grpcCreds) Clone() credentials.TransportCredentials {
	return &grpcCreds{src: c.src, side: c.side, log: c.log, server: c.server.Clone(), serverName: c.serverName}
}

// OverrideServerName sets the name the server's certificate is checked
// against, in place of the host dialed.
func (c *grpcCreds) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}

// refusalLogInterval bounds how often one peer's refusal for one reason is
// logged.
const refusalLogInterval = 10 * time.Second

// refusalLog logs failed handshakes, each (peer host, sentence) at most
// once per refusalLogInterval.
type refusalLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]time.Time
}

func newRefusalLog(log *slog.Logger) *refusalLog {
	return &refusalLog{log: log, last: map[string]time.Time{}}
}

// warn logs msg with the peer's address under addrKey and the link's side.
func (r *refusalLog) warn(msg, addrKey, addr, side string) {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	key := host + "\x00" + msg
	now := time.Now()
	r.mu.Lock()
	if t, ok := r.last[key]; ok && now.Sub(t) < refusalLogInterval {
		r.mu.Unlock()
		return
	}
	if len(r.last) >= 1024 {
		clear(r.last)
	}
	r.last[key] = now
	r.mu.Unlock()
	r.log.Warn(msg, addrKey, addr, "link", side)
}
