package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/granaryhq/granary/gateway"
	"github.com/granaryhq/granary/gateway/grpcapi"
)

// defaultGRPCPort is Dapr's: SDKs reach the sidecar's gRPC API there unless
// DAPR_GRPC_PORT says otherwise.
const defaultGRPCPort = 50001

// portFlag is a port flag that remembers whether it was given.
type portFlag struct {
	port int
	set  bool
}

func (p *portFlag) String() string { return strconv.Itoa(p.port) }

func (p *portFlag) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q is not a port (0 turns it off)", v)
	}
	p.port, p.set = n, true
	return nil
}

// startGRPC serves Dapr's gRPC API on f's gRPC port through gw. A port given
// with --grpc-port that cannot be listened on is an error; the default one
// is only logged, so that several silos on one machine start (each but the
// first without a gRPC API, until given a port of its own). The returned
// stop ends it gracefully within grace; addr is empty when it is off.
// With gwTLS set, the API is served over TLS.
func startGRPC(f *hostFlags, gw *gateway.Server, streams grpcapi.Streams, shutdown func(), obs *observability, gwTLS *tls.Config, log *slog.Logger) (stop func(grace time.Duration), addr string, err error) {
	if f.grpcPort.port == 0 {
		return func(time.Duration) {}, "", nil
	}
	hostPort := net.JoinHostPort(f.host, strconv.Itoa(f.grpcPort.port))
	ln, err := net.Listen("tcp", hostPort)
	if err != nil {
		if f.grpcPort.set {
			return nil, "", fmt.Errorf("gRPC API cannot listen on %s: %w (choose another --grpc-port, or 0 for none)", hostPort, err)
		}
		log.Error("the gRPC API is not served: its default port is taken; give this silo a --grpc-port of its own", "addr", hostPort, "err", err)
		return func(time.Duration) {}, "", nil
	}
	api := grpcapi.New(grpcapi.Config{Gateway: gw, APIToken: f.apiToken, MaxMessageSize: f.maxBodySize, Shutdown: shutdown,
		Streams: streams, Logger: log, ObserveCall: obs.grpcCalls()})
	opts := api.ServerOptions()
	if gwTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(gwTLS.Clone())))
	}
	srv := grpc.NewServer(opts...)
	api.Register(srv)
	go func() {
		if err := srv.Serve(grpcapi.Listener(ln)); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("gRPC API stopped", "err", err)
		}
	}()
	return func(grace time.Duration) {
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			srv.Stop()
		}
	}, ln.Addr().String(), nil
}
