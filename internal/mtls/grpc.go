package mtls

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// GRPCCredentials are the gRPC transport credentials of the link named link
// ("placement", "silo internal"), for its servers (grpc.Creds) and its
// clients (grpc.WithTransportCredentials) alike. A refused handshake is
// logged once per peer and reason every refusalLogInterval, with Explain's
// sentence.
func GRPCCredentials(src *Source, log *slog.Logger, link string) credentials.TransportCredentials {
	if log == nil {
		log = slog.Default()
	}
	return &grpcCreds{
		server: credentials.NewTLS(src.ServerConfig("h2")),
		client: credentials.NewTLS(src.ClientConfig("h2")),
		src:    src, link: link, log: newRefusalLog(log),
	}
}

type grpcCreds struct {
	server, client credentials.TransportCredentials
	src            *Source
	link           string
	log            *refusalLog
}

func (c *grpcCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, info, err := c.client.ClientHandshake(ctx, authority, conn)
	if err != nil && ctx.Err() == nil {
		c.log.warn("TLS handshake failed: "+Explain(err, c.src.CAFile()), authority, c.link, "target")
	}
	return nc, info, err
}

func (c *grpcCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, info, err := c.server.ServerHandshake(conn)
	if err != nil {
		c.log.warn("refused a connection: "+Explain(err, c.src.CAFile()), conn.RemoteAddr().String(), c.link, "remote")
	}
	return nc, info, err
}

func (c *grpcCreds) Info() credentials.ProtocolInfo { return c.server.Info() }

func (c *grpcCreds) Clone() credentials.TransportCredentials {
	return &grpcCreds{server: c.server.Clone(), client: c.client.Clone(), src: c.src, link: c.link, log: c.log}
}

// OverrideServerName is part of the interface gRPC deprecated.
func (c *grpcCreds) OverrideServerName(name string) error {
	return c.client.OverrideServerName(name) //nolint:staticcheck // required by the interface
}

// refusalLogInterval bounds how often one peer's refusal for one reason is
// logged: a peer retrying every second would fill the log.
const refusalLogInterval = 10 * time.Second

// refusalLog logs refused handshakes, each (peer host, reason) at most once
// per refusalLogInterval.
type refusalLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]time.Time
}

func newRefusalLog(log *slog.Logger) *refusalLog {
	return &refusalLog{log: log, last: map[string]time.Time{}}
}

func (r *refusalLog) warn(msg, addr, link, addrKey string) {
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
	if len(r.last) > 1024 {
		clear(r.last)
	}
	r.last[key] = now
	r.mu.Unlock()
	r.log.Warn(msg, addrKey, addr, "link", link)
}
