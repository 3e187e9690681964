package mtls

import (
	"context"
	"crypto/tls"
	"log/slog"
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func grpcServer(t *testing.T, creds credentials.TransportCredentials) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func TestGRPCCredentials(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	log, logs := newLog()
	server := p.source(p.issue("placement", time.Now(), time.Hour), log)
	addr := grpcServer(t, GRPCCredentials(server, log, "placement"))

	silo := p.source(p.issue("silo", time.Now(), time.Hour), nil)
	if err := healthCheck(addr, GRPCCredentials(silo, nil, "placement")); err != nil {
		t.Fatalf("a silo of the cluster CA: %v", err)
	}
	for _, c := range []struct {
		desc  string
		creds credentials.TransportCredentials
		want  string
	}{
		{"another CA", func() credentials.TransportCredentials {
			// It trusts any server, so that the server is the one to refuse.
			cfg := other.source(other.issue("silo", time.Now(), time.Hour), nil).ClientConfig("h2")
			cfg.VerifyConnection = nil
			return credentials.NewTLS(cfg)
		}(), "refused a connection: the peer's certificate (silo, issued by Granary cluster CA " + other.caSerial() + ") is not signed by the cluster CA (" + p.caFile() + ")"},
		{"plaintext", insecure.NewCredentials(), "refused a connection: the peer does not speak TLS (first record does not look like a TLS handshake)"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			// The client retries within its deadline; the server logs once.
			if err := healthCheck(addr, c.creds); err == nil {
				t.Fatal("served")
			}
			waitForLog(t, logs, c.want)
			if n := strings.Count(logs.String(), c.want); n != 1 {
				t.Errorf("logged %d times:\n%s", n, logs.String())
			}
			line := logLine(logs.String(), c.want)
			if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "remote=127.0.0.1:") || !strings.Contains(line, "link=placement") {
				t.Errorf("the refusal's line: %s", line)
			}
		})
	}
	if err := healthCheck(addr, GRPCCredentials(silo, nil, "placement")); err != nil {
		t.Fatalf("after the refusals, a silo of the cluster CA: %v", err)
	}
}

// logLine is the line of the log that has s.
func logLine(log, s string) string {
	for line := range strings.Lines(log) {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// A client refuses a server of another CA, and logs why.
func TestGRPCCredentialsClientRefuses(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	quiet := slog.New(slog.DiscardHandler)
	addr := grpcServer(t, GRPCCredentials(other.source(other.issue("placement", time.Now(), time.Hour), nil), quiet, "placement"))
	log, logs := newLog()
	silo := p.source(p.issue("silo", time.Now(), time.Hour), nil)
	if err := healthCheck(addr, GRPCCredentials(silo, log, "silo internal")); err == nil {
		t.Fatal("a server of another CA was trusted")
	}
	line := logLine(logs.String(), "TLS handshake failed: ")
	for _, want := range []string{"level=WARN", "is not signed by the cluster CA (" + p.caFile() + ")", "target=" + addr, `link="silo internal"`} {
		if !strings.Contains(line, want) {
			t.Errorf("the client's line does not say %q:\n%s", want, logs.String())
		}
	}
	// The server's certificate does not name the host dialed.
	creds := GRPCCredentials(silo, log, "silo internal")
	good := grpcServer(t, GRPCCredentials(p.source(p.issue("placement", time.Now(), time.Hour), nil), quiet, "placement"))
	if err := creds.OverrideServerName("placement.example"); err != nil {
		t.Fatal(err)
	}
	if err := healthCheck(good, creds.Clone()); err == nil {
		t.Fatal("a server not named placement.example was trusted")
	}
	waitForLog(t, logs, "not for placement.example, the address dialed")
	if info := creds.Info(); info.SecurityProtocol != "tls" {
		t.Errorf("Info %+v", info)
	}
}

// The configs speak TLS 1.3 only, and the server's resumes no handshake
// checked against CAs since replaced.
func TestGRPCCredentialsConfigs(t *testing.T) {
	p := newPKI(t)
	src := p.source(p.issue("n", time.Now(), time.Hour), nil)
	srv, err := src.ServerConfig("h2").GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if srv.MinVersion != tls.VersionTLS13 || srv.ClientAuth != tls.RequireAndVerifyClientCert || srv.ClientCAs == nil || len(srv.Certificates) != 1 || srv.NextProtos[0] != "h2" || !srv.SessionTicketsDisabled {
		t.Errorf("server config %+v", srv)
	}
	cli := src.ClientConfig("h2")
	if cli.MinVersion != tls.VersionTLS13 || cli.GetClientCertificate == nil || !cli.InsecureSkipVerify || cli.VerifyConnection == nil {
		t.Errorf("client config %+v", cli)
	}
}
