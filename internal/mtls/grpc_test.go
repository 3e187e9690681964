package mtls

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func healthCheck(addr string, creds credentials.TransportCredentials) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestGRPCCredentials(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	log, logs := newLog()
	server := p.source(p.issue("placement", time.Now(), time.Hour), log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(GRPCCredentials(server, log, "placement")))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	defer srv.Stop()
	addr := ln.Addr().String()

	good := p.source(p.issue("silo", time.Now(), time.Hour), nil)
	if err := healthCheck(addr, GRPCCredentials(good, nil, "placement")); err != nil {
		t.Fatalf("a silo of the cluster CA: %v", err)
	}
	clientLog, clientLogs := newLog()
	foreign := other.source(other.issue("silo", time.Now(), time.Hour), nil)
	if err := healthCheck(addr, GRPCCredentials(foreign, clientLog, "placement")); err == nil {
		t.Fatal("a silo of another CA was served")
	}
	if err := healthCheck(addr, insecure.NewCredentials()); err == nil {
		t.Fatal("a plaintext client was served")
	}
	waitFor(t, func() bool {
		s := logs.String()
		return strings.Contains(s, "refused a connection: the peer does not speak TLS") && strings.Contains(s, "link=placement")
	}, logs)
	// The silo of another CA refuses placement's certificate itself, first.
	if !strings.Contains(clientLogs.String(), "TLS handshake failed: the peer's certificate") ||
		!strings.Contains(clientLogs.String(), "not signed by the cluster CA") {
		t.Errorf("the foreign silo's log:\n%s", clientLogs.String())
	}
	// A retrying peer is logged once per interval, not on every attempt.
	for range 3 {
		healthCheck(addr, insecure.NewCredentials())
	}
	if n := strings.Count(logs.String(), "does not speak TLS"); n != 1 {
		t.Errorf("the plaintext peer was logged %d times:\n%s", n, logs.String())
	}
}
